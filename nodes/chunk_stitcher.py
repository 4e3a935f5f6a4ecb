"""Chunk Stitcher: joins back-to-back chunks of an IMAGE or LATENT batch with a crossfade. Glue over samplers/."""

from __future__ import annotations

import comfy.model_management
import comfy.utils
from comfy_api.latest import io

from ..samplers.chunk_stitching import ANCHOR_OFF, ANCHORS, TRANSITIONS, ColourAnchor, chunk_ranges, join
from .input_checks import check_finite_number, check_finite_tensor, check_images, latent_samples
from .schema import CATEGORY

IMAGE_FRAME_DIM = 0


def _latent_frame_dim(samples) -> int:
    # video latents are [batch, channels, frames, height, width]; image-model videos keep frames as batch rows
    return 2 if samples.ndim == 5 else 0


class ChunkStitcher(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        chunks = io.MatchType.Template("chunks", [io.Image, io.Latent])
        return io.Schema(
            node_id="LongVideoChunkStitcher",
            display_name="Chunk Stitcher",
            category=CATEGORY,
            description="Joins video chunks that share `overlap` frames, laid back to back in one IMAGE or LATENT batch: "
            "each chunk has `chunk_length` frames and its first `overlap` frames show the same moments as the previous "
            "chunk's last ones. The shared frames are crossfaded, so no frame is lost or repeated. For images, the colours "
            "of every chunk can be anchored to the first chunk to stop drift.",
            inputs=[
                io.MatchType.Input(
                    "chunks",
                    template=chunks,
                    tooltip="The chunks back to back in one batch: IMAGE (pixel space) or LATENT (latent space, frames counted in latent frames).",
                ),
                io.Int.Input(
                    "chunk_length",
                    default=81,
                    min=2,
                    max=100_000,
                    tooltip="Frames per chunk in the batch, its overlap frames included (latent frames for a LATENT). The last chunk may be shorter.",
                ),
                io.Int.Input(
                    "overlap", default=8, min=0, max=10_000, tooltip="Frames that each chunk shares with the previous one. 0 joins the chunks end to end."
                ),
                io.Combo.Input(
                    "transition",
                    options=list(TRANSITIONS),
                    default="linear",
                    tooltip="How the shared frames pass from one chunk to the next: cut (switch in the middle), linear or cosine crossfade (cosine eases in and out).",
                ),
                io.Combo.Input(
                    "colour_anchor",
                    options=list(ANCHORS),
                    default=ANCHOR_OFF,
                    tooltip="IMAGE only: move each chunk's colours to the first chunk's (not the previous one's, which would pass errors on). mean/std: average colour and contrast in Lab; histogram: the whole distribution of each Lab channel.",
                ),
                io.Float.Input(
                    "strength",
                    default=1.0,
                    min=0.0,
                    max=1.0,
                    step=0.05,
                    tooltip="How far the colour anchoring moves each chunk: 1 all the way to the first chunk's colours, 0 not at all. Lower it when the colours should change on purpose.",
                ),
            ],
            outputs=[
                io.MatchType.Output(
                    template=chunks,
                    display_name="video",
                    tooltip="The stitched video, of the same type as the input: sum of the chunk lengths minus overlap x (chunks - 1) frames.",
                )
            ],
        )

    @classmethod
    def execute(cls, chunks, chunk_length, overlap, transition, colour_anchor, strength) -> io.NodeOutput:
        if overlap >= chunk_length:
            raise ValueError(f"overlap ({overlap}) must be smaller than chunk_length ({chunk_length}): each chunk needs frames of its own.")
        check_finite_number("strength", strength)
        is_latent = isinstance(chunks, dict)
        if is_latent and colour_anchor != ANCHOR_OFF:
            raise ValueError("Colour anchoring works on decoded images, not latents: set colour_anchor to 'off', or stitch the decoded IMAGE instead.")
        if is_latent:
            frames = latent_samples(chunks, "chunks")
            check_finite_tensor(frames, "the chunks latent", "check the sampler or encoder that made it.")
        else:
            frames = chunks
            check_images(frames, "chunks", min_channels=3 if colour_anchor != ANCHOR_OFF else 1)
        frame_dim = _latent_frame_dim(frames) if is_latent else IMAGE_FRAME_DIM
        ranges = chunk_ranges(frames.shape[frame_dim], chunk_length, overlap)
        first_start, first_end = ranges[0]
        anchor = None if colour_anchor == ANCHOR_OFF else ColourAnchor(frames.narrow(frame_dim, first_start, first_end - first_start), colour_anchor)
        progress = comfy.utils.ProgressBar(len(ranges))

        def anchored_chunks():
            for index, (start, end) in enumerate(ranges):
                comfy.model_management.throw_exception_if_processing_interrupted()
                chunk = frames.narrow(frame_dim, start, end - start)
                # the first chunk is the reference: a round trip through Lab would only add rounding
                yield anchor(chunk, strength) if anchor is not None and index > 0 else chunk
                progress.update(1)

        stitched = join(anchored_chunks(), overlap, transition, frame_dim)
        if not is_latent:
            return io.NodeOutput(stitched)
        out = {key: value for key, value in chunks.items() if key not in ("noise_mask", "batch_index")}
        out["samples"] = stitched
        return io.NodeOutput(out)

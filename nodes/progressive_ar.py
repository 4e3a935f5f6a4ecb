"""Progressive AR Sampler (PA-VDM): thin glue over samplers/progressive_ar.py."""

from __future__ import annotations

from comfy_api.latest import io

from ..samplers import progressive_ar
from .adapter import ClipInput, sample_video
from .prompt_schedule import guidance_from_inputs
from .schema import CATEGORY, guidance_inputs, run_inputs, seed_input


class ProgressiveARSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoProgressiveARSampler",
            display_name="Progressive AR Sampler (PA-VDM)",
            category=CATEGORY,
            description="PA-VDM: a window of noisy chunks at progressively rising noise levels behind one clean context "
            "chunk. Every (steps / window chunks) model calls the cleanest chunk is finished, becomes the context, and a "
            "fresh noise chunk enters. Any length with constant memory; one model call per output latent frame when "
            "steps = chunk size x window chunks. Made for models fine-tuned with progressive noise levels; on models trained "
            "with one level per clip keep the chunks small (1-2 latent frames), or use the Diagonal Queue with Lookahead.",
            inputs=[
                *guidance_inputs("frames under different prompts in one window get one model call per prompt."),
                io.Sigmas.Input(
                    "sigmas",
                    tooltip="The noise levels from any scheduler. The steps must be a multiple of window_chunks; PA-VDM uses steps = chunk_size x window_chunks (one level per noisy latent frame).",
                ),
                io.Latent.Input(
                    "latent",
                    tooltip="An empty video latent: sets width, height and batch (its frame count is ignored; `length` sets it). LTX-2: the empty video latent joined with LTXVEmptyLatentAudio (LTXVConcatAVLatent); MiniMax H3: Empty MiniMax H3 AV Latent; the output then carries the sound too.",
                ),
                io.Int.Input(
                    "length",
                    default=32,
                    min=1,
                    max=100_000,
                    tooltip="New latent frames to output. Pixel frames after decoding: Wan 4 x (length - 1) + 1, LTX-Video 8 x (length - 1) + 1.",
                ),
                io.Int.Input(
                    "chunk_size",
                    default=2,
                    min=1,
                    max=128,
                    tooltip="Latent frames per chunk: they share a noise level and leave the window together. Models trained with one noise level per clip (Wan, LTX-Video, Cosmos as released) show seams at chunk boundaries that grow with the chunk size: keep it at 1-2 for them. PA-VDM's own model, fine-tuned with progressive levels, uses 5.",
                ),
                io.Int.Input(
                    "window_chunks",
                    default=8,
                    min=1,
                    max=64,
                    tooltip="Noisy chunks in the window. The model sees (window_chunks + 1) x chunk_size latent frames; keep that near the model's native clip length (Wan 81 frames = 21 latent frames, LTX-Video 97 frames = 13).",
                ),
                seed_input("Seed of the chunk noise; the same seed gives the same video."),
                io.Float.Input(
                    "eta",
                    default=0.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="0: deterministic Euler steps (the official sampler). Above 0: ancestral steps with fresh noise.",
                ),
                io.Latent.Input(
                    "context",
                    optional=True,
                    tooltip="A clip to extend (for example a VAE-encoded video): its last chunk_size latent frames are the first clean context chunk. Without it the video starts from noise. The output holds only the new frames. LTX-2: the clip with its sound (LTXVConcatAVLatent of VAE Encode and LTXV Audio VAE Encode); MiniMax H3: likewise with VAE Encode Audio of its sound, a clip of 5 + 17 n frames at 24 fps.",
                ),
                *run_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip="Exactly `length` new latent frames.")],
        )

    @classmethod
    def execute(
        cls,
        sigmas,
        latent,
        length,
        chunk_size,
        window_chunks,
        seed,
        eta,
        model=None,
        positive=None,
        negative=None,
        cfg=5.0,
        guider=None,
        context=None,
        experts=None,
        anchor=None,
        checkpoints=None,
    ) -> io.NodeOutput:
        guidance = guidance_from_inputs(model, positive, negative, cfg, guider, length, experts)
        # the clip comes before the new frames: its first frame is frame -F
        clip = (
            None if context is None else ClipInput(context, "context", "connect a VAE-encoded clip, or leave the context unconnected.", lambda frames: -frames)
        )
        out = sample_video(
            guidance,
            latent,
            sigmas,
            sampler=progressive_ar.generate,
            layout=progressive_ar.ChunkLayout(chunk_size, window_chunks),
            length=length,
            seed=seed,
            eta=eta,
            clip=clip,
            anchor=anchor,
            checkpoints=checkpoints,
        )
        return io.NodeOutput(out)

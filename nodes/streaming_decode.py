"""Streaming Decode to Video File: latent -> overlapping temporal tiles -> host VAE -> video file.

Only one decoded tile is in memory at a time, so a video of any length is written with constant
RAM, where VAE Decode would first build the whole float32 IMAGE (10,000 frames at 480x832 are
about 47 GB).
"""
from __future__ import annotations

import logging
import os
from typing import Iterator

import comfy.model_management
import comfy.utils
import folder_paths
import torch
from comfy.cli_args import args
from comfy_api.latest import InputImpl, io, ui

from ..samplers.chunk_stitching import decode_in_tiles, temporal_tiles, tiles_from
from .adapter import RUN_KEY
from .input_checks import check_filename_prefix, check_finite_number, check_finite_tensor, latent_samples
from .schema import CATEGORY
from .video_file import FORMATS, VideoFileWriter, append_video, count_frames, video_tags

H264_MAX_CRF = 51
VP9_MAX_CRF = 63
# the tag that says how a run's video was encoded: a try that stopped part-way is continued only with the same
ENCODING_TAG = "longvideo_encoding"


def decoded_frames(vae, samples: torch.Tensor, tile: int, overlap: int, first_frame: int = 0) -> Iterator[torch.Tensor]:
    """IMAGE frames ``[frames, height, width, channels]`` of the decoded latent, a block at a time, from ``first_frame`` on.

    Video latents ``[batch, channels, frames, height, width]`` are decoded in overlapping temporal
    tiles (decode_in_tiles); the videos of a batch follow one another, as VAE Decode lays them out.
    Latents of image models (frames as batch rows) decode frame by frame, ``tile`` rows at a time.
    Tiles that only make frames before ``first_frame`` are not decoded. The latent must suit the
    VAE (check_latent_for_vae).
    """
    compression = vae.temporal_compression_decode()
    progress = comfy.utils.ProgressBar(_tile_count(samples, tile, overlap, compression, first_frame))

    def decode(latent):
        comfy.model_management.throw_exception_if_processing_interrupted()
        pixels = vae.decode(latent)
        progress.update(1)
        return pixels

    if samples.ndim == 4:
        for start, end in temporal_tiles(samples.shape[0] - first_frame, tile, 0):
            yield decode(samples[first_frame + start : first_frame + end])
        return
    frames_per_video = compression * (samples.shape[2] - 1) + 1
    for index, video in enumerate(samples):
        skip = first_frame - index * frames_per_video
        if skip < frames_per_video:
            yield from decode_in_tiles(lambda latent: decode(latent)[0], video, tile, overlap, compression, max(0, skip))


def check_latent_for_vae(samples: torch.Tensor, vae, tile_overlap: int) -> None:
    """The latent's layout and channels must be what the VAE decodes; video tiles must overlap."""
    compression = vae.temporal_compression_decode()
    if samples.ndim == 5 and compression is None:
        raise ValueError("This VAE decodes single images, but the latent is a video latent [batch, channels, frames, height, width]. Use the VAE of the video model.")
    if samples.ndim == 4 and compression is not None:
        raise ValueError(
            f"The latent is an image latent [batch, channels, height, width], but this VAE decodes video ({compression}x in time): "
            f"connect a video latent [batch, channels, frames, height, width], or the VAE of the image model that made the latent."
        )
    channels = getattr(vae, "latent_channels", None)
    if channels is not None and samples.shape[1] != channels:
        raise ValueError(f"The latent has {samples.shape[1]} channels, but this VAE decodes {channels}-channel latents: connect the VAE of the model that made the latent.")
    if compression is not None and compression > 1 and tile_overlap < 1:
        raise ValueError(f"tile_overlap is 0, but with {compression}x temporal compression tiles must share at least one latent frame: set tile_overlap to 1 or more.")


def decoded_length(samples: torch.Tensor, compression) -> int:
    """Frames the decode of the latent gives: every video of the batch, or every row of an image latent."""
    if samples.ndim == 4:
        return samples.shape[0]
    return samples.shape[0] * (compression * (samples.shape[2] - 1) + 1)


def _tile_count(samples, tile, overlap, compression, first_frame) -> int:
    if samples.ndim == 4:
        return len(temporal_tiles(max(0, samples.shape[0] - first_frame), tile, 0)) if first_frame < samples.shape[0] else 0
    frames_per_video = compression * (samples.shape[2] - 1) + 1
    return sum(len(tiles_from(samples.shape[2], tile, overlap, compression, max(0, first_frame - index * frames_per_video)))
               for index in range(samples.shape[0]) if first_frame - index * frames_per_video < frames_per_video)


class DecodeToVideoFile(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoDecodeToVideoFile",
            display_name="Streaming Decode to Video File",
            category=CATEGORY,
            description="Decodes a video latent in overlapping temporal tiles with the VAE and writes the frames to an mp4 or "
            "webm file in the output folder as they are decoded, so memory does not grow with the length. The tile seams "
            "are crossfaded. If the run is cancelled or fails, the frames written so far stay a playable video.",
            inputs=[
                io.Latent.Input("samples", tooltip="The latent video to decode, e.g. from the Diagonal Queue Sampler, the Progressive AR Sampler or the Chunk Stitcher."),
                io.Vae.Input("vae", tooltip="The VAE of the video model (Wan, LTX-Video, ...); its temporal compression sets how tiles line up."),
                io.Float.Input("fps", default=16.0, min=1.0, max=120.0, step=1.0, tooltip="Frames per second of the file (Wan 16, LTX-Video 24)."),
                io.String.Input("filename_prefix", default="longvideo/LongVideo", tooltip="Folder inside the output folder and the start of the file name; a counter and the extension are added. %width%, %height%, %year%, %month%, %day%, %hour%, %minute% and %second% are filled in when the file is written; %date:...% and %Node.widget% only by the editor when it queues the prompt."),
                io.Combo.Input("format", options=list(FORMATS), default="mp4", tooltip="mp4: H.264. webm: VP9. Both yuv420p, which browsers and players show."),
                io.Int.Input("crf", default=19, min=0, max=VP9_MAX_CRF, tooltip="Constant quality: lower is better and larger. H.264 takes 0-51 (19 is nearly lossless to the eye), VP9 0-63."),
                io.Int.Input("tile_frames", default=16, min=1, max=4096, tooltip="Latent frames decoded at a time (Wan: 16 latent frames = 61 frames). Lower it if the VAE runs out of memory."),
                io.Int.Input("tile_overlap", default=2, min=0, max=2048, tooltip="Latent frames that neighbouring tiles share and crossfade, so tile seams do not show. At least 1 for video VAEs; at most half of tile_frames."),
                io.Boolean.Input("continue_video", default=True, optional=True, tooltip="For a latent from a sampler with Checkpoints: if this folder holds the video of the same run from a try that stopped part-way (same format, crf, fps and tiles), the frames it lacks are decoded and appended to it, not the whole video again; a finished one is output as it is. Off: always a new file."),
            ],
            outputs=[io.Video.Output(tooltip="The written file as a VIDEO: Save Video copies it elsewhere, Get Video Components reads it back.")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, samples, vae, fps, filename_prefix, format, crf, tile_frames, tile_overlap, continue_video=True) -> io.NodeOutput:
        if format == "mp4" and crf > H264_MAX_CRF:
            raise ValueError(f"crf {crf} is out of H.264's range 0-{H264_MAX_CRF}; use a lower crf or the webm format.")
        if tile_frames < 2 * tile_overlap:
            raise ValueError(f"tile_overlap ({tile_overlap}) can be at most half of tile_frames ({tile_frames}).")
        check_finite_number("fps", fps)
        check_filename_prefix(filename_prefix)
        latent = latent_samples(samples, "samples")
        check_latent_for_vae(latent, vae, tile_overlap)
        check_finite_tensor(latent, "the latent to decode", "its frames would decode to black; check the sampler or node that made it.")
        compression = vae.spacial_compression_decode()
        full_output_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), latent.shape[-1] * compression, latent.shape[-2] * compression)
        encoding = f"{format} crf {crf} at {fps:g} fps, tiles of {tile_frames} sharing {tile_overlap}"
        run = samples.get(RUN_KEY)
        earlier = _video_of_run(full_output_folder, filename, format, run, encoding) if continue_video and run else None
        file = os.path.basename(earlier) if earlier else f"{filename}_{counter:05}_.{format}"
        path = os.path.join(full_output_folder, file)
        done = count_frames(path) if earlier else 0
        total = decoded_length(latent, vae.temporal_compression_decode())
        if done < total:
            if done:
                logging.info("LongVideo: %s holds %d of the run's %d frames; decoding the rest onto it.", path, done, total)
            metadata = cls._metadata()
            if run is not None:
                metadata = {**(metadata or {}), RUN_KEY: run, ENCODING_TAG: encoding}
            written = f"{path}.continued.{format}" if done else path
            writer = VideoFileWriter(written, fps, format, crf, metadata)
            try:
                with writer:
                    for frames in decoded_frames(vae, latent, tile_frames, tile_overlap, done):
                        writer.write(frames)
            except BaseException:
                if writer.frames_written:
                    logging.warning("LongVideo: decoding stopped; the %d frames written so far are kept in %s", done + writer.frames_written, path)
                raise
            finally:
                # the continuation joins the earlier frames, also when this decode stopped part-way
                if done and writer.frames_written:
                    append_video(path, written)
                if done and os.path.exists(written):
                    os.remove(written)
        return io.NodeOutput(InputImpl.VideoFromFile(path), ui=ui.PreviewVideo([ui.SavedResult(file, subfolder, io.FolderType.output)]))

    @classmethod
    def _metadata(cls) -> dict | None:
        """The prompt and workflow, as ComfyUI's own savers store them, unless metadata is disabled."""
        if args.disable_metadata:
            return None
        metadata = dict(cls.hidden.extra_pnginfo or {})
        if cls.hidden.prompt is not None:
            metadata["prompt"] = cls.hidden.prompt
        return metadata


def _video_of_run(folder: str, filename: str, format: str, run: str, encoding: str):
    """The newest video in ``folder`` named like this node's files that an earlier decode of ``run`` wrote with ``encoding``."""
    if not os.path.isdir(folder):
        return None
    candidates = [os.path.join(folder, name) for name in os.listdir(folder) if name.startswith(f"{filename}_") and name.endswith(f"_.{format}")]
    for path in sorted(candidates, key=os.path.getmtime, reverse=True):
        tags = video_tags(path)
        if tags.get(RUN_KEY) == run and tags.get(ENCODING_TAG) == encoding:
            return path
    return None

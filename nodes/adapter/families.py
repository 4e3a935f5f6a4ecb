"""Which family a ComfyUI model belongs to, how it takes a noise level per frame, and its latent layouts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import comfy.model_base as model_base
import comfy.model_sampling
import torch

from ...samplers.frame_levels import NoiseSpace

DENOISE_MASK = "denoise_mask"  # the model's process_timestep turns a mask into per-frame timesteps
TIMESTEP_MATRIX = "timestep_matrix"  # the transformer accepts a [B, T] timestep we inject ourselves
FRAMES_AS_BATCH = "frames_as_batch"  # image-latent models: frames are batch rows with a sigma each
# audio-video models whose latent packs both streams; their transformer takes per-row masks (MiniMax H3)
PACKED_ROW_MASKS = "packed_row_masks"
# audio-video models whose latent packs both streams; process_timestep takes a mask for each stream (LTX-2)
PACKED_STREAM_MASKS = "packed_stream_masks"

SUPPORTED_FAMILIES = (
    "LTX-Video (LTXV), LTX-2 and MiniMax H3 (video with sound), Wan 2.2 TI2V-5B, Cosmos Predict2, Wan 2.1 and Wan 2.2 A14B (T2V and I2V), "
    "and frames-as-batch models (SD1.5/SDXL with a motion module, SVD)"
)


class UnsupportedModelError(ValueError):
    pass


# ComfyUI reports an exception by its module and class name, and a custom node's modules are named
# after its folder path: without this the error would show the user a file path as its type.
UnsupportedModelError.__module__ = "comfyui_longvideo"


@dataclass(frozen=True)
class Family:
    name: str
    mechanism: str
    marks_clean_frames: bool = False  # the model's only concat input is a channel flagging given frames
    one_row_per_call: bool = False  # the transformer takes a batch of one (one window, no cond/uncond batching)
    audio_time_dim: Optional[int] = None  # audio-video models: the time axis of the audio latent
    # LTX: the transformer numbers a call's positions from its first frame, which causal positioning makes the video's first
    positions_from_call_start: bool = False


def model_family(model: model_base.BaseModel) -> Family:
    """Which family a loaded model belongs to, and how it takes per-frame noise levels."""
    kind = type(model)
    if kind is model_base.LTXV:
        return Family("LTX-Video", DENOISE_MASK, positions_from_call_start=True)
    if kind is model_base.WAN22:
        return Family("Wan 2.2 TI2V-5B", DENOISE_MASK)
    if kind is model_base.CosmosPredict2:
        return Family("Cosmos Predict2", DENOISE_MASK, marks_clean_frames=model.image_to_video)
    if kind is model_base.MiniMaxH3:
        return Family("MiniMax H3", PACKED_ROW_MASKS, one_row_per_call=True, audio_time_dim=3)
    if kind is model_base.LTXAV:
        return Family("LTX-2", PACKED_STREAM_MASKS, audio_time_dim=2, positions_from_call_start=True)
    if kind is model_base.WAN21:
        return Family("Wan 2.1 / Wan 2.2 A14B", TIMESTEP_MATRIX)
    if model.latent_format.latent_dimensions == 2:
        return Family(f"frames-as-batch ({kind.__name__})", FRAMES_AS_BATCH)
    raise UnsupportedModelError(
        f"This model is {kind.__name__} (transformer {type(model.diffusion_model).__name__}), which takes one noise "
        f"level per video, but long-video sampling needs a noise level per frame. Supported families: "
        f"{SUPPORTED_FAMILIES}."
    )


def video_layout(samples: torch.Tensor, family: Family) -> torch.Tensor:
    """A LATENT's samples as a video ``[B, C, F, H, W]``; image models keep frames as batch rows."""
    video = samples.movedim(0, 1).unsqueeze(0) if family.mechanism == FRAMES_AS_BATCH else samples
    if video.ndim != 5:
        raise ValueError(f"The latent must be a video latent [batch, channels, frames, height, width]; got shape {tuple(samples.shape)}.")
    return video


def host_layout(video: torch.Tensor, family: Family) -> torch.Tensor:
    """The inverse of ``video_layout``: what goes back into a LATENT."""
    return video.squeeze(0).movedim(0, 1) if family.mechanism == FRAMES_AS_BATCH else video


def to_model_space(model: model_base.BaseModel, video: torch.Tensor) -> torch.Tensor:
    """``process_latent_in`` on a video ``[B, C, F, H, W]``, in the model's own layout."""
    family = model_family(model)
    return video_layout(model.process_latent_in(host_layout(video, family)), family)


def to_host_space(model: model_base.BaseModel, video: torch.Tensor) -> torch.Tensor:
    """``process_latent_out`` on a video ``[B, C, F, H, W]``, in the model's own layout."""
    family = model_family(model)
    return video_layout(model.process_latent_out(host_layout(video, family)), family)


def noise_space(model: model_base.BaseModel) -> NoiseSpace:
    if isinstance(model.model_sampling, comfy.model_sampling.CONST):
        return NoiseSpace.RECTIFIED_FLOW
    return NoiseSpace.VARIANCE_EXPLODING

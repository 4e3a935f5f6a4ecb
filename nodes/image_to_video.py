"""Image-to-video conditioning of one chunk, per model family, through ComfyUI's own I2V nodes.

Each family conditions on its guide frames the way its ComfyUI node does, by calling that node:
LTX-Video replaces the first latent frames (LTXVImgToVideo), Wan 2.2 TI2V-5B does the same in its
48-channel latent (Wan22ImageToVideoLatent), and Wan 2.1 / Wan 2.2 A14B I2V concatenate the encoded
guide to the input channels (WanImageToVideo, with CLIP vision for Wan 2.1 I2V). Cosmos Predict2
video2world puts the encoded guide in the first latent frame and marks it given in its extra input
channel (CosmosPredict2ImageToVideoLatent).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from comfy_extras.nodes_cosmos import CosmosPredict2ImageToVideoLatent
from comfy_extras.nodes_lt import LTXVImgToVideo
from comfy_extras.nodes_wan import Wan22ImageToVideoLatent, WanImageToVideo

from .adapter import UnsupportedModelError, model_family

WAN_LATENT_CHANNELS = 16


@dataclass(frozen=True)
class ImageToVideo:
    family: str
    frames_per_latent: int  # pixel frames per latent frame after the first (temporal compression)
    size_step: int  # width and height must be multiples of this
    condition: Callable  # (positive, negative, vae, guide, width, height, length, clip_vision) -> (positive, negative, latent)
    one_guide_frame: bool = False  # the family's node conditions on the first guide frame only

    def check(self, width: int, height: int, length: int, guide_frames: int) -> None:
        step, r = self.size_step, self.frames_per_latent
        if width % step or height % step:
            raise ValueError(f"{self.family} needs width and height that are multiples of {step}; got {width}x{height}.")
        if (length - 1) % r:
            raise ValueError(f"{self.family} makes chunks of 1 + a multiple of {r} frames; chunk_length {length} is not one (try {1 + r * max(1, (length - 1) // r)}).")
        if self.one_guide_frame and guide_frames != 1:
            raise ValueError(
                f"{self.family} conditions a chunk on a single frame (CosmosPredict2ImageToVideoLatent keeps one latent frame "
                f"of a short guide); set guide_frames to 1, not {guide_frames}."
            )
        if (guide_frames - 1) % r or guide_frames >= length:
            raise ValueError(
                f"{self.family} encodes 1 + {r}*n guide frames into whole latent frames (1, {1 + r}, {1 + 2 * r}, ...), fewer than "
                f"chunk_length ({length}); guide_frames {guide_frames} is not one."
            )


def _ltxv(positive, negative, vae, guide, width, height, length, clip_vision):
    return LTXVImgToVideo.execute(positive=positive, negative=negative, image=guide, vae=vae, width=width, height=height, length=length, batch_size=1, strength=1.0).result


def _wan22_5b(positive, negative, vae, guide, width, height, length, clip_vision):
    (latent,) = Wan22ImageToVideoLatent.execute(vae=vae, width=width, height=height, length=length, batch_size=1, start_image=guide).result
    return positive, negative, latent


def _wan_i2v(needs_clip_vision: bool):
    def condition(positive, negative, vae, guide, width, height, length, clip_vision):
        clip_vision_output = None
        if needs_clip_vision:
            # as CLIPVisionEncode with crop "none" in ComfyUI's Wan 2.1 I2V workflows
            clip_vision_output = clip_vision.encode_image(guide[-1:], crop=False)
        return WanImageToVideo.execute(positive=positive, negative=negative, vae=vae, width=width, height=height, length=length, batch_size=1, start_image=guide, clip_vision_output=clip_vision_output).result
    return condition


def _cosmos_predict2(positive, negative, vae, guide, width, height, length, clip_vision):
    (latent,) = CosmosPredict2ImageToVideoLatent.execute(vae=vae, width=width, height=height, length=length, batch_size=1, start_image=guide).result
    return positive, negative, latent


def image_to_video(model, clip_vision) -> ImageToVideo:
    """How to condition a chunk of this model on guide frames; a clear error when it cannot be."""
    try:
        family = model_family(model).name
    except UnsupportedModelError:
        family = type(model).__name__
    if family == "LTX-Video":
        return ImageToVideo(family, 8, 32, _ltxv)
    if family == "Wan 2.2 TI2V-5B":
        return ImageToVideo(family, 4, 32, _wan22_5b)
    if family == "Wan 2.1 / Wan 2.2 A14B":
        transformer = model.diffusion_model
        if transformer.patch_embedding.weight.shape[1] <= WAN_LATENT_CHANNELS:
            raise ValueError(
                "This Wan model is text-to-video (16 input channels). k-Step Noise Search conditions every chunk on the last "
                "frame of the previous one: load an image-to-video model (Wan 2.1 I2V, Wan 2.2 A14B I2V or Wan 2.2 TI2V-5B)."
            )
        needs_clip_vision = transformer.img_emb is not None
        if needs_clip_vision and clip_vision is None:
            raise ValueError("Wan 2.1 I2V takes a CLIP vision embedding of its guide image: connect clip_vision (clip_vision_h).")
        return ImageToVideo("Wan 2.1 / Wan 2.2 A14B I2V", 4, 16, _wan_i2v(needs_clip_vision))
    if family == "Cosmos Predict2":
        if not model.image_to_video:
            raise ValueError(
                "This Cosmos Predict2 model is text-to-image. k-Step Noise Search conditions every chunk on the last frame of "
                "the previous one: load Cosmos Predict2 video2world."
            )
        return ImageToVideo("Cosmos Predict2 video2world", 4, 16, _cosmos_predict2, one_guide_frame=True)
    raise ValueError(
        f"k-Step Noise Search conditions every chunk on an image, which it does for LTX-Video, Wan 2.2 TI2V-5B, Wan 2.1 / "
        f"Wan 2.2 A14B I2V and Cosmos Predict2 video2world; this model is {family}."
    )


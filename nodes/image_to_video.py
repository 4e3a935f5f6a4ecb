"""Image-to-video conditioning of one chunk, per model family, through ComfyUI's own I2V nodes.

Each family conditions on its guide frames the way its ComfyUI node does, by calling that node:
LTX-Video replaces the first latent frames (LTXVImgToVideo), Wan 2.2 TI2V-5B does the same in its
48-channel latent (Wan22ImageToVideoLatent), and Wan 2.1 / Wan 2.2 A14B I2V concatenate the encoded
guide to the input channels (WanImageToVideo, with CLIP vision for Wan 2.1 I2V). Cosmos Predict2
video2world puts the encoded guide in the first latent frame and marks it given in its extra input
channel (CosmosPredict2ImageToVideoLatent). MiniMax H3 makes a chunk's video with its sound in one
latent (EmptyMiniMaxH3LatentAV) and anchors the guide at its first frame as conditioning rows
(MiniMaxH3AddGuide), which the transformer reads at every step without denoising them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from comfy_extras.nodes_cosmos import CosmosPredict2ImageToVideoLatent
from comfy_extras.nodes_lt import LTXVImgToVideo
from comfy_extras.nodes_minimax_h3 import EmptyMiniMaxH3LatentAV, MiniMaxH3AddGuide
from comfy_extras.nodes_wan import Wan22ImageToVideoLatent, WanImageToVideo

from .adapter import UnsupportedModelError, model_family

WAN_LATENT_CHANNELS = 16


@dataclass(frozen=True)
class ImageToVideo:
    family: str
    # chunks and guide clips are first_frames + a multiple of frame_step frames (a guide may also be one image);
    # for a causal video VAE frame_step is its temporal compression and first_frames 1
    frame_step: int
    size_step: int  # width and height must be multiples of this
    condition: Callable  # (positive, negative, vae, guide, width, height, length, clip_vision) -> (positive, negative, latent)
    one_guide_frame: bool = False  # the family's node conditions on the first guide frame only
    first_frames: int = 1

    def check(self, width: int, height: int, length: int, guide_frames: int) -> None:
        size, first, frame_step = self.size_step, self.first_frames, self.frame_step
        if width % size or height % size:
            raise ValueError(f"{self.family} needs width and height that are multiples of {size}; got {width}x{height}.")
        if length < first or (length - first) % frame_step:
            raise ValueError(
                f"{self.family} makes chunks of {first} + a multiple of {frame_step} frames; chunk_length {length} is not one (try {first + frame_step * max(1, (length - first) // frame_step)})."
            )
        if self.one_guide_frame and guide_frames != 1:
            raise ValueError(
                f"{self.family} conditions a chunk on a single frame (CosmosPredict2ImageToVideoLatent keeps one latent frame "
                f"of a short guide); set guide_frames to 1, not {guide_frames}."
            )
        on_grid = guide_frames == 1 or (guide_frames >= first and (guide_frames - first) % frame_step == 0)
        if not on_grid or guide_frames >= length:
            counts = ", ".join(str(n) for n in sorted({1, first, first + frame_step, first + 2 * frame_step}))
            raise ValueError(
                f"{self.family} encodes {first} + {frame_step}*n guide frames into whole latent frames ({counts}, ...), fewer than "
                f"chunk_length ({length}); guide_frames {guide_frames} is not one."
            )


def _ltxv(positive, negative, vae, guide, width, height, length, clip_vision):
    return LTXVImgToVideo.execute(
        positive=positive, negative=negative, image=guide, vae=vae, width=width, height=height, length=length, batch_size=1, strength=1.0
    ).result


def _wan22_5b(positive, negative, vae, guide, width, height, length, clip_vision):
    (latent,) = Wan22ImageToVideoLatent.execute(vae=vae, width=width, height=height, length=length, batch_size=1, start_image=guide).result
    return positive, negative, latent


def _wan_i2v(needs_clip_vision: bool):
    def condition(positive, negative, vae, guide, width, height, length, clip_vision):
        clip_vision_output = None
        if needs_clip_vision:
            # as CLIPVisionEncode with crop "none" in ComfyUI's Wan 2.1 I2V workflows
            clip_vision_output = clip_vision.encode_image(guide[-1:], crop=False)
        return WanImageToVideo.execute(
            positive=positive,
            negative=negative,
            vae=vae,
            width=width,
            height=height,
            length=length,
            batch_size=1,
            start_image=guide,
            clip_vision_output=clip_vision_output,
        ).result

    return condition


def _cosmos_predict2(positive, negative, vae, guide, width, height, length, clip_vision):
    (latent,) = CosmosPredict2ImageToVideoLatent.execute(vae=vae, width=width, height=height, length=length, batch_size=1, start_image=guide).result
    return positive, negative, latent


def _minimax_h3(positive, negative, vae, guide, width, height, length, clip_vision):
    (latent,) = EmptyMiniMaxH3LatentAV.execute(width=width, height=height, length=length).result
    # a guide clip of 5 + 17 n frames is anchored whole, a single image alone; only the prompt is conditioned, as in H3's own I2V node
    (positive,) = MiniMaxH3AddGuide.execute(positive=positive, latent=latent, frame_idx=0, vae=vae, image=guide).result
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
    if family == "MiniMax H3":
        # H3's video VAE codes 17-frame groups (1 + 4 x 4 frames) after a first group of 5 (1 + 4), at 24 fps
        return ImageToVideo(family, 17, 32, _minimax_h3, first_frames=5)
    raise ValueError(
        f"k-Step Noise Search conditions every chunk on an image, which it does for LTX-Video, Wan 2.2 TI2V-5B, Wan 2.1 / "
        f"Wan 2.2 A14B I2V, Cosmos Predict2 video2world and MiniMax H3; this model is {family}."
    )

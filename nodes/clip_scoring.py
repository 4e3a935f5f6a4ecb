"""CLIP image embedders for scoring candidates: ComfyUI's CLIP_VISION, or open_clip from a local file."""
from __future__ import annotations

from pathlib import Path

import comfy.model_management
import folder_paths
import torch
from comfy.clip_model import clip_preprocess
from comfy_api.latest import io

from ..samplers.noise_search import Embed
from .schema import CATEGORY

CHECKPOINT_FOLDERS = ("clip_vision", "text_encoders")
OpenCLIP = io.Custom("LONGVIDEO_OPEN_CLIP")


def clip_vision_embedder(clip_vision) -> Embed:
    return lambda images: clip_vision.encode_image(images, crop=True).image_embeds


class OpenCLIPEmbedder:
    """An open_clip model's image tower, fed as ComfyUI feeds its CLIP vision models (resize, center crop, normalise)."""

    def __init__(self, model, name: str):
        self.model = model.eval()
        self.name = name
        visual = model.visual
        size = visual.image_size
        self.size = size if isinstance(size, int) else size[0]
        self.mean = list(getattr(visual, "image_mean", None) or (0.48145466, 0.4578275, 0.40821073))
        self.std = list(getattr(visual, "image_std", None) or (0.26862954, 0.26130258, 0.27577711))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        device = comfy.model_management.text_encoder_device()
        self.model.to(device)
        try:
            pixels = clip_preprocess(images.to(device).float(), size=self.size, mean=self.mean, std=self.std, crop=True)
            return self.model.encode_image(pixels).float().to(comfy.model_management.intermediate_device())
        finally:
            self.model.to(comfy.model_management.text_encoder_offload_device())


def checkpoint_files() -> list[str]:
    return sorted({name for folder in CHECKPOINT_FOLDERS for name in folder_paths.get_filename_list(folder)})


def _checkpoint_path(name: str) -> Path:
    for folder in CHECKPOINT_FOLDERS:
        path = folder_paths.get_full_path(folder, name)
        if path is not None:
            return Path(path)
    raise ValueError(f"{name} is in none of ComfyUI's model folders {', '.join(CHECKPOINT_FOLDERS)}.")


def load_open_clip(checkpoint: str, architecture: str) -> OpenCLIPEmbedder:
    """A local open_clip checkpoint; never downloads. A ``<checkpoint name>.json`` model config next to it wins over ``architecture``."""
    try:
        import open_clip
    except ImportError as error:
        raise RuntimeError("The open_clip scorer needs the open-clip-torch package (pip install open-clip-torch).") from error
    path = _checkpoint_path(checkpoint)
    config = path.with_suffix(".json")
    if config.is_file():
        open_clip.add_model_config(config)
        architecture = config.stem
    elif open_clip.get_model_config(architecture) is None:
        raise ValueError(f"open_clip has no architecture named {architecture!r}; known ones include ViT-B-32, ViT-B-16, ViT-L-14, ViT-H-14.")
    try:
        model = open_clip.create_model(architecture, pretrained=str(path), device="cpu")
    except RuntimeError as error:
        raise ValueError(f"{checkpoint} does not hold weights of the open_clip architecture {architecture}: {error}") from error
    return OpenCLIPEmbedder(model, f"open_clip {architecture} ({checkpoint})")


class OpenCLIPLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoOpenCLIPLoader",
            display_name="Open CLIP Loader (noise search scorer)",
            category=CATEGORY,
            description="Loads an open_clip model from a local file in ComfyUI's clip_vision or text_encoders folder, as the "
            "scorer of k-Step Noise Search (the paper scores with CLIP ViT-B/32). Nothing is downloaded.",
            inputs=[
                io.Combo.Input("checkpoint", options=checkpoint_files(), tooltip="An open_clip checkpoint (.safetensors, .bin or .pt) from models/clip_vision or models/text_encoders."),
                io.String.Input("architecture", default="ViT-B-32", tooltip="The open_clip model name the checkpoint was trained as (ViT-B-32, ViT-L-14, ...). A model config saved next to the checkpoint as <checkpoint name>.json replaces it."),
            ],
            outputs=[OpenCLIP.Output(display_name="open_clip", tooltip="The image encoder, for the open_clip input of k-Step Noise Search.")],
        )

    @classmethod
    def execute(cls, checkpoint, architecture) -> io.NodeOutput:
        return io.NodeOutput(load_open_clip(checkpoint, architecture.strip()))

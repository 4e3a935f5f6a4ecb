"""CLIP image embedders for scoring candidates: ComfyUI's CLIP_VISION, or open_clip from a local file."""

from __future__ import annotations

import json
from pathlib import Path

import comfy.model_management
import comfy.utils
import folder_paths
import torch
from comfy.clip_model import clip_preprocess
from comfy_api.latest import io

from ..samplers.noise_search import Embed
from .schema import CATEGORY

CHECKPOINT_FOLDERS = ("clip_vision", "text_encoders")
# open_clip's CLIP classes keep the image tower under `visual` (`module.visual` when saved from DataParallel)
IMAGE_TOWER_PREFIXES = ("visual.", "module.visual.")
# open_clip normalises with these unless a pretrained tag names others; a local file has no tag
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
OpenCLIP = io.Custom("LONGVIDEO_OPEN_CLIP")


def clip_vision_embedder(clip_vision) -> Embed:
    return lambda images: clip_vision.encode_image(images, crop=True).image_embeds


class OpenCLIPEmbedder:
    """An open_clip image tower, fed as ComfyUI feeds its CLIP vision models (resize, center crop, normalise).

    Scoring compares image embeddings only, so the text tower is never built: some open_clip
    architectures take theirs from Hugging Face and would download its config.
    """

    def __init__(self, visual: torch.nn.Module, name: str):
        self.visual = visual.eval()
        self.name = name
        size = visual.image_size
        self.size = size if isinstance(size, int) else size[0]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        device = comfy.model_management.text_encoder_device()
        self.visual.to(device)
        try:
            pixels = clip_preprocess(images.to(device).float(), size=self.size, mean=OPENAI_MEAN, std=OPENAI_STD, crop=True)
            return self.visual(pixels).float().to(comfy.model_management.intermediate_device())
        finally:
            self.visual.to(comfy.model_management.text_encoder_offload_device())


def checkpoint_files() -> list[str]:
    return sorted({name for folder in CHECKPOINT_FOLDERS for name in folder_paths.get_filename_list(folder)})


def _checkpoint_path(name: str) -> Path:
    for folder in CHECKPOINT_FOLDERS:
        path = folder_paths.get_full_path(folder, name)
        if path is not None:
            return Path(path)
    raise ValueError(f"{name} is in none of ComfyUI's model folders {', '.join(CHECKPOINT_FOLDERS)}.")


def load_open_clip(checkpoint: str, architecture: str) -> OpenCLIPEmbedder:
    """The image tower of a local open_clip checkpoint; nothing is downloaded.

    A ``<checkpoint name>.json`` model config next to the file wins over ``architecture``.
    """
    try:
        import open_clip
        from open_clip.model import _build_vision_tower  # how open_clip's own CLIP classes build their image tower
    except ImportError as error:
        raise RuntimeError("The open_clip scorer needs the open-clip-torch package: pip install open-clip-torch (or the pack's [open-clip] extra).") from error
    path = _checkpoint_path(checkpoint)
    config_file = path.with_suffix(".json")
    if config_file.is_file():
        config, architecture = _config_from_file(config_file), config_file.stem
    else:
        # only open_clip's built-in configs: for a name like hf-hub:<repo>, get_model_config downloads one
        if architecture not in open_clip.list_models():
            raise ValueError(f"open_clip has no architecture named {architecture[:80]!r}; known ones include ViT-B-32, ViT-B-16, ViT-L-14, ViT-H-14.")
        config = open_clip.get_model_config(architecture)
    # the weights come from the file: a timm image tower must not fetch its own
    vision = {**config["vision_cfg"], "timm_model_pretrained": False}
    try:
        visual = _build_vision_tower(config["embed_dim"], vision, quick_gelu=config.get("quick_gelu", False))
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"open_clip cannot build the image tower of {architecture}: {str(error)[:200]}") from error
    visual.load_state_dict(_image_tower_weights(path, visual.state_dict(), checkpoint, architecture))
    return OpenCLIPEmbedder(visual, f"open_clip {architecture} ({checkpoint})")


def _config_from_file(config_file: Path) -> dict:
    try:
        config = json.loads(config_file.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{config_file.name} next to the checkpoint is not a readable JSON model config: {str(error)[:200]}") from error
    if not isinstance(config, dict) or not isinstance(config.get("vision_cfg"), dict) or "embed_dim" not in config:
        raise ValueError(f"{config_file.name} next to the checkpoint is not an open_clip model config: it needs embed_dim and vision_cfg.")
    return config


def _image_tower_weights(path: Path, expected: dict, checkpoint: str, architecture: str) -> dict:
    """The file's ``visual.*`` weights, refused with a short summary unless they fit the tower exactly."""
    try:
        state = comfy.utils.load_torch_file(str(path), safe_load=True)
    except Exception as error:  # whatever is wrong with the file, the user needs its name and the first line of why
        reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
        raise ValueError(f"{checkpoint} could not be read as a weights file: {reason}") from error
    weights = {}
    for key, value in state.items():
        for prefix in IMAGE_TOWER_PREFIXES:
            if key.startswith(prefix):
                weights[key[len(prefix) :]] = value
    missing = sorted(expected.keys() - weights.keys())
    unexpected = sorted(weights.keys() - expected.keys())
    reshaped = sorted(key for key in expected.keys() & weights.keys() if weights[key].shape != expected[key].shape)
    if missing or unexpected or reshaped:
        problems = [
            f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"
            for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped))
            if keys
        ]
        raise ValueError(
            f"{checkpoint} does not hold the image tower of the open_clip architecture {architecture} ({len(expected)} weights): "
            f"{'; '.join(problems)}. Choose the architecture the checkpoint was trained as, or save its model config next to it as "
            f"{path.stem}.json."
        )
    return weights


class OpenCLIPLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoOpenCLIPLoader",
            display_name="Open CLIP Loader (noise search scorer)",
            category=CATEGORY,
            description="Loads the image tower of an open_clip model from a local file in ComfyUI's clip_vision or "
            "text_encoders folder, as the scorer of k-Step Noise Search (the paper scores with CLIP ViT-B/32). The scorer "
            "compares images only, so the text tower is not loaded, and nothing is downloaded.",
            inputs=[
                io.Combo.Input(
                    "checkpoint",
                    options=checkpoint_files(),
                    tooltip="An open_clip checkpoint (.safetensors, .bin or .pt) from models/clip_vision or models/text_encoders.",
                ),
                io.String.Input(
                    "architecture",
                    default="ViT-B-32",
                    tooltip="One of open_clip's built-in model names, the one the checkpoint was trained as (ViT-B-32, ViT-L-14, ...; ViT-B-32-quickgelu for OpenAI's weights). A model config saved next to the checkpoint as <checkpoint name>.json replaces it.",
                ),
            ],
            outputs=[OpenCLIP.Output(display_name="open_clip", tooltip="The image encoder, for the open_clip input of k-Step Noise Search.")],
        )

    @classmethod
    def execute(cls, checkpoint, architecture) -> io.NodeOutput:
        return io.NodeOutput(load_open_clip(checkpoint, architecture.strip()))

"""Reaching ComfyUI nodes and this pack's modules inside an in-process ComfyUI."""

import sys

import torch
from comfy_host import PACK_ROOT


def pack_module(name: str):
    """A module of this pack as ComfyUI loaded it (e.g. ``nodes.adapter``)."""
    package = str(PACK_ROOT).replace(".", "_x_")  # the module name ComfyUI's loader gives a pack
    return sys.modules[f"{package}.{name}"]


def call_node(host, node_type: str, **inputs):
    """Run one node class directly (legacy or V3) and return its outputs as a tuple."""
    cls = host.node_class(node_type)
    if hasattr(cls, "FUNCTION"):
        return getattr(cls(), cls.FUNCTION)(**inputs)
    return tuple(cls.execute(**inputs).result)


def fake_conditioning(host, seed: int, width: int = 4096):
    return call_node(host, "LongVideoTestConditioning", width=width, tokens=8, seed=seed, scale=1.0)[0]


def text_width(family: str) -> int:
    """Width of the family's text embeddings: Cosmos Predict2 reads the old T5-XXL, the others T5-XXL or UMT5."""
    return 1024 if family == "cosmos_predict2" else 4096


def load_family(host, names: dict, family: str):
    """A tiny model of the family, patched as users run it, with a latent shape for it."""
    if family == "cosmos_predict2":
        # its RFlow sampling is built in; the shipped workflow adds no model-sampling node
        model = call_node(host, "UNETLoader", unet_name=names[family], weight_dtype="default")[0]
        return model, (1, 16, 5, 4, 4)
    if family == "ltxv":
        model = call_node(host, "CheckpointLoaderSimple", ckpt_name=names["ltxv_ckpt"])[0]
        model = call_node(host, "ModelSamplingLTXV", model=model, max_shift=2.05, base_shift=0.95)[0]
        return model, (1, 128, 5, 4, 4)
    channels = 16 if family == "wan21" else 48
    model = call_node(host, "UNETLoader", unet_name=names[family], weight_dtype="default")[0]
    model = call_node(host, "ModelSamplingSD3", model=model, shift=8.0)[0]
    return model, (1, channels, 5, 4, 4)


def random_latent(shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def record_progress(monkeypatch) -> list:
    """Collect every (value, total, preview) that a node asks a progress bar to show, with Latent2RGB previews on.

    Recorded where nodes call ComfyUI, at ProgressBar.update_absolute (update() goes through it
    too): what the bar then forwards to the frontend is ComfyUI's choice, and since 0.33 it
    throttles updates without a preview.
    """
    import comfy.utils
    import latent_preview
    from comfy.cli_args import LatentPreviewMethod

    updates = []
    update_absolute = comfy.utils.ProgressBar.update_absolute

    def recording_update_absolute(bar, value, total=None, preview=None):
        updates.append((value, bar.total if total is None else total, preview))
        return update_absolute(bar, value, total, preview)

    # each prompt resets the method to ComfyUI's default, which is what --preview-method sets
    monkeypatch.setattr(latent_preview, "default_preview_method", LatentPreviewMethod.Latent2RGB)
    monkeypatch.setattr(comfy.utils.ProgressBar, "update_absolute", recording_update_absolute)
    return updates

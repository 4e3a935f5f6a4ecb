"""Tiny open_clip checkpoints with model configs the shipped tiny models do not cover, in a folder of their own.

An architecture whose text tower comes from Hugging Face (roberta, xlm-roberta, mt5, ...) is the
case the Open CLIP Loader must load without the network: open_clip would build its text tower from
a config it downloads. The scorer needs only the image tower, which these files hold next to
stand-in text weights.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from tiny_models import OPEN_CLIP

HF_TEXT_TOWER = {
    "embed_dim": OPEN_CLIP["embed_dim"],
    "vision_cfg": OPEN_CLIP["vision_cfg"],
    "text_cfg": {"hf_model_name": "xlm-roberta-base", "hf_tokenizer_name": "xlm-roberta-base", "hf_proj_type": "mlp", "hf_pooler_type": "mean_pooler"},
}
HF_TEXT_TOWER_FILE = "tiny_open_clip_xlm_roberta.safetensors"
NO_CONFIG_FILE = "tiny_open_clip_without_config.safetensors"  # the same weights, so the architecture typed in is used
TRUNCATED_FILE = "tiny_open_clip_truncated.safetensors"


def write_open_clip_files(folder: Path) -> None:
    """Into ``folder``: the HF-text-tower checkpoint with its <name>.json config, a copy without it, and a file cut short."""
    from open_clip.model import _build_vision_tower

    torch.manual_seed(11)
    visual = _build_vision_tower(HF_TEXT_TOWER["embed_dim"], HF_TEXT_TOWER["vision_cfg"])
    weights = {f"visual.{key}": value.contiguous() for key, value in visual.state_dict().items()}
    weights["text.proj.0.weight"] = torch.randn(16, 16)  # what the text tower would hold; the loader leaves it
    save_file(weights, str(folder / HF_TEXT_TOWER_FILE))
    (folder / HF_TEXT_TOWER_FILE).with_suffix(".json").write_text(json.dumps(HF_TEXT_TOWER))
    save_file(weights, str(folder / NO_CONFIG_FILE))
    (folder / TRUNCATED_FILE).write_bytes((folder / HF_TEXT_TOWER_FILE).read_bytes()[:100])


def add_clip_vision_folder(monkeypatch, folder: Path) -> None:
    """Let ComfyUI's clip_vision folder list the files in ``folder`` too, for this test only."""
    import folder_paths

    paths, extensions = folder_paths.folder_names_and_paths["clip_vision"]
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "clip_vision", ([*paths, str(folder)], extensions))
    # a fresh cache of file lists while the folder is added; the old one comes back with the old folders
    monkeypatch.setattr(folder_paths, "filename_list_cache", {})

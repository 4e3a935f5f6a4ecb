"""Tiny random-weight video models that ComfyUI's real loaders accept.

Each model is an instance of ComfyUI's own module class, so the key names are exactly the
ones the loaders detect; only the sizes are shrunk to the smallest values the detection
code accepts. Weights are filled deterministically (seeded normal, std 0.02; norm scales 1;
biases 0) and saved as safetensors. Nothing here is downloaded or committed: the files are
rebuilt at test time, and a stamp file skips rebuilding when the recipe is unchanged.

Importing this module is cheap; building needs ComfyUI importable and set up for CPU
(comfy_host.prepare_comfy_imports does that).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import save_file

# Bump when a recipe below changes in a way the config dicts do not show.
RECIPE_VERSION = 1
STAMP_FILE = "tiny_models.stamp.json"

LTXV_TRANSFORMER = {
    "in_channels": 128,
    "num_layers": 2,
    "num_attention_heads": 4,
    "attention_head_dim": 16,
    "cross_attention_dim": 64,
    "caption_channels": 4096,
}

# sd.py hard-codes 8x time / 32x space for LTXV VAEs: patch 4 plus three 2x2x2 stages.
# The last encoder block must be res_x: its decoder twin is the key the loader detects.
LTXV_VAE = {
    "dims": 3,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "blocks": [["compress_all", 1], ["compress_all", 1], ["compress_all", 1], ["res_x", 1]],
    "patch_size": 4,
    "norm_layer": "pixel_norm",
    "latent_log_var": "uniform",
    "causal_decoder": False,
}


# LTX-2 (ComfyUI's LTXAV): video and sound in one transformer. The loader takes every size from the
# file's metadata; the audio latent is fixed at 8 channels x 16 frequency bins (128 per token) and the
# video latent at 128 channels. caption_channels is the width of the text projection's output (the
# connectors' input, 3840 in LTX-2), which the connectors keep: their heads x head_dim must equal it.
LTX2_TRANSFORMER = {
    "in_channels": 128,
    "audio_in_channels": 128,
    "num_layers": 1,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "audio_num_attention_heads": 2,
    "audio_attention_head_dim": 8,
    "cross_attention_dim": 32,
    "audio_cross_attention_dim": 16,
    "caption_channels": 32,
    "connector_num_attention_heads": 4,
    "connector_attention_head_dim": 8,
    "connector_num_layers": 1,
    # as LTX-2's own config: the first latent frame is one pixel frame, positions at the middle of each
    # token's span, and the audio-video cross-attention gates modulated by the full timestep
    "causal_temporal_positioning": True,
    "use_middle_indices_grid": True,
    "av_ca_timestep_scale_multiplier": 1000.0,
}
# The audio VAE at LTX-2's own rates (16 kHz, hop 160, 4x latent downsampling: 25 latents per second,
# 64 mel bins: 16 latent frequency bins), with few channels; its vocoder upsamples by the hop (160) so
# the waveform comes out at 16 kHz, with few channels too.
LTX2_AUDIO_VAE = {
    "model": {
        "params": {
            "sampling_rate": 16000,
            "ddconfig": {
                "double_z": True,
                "mel_bins": 64,
                "z_channels": 8,
                "resolution": 256,
                "downsample_time": False,
                "in_channels": 2,
                "out_ch": 2,
                "ch": 8,
                "ch_mult": [1, 2, 4],
                "num_res_blocks": 1,
                "attn_resolutions": [],
                "dropout": 0.0,
                "mid_block_add_attention": False,
                "norm_type": "pixel",
                "causality_axis": "height",
            },
        }
    },
    "preprocessing": {"stft": {"filter_length": 1024, "hop_length": 160}},
}
LTX2_VOCODER = {
    "resblock_kernel_sizes": [3],
    "upsample_rates": [5, 4, 2, 2, 2],
    "upsample_kernel_sizes": [10, 8, 4, 4, 4],
    "resblock_dilation_sizes": [[1, 3, 5]],
    "upsample_initial_channel": 32,
    "stereo": True,
    "resblock": "1",
}
# LTXAVTextEncoderLoader reads the text projection from the checkpoint; its input width is fixed by the
# Gemma 3 12B it follows (3840 x 49 hidden states), its output is the transformer's caption_channels.
GEMMA3_12B_HIDDEN_STATES = 3840 * 49
LTX2_TEXT_PROJECTION = {"in_features": GEMMA3_12B_HIDDEN_STATES, "out_features": LTX2_TRANSFORMER["caption_channels"]}
LTX2_CONFIG = {"transformer": LTX2_TRANSFORMER, "vae": LTXV_VAE, "audio_vae": LTX2_AUDIO_VAE, "vocoder": LTX2_VOCODER}


def wan_transformer(in_out_channels: int, in_channels: int | None = None) -> dict:
    """``in_channels`` above the latent's: Wan 2.2 A14B I2V style, the encoded guide concatenated (no CLIP image embedding)."""
    # The loader derives num_heads as dim // 128, so dim must be a multiple of 128.
    return {
        "model_type": "t2v",
        "dim": 128,
        "ffn_dim": 256,
        "num_heads": 1,
        "num_layers": 2,
        "in_dim": in_channels or in_out_channels,
        "out_dim": in_out_channels,
        "text_dim": 4096,
        "freq_dim": 256,
    }


WAN21_VAE = {
    "dim": 8,
    "z_dim": 16,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "image_channels": 3,
    "dropout": 0.0,
}

TAEHV_WAN22 = {"latent_channels": 48}

# CLIPVisionLoader picks one of ComfyUI's fixed full-size JSON configs (the smallest is ViT-L/14,
# about 300M parameters) by the number of layers, so the tiny one keeps its config in the file's
# metadata and the test node LongVideoTestCLIPVisionLoader builds ComfyUI's CLIP vision model from it.
CLIP_VISION = {
    "hidden_act": "quick_gelu",
    "hidden_size": 32,
    "image_size": 56,
    "intermediate_size": 64,
    "layer_norm_eps": 1e-05,
    "model_type": "clip_vision_model",
    "num_attention_heads": 2,
    "num_channels": 3,
    "num_hidden_layers": 2,
    "patch_size": 14,
    "projection_dim": 16,
}

# An open_clip model config; the loader reads it from <file stem>.json next to the weights.
OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
}

# HunyuanVideo has per-batch timesteps only. The loader derives num_heads as hidden // 128
# and fixes axes_dim to [16, 56, 56] (sum 128), so hidden 128 with one head is the minimum.
# vector_in (vec_in_dim 768) is what tells HunyuanVideo apart from HunyuanImage 2.1.
HUNYUAN_VIDEO = {
    "image_model": "hunyuan_video",
    "in_channels": 16,
    "out_channels": 16,
    "vec_in_dim": 768,
    "context_in_dim": 4096,
    "hidden_size": 128,
    "mlp_ratio": 4.0,
    "num_heads": 1,
    "depth": 1,
    "depth_single_blocks": 1,
    "axes_dim": [16, 56, 56],
    "theta": 256,
    "patch_size": [1, 2, 2],
    "qkv_bias": True,
    "guidance_embed": False,
    "byt5": False,
    "meanflow": False,
    "use_cond_type_embedding": False,
    "vision_in_dim": None,
    "meanflow_sum": False,
}


# Cosmos Predict2 video2world (17 input channels: the latent and the conditioning-frame mask).
# The loader reads only model_channels from the file and takes 10 blocks and 16 heads from the
# module's defaults unless that is 2048 or 5120; RoPE splits each head in thirds and needs at least
# 4 dimensions per axis, so 12 per head (192 channels) is the smallest that builds.
COSMOS_PREDICT2 = {
    "max_img_h": 240,
    "max_img_w": 240,
    "max_frames": 128,
    "in_channels": 17,
    "out_channels": 16,
    "patch_spatial": 2,
    "patch_temporal": 1,
    "concat_padding_mask": True,
    "model_channels": 192,
    "num_blocks": 10,
    "num_heads": 16,
    "crossattn_emb_channels": 1024,
    "pos_emb_cls": "rope3d",
    "pos_emb_learnable": True,
    "pos_emb_interpolation": "crop",
    "min_fps": 1,
    "max_fps": 30,
    "use_adaln_lora": True,
    "adaln_lora_dim": 256,
    "rope_enable_fps_modulation": False,
}


# MiniMax H3 (audio + video in one packed sequence). The loader reads every size from the weights;
# RoPE rotates 6 x rope_inv_freq_len channels of each head (three axes, split halves), so 2
# frequencies fit a 16-channel head. The token refiner may have no blocks. The text width stays
# H3's own (Qwen3-VL-32B, 5120), so the shipped workflows' text encoding can be stood in for.
MINIMAX_H3 = {
    "hidden_size": 32,
    "num_layers": 1,
    "token_refiner_num_layers": 0,
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "ffn_hidden_size": 32,
    "latents_dim": 24,
    "audio_latents_dim": 32,
    "text_dim": 5120,
    "timestep_input_dim": 32,
    "time_embed_hidden_size": 32,
    "time_embed_dim": 32,
    "rope_inv_freq_len": 2,
}
# Larger weights on the time embedding and the output modulation, so that a row's noise label moves its
# output by about a quarter; the blocks' modulation stays small, so rows feel each other's labels (and
# the text tokens') through attention only slightly. At 0.02 throughout a label moved the output by 1e-4
# of its size, too little for a per-row check to tell a right label from a wrong one.
H3_STDS = (("time_embedder.", 0.3), ("final_layer.adaln_proj.", 0.3))

# ComfyUI builds the H3 video VAE (2.6 B parameters) and audio VAE (151 M) at fixed sizes whatever the
# file holds. The video VAE's stand-in is the H3 TAEHV (taeh3: 24 latent channels, 12 output
# channels), which ComfyUI loads as an H3 VAE and which encodes too; the audio VAE has no smaller
# form, so it is built at its full size (303 MB in float16) with random weights.
TAEHV_H3 = {"latent_channels": 24}
MINIMAX_H3_AUDIO_VAE: dict = {}


def _skip_init_ops():
    import comfy.ops

    return comfy.ops.disable_weight_init


def _ltxv_transformer() -> torch.nn.Module:
    from comfy.ldm.lightricks.model import LTXVModel

    return LTXVModel(**LTXV_TRANSFORMER, operations=_skip_init_ops())


def _ltxv_vae() -> torch.nn.Module:
    from comfy.ldm.lightricks.vae.causal_video_autoencoder import VideoVAE

    return VideoVAE(config=LTXV_VAE)


def _ltx2_transformer() -> torch.nn.Module:
    from comfy.ldm.lightricks.av_model import LTXAVModel

    return LTXAVModel(**LTX2_TRANSFORMER, operations=_skip_init_ops())


def _ltx2_audio_vae() -> torch.nn.Module:
    from comfy.ldm.lightricks.vae.audio_vae import AudioVAE

    return AudioVAE(metadata={"config": LTX2_CONFIG})


def _ltx2_audio_autoencoder() -> torch.nn.Module:
    return _ltx2_audio_vae().autoencoder


def _ltx2_vocoder() -> torch.nn.Module:
    return _ltx2_audio_vae().vocoder


def _ltx2_text_projection() -> torch.nn.Module:
    return torch.nn.ModuleDict({"aggregate_embed": torch.nn.Linear(**LTX2_TEXT_PROJECTION, bias=False)})


def _wan_transformer(in_out_channels: int, in_channels: int | None = None) -> Callable[[], torch.nn.Module]:
    def build() -> torch.nn.Module:
        from comfy.ldm.wan.model import WanModel

        return WanModel(**wan_transformer(in_out_channels, in_channels), operations=_skip_init_ops())

    return build


# a rank-2 LoRA on every self-attention projection of the tiny Wan transformer, as ComfyUI's loader keys them
WAN_LORA = {"rank": 2, "layers": 2, "dim": 128, "targets": ["q", "k", "v", "o"]}


def _wan_lora() -> torch.nn.Module:
    def projection():
        rank, dim = WAN_LORA["rank"], WAN_LORA["dim"]
        return torch.nn.ModuleDict({"lora_down": torch.nn.Linear(dim, rank, bias=False), "lora_up": torch.nn.Linear(rank, dim, bias=False)})

    blocks = {
        str(i): torch.nn.ModuleDict({"self_attn": torch.nn.ModuleDict({t: projection() for t in WAN_LORA["targets"]})}) for i in range(WAN_LORA["layers"])
    }
    return torch.nn.ModuleDict({"diffusion_model": torch.nn.ModuleDict({"blocks": torch.nn.ModuleDict(blocks)})})


def _wan21_vae() -> torch.nn.Module:
    from comfy.ldm.wan.vae import WanVAE

    return WanVAE(**WAN21_VAE)


def _taehv_wan22() -> torch.nn.Module:
    from comfy.taesd.taehv import TAEHV

    return TAEHV(**TAEHV_WAN22)


def _clip_vision() -> torch.nn.Module:
    from comfy.clip_model import CLIPVisionModelProjection

    return CLIPVisionModelProjection(CLIP_VISION, torch.float32, "cpu", _skip_init_ops())


def _open_clip() -> torch.nn.Module:
    from open_clip.model import CLIP

    return CLIP(**OPEN_CLIP)


def _hunyuan_video() -> torch.nn.Module:
    from comfy.ldm.hunyuan_video.model import HunyuanVideo

    return HunyuanVideo(**HUNYUAN_VIDEO, operations=_skip_init_ops())


def _cosmos_predict2() -> torch.nn.Module:
    from comfy.ldm.cosmos.predict2 import MiniTrainDIT

    return MiniTrainDIT(**COSMOS_PREDICT2, operations=_skip_init_ops())


def _minimax_h3() -> torch.nn.Module:
    from comfy.ldm.minimax.model import MiniMaxH3Model

    return MiniMaxH3Model(**MINIMAX_H3, operations=_skip_init_ops())


def _taehv_h3() -> torch.nn.Module:
    from comfy.taesd.taehv import TAEHV

    return TAEHV(**TAEHV_H3)


def _minimax_h3_audio_vae() -> torch.nn.Module:
    from comfy.ldm.minimax.audio_vae import MiniMaxH3AudioVAE

    return MiniMaxH3AudioVAE()


@dataclass(frozen=True)
class Part:
    """One module of a file: its keys get `prefix`, its tensors are stored as `dtype`."""

    build: Callable[[], torch.nn.Module]
    config: dict
    prefix: str = ""
    dtype: torch.dtype = torch.float32
    std: float = 0.02  # of the random weights
    stds: tuple[tuple[str, float], ...] = ()  # (name prefix, std) for the weights under a prefix, in place of std


@dataclass(frozen=True)
class TinyModel:
    role: str
    folder: str
    filename: str
    seed: int
    parts: tuple[Part, ...]
    metadata: dict | None = None
    sidecar: dict | None = None  # written as <file stem>.json next to the weights

    @property
    def relative_path(self) -> str:
        return f"{self.folder}/{self.filename}"

    def recipe_id(self, comfyui_version: str) -> str:
        recipe = {
            "version": RECIPE_VERSION,
            "comfyui": comfyui_version,
            "seed": self.seed,
            "parts": [[p.prefix, str(p.dtype), p.std, p.config] + ([[list(pair) for pair in p.stds]] if p.stds else []) for p in self.parts],
            "metadata": self.metadata,
            "sidecar": self.sidecar,
        }
        return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


# fp16 storage halves the larger files; the loaders cast to their working dtype.
TINY_MODELS = (
    TinyModel(
        role="ltxv_ckpt",
        folder="checkpoints",
        filename="tiny_ltxv_ckpt.safetensors",
        seed=1,
        parts=(
            Part(_ltxv_transformer, LTXV_TRANSFORMER, prefix="model.diffusion_model."),
            Part(_ltxv_vae, LTXV_VAE, prefix="vae.", dtype=torch.float16),
        ),
        # The loader guesses a full-size config from shapes; this metadata corrects it.
        metadata={"config": json.dumps({"transformer": LTXV_TRANSFORMER, "vae": LTXV_VAE})},
    ),
    # LTX-2 as Lightricks ships it: one checkpoint with the transformer, the video VAE, the audio VAE
    # with its vocoder (LTXVAudioVAELoader) and the text projection (LTXAVTextEncoderLoader)
    TinyModel(
        role="ltx2_ckpt",
        folder="checkpoints",
        filename="tiny_ltx2_ckpt.safetensors",
        seed=20,
        parts=(
            Part(_ltx2_transformer, LTX2_TRANSFORMER, prefix="model.diffusion_model."),
            Part(_ltxv_vae, LTXV_VAE, prefix="vae.", dtype=torch.float16),
            Part(_ltx2_audio_autoencoder, LTX2_AUDIO_VAE, prefix="audio_vae."),
            Part(_ltx2_vocoder, LTX2_VOCODER, prefix="vocoder."),
            Part(_ltx2_text_projection, LTX2_TEXT_PROJECTION, prefix="text_embedding_projection.", dtype=torch.float16),
        ),
        metadata={"config": json.dumps(LTX2_CONFIG)},
    ),
    TinyModel(
        role="wan21",
        folder="diffusion_models",
        filename="tiny_wan21.safetensors",
        seed=2,
        parts=(Part(_wan_transformer(16), wan_transformer(16)),),
    ),
    TinyModel(
        role="wan22_5b",
        folder="diffusion_models",
        filename="tiny_wan22_5b.safetensors",
        seed=3,
        parts=(Part(_wan_transformer(48), wan_transformer(48)),),
    ),
    TinyModel(
        role="wan21_i2v",
        folder="diffusion_models",
        filename="tiny_wan21_i2v.safetensors",
        seed=7,
        parts=(Part(_wan_transformer(16, 36), wan_transformer(16, 36)),),
    ),
    # Wan 2.2 A14B: two Wan 2.1-architecture experts with different weights, text- and image-to-video
    TinyModel(
        role="a14b_t2v_high",
        folder="diffusion_models",
        filename="tiny_a14b_t2v_high.safetensors",
        seed=11,
        parts=(Part(_wan_transformer(16), wan_transformer(16)),),
    ),
    TinyModel(
        role="a14b_t2v_low",
        folder="diffusion_models",
        filename="tiny_a14b_t2v_low.safetensors",
        seed=12,
        parts=(Part(_wan_transformer(16), wan_transformer(16)),),
    ),
    TinyModel(
        role="a14b_i2v_high",
        folder="diffusion_models",
        filename="tiny_a14b_i2v_high.safetensors",
        seed=13,
        parts=(Part(_wan_transformer(16, 36), wan_transformer(16, 36)),),
    ),
    TinyModel(
        role="a14b_i2v_low",
        folder="diffusion_models",
        filename="tiny_a14b_i2v_low.safetensors",
        seed=14,
        parts=(Part(_wan_transformer(16, 36), wan_transformer(16, 36)),),
    ),
    TinyModel(
        role="wan_lora_high",
        folder="loras",
        filename="tiny_wan_lora_high.safetensors",
        seed=15,
        parts=(Part(_wan_lora, WAN_LORA, std=0.2),),
    ),
    TinyModel(
        role="wan_lora_low",
        folder="loras",
        filename="tiny_wan_lora_low.safetensors",
        seed=16,
        parts=(Part(_wan_lora, WAN_LORA, std=0.2),),
    ),
    TinyModel(
        role="cosmos_predict2",
        folder="diffusion_models",
        filename="tiny_cosmos_predict2.safetensors",
        seed=10,
        parts=(Part(_cosmos_predict2, COSMOS_PREDICT2, dtype=torch.float16),),
    ),
    TinyModel(
        role="minimax_h3",
        folder="diffusion_models",
        filename="tiny_minimax_h3.safetensors",
        seed=17,
        parts=(Part(_minimax_h3, MINIMAX_H3, stds=H3_STDS),),
    ),
    TinyModel(
        role="taeh3",
        folder="vae",
        filename="tiny_taeh3.safetensors",
        seed=18,
        # as taew22: larger weights, so that previews of different latents differ
        parts=(Part(_taehv_h3, TAEHV_H3, dtype=torch.float16, std=0.05),),
    ),
    TinyModel(
        role="minimax_h3_audio_vae",
        folder="vae",
        filename="minimax_h3_audio_vae_random_weights.safetensors",
        seed=19,
        parts=(Part(_minimax_h3_audio_vae, MINIMAX_H3_AUDIO_VAE, dtype=torch.float16),),
    ),
    TinyModel(
        role="clip_vision",
        folder="clip_vision",
        filename="tiny_clip_vision.safetensors",
        seed=8,
        # large weights, so that the embedding varies with the image (at 0.02 every image embeds alike)
        parts=(Part(_clip_vision, CLIP_VISION, std=0.3),),
        metadata={"config": json.dumps(CLIP_VISION)},
    ),
    TinyModel(
        role="open_clip",
        folder="clip_vision",
        filename="tiny_open_clip.safetensors",
        seed=9,
        parts=(Part(_open_clip, OPEN_CLIP, std=0.3),),
        sidecar=OPEN_CLIP,
    ),
    TinyModel(
        role="wan21_vae",
        folder="vae",
        filename="tiny_wan21_vae.safetensors",
        seed=4,
        parts=(Part(_wan21_vae, WAN21_VAE),),
    ),
    TinyModel(
        role="taew22",
        folder="vae",
        filename="tiny_taew22.safetensors",
        seed=5,
        # 0.02 decodes every latent to an all-black video; the noise search needs previews that differ
        parts=(Part(_taehv_wan22, TAEHV_WAN22, dtype=torch.float16, std=0.05),),
    ),
    TinyModel(
        role="taew22_fading",
        folder="vae",
        filename="tiny_taew22_fading.safetensors",
        seed=5,
        # small weights make its per-block state fade within two latent frames, so a tiled decode
        # can be compared with the full one away from the seams
        parts=(Part(_taehv_wan22, TAEHV_WAN22, dtype=torch.float16, std=0.02),),
    ),
    TinyModel(
        role="unsupported_video",
        folder="diffusion_models",
        filename="tiny_unsupported_video.safetensors",
        seed=6,
        parts=(Part(_hunyuan_video, HUNYUAN_VIDEO, dtype=torch.float16),),
    ),
)

TINY_MODEL_FILES = {model.role: model.filename for model in TINY_MODELS}
MODEL_FOLDERS = ("checkpoints", "diffusion_models", "vae", "clip_vision", "text_encoders", "loras")


def build_tiny_models(models_dir: Path) -> dict[str, Path]:
    """Write every tiny model under models_dir/<folder>/ and return {role: path}.

    Files whose stamp matches the current recipe are kept as they are.
    """
    models_dir = Path(models_dir)
    for folder in MODEL_FOLDERS:
        (models_dir / folder).mkdir(parents=True, exist_ok=True)
    stamps = _read_stamps(models_dir)
    version = _comfyui_version()
    paths = {}
    for model in TINY_MODELS:
        path = models_dir / model.relative_path
        recipe_id = model.recipe_id(version)
        if not (path.is_file() and stamps.get(model.relative_path) == recipe_id):
            _save_atomically(_tensors_of(model), path, model.metadata)
            if model.sidecar is not None:
                path.with_suffix(".json").write_text(json.dumps(model.sidecar))
            stamps[model.relative_path] = recipe_id
            _write_stamps(models_dir, stamps)
        paths[model.role] = path
    return paths


def _tensors_of(model: TinyModel) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(model.seed)
    tensors = {}
    for part in model.parts:
        for name, template in part.build().state_dict().items():
            std = next((std for prefix, std in part.stds if name.startswith(prefix)), part.std)
            value = _initial_value(name, template, generator, std)
            tensors[part.prefix + name] = value.to(part.dtype).contiguous()
    return tensors


def _initial_value(name: str, template: torch.Tensor, generator: torch.Generator, std: float) -> torch.Tensor:
    leaf = name.rsplit(".", 1)[-1]
    shape = template.shape
    if leaf == "filter":
        # the H3 audio VAE's anti-aliasing filters: computed by the module, stored in the file
        return template.clone()
    if leaf == "inv_freq":
        # RoPE frequencies, as a RoPE module computes them (the H3 DiT stores them uninitialised)
        return 10000.0 ** (-torch.arange(shape[0], dtype=torch.float32) / shape[0])
    if leaf in ("latents_mean", "latents_std"):
        # the H3 audio VAE's latent statistics: identity normalisation
        return torch.ones(shape) if leaf == "latents_std" else torch.zeros(shape)
    if leaf == "alpha":
        # Snake activations: the frequency at its usual start (1; SnakeBeta's log-scale 1 is e)
        return torch.ones(shape)
    if "per_channel_statistics" in name:
        # LTXV latent statistics (buffers created with torch.empty): identity normalisation.
        return torch.ones(shape) if leaf == "std-of-means" else torch.zeros(shape)
    if leaf in ("bias", "beta"):
        return torch.zeros(shape)
    is_norm_scale = leaf in ("gamma", "scale") or (leaf == "weight" and len(shape) == 1)
    if is_norm_scale:
        return torch.ones(shape)
    return torch.randn(shape, generator=generator) * std


def _save_atomically(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None) -> None:
    partial = path.with_name(path.name + f".{os.getpid()}.partial")
    save_file(tensors, str(partial), metadata=metadata)
    os.replace(partial, path)


def _comfyui_version() -> str:
    try:
        import comfyui_version

        return comfyui_version.__version__
    except (ImportError, AttributeError):
        return "unknown"


def _read_stamps(models_dir: Path) -> dict:
    try:
        return json.loads((models_dir / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _write_stamps(models_dir: Path, stamps: dict) -> None:
    (models_dir / STAMP_FILE).write_text(json.dumps(stamps, indent=1, sort_keys=True))


def ltx2_audio_vae(host):
    """The tiny LTX-2 audio VAE (a ComfyUI VAE), loaded by LTXVAudioVAELoader from the tiny LTX-2 checkpoint.

    ``host`` is an in-process ComfyUI whose models folder holds the tiny models (the comfy_inprocess fixture).
    """
    return host.node_class("LTXVAudioVAELoader").execute(ckpt_name=TINY_MODEL_FILES["ltx2_ckpt"]).result[0]

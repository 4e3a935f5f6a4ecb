"""The shipped API workflows, made runnable on tiny models: real loaders, tiny files, small sizes."""

import copy
import json
from pathlib import Path

from comfy_host import PACK_ROOT
from tiny_models import LTX2_TRANSFORMER, TINY_MODELS

WORKFLOWS = PACK_ROOT / "workflows" / "api"
TINY_FILE_ROLE = {
    "wan2.1_t2v_1.3B_fp16.safetensors": "wan21",
    "wan_2.1_vae.safetensors": "wan21_vae",
    "ltx-video-2b-v0.9.5.safetensors": "ltxv_ckpt",
    "wan2.2_ti2v_5B_fp16.safetensors": "wan22_5b",
    "wan2.2_vae.safetensors": "taew22",
    "clip_vision_h.safetensors": "clip_vision",
    "open_clip_vit_b_32_openai.safetensors": "open_clip",
    "cosmos_predict2_2B_video2world_480p_16fps.safetensors": "cosmos_predict2",
    "wan2.2_t2v_high_noise_14B_fp8_scaled.safetensors": "a14b_t2v_high",
    "wan2.2_t2v_low_noise_14B_fp8_scaled.safetensors": "a14b_t2v_low",
    "wan2.2_i2v_high_noise_14B_fp8_scaled.safetensors": "a14b_i2v_high",
    "wan2.2_i2v_low_noise_14B_fp8_scaled.safetensors": "a14b_i2v_low",
    "wan2.2_t2v_lightx2v_4steps_lora_v1.1_high_noise.safetensors": "wan_lora_high",
    "wan2.2_t2v_lightx2v_4steps_lora_v1.1_low_noise.safetensors": "wan_lora_low",
    "wan2.2_i2v_lightx2v_4steps_lora_v1_high_noise.safetensors": "wan_lora_high",
    "wan2.2_i2v_lightx2v_4steps_lora_v1_low_noise.safetensors": "wan_lora_low",
    "minimax_h3_fl2va_pruned_int8_convrot.safetensors": "minimax_h3",
    "minimax_h3_video_vae_fp16.safetensors": "taeh3",
    "minimax_h3_audio_vae_fp32.safetensors": "minimax_h3_audio_vae",
    "ltx-2-19b-dev-fp8.safetensors": "ltx2_ckpt",
}
# Text encoders have no tiny stand-in: tests replace the text encoding itself (see tiny_workflow).
OFFICIAL_TEXT_ENCODERS = (
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "t5xxl_fp16.safetensors",
    "oldt5_xxl_fp8_e4m3fn_scaled.safetensors",
    "qwen3vl_32b_minimax_h3_nvfp4_awq.safetensors",
    "gemma_3_12B_it.safetensors",
)
# width of the text embeddings by CLIPLoader type: Cosmos reads the old T5-XXL, Wan UMT5, LTXV T5-XXL, MiniMax H3 Qwen3-VL-32B
TEXT_WIDTH = {"cosmos": 1024, "wan": 4096, "ltxv": 4096, "minimax": 5120}
# LTX-2's Gemma 3 12B (LTXAVTextEncoderLoader) has no tiny form either; its stand-in gives what LTX-2's
# connectors hand the transformer, video and audio context side by side
LTX2_TEXT_WIDTH = 2 * LTX2_TRANSFORMER["caption_channels"]
TEXT_ENCODER_LOADERS = ("CLIPLoader", "LTXAVTextEncoderLoader")
FILE_INPUTS = ("unet_name", "vae_name", "ckpt_name", "checkpoint", "lora_name")
TEST_SIZES = {"width": 64, "height": 64}
TEST_SEARCH = {**TEST_SIZES, "chunk_length": 9, "chunks": 2, "candidates": 2, "preview_steps": 2, "steps": 3}
# MiniMax H3 makes chunks of 5 + 17 n frames
TEST_SEARCH_H3_CHUNK = 5
TEST_STITCH = {"chunk_length": 9, "overlap": 2}
FRAMES_PER_LEVEL = 2  # a Few-Step Queue's g on tiny models: a window of 4 frames over 2 levels
# Nodes that encode pixels with the VAE they are given; the tiny Wan 2.2 TAEHV needs a test encoder.
ENCODING_NODES = ("VAEEncode", "Wan22ImageToVideoLatent", "LongVideoKStepNoiseSearch")


def load_api_workflow(name: str) -> dict:
    return json.loads((WORKFLOWS / f"{name}.json").read_text())


# MiniMax H3's videos are 5 n + 2 latent frames (5 + 17 n frames), the lengths its VAE decodes whole
H3_LENGTH = 7


def tiny_length(name: str) -> int:
    """The sampler length (latent frames) a shipped workflow runs at on the tiny models."""
    return H3_LENGTH if "minimax_h3" in name else 5


def tiny_workflow(name: str, names: dict, *, length=10, window=4, partitions=2, chunk_size=2, window_chunks=2, wan22_5b=False, wan21=False) -> dict:
    """The workflow with tiny model files, fake text conditioning and test sizes.

    The scheduler gets the steps the sampler needs: window x partitions / frames per level for the
    Diagonal Queue Sampler, chunk_size x window_chunks for the Progressive AR Sampler. The k-step search and the
    stitcher get short chunks.
    """
    prompt = copy.deepcopy(load_api_workflow(name))
    kinds = {node["class_type"] for node in prompt.values()}
    progressive = "LongVideoProgressiveARSampler" in kinds
    # a queue of window x partitions frames (one partition without Latent Partition), g of them per level
    queue_levels = window * (partitions if "LongVideoLatentPartition" in kinds else 1) // (FRAMES_PER_LEVEL if "LongVideoFewStepQueue" in kinds else 1)
    text_width = {
        node_id: TEXT_WIDTH[node["inputs"]["type"]] if node["class_type"] == "CLIPLoader" else LTX2_TEXT_WIDTH
        for node_id, node in prompt.items()
        if node["class_type"] in TEXT_ENCODER_LOADERS
    }
    minimax_h3 = any(node["class_type"] == "CLIPLoader" and node["inputs"]["type"] == "minimax" for node in prompt.values())
    for node_id, node in list(prompt.items()):
        inputs = node["inputs"]
        for key in FILE_INPUTS:
            if key in inputs:
                inputs[key] = names[TINY_FILE_ROLE[inputs[key]]]
        kind = node["class_type"]
        if kind in TEXT_ENCODER_LOADERS:
            del prompt[node_id]
        elif kind == "CLIPTextEncode":
            width = text_width[inputs["clip"][0]]
            node.update(class_type="LongVideoTestConditioning", inputs={"width": width, "tokens": 8, "seed": int(node_id), "scale": 1.0})
        elif kind.startswith("Empty") or kind in ("Wan22ImageToVideoLatent", "CosmosPredict2ImageToVideoLatent", "ImageScale"):
            inputs.update(TEST_SIZES)
        elif kind in ("BasicScheduler", "LTXVScheduler"):
            inputs["steps"] = chunk_size * window_chunks if progressive else queue_levels
        elif kind == "LongVideoFewStepQueue":
            inputs["frames_per_level"] = FRAMES_PER_LEVEL
        elif kind == "LongVideoLatentPartition":
            inputs["partitions"] = partitions
        elif kind == "LongVideoDiagonalQueueSampler":
            inputs.update(length=length, window=window)
        elif kind == "LongVideoProgressiveARSampler":
            inputs.update(length=length, chunk_size=chunk_size, window_chunks=window_chunks)
        elif kind == "LongVideoKStepNoiseSearch":
            inputs.update(TEST_SEARCH, **({"chunk_length": TEST_SEARCH_H3_CHUNK} if minimax_h3 else {}))
        elif kind == "LongVideoChunkStitcher":
            inputs.update(TEST_STITCH)
        elif kind == "CLIPVisionLoader":
            node.update(class_type="LongVideoTestCLIPVisionLoader", inputs={"clip_name": names[TINY_FILE_ROLE[inputs["clip_name"]]]})
    if wan22_5b or wan21:
        for node in prompt.values():
            if node["class_type"] == "UNETLoader":
                node["inputs"]["unet_name"] = names["wan22_5b" if wan22_5b else "wan21"]
            if node["class_type"] == "VAELoader":
                node["inputs"]["vae_name"] = names["taew22" if wan22_5b else "wan21_vae"]
            if wan21 and node["class_type"] == "Wan22ImageToVideoLatent":
                # Wan 2.1 has its own latent (16 channels, 8x smaller); the 5B one does not fit it
                node.update(class_type="EmptyHunyuanLatentVideo", inputs={**TEST_SIZES, "length": 5, "batch_size": 1})
    _let_the_wan22_tae_encode(prompt, names["taew22"])
    return prompt


def _let_the_wan22_tae_encode(prompt: dict, tae_file: str) -> None:
    """Route the encoding nodes' Wan 2.2 VAE through the test node that gives the TAEHV an encoder."""
    for loader_id, loader in list(prompt.items()):
        if loader["class_type"] != "VAELoader" or loader["inputs"]["vae_name"] != tae_file:
            continue
        encoders = [node for node in prompt.values() if node["class_type"] in ENCODING_NODES and node["inputs"].get("vae") == [loader_id, 0]]
        if encoders:
            encoding_tae = str(max(int(node_id) for node_id in prompt) + 1)
            prompt[encoding_tae] = {"class_type": "LongVideoTestEncodingTAE", "inputs": {"vae": [loader_id, 0]}}
            for node in encoders:
                node["inputs"]["vae"] = [encoding_tae, 0]


def link_official_model_names(models_dir: Path, names: dict) -> None:
    """Give the tiny models the file names the shipped workflows use, so the workflows validate unchanged.

    Text encoders get empty placeholder files: only the loaders' file lists see them.
    """
    folder_of_role = {model.role: model.folder for model in TINY_MODELS}
    for official, role in TINY_FILE_ROLE.items():
        alias = models_dir / folder_of_role[role] / official
        if not alias.exists():
            alias.symlink_to((models_dir / folder_of_role[role] / names[role]).resolve())
    for official in OFFICIAL_TEXT_ENCODERS:
        (models_dir / "text_encoders" / official).touch()


def node_of_type(prompt: dict, class_type: str) -> str:
    return next(node_id for node_id, node in prompt.items() if node["class_type"] == class_type)


def add_prompt_schedule(prompt: dict, sampler_id: str, switch_frame: int) -> None:
    """Give the sampler a second prompt from ``switch_frame`` on, through Prompt Frame Range nodes."""
    sampler = prompt[sampler_id]["inputs"]
    width = next(node["inputs"]["width"] for node in prompt.values() if node["class_type"] == "LongVideoTestConditioning")
    prompt["81"] = {"class_type": "LongVideoTestConditioning", "inputs": {"width": width, "tokens": 8, "seed": 77, "scale": 3.0}}
    prompt["82"] = {"class_type": "LongVideoPromptFrameRange", "inputs": {"conditioning": sampler["positive"], "start_frame": 0, "end_frame": switch_frame}}
    prompt["83"] = {"class_type": "LongVideoPromptFrameRange", "inputs": {"conditioning": ["81", 0], "start_frame": switch_frame, "end_frame": -1}}
    prompt["84"] = {"class_type": "ConditioningCombine", "inputs": {"conditioning_1": ["82", 0], "conditioning_2": ["83", 0]}}
    sampler["positive"] = ["84", 0]


def stream_to_file(prompt: dict, **decode_inputs) -> str:
    """Streaming Decode to Video File in place of a workflow's VAE Decode, Create Video and Save
    Video, with tiles small enough for tiny tests; returns the new node's id."""
    decode = node_of_type(prompt, "VAEDecode")
    for kind in ("CreateVideo", "SaveVideo"):
        del prompt[node_of_type(prompt, kind)]
    inputs = prompt[decode]["inputs"]
    prompt[decode] = {
        "class_type": "LongVideoDecodeToVideoFile",
        "inputs": {
            "samples": inputs["samples"],
            "vae": inputs["vae"],
            "fps": 16.0,
            "filename_prefix": "longvideo/streamed",
            "format": "mp4",
            "crf": 19,
            "tile_frames": 8,
            "tile_overlap": 2,
            **decode_inputs,
        },
    }
    return decode

"""The host harness itself: tiny models load through ComfyUI's real loader nodes and sample,
both in-process and through a real ComfyUI server."""

import sys
import time

import pytest
import torch
from comfy_host import PACK_ROOT


def conditioning(seed: int) -> dict:
    return {"class_type": "LongVideoTestConditioning", "inputs": {"width": 4096, "tokens": 8, "seed": seed, "scale": 1.0}}


def sampling_prompt(loaders: dict, model: list, vae: list, latent: list, steps: int = 2) -> dict:
    """loaders + two test conditionings -> KSampler "5" -> SaveLatent "6"; VAEDecode "8" -> PreviewImage "9"."""
    return {
        **loaders,
        "2": conditioning(seed=1),
        "3": conditioning(seed=2),
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": model,
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": latent,
                "seed": 0,
                "steps": steps,
                "cfg": 2.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "host_harness/latent"}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": vae}},
        "9": {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}},
    }


def ltxv_prompt(names: dict) -> dict:
    return sampling_prompt(
        {
            "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": names["ltxv_ckpt"]}},
            "4": {"class_type": "EmptyLTXVLatentVideo", "inputs": {"width": 64, "height": 64, "length": 9, "batch_size": 1}},
        },
        model=["1", 0],
        vae=["1", 2],
        latent=["4", 0],
    )


def wan21_prompt(names: dict) -> dict:
    return sampling_prompt(
        {
            "1": {"class_type": "UNETLoader", "inputs": {"unet_name": names["wan21"], "weight_dtype": "default"}},
            "7": {"class_type": "VAELoader", "inputs": {"vae_name": names["wan21_vae"]}},
            "4": {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 5, "batch_size": 1}},
        },
        model=["1", 0],
        vae=["7", 0],
        latent=["4", 0],
    )


def wan22_5b_prompt(names: dict) -> dict:
    return sampling_prompt(
        {
            "1": {"class_type": "UNETLoader", "inputs": {"unet_name": names["wan22_5b"], "weight_dtype": "default"}},
            "7": {"class_type": "VAELoader", "inputs": {"vae_name": names["taew22"]}},
            "4": {"class_type": "Wan22ImageToVideoLatent", "inputs": {"vae": ["7", 0], "width": 64, "height": 64, "length": 5, "batch_size": 1}},
        },
        model=["1", 0],
        vae=["7", 0],
        latent=["4", 0],
    )


# family: (prompt builder, model_base class the loader must pick, latent [B, C, T, H, W], frames)
FAMILIES = {
    "ltxv": (ltxv_prompt, "LTXV", (1, 128, 2, 2, 2), 9),  # 9 frames / 8 + 1, 64 px / 32
    "wan21": (wan21_prompt, "WAN21", (1, 16, 2, 8, 8), 5),  # 5 frames / 4 + 1, 64 px / 8
    "wan22_5b": (wan22_5b_prompt, "WAN22", (1, 48, 2, 4, 4), 5),  # 5 frames / 4 + 1, 64 px / 16
}


# ------------------------------------------------------------------------------------------
# in-process
# ------------------------------------------------------------------------------------------

LOADER_INPUTS = {
    "UNETLoader": lambda file_name: {"unet_name": file_name, "weight_dtype": "default"},
    "CheckpointLoaderSimple": lambda file_name: {"ckpt_name": file_name},
    "VAELoader": lambda file_name: {"vae_name": file_name},
}


@pytest.mark.parametrize(
    "loader, role, expected_class",
    [
        ("UNETLoader", "wan21", "WAN21"),
        ("UNETLoader", "wan22_5b", "WAN22"),
        ("UNETLoader", "unsupported_video", "HunyuanVideo"),
        ("CheckpointLoaderSimple", "ltxv_ckpt", "LTXV"),
        ("VAELoader", "wan21_vae", "WanVAE"),
        ("VAELoader", "taew22", "TAEHV"),
    ],
)
def test_each_tiny_model_loads_through_the_real_loader_node(comfy_inprocess, tiny_model_names, loader, role, expected_class):
    node = comfy_inprocess.node_class(loader)()

    loaded = getattr(node, node.FUNCTION)(**LOADER_INPUTS[loader](tiny_model_names[role]))[0]

    inner = loaded.first_stage_model if loader == "VAELoader" else loaded.model
    assert type(inner).__name__ == expected_class


def test_the_ltxv_checkpoint_also_yields_its_vae(comfy_inprocess, tiny_model_names):
    node = comfy_inprocess.node_class("CheckpointLoaderSimple")()
    _model, _clip, vae = node.load_checkpoint(tiny_model_names["ltxv_ckpt"])
    assert type(vae.first_stage_model).__name__ == "VideoVAE"


@pytest.mark.parametrize("family", FAMILIES)
def test_ksampler_and_vae_decode_run_in_process_on_each_tiny_family(comfy_inprocess, tiny_model_names, family):
    build_prompt, model_class, latent_shape, frames = FAMILIES[family]

    history = comfy_inprocess.run_prompt(build_prompt(tiny_model_names))

    assert history["status"]["status_str"] == "success"
    assert type(comfy_inprocess.node_output("1").model).__name__ == model_class
    samples = comfy_inprocess.node_output("5")["samples"]
    assert tuple(samples.shape) == latent_shape
    assert torch.isfinite(samples).all()
    images = comfy_inprocess.node_output("8")
    assert tuple(images.shape) == (frames, 64, 64, 3)


def test_in_process_run_reports_comfyui_validation_errors(comfy_inprocess, tiny_model_names):
    prompt = wan21_prompt(tiny_model_names)
    prompt["1"]["inputs"]["unet_name"] = "no_such_model.safetensors"

    with pytest.raises(AssertionError, match="no_such_model.safetensors"):
        comfy_inprocess.run_prompt(prompt)


def test_the_pack_imports_in_process_without_errors(comfy_inprocess):
    assert comfy_inprocess.import_errors == {}


def test_in_process_host_registers_the_test_nodes_without_the_repo_on_sys_path(comfy_inprocess):
    assert comfy_inprocess.test_nodes == [
        "LongVideoTestCLIPVisionLoader",
        "LongVideoTestConditioning",
        "LongVideoTestEncodingTAE",
        "LongVideoTestFailingVAE",
        "LongVideoTestTextEncode",
    ]
    assert str(PACK_ROOT) not in sys.path


# ------------------------------------------------------------------------------------------
# server
# ------------------------------------------------------------------------------------------


def test_server_object_info_lists_core_and_test_nodes(comfy_server):
    info = comfy_server.object_info()
    assert "KSampler" in info
    assert "LongVideoTestConditioning" in info


def test_server_runs_a_wan22_5b_workflow_to_an_animated_webp(comfy_server, tiny_model_names):
    prompt = wan22_5b_prompt(tiny_model_names)
    del prompt["6"]
    prompt["9"] = {
        "class_type": "SaveAnimatedWEBP",
        "inputs": {"images": ["8", 0], "filename_prefix": "host_harness/wan22", "fps": 8.0, "lossless": False, "quality": 80, "method": "default"},
    }

    history = comfy_server.wait(comfy_server.queue(prompt), timeout=120)

    assert history["status"]["status_str"] == "success", history["status"]
    saved = history["outputs"]["9"]["images"][0]
    assert (comfy_server.output_dir / saved["subfolder"] / saved["filename"]).stat().st_size > 0


def test_server_rejects_an_invalid_prompt_with_comfyui_error_text(comfy_server):
    with pytest.raises(AssertionError, match="'NoSuchNode' not found"):
        comfy_server.queue({"1": {"class_type": "NoSuchNode", "inputs": {}}})


def test_server_interrupt_stops_a_running_prompt(comfy_server, tiny_model_names):
    prompt = wan22_5b_prompt(tiny_model_names)
    prompt["5"]["inputs"]["steps"] = 10_000  # KSampler's maximum: minutes, far longer than the test waits
    prompt_id = comfy_server.queue(prompt)
    wait_until(lambda: prompt_id in comfy_server.running_prompt_ids(), timeout=60)

    comfy_server.interrupt()
    history = comfy_server.wait(prompt_id, timeout=60)

    assert history["status"]["status_str"] == "error"
    assert "execution_interrupted" in [event for event, _data in history["status"]["messages"]]


def test_settle_drops_waiting_prompts_and_stops_the_running_one(comfy_server, tiny_model_names):
    # what a test that fails or times out leaves behind on the shared server
    prompt = wan22_5b_prompt(tiny_model_names)
    prompt["5"]["inputs"]["steps"] = 10_000
    running = comfy_server.queue(prompt)
    prompt["5"]["inputs"]["seed"] = 1
    waiting = comfy_server.queue(prompt)
    wait_until(lambda: running in comfy_server.running_prompt_ids(), timeout=60)

    comfy_server.settle()

    assert comfy_server.running_prompt_ids() == []
    assert "execution_interrupted" in [event for event, _data in comfy_server.wait(running, timeout=10)["status"]["messages"]]
    assert waiting not in comfy_server.pending_prompt_ids() and comfy_server.pending_prompt_ids() == []


def wait_until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_server_log_shows_no_longvideo_import_failure(comfy_server):
    failures = [line for line in comfy_server.log_text().splitlines() if "IMPORT FAILED" in line and "longvideo" in line.lower()]
    assert failures == [], "\n".join(failures)

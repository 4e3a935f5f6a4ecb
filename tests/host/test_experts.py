"""Wan 2.2 A14B's two experts in the samplers, on a tiny pair of Wan 2.1-architecture models with different weights."""

import json
import urllib.parse

import pytest
import torch
from hostile_inputs import http_get
from input_media import write_guide_image, write_test_video
from pack_access import call_node, fake_conditioning, pack_module, random_latent
from tiny_workflows import node_of_type, tiny_workflow

BOUNDARY = 0.875
# measured on the tiny random-weight models, as in test_adapter.py
MIXED = 5e-5
EXPERTS_NODE = "LongVideoWanExperts"


def load_expert(host, names, role):
    model = call_node(host, "UNETLoader", unet_name=names[role], weight_dtype="default")[0]
    return call_node(host, "ModelSamplingSD3", model=model, shift=8.0)[0]


def test_each_frame_takes_its_own_experts_prediction_at_its_own_level(comfy_inprocess, tiny_model_names):
    adapter = pack_module("nodes.adapter")
    experts_module = pack_module("samplers.experts")
    high, low = (load_expert(comfy_inprocess, tiny_model_names, role) for role in ("a14b_t2v_high", "a14b_t2v_low"))
    positive, negative = fake_conditioning(comfy_inprocess, 1), fake_conditioning(comfy_inprocess, 2)
    guiders = [adapter.prompt_guider(model, [positive], negative, cfg) for model, cfg in ((high, 3.5), (low, 1.0))]
    shape = (1, 16, 5, 4, 4)
    x = random_latent(shape)
    levels = torch.tensor([0.97, 0.9, 0.875, 0.6, 0.2])
    got = {}

    def body(denoisers):
        experts = experts_module.Experts(denoisers, [BOUNDARY])
        got["by_expert"] = [experts(e, x, levels[None], 0, torch.arange(5)[None]).cpu() for e in (0, 1)]
        got["plain"] = [[guider(x, level.reshape(1), model_options=guider.model_options, seed=0).cpu() for level in levels] for guider in guiders]
        got["expert_of"] = experts.expert_of(levels).tolist()

    adapter.run_with_framewise_denoisers(guiders, shape, torch.tensor([1.0, 0.0]), 0, body)
    assert got["expert_of"] == [0, 0, 0, 1, 1]  # the boundary level itself is the high-noise expert's
    for f, expert in enumerate(got["expert_of"]):
        routed = got["by_expert"][expert][:, :, f]
        error = (routed - got["plain"][expert][f][:, :, f]).abs().max().item()
        assert error < MIXED, f"frame {f} (sigma {levels[f]:.3f}, expert {expert}): {error:.2e}"
        # the check has teeth: the other expert's prediction of the same frame is far off
        other = (routed - got["plain"][1 - expert][f][:, :, f]).abs().max().item()
        assert other > 100 * max(error, 1e-6)


def experts_workflow(names, name, **changes):
    prompt = tiny_workflow(name, names, length=8)
    prompt[node_of_type(prompt, EXPERTS_NODE)]["inputs"].update(changes)
    return prompt


def run_and_count_loads(host, prompt, monkeypatch, output_node):
    import comfy.model_management

    loads = []
    original = comfy.model_management.load_models_gpu
    monkeypatch.setattr(comfy.model_management, "load_models_gpu", lambda models, *a, **k: (loads.append(len(models)), original(models, *a, **k))[1])
    write_test_video(host.base_dir / "input" / "clip_to_extend.mp4")
    write_guide_image(host.base_dir / "input")
    host.clear_cache()
    host.run_prompt(prompt)
    monkeypatch.setattr(comfy.model_management, "load_models_gpu", original)
    return host.node_output(output_node), len(loads)


def test_the_diagonal_queue_runs_the_high_noise_expert_ahead_with_the_same_output_and_fewer_model_loads(comfy_inprocess, tiny_model_names, monkeypatch):
    outputs, loads = {}, {}
    for switch_every in (1, 8):
        prompt = experts_workflow(tiny_model_names, "fifo_wan22_a14b_t2v", switch_every=switch_every)
        prompt[node_of_type(prompt, "LongVideoDiagonalQueueSampler")]["inputs"]["length"] = 24
        sampler = node_of_type(prompt, "LongVideoDiagonalQueueSampler")
        outputs[switch_every], loads[switch_every] = run_and_count_loads(comfy_inprocess, prompt, monkeypatch, sampler)
    assert torch.equal(outputs[1]["samples"], outputs[8]["samples"])
    assert outputs[1]["samples"].shape[2] == 24 and outputs[1]["samples"].isfinite().all()
    # window 4 x 2 partitions over 8 levels, 5 of them at or above 0.875 with shift 8: in step, the
    # model changes every iteration; eight iterations ahead, twice per eight
    print(f"model loads: {loads}")
    assert loads[8] < loads[1] / 2


def test_the_progressive_window_uses_both_experts(comfy_inprocess, tiny_model_names, monkeypatch):
    prompt = experts_workflow(tiny_model_names, "pavdm_wan22_a14b_extend")
    sampler = node_of_type(prompt, "LongVideoProgressiveARSampler")
    both, loads = run_and_count_loads(comfy_inprocess, prompt, monkeypatch, sampler)
    assert both["samples"].shape[2] == 8 and both["samples"].isfinite().all()
    assert loads > 4  # the window holds both bands at every call, so the experts alternate
    # the high-noise expert alone (its boundary below every level) would give another video
    prompt[node_of_type(prompt, EXPERTS_NODE)]["inputs"]["low_noise_model"] = prompt[node_of_type(prompt, EXPERTS_NODE)]["inputs"]["high_noise_model"]
    prompt[node_of_type(prompt, EXPERTS_NODE)]["inputs"]["low_noise_cfg"] = prompt[node_of_type(prompt, EXPERTS_NODE)]["inputs"]["high_noise_cfg"]
    high_only, _ = run_and_count_loads(comfy_inprocess, prompt, monkeypatch, sampler)
    assert (both["samples"] - high_only["samples"]).abs().max() > 1e-3


def test_k_step_search_splits_every_sample_at_the_boundary_as_two_advanced_ksamplers_do(comfy_inprocess, tiny_model_names):
    import comfy.samplers

    prompt = experts_workflow(tiny_model_names, "kstep_wan22_a14b_i2v")
    search = node_of_type(prompt, "LongVideoKStepNoiseSearch")
    prompt[search]["inputs"].update(chunk_length=5, chunks=1, candidates=1, steps=6, seed=5)
    write_guide_image(comfy_inprocess.base_dir / "input")
    comfy_inprocess.clear_cache()
    comfy_inprocess.run_prompt(prompt)
    searched = comfy_inprocess.node_output(search, 1)["samples"]

    # the same chunk through ComfyUI's own nodes: WanImageToVideo, then two KSampler (Advanced)
    experts = prompt[node_of_type(prompt, EXPERTS_NODE)]["inputs"]
    high = comfy_inprocess.node_output(experts["high_noise_model"][0])
    levels = comfy.samplers.calculate_sigmas(high.get_model_object("model_sampling"), "simple", 6)[:-1]
    switch = int((levels >= 0.9).sum())  # image-to-video: Wan 2.2's boundary 0.9
    assert 0 < switch < 6
    inputs = prompt[search]["inputs"]
    reference = {
        **{
            node_id: node
            for node_id, node in prompt.items()
            if node_id not in (search, node_of_type(prompt, "PreviewAny"), node_of_type(prompt, "CreateVideo"), node_of_type(prompt, "SaveVideo"))
        },
        "90": {
            "class_type": "WanImageToVideo",
            "inputs": {
                "positive": inputs["positive"],
                "negative": inputs["negative"],
                "vae": inputs["vae"],
                "width": 64,
                "height": 64,
                "length": 5,
                "batch_size": 1,
                "start_image": inputs["guide_image"],
            },
        },
        "91": {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "model": experts["high_noise_model"],
                "add_noise": "enable",
                "noise_seed": 5,
                "steps": 6,
                "cfg": experts["high_noise_cfg"],
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["90", 0],
                "negative": ["90", 1],
                "latent_image": ["90", 2],
                "start_at_step": 0,
                "end_at_step": switch,
                "return_with_leftover_noise": "enable",
            },
        },
        "92": {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "model": experts["low_noise_model"],
                "add_noise": "disable",
                "noise_seed": 5,
                "steps": 6,
                "cfg": experts["low_noise_cfg"],
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["90", 0],
                "negative": ["90", 1],
                "latent_image": ["91", 0],
                "start_at_step": switch,
                "end_at_step": 10000,
                "return_with_leftover_noise": "disable",
            },
        },
        "93": {"class_type": "SaveLatent", "inputs": {"samples": ["92", 0], "filename_prefix": "reference"}},
    }
    comfy_inprocess.clear_cache()
    comfy_inprocess.run_prompt(reference)
    torch.testing.assert_close(searched, comfy_inprocess.node_output("92")["samples"], rtol=0, atol=1e-5)


def test_the_lora_slot_changes_the_expert(comfy_inprocess, tiny_model_names):
    model = load_expert(comfy_inprocess, tiny_model_names, "a14b_t2v_low")
    x = random_latent((1, 16, 3, 4, 4))
    outputs = []
    for strength in (0.0, 1.0):
        patched = call_node(comfy_inprocess, "LoraLoaderModelOnly", model=model, lora_name=tiny_model_names["wan_lora_low"], strength_model=strength)[0]
        guider = pack_module("nodes.adapter").prompt_guider(patched, [fake_conditioning(comfy_inprocess, 1)], fake_conditioning(comfy_inprocess, 2), 1.0)
        pack_module("nodes.adapter").run_with_framewise_denoiser(
            guider,
            x.shape,
            torch.tensor([1.0, 0.0]),
            0,
            lambda denoise, _s: outputs.append(denoise(x, torch.full((1, 3), 0.5), 0, torch.arange(3)[None]).cpu()),
        )
    assert (outputs[0] - outputs[1]).abs().max() > 1e-3


@pytest.mark.parametrize(
    "change,message",
    [
        ({"low_noise_model": "i2v"}, "high-noise expert is text-to-video and the low-noise expert image-to-video"),
        ({"low_noise_model": "wan22_5b"}, "low_noise_model is WAN22"),
        ({"boundary": 0.001}, r"boundary 0\.001 is at or below every noise level .* low-noise expert would never run"),
        ({"guider": True}, "neither a model nor a guider"),
    ],
)
def test_experts_that_cannot_work_get_a_clear_error(comfy_inprocess, tiny_model_names, change, message):
    prompt = experts_workflow(tiny_model_names, "fifo_wan22_a14b_t2v")
    experts = prompt[node_of_type(prompt, EXPERTS_NODE)]["inputs"]
    sampler = prompt[node_of_type(prompt, "LongVideoDiagonalQueueSampler")]["inputs"]
    if change.get("low_noise_model"):
        role = {"i2v": "a14b_i2v_low", "wan22_5b": "wan22_5b"}[change["low_noise_model"]]
        prompt["80"] = {"class_type": "UNETLoader", "inputs": {"unet_name": tiny_model_names[role], "weight_dtype": "default"}}
        experts["low_noise_model"] = ["80", 0]
    if "boundary" in change:
        experts["boundary"] = change["boundary"]
    if change.get("guider"):
        prompt["81"] = {
            "class_type": "CFGGuider",
            "inputs": {"model": experts["high_noise_model"], "positive": sampler["positive"], "negative": sampler["negative"], "cfg": 3.0},
        }
        sampler["guider"] = ["81", 0]
    comfy_inprocess.clear_cache()
    with pytest.raises(AssertionError, match=message):
        comfy_inprocess.run_prompt(prompt)


@pytest.mark.parametrize(
    "task, scheduler, shift, steps, denoise",
    [("t2v", "simple", 8.0, 42, 1.0), ("i2v", "beta", 3.0, 40, 1.0), ("t2v", "normal", 12.0, 18, 0.75), ("i2v", "simple", None, 16, 1.0)],
)
def test_the_editors_experts_are_those_of_the_real_models_schedule(comfy_inprocess, comfy_server, tiny_model_names, task, scheduler, shift, steps, denoise):
    """The layout route's schedule (ComfyUI's BasicScheduler on a stand-in for the experts' model
    sampling) against the real one: a tiny A14B high-noise model, with or without ModelSamplingSD3."""
    high = call_node(comfy_inprocess, "UNETLoader", unet_name=tiny_model_names[f"a14b_{task}_high"], weight_dtype="default")[0]
    if shift is not None:
        high = call_node(comfy_inprocess, "ModelSamplingSD3", model=high, shift=shift)[0]
    sigmas = call_node(comfy_inprocess, "BasicScheduler", model=high, scheduler=scheduler, steps=steps, denoise=denoise)[0]
    boundary = pack_module("nodes.experts").default_boundary(high)  # what Wan 2.2 Experts' boundary 0 picks
    query = {
        "method": "diagonal_queue",
        "window": steps // 2,
        "partitions": 2,
        "steps": steps,
        "boundary": 0,
        "task": {"t2v": "text_to_video", "i2v": "image_to_video"}[task],
        "scheduler": scheduler,
        "denoise": denoise,
    }
    if shift is not None:
        query["shift"] = shift
    status, body, _ = http_get(f"{comfy_server.url}/api/longvideo/layout?{urllib.parse.urlencode(query)}")
    layout = json.loads(body)
    assert (status, layout["expert_warning"], layout["expert_schedule"]["boundary"]) == (200, None, boundary)
    # the slot with k steps left is at the schedule's level steps - k
    assert layout["expert"] == [0 if float(sigmas[steps - left]) >= boundary else 1 for left in layout["steps_left"]]
    assert 0 < layout["expert"].count(0) < steps

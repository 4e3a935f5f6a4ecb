"""The Diagonal Queue Sampler inside real ComfyUI, from the shipped API workflows on tiny models."""

import ast
import time

import pytest
import torch
from comfy_host import PACK_ROOT
from comfy_reference import assert_matches_reference, comfy_euler, empty_latent, guider_of_sampler_inputs, seeded_frames
from pack_access import record_progress
from saved_videos import read_video, saved_file
from tiny_workflows import add_prompt_schedule, node_of_type, tiny_workflow

# (workflow, variant) -> frames the tiny VAE makes from `length` latent frames
CASES = {
    "wan21": ("fifo_wan21_t2v_1.3B", {}, lambda n: 4 * (n - 1) + 1),
    "wan22_5b": ("fifo_wan21_t2v_1.3B", {"wan22_5b": True}, lambda n: 4 * (n - 1) + 1),
    "ltxv": ("fifo_ltxv", {}, lambda n: 8 * (n - 1) + 1),
    "cosmos_predict2": ("fifo_cosmos_predict2_2b", {}, lambda n: 4 * (n - 1) + 1),
}


@pytest.mark.parametrize("family", CASES)
@pytest.mark.parametrize("options", ["DD", "DD+LP", "DD+LP+LD"])
def test_in_process_output_has_exactly_the_requested_latent_frames(comfy_inprocess, tiny_model_names, family, options):
    workflow, variant, _ = CASES[family]
    partitions = 1 if options == "DD" else 2
    prompt = tiny_workflow(workflow, tiny_model_names, length=7, partitions=partitions, **variant)
    if options != "DD+LP+LD":
        prompt[node_of_type(prompt, "LongVideoLookahead")]["inputs"]["enabled"] = False
    partition = prompt[node_of_type(prompt, "LongVideoLatentPartition")]["inputs"]
    partition["window_batching"] = "batched"
    latent = run_sampler(comfy_inprocess, prompt)
    assert latent.shape[2] == 7
    assert latent.isfinite().all()
    if partitions > 1:
        # every window of an iteration reads the queue as it was before it, so evaluating the
        # windows one call each must give the numbers of one batched call, up to float32 round-off
        # (below 1e-6 of the values here; a window reading another's update makes 7e-6 to 3e-3)
        partition["window_batching"] = "one by one"
        one_by_one = run_sampler(comfy_inprocess, prompt)
        torch.testing.assert_close(one_by_one, latent, rtol=0, atol=3e-6 * latent.abs().max().item())


@pytest.mark.parametrize("family", CASES)
def test_with_windows_of_one_frame_every_frame_is_comfyuis_own_euler_sampling_of_its_noise(comfy_inprocess, tiny_model_names, family):
    # window 1: every model call sees one frame at one level, so each frame goes down the whole
    # schedule alone, exactly as plain sampling of a one-frame latent does
    workflow, variant, _ = CASES[family]
    levels, length = 3, 4
    prompt = tiny_workflow(workflow, tiny_model_names, length=length, window=1, partitions=levels, **variant)
    prompt[node_of_type(prompt, "LongVideoLookahead")]["inputs"]["enabled"] = False
    sampler = prompt[node_of_type(prompt, "LongVideoDiagonalQueueSampler")]["inputs"]
    sampler["eta"] = 0.0
    ours = run_sampler(comfy_inprocess, prompt)

    guider = guider_of_sampler_inputs(comfy_inprocess, sampler)
    sigmas = comfy_inprocess.node_output(*sampler["sigmas"])
    one_frame = (*ours.shape[:2], 1, *ours.shape[3:])
    empty = empty_latent(guider, one_frame)
    # the seed's noise, drawn as the sampler draws it: the first clip's frame, the queue's
    # re-noising of it (one frame per level), then one new frame per iteration
    draw = seeded_frames(sampler["seed"], one_frame)
    first_clip = comfy_euler(comfy_inprocess, guider, sigmas, draw(1), empty)
    queue = draw(levels)
    # output frame 0 is the first clip re-noised to the top level; the later ones start from pure noise
    reference = [comfy_euler(comfy_inprocess, guider, sigmas, queue[:, :, -1:], first_clip)]
    reference += [comfy_euler(comfy_inprocess, guider, sigmas, draw(1), empty) for _ in range(length - 1)]
    assert_matches_reference(ours, torch.cat(reference, dim=2))


@pytest.mark.parametrize("family", CASES)
def test_server_runs_the_workflow_and_saves_the_video(comfy_server, tiny_model_names, family):
    workflow, variant, pixel_frames = CASES[family]
    prompt = tiny_workflow(workflow, tiny_model_names, length=9, **variant)
    entry = comfy_server.run_prompt(prompt)
    path = saved_file(comfy_server.output_dir, entry, node_of_type(prompt, "SaveVideo"))
    assert read_video(path)[0] == pixel_frames(9), path


def test_interrupt_stops_a_long_run_and_the_server_keeps_working(comfy_server, tiny_model_names):
    long_run = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=5000, **CASES["wan22_5b"][1])
    prompt_id = comfy_server.queue(long_run)
    time.sleep(3.0)
    started = time.monotonic()
    comfy_server.interrupt()
    entry = comfy_server.wait(prompt_id, timeout=60)
    assert entry["status"]["status_str"] == "error"
    assert any(event == "execution_interrupted" for event, _ in entry["status"]["messages"])
    assert time.monotonic() - started < 10
    short_run = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=3, **CASES["wan22_5b"][1])
    assert comfy_server.run_prompt(short_run)["status"]["status_str"] == "success"


def test_pack_nodes_are_listed_and_imported_cleanly(comfy_server):
    info = comfy_server.object_info()
    module = ast.parse((PACK_ROOT / "nodes" / "__init__.py").read_text())
    mapping = next(n for n in module.body if isinstance(n, ast.Assign) and n.targets[0].id == "NODE_CLASS_MAPPINGS")
    registered = [key.value for key in mapping.value.keys]
    assert len(registered) >= 9
    for node in registered:
        assert node in info, node
        assert info[node]["category"] == "video/long"
        for name, spec in {**info[node]["input"]["required"], **info[node]["input"].get("optional", {})}.items():
            assert spec[1].get("tooltip") if len(spec) > 1 else False, f"{node}.{name} has no tooltip"
    log = comfy_server.log_text()
    assert "IMPORT FAILED" not in "".join(line for line in log.splitlines() if "LongVideo" in line)
    assert "Cannot import" not in "".join(line for line in log.splitlines() if "LongVideo" in line)


def sampler_prompt(names, **changes):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", names, length=6, **CASES["wan22_5b"][1])
    prompt[node_of_type(prompt, "LongVideoDiagonalQueueSampler")]["inputs"].update(changes)
    return prompt


def run_sampler(host, prompt):
    host.clear_cache()
    host.run_prompt(prompt)
    return host.node_output(node_of_type(prompt, "LongVideoDiagonalQueueSampler"))["samples"]


def test_continuing_a_clip_from_a_previous_sampler(comfy_inprocess, tiny_model_names):
    prompt = sampler_prompt(tiny_model_names, length=10)
    first_id = node_of_type(prompt, "LongVideoDiagonalQueueSampler")
    fresh = run_sampler(comfy_inprocess, sampler_prompt(tiny_model_names, length=12))
    prompt["95"] = {
        "class_type": "LongVideoDiagonalQueueSampler",
        "inputs": {**prompt[first_id]["inputs"], "latent": [first_id, 0], "start": "continue the input latent", "length": 12},
    }
    prompt[node_of_type(prompt, "VAEDecode")]["inputs"]["samples"] = ["95", 0]
    comfy_inprocess.clear_cache()
    comfy_inprocess.run_prompt(prompt)
    continued = comfy_inprocess.node_output("95")["samples"]
    assert continued.shape[2] == 12 and continued.isfinite().all()
    # the queue starts from the given clip, not from a freshly sampled one
    assert (continued - fresh).abs().max() > 1e-3


def test_a_guider_can_replace_model_and_prompts(comfy_inprocess, tiny_model_names):
    prompt = sampler_prompt(tiny_model_names)
    sampler = prompt[node_of_type(prompt, "LongVideoDiagonalQueueSampler")]["inputs"]
    prompt["90"] = {
        "class_type": "CFGGuider",
        "inputs": {"model": sampler.pop("model"), "positive": sampler.pop("positive"), "negative": sampler.pop("negative"), "cfg": 3.0},
    }
    sampler["guider"] = ["90", 0]
    assert run_sampler(comfy_inprocess, prompt).shape[2] == 6


def test_a_prompt_schedule_runs_and_the_prompts_matter(comfy_inprocess, tiny_model_names):
    plain = run_sampler(comfy_inprocess, sampler_prompt(tiny_model_names, eta=0.0))
    prompt = sampler_prompt(tiny_model_names, eta=0.0)
    add_prompt_schedule(prompt, node_of_type(prompt, "LongVideoDiagonalQueueSampler"), switch_frame=3)
    scheduled = run_sampler(comfy_inprocess, prompt)
    assert scheduled.shape == plain.shape
    # frames made under the second prompt differ from the single-prompt run
    assert (scheduled[:, :, -1] - plain[:, :, -1]).abs().max() > 1e-3


def test_sigmas_that_do_not_fit_the_queue_get_a_clear_error(comfy_inprocess, tiny_model_names):
    prompt = sampler_prompt(tiny_model_names)
    prompt[node_of_type(prompt, "BasicScheduler")]["inputs"]["steps"] = 5
    with pytest.raises(AssertionError, match=r"SIGMAS must have 9 values .* Set the scheduler's steps to 8"):
        run_sampler(comfy_inprocess, prompt)


def test_an_unsupported_model_fails_before_sampling_with_the_family_named(comfy_inprocess, tiny_model_names):
    prompt = sampler_prompt(tiny_model_names)
    prompt[node_of_type(prompt, "UNETLoader")]["inputs"]["unet_name"] = tiny_model_names["unsupported_video"]
    with pytest.raises(AssertionError, match="HunyuanVideo.*noise level per frame"):
        run_sampler(comfy_inprocess, prompt)


def test_progress_counts_the_first_clip_warm_up_and_frames_and_previews_each_kept_frame(comfy_inprocess, tiny_model_names, monkeypatch):
    updates = record_progress(monkeypatch)
    run_sampler(comfy_inprocess, sampler_prompt(tiny_model_names))
    # window 4 x 2 partitions: 8 steps for the first clip, 8 - 4 warm-up frames, then the 6 kept frames
    mine = [(value, preview) for value, total, preview in updates if total == 18]
    assert [value for value, _ in mine] == list(range(1, 19))
    assert [value for value, preview in mine if preview is not None] == list(range(13, 19))

"""Reference Anchor and Few-Step Queue inside real ComfyUI, on the tiny models."""

import pytest
import torch
from pack_access import pack_module
from tiny_workflows import node_of_type, tiny_workflow

ANCHOR_NODE, FEW_STEP_NODE = "92", "93"


def calls_seen(monkeypatch) -> list:
    """(frames, levels of each row) of every model call the samplers make."""
    denoiser = pack_module("nodes.adapter.denoiser").FramewiseDenoiser
    seen, original = [], denoiser.__call__

    def record(self, x, sigmas, prompt, frames):
        seen.append((x.clone(), sigmas.clone()))
        return original(self, x, sigmas, prompt, frames)

    monkeypatch.setattr(denoiser, "__call__", record)
    return seen


def run(host, prompt, sampler_type):
    host.clear_cache()
    host.run_prompt(prompt)
    return host.node_output(node_of_type(prompt, sampler_type))["samples"]


@pytest.mark.parametrize(
    "workflow, sampler_type, frames_per_call",
    [
        ("fifo_wan21_t2v_1.3B", "LongVideoDiagonalQueueSampler", 4),
        ("pavdm_ltxv", "LongVideoProgressiveARSampler", None),
    ],
)
def test_the_video_s_first_frame_anchors_every_window(comfy_inprocess, tiny_model_names, monkeypatch, workflow, sampler_type, frames_per_call):
    prompt = tiny_workflow(workflow, tiny_model_names, length=6, wan22_5b=workflow.startswith("fifo"))
    plain = run(comfy_inprocess, prompt, sampler_type)
    prompt[ANCHOR_NODE] = {"class_type": "LongVideoReferenceAnchor", "inputs": {}}
    prompt[node_of_type(prompt, sampler_type)]["inputs"]["anchor"] = [ANCHOR_NODE, 0]
    seen = calls_seen(monkeypatch)
    anchored = run(comfy_inprocess, prompt, sampler_type)
    assert anchored.shape == plain.shape and anchored.isfinite().all()
    assert not torch.equal(anchored, plain)
    # every call of the queue (after its first clip) and of the window (once its first chunk is
    # finished) starts with one clean frame, the same in all of them
    anchored_calls = [(x, levels) for x, levels in seen if bool((levels[:, 0] == 0).all()) and (frames_per_call is None or x.shape[2] == frames_per_call + 1)]
    assert len(anchored_calls) > 3
    reference = anchored_calls[0][0][:1, :, :1]
    assert all(torch.equal(x[:1, :, :1], reference) for x, _ in anchored_calls)


def test_an_image_through_the_vae_anchors_the_window_and_a_wrong_size_is_refused(comfy_inprocess, tiny_model_names, monkeypatch):
    from input_media import write_guide_image

    write_guide_image(comfy_inprocess.base_dir / "input")
    prompt = tiny_workflow("pavdm_ltxv_anchored", tiny_model_names, length=6)
    seen = calls_seen(monkeypatch)
    run(comfy_inprocess, prompt, "LongVideoProgressiveARSampler")
    assert seen and all(bool((levels[:, 0] == 0).all()) for _, levels in seen)
    prompt[node_of_type(prompt, "ImageScale")]["inputs"].update(width=128, height=128)
    with pytest.raises(AssertionError, match="The reference latent has 128 channels at 4x4 latent pixels, but the latent has 128 channels at 2x2"):
        run(comfy_inprocess, prompt, "LongVideoProgressiveARSampler")


def test_a_few_step_queue_runs_its_window_over_fewer_levels(comfy_inprocess, tiny_model_names, monkeypatch):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=9, wan22_5b=True)
    sampler = prompt[node_of_type(prompt, "LongVideoDiagonalQueueSampler")]["inputs"]
    prompt[FEW_STEP_NODE] = {"class_type": "LongVideoFewStepQueue", "inputs": {"frames_per_level": 4, "options": sampler["options"]}}
    sampler["options"] = [FEW_STEP_NODE, 0]
    scheduler = prompt[node_of_type(prompt, "BasicScheduler")]["inputs"]
    with pytest.raises(AssertionError, match=r"window x partitions / frames_per_level = 4 x 2 / 4 = 2 noise levels, so SIGMAS must have 3 values"):
        run(comfy_inprocess, prompt, "LongVideoDiagonalQueueSampler")
    scheduler["steps"] = 2
    seen = calls_seen(monkeypatch)
    out = run(comfy_inprocess, prompt, "LongVideoDiagonalQueueSampler")
    assert out.shape[2] == 9 and out.isfinite().all()
    # the first clip's 2 steps, then windows over the queue's 2 levels, 4 frames on each
    levels_seen = [row[row > 0].tolist() for x, levels in seen for row in levels]
    first_clip, queue = levels_seen[:2], levels_seen[2:]
    assert all(len(set(levels)) == 1 for levels in first_clip)
    assert {level for levels in queue for level in levels} == set(first_clip[0][:1] + first_clip[1][:1])
    assert max(levels.count(level) for levels in queue for level in levels) == 4

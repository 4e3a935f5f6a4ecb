"""Checkpoints (resume / re-roll) inside real ComfyUI: a run cancelled or failed at any point and resumed from
its saved state outputs the bits of an uninterrupted run; a re-roll keeps every frame before its frame."""

import json
import time

import pytest
import torch
from pack_access import pack_module
from tiny_workflows import add_prompt_schedule, node_of_type, tiny_workflow

STATES = "longvideo_states"
CHECKPOINTS_NODE = "90"
SAMPLERS = {
    "diagonal_queue": ("fifo_wan21_t2v_1.3B", "LongVideoDiagonalQueueSampler", {"length": 10, "wan22_5b": True}),
    "progressive_ar": ("pavdm_ltxv", "LongVideoProgressiveARSampler", {"length": 9}),
}


def checkpointed(names, sampler, every_frames=2, keep=50, resume_from="none", reroll_from_frame=-1, **sampler_inputs):
    workflow, sampler_type, arguments = SAMPLERS[sampler]
    prompt = tiny_workflow(workflow, names, **arguments)
    sampler_id = node_of_type(prompt, sampler_type)
    prompt[CHECKPOINTS_NODE] = {
        "class_type": "LongVideoCheckpoints",
        "inputs": {"every_frames": every_frames, "keep": keep, "resume_from": resume_from, "reroll_from_frame": reroll_from_frame},
    }
    prompt[sampler_id]["inputs"].update(checkpoints=[CHECKPOINTS_NODE, 0], **sampler_inputs)
    return prompt, sampler_id


def run_latent(host, prompt, sampler_id) -> dict:
    host.clear_cache()
    host.run_prompt(prompt)
    return host.node_output(sampler_id)


def runs(host) -> set[str]:
    root = host.output_dir / STATES
    return {path.name for path in root.iterdir()} if root.is_dir() else set()


def state_frames(host, run) -> list[int]:
    return sorted(int(path.stem.split("_")[1]) for path in (host.output_dir / STATES / run).glob("frame_*.safetensors"))


def cancel_at(monkeypatch, update: int) -> None:
    """Press cancel once the sampler's progress reaches ``update`` (the run stops within one model call)."""
    import comfy.model_management

    progress = pack_module("nodes.progress").FrameProgress
    original = progress.update

    def update_then_cancel(self, done, frames=None):
        original(self, done, frames)
        if done == update:
            comfy.model_management.interrupt_current_processing(True)

    monkeypatch.setattr(progress, "update", update_then_cancel)


def stopped_run(host, names, sampler, monkeypatch, update) -> str:
    """A run cancelled at progress ``update``; returns its run folder."""
    prompt, _ = checkpointed(names, sampler, every_frames=3)
    before = runs(host)
    cancel_at(monkeypatch, update)
    host.clear_cache()
    with pytest.raises(AssertionError, match="execution interrupted"):
        host.run_prompt(prompt)
    monkeypatch.undo()
    [run] = runs(host) - before
    return run


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_cancelled_run_resumed_from_its_state_gives_the_bits_of_a_run_that_never_stopped(comfy_inprocess, tiny_model_names, sampler, monkeypatch):
    whole = run_latent(comfy_inprocess, *checkpointed(tiny_model_names, sampler))
    plain_prompt, plain_id = checkpointed(tiny_model_names, sampler)
    del plain_prompt[plain_id]["inputs"]["checkpoints"], plain_prompt[CHECKPOINTS_NODE]
    assert torch.equal(run_latent(comfy_inprocess, plain_prompt, plain_id)["samples"], whole["samples"])
    # the FIFO's progress counts its first clip (8 steps) first; the window's counts its 12 calls
    for update in (10, 13, 17) if sampler == "diagonal_queue" else (4, 7, 10):
        run = stopped_run(comfy_inprocess, tiny_model_names, sampler, monkeypatch, update)
        latest = state_frames(comfy_inprocess, run)[-1]
        resumed = run_latent(comfy_inprocess, *checkpointed(tiny_model_names, sampler, resume_from=f"{run}/frame_{latest:06d}.safetensors"))
        assert torch.equal(resumed["samples"], whole["samples"]), f"resumed from frame {latest} of a run cancelled at {update}"
        assert resumed["longvideo_run"] == run


def test_a_failed_call_saves_the_state_and_the_run_goes_on_from_it(comfy_inprocess, tiny_model_names, monkeypatch):
    whole = run_latent(comfy_inprocess, *checkpointed(tiny_model_names, "diagonal_queue"))
    denoiser = pack_module("nodes.adapter.denoiser").FramewiseDenoiser
    calls, original = [], denoiser.__call__

    def failing(self, x, sigmas, prompt, frames):
        calls.append(1)
        if len(calls) == 15:  # the first clip takes 8, then one call per iteration (its windows batched)
            raise RuntimeError("test model failure")
        return original(self, x, sigmas, prompt, frames)

    monkeypatch.setattr(denoiser, "__call__", failing)
    before = runs(comfy_inprocess)
    with pytest.raises(AssertionError, match="test model failure"):
        run_latent(comfy_inprocess, *checkpointed(tiny_model_names, "diagonal_queue", every_frames=0))
    monkeypatch.undo()
    [run] = runs(comfy_inprocess) - before
    [frame] = state_frames(comfy_inprocess, run)  # every_frames 0: saved only when the run failed
    resumed = run_latent(comfy_inprocess, *checkpointed(tiny_model_names, "diagonal_queue", resume_from=f"{run}/frame_{frame:06d}.safetensors"))
    assert torch.equal(resumed["samples"], whole["samples"])


def latest_state(host, run):
    return f"{run}/frame_{state_frames(host, run)[-1]:06d}.safetensors"


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"eta": 0.5}, "eta was 1.0, now 0.5"),
        ({"window": 5}, "the layout (window, partitions, lookahead, frames per level; chunk size, window chunks) was"),
        ({"seed": 99}, "seed was 42, now 99 (to change the seed from a frame on, set reroll_from_frame)"),
    ],
)
def test_settings_that_would_change_the_frames_are_refused_by_name(comfy_inprocess, tiny_model_names, monkeypatch, changes, named):
    run = stopped_run(comfy_inprocess, tiny_model_names, "diagonal_queue", monkeypatch, 14)
    prompt, sampler_id = checkpointed(tiny_model_names, "diagonal_queue", resume_from=latest_state(comfy_inprocess, run), **changes)
    if "window" in changes:
        prompt[node_of_type(prompt, "BasicScheduler")]["inputs"]["steps"] = 10
    with pytest.raises(AssertionError, match="comes from a run with other settings") as refused:
        run_latent(comfy_inprocess, prompt, sampler_id)
    assert named in str(refused.value)


def test_a_changed_prompt_is_refused_unless_it_is_a_reroll(comfy_inprocess, tiny_model_names, monkeypatch):
    run = stopped_run(comfy_inprocess, tiny_model_names, "diagonal_queue", monkeypatch, 14)
    prompt, sampler_id = checkpointed(tiny_model_names, "diagonal_queue", resume_from=latest_state(comfy_inprocess, run))
    prompt[node_of_type(prompt, "LongVideoTestConditioning")]["inputs"]["seed"] += 1
    with pytest.raises(AssertionError, match=r"The prompts differ from the run's from frame \d+ on, which would change the frames"):
        run_latent(comfy_inprocess, prompt, sampler_id)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("change", ["seed", "prompt"])
def test_a_reroll_keeps_every_frame_before_its_frame(comfy_inprocess, tiny_model_names, sampler, change):
    before = runs(comfy_inprocess)
    whole = run_latent(comfy_inprocess, *checkpointed(tiny_model_names, sampler, every_frames=2))
    [run] = runs(comfy_inprocess) - before
    n = 5
    state = max(frame for frame in state_frames(comfy_inprocess, run) if frame <= n)
    prompt, sampler_id = checkpointed(tiny_model_names, sampler, resume_from=f"{run}/frame_{state:06d}.safetensors", reroll_from_frame=n)
    if change == "seed":
        prompt[sampler_id]["inputs"]["seed"] += 1
    else:
        add_prompt_schedule(prompt, sampler_id, switch_frame=n)
    rerolled = run_latent(comfy_inprocess, prompt, sampler_id)
    # the progressive window changes course with its next chunk (chunks of 2: from frame 6)
    first = n if sampler == "diagonal_queue" else 6
    assert torch.equal(rerolled["samples"][:, :, :first], whole["samples"][:, :, :first])
    assert not torch.equal(rerolled["samples"][:, :, first:], whole["samples"][:, :, first:])
    # a new run, whose states come after the re-roll frame
    assert rerolled["longvideo_run"].startswith(f"{run}-reroll{n}-")
    assert min(state_frames(comfy_inprocess, rerolled["longvideo_run"])) > n


def test_a_state_holds_the_queue_not_the_video(comfy_inprocess, tiny_model_names):
    sizes = {}
    for length in (10, 30):
        prompt, sampler_id = checkpointed(tiny_model_names, "diagonal_queue", every_frames=4)
        prompt[sampler_id]["inputs"]["length"] = length
        run = run_latent(comfy_inprocess, prompt, sampler_id)["longvideo_run"]
        folder = comfy_inprocess.output_dir / STATES / run
        sizes[length] = {path.stat().st_size for path in folder.glob("frame_*.safetensors")}
        # old states are pruned; the frames before the last state are all kept
        assert len(list(folder.glob("frame_*.safetensors"))) <= 50
        frames = sorted(json.loads(_metadata(path))["frames"][-1][2] for path in folder.glob("frame_*.safetensors"))
        assert frames[-1] == length
    # a queue of 2 context + 8 in-flight latent frames of 48 x 8 x 8 floats and the generator's state, whatever the
    # length (the list of frame files in the header grows a little)
    assert max(sizes[30]) - min(sizes[10]) < 2_000 and max(sizes[30]) < 10 * 48 * 8 * 8 * 4 + 10_000


def test_old_states_are_pruned_to_the_last_few(comfy_inprocess, tiny_model_names):
    prompt, sampler_id = checkpointed(tiny_model_names, "diagonal_queue", every_frames=1, keep=2)
    run = run_latent(comfy_inprocess, prompt, sampler_id)["longvideo_run"]
    assert state_frames(comfy_inprocess, run) == [9, 10]


def _metadata(path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as file:
        return file.metadata()["longvideo"]


def test_the_server_lists_new_states_resumes_a_cancelled_run_and_rerolls_it(comfy_server, tiny_model_names):
    prompt, sampler_id = checkpointed(tiny_model_names, "diagonal_queue", every_frames=8)
    prompt[sampler_id]["inputs"]["length"] = 400
    prompt_id = comfy_server.queue(prompt)
    states = comfy_server.output_dir / STATES
    deadline = time.monotonic() + 120
    while not list(states.glob("*/frame_*.safetensors")) and time.monotonic() < deadline:
        time.sleep(0.2)
    comfy_server.interrupt()
    assert comfy_server.wait(prompt_id, timeout=60)["status"]["status_str"] == "error"
    [state] = [path.relative_to(states).as_posix() for path in sorted(states.glob("*/frame_*.safetensors"))[-1:]]
    kind, spec = comfy_server.object_info()["LongVideoCheckpoints"]["input"]["required"]["resume_from"][:2]
    assert kind == "COMBO" and state in spec["options"]
    prompt[CHECKPOINTS_NODE]["inputs"]["resume_from"] = state
    # a longer or shorter video, as long as the queue had not begun to drain at the state: 8 frames in flight
    frame = int(state.split("_")[-1].split(".")[0])
    prompt[sampler_id]["inputs"]["length"] = frame + 8
    assert comfy_server.run_prompt(prompt)["status"]["status_str"] == "success"
    # and a re-roll from that frame with another seed
    prompt[CHECKPOINTS_NODE]["inputs"]["reroll_from_frame"] = frame
    prompt[sampler_id]["inputs"]["seed"] += 1
    assert comfy_server.run_prompt(prompt)["status"]["status_str"] == "success"
    assert any(path.name.startswith(state.split("/")[0] + f"-reroll{frame}-") for path in states.iterdir())

"""The Progressive AR Sampler inside real ComfyUI, from the shipped API workflows on tiny models."""

import time

import pytest
import torch
from comfy_reference import assert_matches_reference, comfy_euler, empty_latent, guider_of_sampler_inputs, seeded_frames
from input_media import CONTEXT_VIDEO, write_test_video
from pack_access import record_progress
from saved_videos import read_video, saved_file
from tiny_workflows import add_prompt_schedule, node_of_type, tiny_workflow

SAMPLER = "LongVideoProgressiveARSampler"
# family -> (workflow, variant, VAE output that encodes the context, pixel frames from n latent frames)
CASES = {
    "ltxv": ("pavdm_ltxv", {}, ["1", 2], lambda n: 8 * (n - 1) + 1),
    "wan21": ("pavdm_wan22_5b_extend", {"wan21": True}, ["3", 0], lambda n: 4 * (n - 1) + 1),
    "wan22_5b": ("pavdm_wan22_5b_extend", {"wan22_5b": True}, ["3", 0], lambda n: 4 * (n - 1) + 1),
    "cosmos_predict2": ("pavdm_cosmos_predict2_2b_extend", {}, ["3", 0], lambda n: 4 * (n - 1) + 1),
}


def sampler_prompt(names, family, start, **changes):
    """A shipped PA-VDM workflow on a tiny model: from noise, or extending the context video."""
    workflow, variant, vae, _ = CASES[family]
    prompt = tiny_workflow(workflow, names, **{"length": 7, **changes, **variant})
    sampler = prompt[node_of_type(prompt, SAMPLER)]["inputs"]
    drop_context_nodes(prompt)
    sampler.pop("context", None)
    if start == "extend":
        prompt["90"] = {"class_type": "LoadVideo", "inputs": {"file": CONTEXT_VIDEO}}
        prompt["91"] = {"class_type": "GetVideoComponents", "inputs": {"video": ["90", 0]}}
        prompt["92"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["91", 0], "vae": vae}}
        sampler["context"] = ["92", 0]
    return context_without_wan22_encoder(prompt) if family == "wan22_5b" else prompt


def context_without_wan22_encoder(prompt):
    """Wan 2.2-5B: the context comes from a first sampler run instead of VAEEncode.

    ComfyUI builds the Wan 2.2 VAE at its full size whatever the file holds, and the tiny TAEHV
    stand-in only decodes, so the test extends a previous run, as users chain extensions.
    """
    encoder = next((i for i, n in prompt.items() if n["class_type"] == "VAEEncode"), None)
    if encoder is None:
        return prompt
    drop_context_nodes(prompt)
    sampler = prompt[node_of_type(prompt, SAMPLER)]["inputs"]
    first_run = {key: value for key, value in sampler.items() if key != "context"}
    prompt[encoder] = {"class_type": SAMPLER, "inputs": {**first_run, "length": 3, "seed": 7}}
    return prompt


def drop_context_nodes(prompt):
    for node_id in [i for i, n in prompt.items() if n["class_type"] in ("LoadVideo", "GetVideoComponents", "VAEEncode")]:
        del prompt[node_id]


def run_sampler(host, prompt):
    write_test_video(host.base_dir / "input" / CONTEXT_VIDEO)
    host.clear_cache()
    host.run_prompt(prompt)
    return host.node_output(node_of_type(prompt, SAMPLER))["samples"]


@pytest.mark.parametrize("family", CASES)
def test_from_noise_and_extending_a_clip_give_exactly_the_requested_frames(comfy_inprocess, tiny_model_names, family):
    from_noise = run_sampler(comfy_inprocess, sampler_prompt(tiny_model_names, family, "noise"))
    extended = run_sampler(comfy_inprocess, sampler_prompt(tiny_model_names, family, "extend"))
    for latent in (from_noise, extended):
        assert latent.shape[2] == 7
        assert latent.isfinite().all()
    # same seed, so the clean context chunk is the only difference
    # random tiny models mix frames weakly: 1e-3 to 1e-2 here, against round-off of about 1e-6
    assert (extended - from_noise).abs().max() > 1e-4


# the families whose own image-to-video sampling keeps given frames clean at timestep 0 through a
# noise mask, as the window's context chunk is kept (Wan 2.1 takes its image through other inputs)
MASKED_IMAGE_TO_VIDEO = ["ltxv", "wan22_5b", "cosmos_predict2"]


@pytest.mark.parametrize("family", MASKED_IMAGE_TO_VIDEO)
def test_with_one_noisy_chunk_every_chunk_is_comfyuis_own_sampling_behind_the_chunk_before(comfy_inprocess, tiny_model_names, family):
    # one noisy chunk in the window: the first chunk is plain sampling of a 2-frame latent, every
    # later one is sampled behind the finished chunk before it, which stays clean at sigma 0, as
    # ComfyUI samples a latent whose noise mask marks given frames
    chunk, chunks = 2, 3
    prompt = sampler_prompt(tiny_model_names, family, "noise", length=chunk * chunks, chunk_size=chunk, window_chunks=1)
    sampler = prompt[node_of_type(prompt, SAMPLER)]["inputs"]
    sampler["eta"] = 0.0
    ours = run_sampler(comfy_inprocess, prompt)

    guider = guider_of_sampler_inputs(comfy_inprocess, sampler)
    sigmas = comfy_inprocess.node_output(*sampler["sigmas"])
    one_chunk = (*ours.shape[:2], chunk, *ours.shape[3:])
    empty = empty_latent(guider, one_chunk)
    draw = seeded_frames(sampler["seed"], one_chunk)  # each chunk's noise as it enters the window
    reference = [comfy_euler(comfy_inprocess, guider, sigmas, draw(chunk), empty)]
    given_then_new = torch.ones(1, 1, 2 * chunk, *ours.shape[3:])
    given_then_new[:, :, :chunk] = 0.0
    for _ in range(chunks - 1):
        behind_the_last = torch.cat([reference[-1], empty], dim=2)
        noise = torch.cat([torch.zeros(one_chunk), draw(chunk)], dim=2)
        reference.append(comfy_euler(comfy_inprocess, guider, sigmas, noise, behind_the_last, given_then_new)[:, :, chunk:])
    assert_matches_reference(ours, torch.cat(reference, dim=2))


@pytest.mark.parametrize("family", CASES)
def test_server_runs_the_workflow_and_saves_the_video(comfy_server, tiny_model_names, family):
    write_test_video(comfy_server.base_dir / "input" / CONTEXT_VIDEO)
    workflow, variant, _, pixel_frames = CASES[family]
    prompt = tiny_workflow(workflow, tiny_model_names, length=9, chunk_size=2, window_chunks=3, **variant)
    if family == "wan22_5b":
        prompt = context_without_wan22_encoder(prompt)
    entry = comfy_server.run_prompt(prompt)
    path = saved_file(comfy_server.output_dir, entry, node_of_type(prompt, "SaveVideo"))
    assert read_video(path)[0] == pixel_frames(9), path


def test_a_guider_and_a_prompt_schedule(comfy_inprocess, tiny_model_names):
    plain = run_sampler(comfy_inprocess, sampler_prompt(tiny_model_names, "wan22_5b", "noise"))
    prompt = sampler_prompt(tiny_model_names, "wan22_5b", "noise")
    add_prompt_schedule(prompt, node_of_type(prompt, SAMPLER), switch_frame=4)
    scheduled = run_sampler(comfy_inprocess, prompt)
    # frames before the switch see the second prompt only through the window, the last ones are made under it
    assert (scheduled[:, :, -1] - plain[:, :, -1]).abs().max() > 1e-3

    prompt = sampler_prompt(tiny_model_names, "wan22_5b", "noise")
    sampler = prompt[node_of_type(prompt, SAMPLER)]["inputs"]
    prompt["97"] = {
        "class_type": "CFGGuider",
        "inputs": {"model": sampler.pop("model"), "positive": sampler.pop("positive"), "negative": sampler.pop("negative"), "cfg": sampler["cfg"]},
    }
    sampler["guider"] = ["97", 0]
    torch.testing.assert_close(run_sampler(comfy_inprocess, prompt), plain)


def test_clear_errors_for_steps_and_context(comfy_inprocess, tiny_model_names):
    prompt = sampler_prompt(tiny_model_names, "wan21", "noise", window_chunks=3)
    prompt[node_of_type(prompt, "BasicScheduler")]["inputs"]["steps"] = 7
    with pytest.raises(AssertionError, match=r"7 steps, but the window holds 3 noisy chunks.*multiple of 3"):
        run_sampler(comfy_inprocess, prompt)

    prompt = sampler_prompt(tiny_model_names, "wan21", "extend")
    prompt[node_of_type(prompt, "EmptyHunyuanLatentVideo")]["inputs"].update(width=96, height=96)
    with pytest.raises(AssertionError, match=r"context latent has 16 channels at 8x8 .* latent has 16 channels at 12x12"):
        run_sampler(comfy_inprocess, prompt)


def test_interrupt_stops_a_long_run_and_the_server_keeps_working(comfy_server, tiny_model_names):
    long_run = sampler_prompt(tiny_model_names, "wan22_5b", "noise", length=5000)
    prompt_id = comfy_server.queue(long_run)
    time.sleep(3.0)
    started = time.monotonic()
    comfy_server.interrupt()
    entry = comfy_server.wait(prompt_id, timeout=60)
    assert any(event == "execution_interrupted" for event, _ in entry["status"]["messages"])
    assert time.monotonic() - started < 10
    assert comfy_server.run_prompt(sampler_prompt(tiny_model_names, "wan22_5b", "noise", length=3))["status"]["status_str"] == "success"


@pytest.mark.parametrize("family", ["ltxv", "wan22_5b"])
def test_progress_counts_every_model_call_and_previews_every_chunk(comfy_inprocess, tiny_model_names, family, monkeypatch):
    updates = record_progress(monkeypatch)
    # 7 frames in chunks of 2 with 2 noisy chunks and 4 steps: 4 chunks, 2 calls per shift, 2 x (4 + 2 - 1) calls
    run_sampler(comfy_inprocess, sampler_prompt(tiny_model_names, family, "noise", length=7))
    mine = [(value, preview) for value, total, preview in updates if total == 10]
    # one update per call, and the call that finishes a chunk shows that chunk's last frame
    assert [value for value, _ in mine] == list(range(1, 11))
    assert [value for value, preview in mine if preview is not None] == [4, 6, 8, 10]

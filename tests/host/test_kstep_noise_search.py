"""k-Step Noise Search inside real ComfyUI, from the shipped API workflows on tiny models."""

import re

import pytest
import torch
from input_media import GUIDE_IMAGE, write_guide_image
from pack_access import call_node, fake_conditioning, pack_module
from saved_videos import read_video, saved_file
from tiny_workflows import node_of_type, tiny_workflow

SEARCH = "LongVideoKStepNoiseSearch"
# family -> (workflow, chunk_length of the tests, latent channels)
CASES = {"ltxv": ("kstep_ltxv", 9, 128), "wan22_5b": ("kstep_wan22_5b", 5, 48), "cosmos_predict2": ("kstep_cosmos_predict2_2b", 5, 16)}
TEST_SEARCH = {"width": 64, "height": 64, "chunks": 2, "candidates": 3, "preview_steps": 2, "steps": 3, "seed": 40}
CHUNK_LINE = re.compile(r"chunk (\d+): seed (\d+) chosen \(score (-?[\d.]+)\) from (.*)")


def search_prompt(names, family, **changes):
    workflow, chunk_length, _ = CASES[family]
    prompt = tiny_workflow(workflow, names)
    search = prompt[node_of_type(prompt, SEARCH)]["inputs"]
    search.update(TEST_SEARCH, chunk_length=chunk_length, guide_frames=1)
    search.update(changes)
    return prompt


def run_search(host, prompt):
    write_guide_image(host.base_dir / "input")
    host.clear_cache()
    entry = host.run_prompt(prompt)
    search = node_of_type(prompt, SEARCH)
    return entry, search, [host.node_output(search, index) for index in range(3)]


def parse_report(report):
    chunks = []
    for line in report.splitlines():
        match = CHUNK_LINE.fullmatch(line)
        if match:
            candidates = [pair.split(": ") for pair in match.group(4).split(", ")]
            chunks.append((int(match.group(2)), float(match.group(3)), [int(s) for s, _ in candidates], [float(v) for _, v in candidates]))
    return chunks


@pytest.mark.parametrize("family", CASES)
def test_report_scores_and_chosen_seeds_are_consistent(comfy_inprocess, tiny_model_names, family):
    entry, search, (images, latent, report) = run_search(comfy_inprocess, search_prompt(tiny_model_names, family))
    _, chunk_length, channels = CASES[family]
    chunks = parse_report(report)
    assert len(chunks) == 2, report
    for index, (chosen, chosen_score, seeds, scores) in enumerate(chunks):
        assert seeds == [40 + 3 * index + j for j in range(3)]
        assert all(-1.0 <= s <= 1.0 for s in scores)
        assert len(set(scores)) == len(scores), f"the tiny models must tell the candidates apart: {report}"
        assert chosen == seeds[scores.index(max(scores))], report
        assert chosen_score == max(scores)
    assert "3*2 + 3 = 9 steps per chunk, 18 for 2 chunks" in report
    assert entry["outputs"][search]["text"] == [report]
    # the second chunk drops its first frame, the repeat of the guide taken from the end of the first
    assert images.shape == (2 * chunk_length - 1, 64, 64, 3)
    assert latent["samples"].shape[:2] == (2, channels)
    assert images.isfinite().all() and latent["samples"].isfinite().all()


def test_scores_and_chunks_match_plain_comfyui_runs_of_the_reported_seeds(comfy_inprocess, tiny_model_names):
    """LTX-Video: each reported score is the CLIP score of a plain KSampler preview of that seed, and the
    first chunk is a plain s-step KSampler run of the chosen seed, both conditioned by LTXVImgToVideo."""
    host = comfy_inprocess
    _, _, (images, latent, report) = run_search(host, search_prompt(tiny_model_names, "ltxv"))
    chosen, _, seeds, scores = parse_report(report)[0]

    model, _, vae = call_node(host, "CheckpointLoaderSimple", ckpt_name=tiny_model_names["ltxv_ckpt"])
    positive, negative = call_node(host, "LTXVConditioning", positive=fake_conditioning(host, 5), negative=fake_conditioning(host, 6), frame_rate=24.0)
    guide = call_node(host, "LoadImage", image=GUIDE_IMAGE)[0]
    positive, negative, start = call_node(
        host, "LTXVImgToVideo", positive=positive, negative=negative, vae=vae, image=guide, width=64, height=64, length=9, batch_size=1, strength=1.0
    )
    embed = call_node(host, "LongVideoOpenCLIPLoader", checkpoint=tiny_model_names["open_clip"], architecture="ViT-B-32")[0]
    similarity = pack_module("samplers.noise_search").min_frame_similarity

    def ksampler(seed, steps):
        return call_node(
            host,
            "KSampler",
            model=model,
            seed=seed,
            steps=steps,
            cfg=3.0,
            sampler_name="euler",
            scheduler="simple",
            positive=positive,
            negative=negative,
            latent_image=start,
            denoise=1.0,
        )[0]

    with torch.no_grad():
        guide_embedding = embed(guide[-1:])[0]
        for seed, score in zip(seeds, scores):
            frames = call_node(host, "VAEDecode", samples=ksampler(seed, 2), vae=vae)[0]
            assert float(similarity(guide_embedding, embed(frames))) == pytest.approx(score, abs=1e-5)
    assert len(set(scores)) == len(scores), "the tiny CLIP must tell the candidates apart for this test to mean anything"
    torch.testing.assert_close(ksampler(chosen, 3)["samples"], latent["samples"][:1])
    torch.testing.assert_close(call_node(host, "VAEDecode", samples={"samples": latent["samples"][:1]}, vae=vae)[0], images[:9])


def test_longer_guide_tail_and_whole_chunks(comfy_inprocess, tiny_model_names):
    _, _, (dropped, _, _) = run_search(comfy_inprocess, search_prompt(tiny_model_names, "wan22_5b", guide_frames=5, chunk_length=9))
    _, _, (whole, latent, _) = run_search(
        comfy_inprocess, search_prompt(tiny_model_names, "wan22_5b", guide_frames=5, chunk_length=9, drop_repeated_frames=False)
    )
    assert whole.shape[0] == 18 and latent["samples"].shape[2] == 3 and whole.isfinite().all()
    torch.testing.assert_close(dropped, torch.cat([whole[:9], whole[14:]]))


def test_wan_i2v_with_clip_vision_conditioning(comfy_inprocess, tiny_model_names):
    host = comfy_inprocess
    write_guide_image(host.base_dir / "input")
    model = call_node(host, "UNETLoader", unet_name=tiny_model_names["wan21_i2v"], weight_dtype="default")[0]
    vae = call_node(host, "VAELoader", vae_name=tiny_model_names["wan21_vae"])[0]
    clip_vision = call_node(host, "LongVideoTestCLIPVisionLoader", clip_name=tiny_model_names["clip_vision"])[0]
    guide = call_node(host, "LoadImage", image=GUIDE_IMAGE)[0]
    images, latent, report = call_node(
        host,
        SEARCH,
        model=model,
        positive=fake_conditioning(host, 1),
        negative=fake_conditioning(host, 2),
        vae=vae,
        guide_image=guide,
        chunk_length=5,
        cfg=5.0,
        sampler_name="euler",
        scheduler="simple",
        guide_frames=1,
        drop_repeated_frames=True,
        clip_vision=clip_vision,
        **{**TEST_SEARCH, "width": 32, "height": 32},
    )
    assert images.shape == (9, 32, 32, 3)
    assert latent["samples"].shape == (2, 16, 2, 4, 4)
    assert "Wan 2.1 / Wan 2.2 A14B I2V, scored by CLIP vision" in report and len(parse_report(report)) == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chunk_length": 6}, r"1 \+ a multiple of 4 frames; chunk_length 6 is not one"),
        ({"guide_frames": 3}, r"guide_frames 3 is not one"),
        ({"clip_vision": None}, r"Connect a scorer"),
        ({"unet_name": "wan21"}, r"text-to-video \(16 input channels\)"),
        ({"unet_name": "unsupported_video"}, r"Wan 2.1 / Wan 2.2 A14B I2V, Cosmos Predict2 video2world and MiniMax H3; this model is"),
    ],
)
def test_clear_errors(comfy_inprocess, tiny_model_names, change, message):
    prompt = search_prompt(tiny_model_names, "wan22_5b")
    search = prompt[node_of_type(prompt, SEARCH)]["inputs"]
    if "unet_name" in change:
        prompt[node_of_type(prompt, "UNETLoader")]["inputs"]["unet_name"] = tiny_model_names[change.pop("unet_name")]
    for key, value in change.items():
        search.pop(key) if value is None else search.update({key: value})
    with pytest.raises(AssertionError, match=message):
        run_search(comfy_inprocess, prompt)


def test_cosmos_predict2_takes_one_guide_frame(comfy_inprocess, tiny_model_names):
    with pytest.raises(AssertionError, match=r"Cosmos Predict2 video2world conditions a chunk on a single frame.*not 5"):
        run_search(comfy_inprocess, search_prompt(tiny_model_names, "cosmos_predict2", guide_frames=5, chunk_length=9))


@pytest.mark.parametrize("family", CASES)
def test_server_runs_the_workflow_shows_the_report_and_saves_the_video(comfy_server, tiny_model_names, family):
    write_guide_image(comfy_server.base_dir / "input")
    prompt = search_prompt(tiny_model_names, family)
    entry = comfy_server.run_prompt(prompt)
    path = saved_file(comfy_server.output_dir, entry, node_of_type(prompt, "SaveVideo"))
    assert read_video(path)[0] == 2 * CASES[family][1] - 1, path
    report = entry["outputs"][node_of_type(prompt, SEARCH)]["text"][0]
    assert len(parse_report(report)) == 2 and "18 for 2 chunks" in report

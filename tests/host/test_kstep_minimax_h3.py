"""k-Step Noise Search on MiniMax H3 image-to-video inside real ComfyUI, from the shipped workflow on tiny models.

Each chunk is an H3 audio-video latent (EmptyMiniMaxH3LatentAV) whose prompt carries the guide as a
keyframe (MiniMaxH3AddGuide); chunks are 5 + 17 n frames at 24 fps.
"""

import pytest
import torch
from input_media import GUIDE_IMAGE, write_guide_image
from pack_access import call_node, pack_module
from test_kstep_noise_search import parse_report
from tiny_workflows import node_of_type, tiny_workflow

SEARCH = "LongVideoKStepNoiseSearch"
TEST_SEARCH = {"width": 64, "height": 64, "chunks": 2, "candidates": 3, "preview_steps": 2, "steps": 3, "seed": 40, "chunk_length": 22, "guide_frames": 1}
# a 22-frame chunk: 7 video latent frames (1 + 4 + 4 + 4 + 4, 1 + 4 frames) and 37 audio latent frames (22 / 24 s at 40 per second)
VIDEO_LATENT = (24, 7, 4, 4)
AUDIO_LATENT = (32, 2, 37)


def search_prompt(names, **changes):
    prompt = tiny_workflow("kstep_minimax_h3", names)
    prompt[node_of_type(prompt, SEARCH)]["inputs"].update(TEST_SEARCH, **changes)
    return prompt


def run_search(host, prompt):
    write_guide_image(host.base_dir / "input")
    host.clear_cache()
    host.run_prompt(prompt)
    search = node_of_type(prompt, SEARCH)
    return [host.node_output(search, index) for index in range(3)]


def test_report_scores_chosen_seeds_and_frame_counts_are_consistent(comfy_inprocess, tiny_model_names):
    images, latent, report = run_search(comfy_inprocess, search_prompt(tiny_model_names))
    chunks = parse_report(report)
    assert len(chunks) == 2, report
    for index, (chosen, chosen_score, seeds, scores) in enumerate(chunks):
        assert seeds == [40 + 3 * index + j for j in range(3)]
        assert len(set(scores)) == len(scores), f"the tiny models must tell the candidates apart: {report}"
        assert chosen == seeds[scores.index(max(scores))] and chosen_score == max(scores)
    assert report.startswith("k-Step Noise Search, MiniMax H3, scored by CLIP vision")
    assert "3*2 + 3 = 9 steps per chunk, 18 for 2 chunks" in report
    # the second chunk drops its first frame, the repeat of the guide taken from the end of the first
    assert images.shape == (2 * 22 - 1, 64, 64, 3) and images.isfinite().all()
    video, audio = latent["samples"].unbind()
    assert video.shape == (2, *VIDEO_LATENT) and audio.shape == (2, *AUDIO_LATENT)
    assert video.isfinite().all() and audio.isfinite().all()


def test_same_seed_same_video_and_the_chosen_chunk_is_a_plain_comfyui_run_of_its_seed(comfy_inprocess, tiny_model_names):
    """Two runs give the same bits; the reported scores are the CLIP scores of plain KSampler previews of the seeds, and the
    first chunk (video and sound) is a plain s-step KSampler run of the chosen seed, conditioned by ComfyUI's own H3 nodes."""
    host = comfy_inprocess
    prompt = search_prompt(tiny_model_names)
    images, latent, report = run_search(host, prompt)
    again, latent_again, report_again = run_search(host, prompt)
    assert report_again == report
    torch.testing.assert_close(again, images, rtol=0, atol=0)
    for stream, stream_again in zip(latent["samples"].unbind(), latent_again["samples"].unbind()):
        torch.testing.assert_close(stream_again, stream, rtol=0, atol=0)

    chosen, _, seeds, scores = parse_report(report)[0]
    model = call_node(host, "UNETLoader", unet_name=tiny_model_names["minimax_h3"], weight_dtype="default")[0]
    vae = call_node(host, "VAELoader", vae_name=tiny_model_names["taeh3"])[0]
    text = {node["inputs"]["seed"]: node for node in prompt.values() if node["class_type"] == "LongVideoTestConditioning"}
    positive, negative = (call_node(host, "LongVideoTestConditioning", **text[seed]["inputs"])[0] for seed in sorted(text))
    guide = call_node(host, "LoadImage", image=GUIDE_IMAGE)[0]
    start = call_node(host, "EmptyMiniMaxH3LatentAV", width=64, height=64, length=22)[0]
    positive = call_node(host, "MiniMaxH3AddGuide", positive=positive, latent=start, frame_idx=0, vae=vae, image=guide)[0]
    clip_vision = call_node(host, "LongVideoTestCLIPVisionLoader", clip_name=tiny_model_names["clip_vision"])[0]
    embed = pack_module("nodes.clip_scoring").clip_vision_embedder(clip_vision)
    similarity = pack_module("samplers.noise_search").min_frame_similarity

    def ksampler(seed, steps):
        return call_node(
            host,
            "KSampler",
            model=model,
            seed=seed,
            steps=steps,
            cfg=5.0,
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
    plain = ksampler(chosen, 3)["samples"].unbind()
    for stream, chunk in zip(plain, latent["samples"].unbind()):
        torch.testing.assert_close(stream, chunk[:1])
    torch.testing.assert_close(call_node(host, "VAEDecode", samples={"samples": plain[0]}, vae=vae)[0], images[:22])


def test_a_guide_clip_of_5_frames_and_whole_chunks(comfy_inprocess, tiny_model_names):
    dropped, _, _ = run_search(comfy_inprocess, search_prompt(tiny_model_names, guide_frames=5))
    whole, latent, _ = run_search(comfy_inprocess, search_prompt(tiny_model_names, guide_frames=5, drop_repeated_frames=False))
    assert dropped.shape[0] == 22 + 17 and whole.shape[0] == 2 * 22 and latent["samples"].shape[0] == 2
    torch.testing.assert_close(dropped, torch.cat([whole[:22], whole[22 + 5 :]]))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"chunk_length": 21}, r"MiniMax H3 makes chunks of 5 \+ a multiple of 17 frames; chunk_length 21 is not one \(try 22\)"),
        ({"guide_frames": 3}, r"MiniMax H3 encodes 5 \+ 17\*n guide frames into whole latent frames \(1, 5, 22, 39, \.\.\.\).*guide_frames 3 is not one"),
        ({"guide_frames": 22}, r"fewer than chunk_length \(22\); guide_frames 22 is not one"),
        ({"width": 48}, r"MiniMax H3 needs width and height that are multiples of 32; got 48x64"),
    ],
)
def test_clear_errors(comfy_inprocess, tiny_model_names, change, message):
    with pytest.raises(AssertionError, match=message):
        run_search(comfy_inprocess, search_prompt(tiny_model_names, **change))

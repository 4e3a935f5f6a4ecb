"""The Chunk Stitcher inside real ComfyUI: IMAGE and LATENT batches from the FIFO workflow on tiny models."""

import math

import pytest
import torch
from pack_access import call_node
from saved_videos import read_video, saved_file
from tiny_workflows import node_of_type, stream_to_file, tiny_workflow

NEW_NODES = ("LongVideoChunkStitcher", "LongVideoDecodeToVideoFile")


def stitcher(source, chunk_length, overlap, transition="linear", colour_anchor="off", strength=1.0):
    return {
        "class_type": "LongVideoChunkStitcher",
        "inputs": {
            "chunks": source,
            "chunk_length": chunk_length,
            "overlap": overlap,
            "transition": transition,
            "colour_anchor": colour_anchor,
            "strength": strength,
        },
    }


def back_to_back_chunks(video, chunk_length, overlap):
    """How another pack hands over chunks: each chunk repeats the previous chunk's last frames, all in one batch."""
    chunks, start = [], 0
    while start + overlap < len(video):
        chunks.append(video[start : start + chunk_length])
        start += chunk_length - overlap
    return torch.cat(chunks)


@pytest.mark.parametrize("transition", ["cut", "linear", "cosine"])
def test_a_batch_of_overlapping_chunks_stitches_back_to_the_video(comfy_inprocess, transition):
    video = torch.rand(40, 16, 16, 3, generator=torch.Generator().manual_seed(0))
    batch = back_to_back_chunks(video, 12, 4)
    assert len(batch) == 12 + 11 * 4
    [stitched] = call_node(
        comfy_inprocess, "LongVideoChunkStitcher", chunks=batch, chunk_length=12, overlap=4, transition=transition, colour_anchor="off", strength=1.0
    )
    torch.testing.assert_close(stitched, video)


# weight of the later chunk on the 4 shared frames, which sit at t = 1/5 ... 4/5 between the chunks:
# linear w = t, cosine w = (1 - cos(pi t)) / 2, cut switches after the middle
CROSSFADE_OF_4 = {
    "linear": [0.2, 0.4, 0.6, 0.8],
    "cosine": [(1 - math.cos(math.pi * t)) / 2 for t in (0.2, 0.4, 0.6, 0.8)],
    "cut": [0.0, 0.0, 1.0, 1.0],
}


@pytest.mark.parametrize("transition", CROSSFADE_OF_4)
@pytest.mark.parametrize("kind", ["IMAGE", "LATENT"])
def test_the_shared_frames_of_two_chunks_are_crossfaded_by_the_transitions_formula(comfy_inprocess, transition, kind):
    earlier, later = torch.tensor([0.1, 0.5, 0.9]), torch.tensor([0.7, 0.3, 0.2])
    # a 10-frame chunk of one colour, then a 7-frame chunk of another; they share 4 frames
    colours = torch.stack([earlier] * 10 + [later] * 7)
    weights = torch.tensor(CROSSFADE_OF_4[transition])
    expected = torch.cat([earlier.expand(6, 3), (1 - weights[:, None]) * earlier + weights[:, None] * later, later.expand(3, 3)])
    if kind == "IMAGE":
        chunks, frames_of = colours[:, None, None, :].expand(17, 8, 8, 3).contiguous(), lambda out: out[:, 0, 0, :]
    else:
        chunks, frames_of = {"samples": colours.T[None, :, :, None, None].expand(1, 3, 17, 2, 2).contiguous()}, lambda out: out["samples"][0, :, :, 0, 0].T
    [stitched] = call_node(
        comfy_inprocess, "LongVideoChunkStitcher", chunks=chunks, chunk_length=10, overlap=4, transition=transition, colour_anchor="off", strength=1.0
    )
    torch.testing.assert_close(frames_of(stitched), expected)


def test_colour_anchoring_pulls_later_chunks_to_the_first_chunks_colours(comfy_inprocess):
    video = torch.rand(30, 16, 16, 3, generator=torch.Generator().manual_seed(1)) * 0.5 + 0.25
    batch = back_to_back_chunks(video, 10, 0)
    batch[10:] = (batch[10:] * torch.tensor([1.3, 1.0, 0.7])).clamp(0, 1)  # later chunks drifted
    [anchored] = call_node(
        comfy_inprocess, "LongVideoChunkStitcher", chunks=batch, chunk_length=10, overlap=0, transition="linear", colour_anchor="mean/std (Lab)", strength=1.0
    )
    drift = lambda frames: (frames.mean(dim=(0, 1, 2)) - video[:10].mean(dim=(0, 1, 2))).abs().max()  # noqa: E731
    assert drift(batch[10:]) > 0.05
    assert drift(anchored[10:]) < 0.2 * drift(batch[10:])
    torch.testing.assert_close(anchored[:10], batch[:10])


def test_decoded_images_stitch_and_save_through_the_executor(comfy_inprocess, tiny_model_names):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=9, wan22_5b=True)
    decode, create = node_of_type(prompt, "VAEDecode"), node_of_type(prompt, "CreateVideo")
    prompt["90"] = stitcher([decode, 0], 12, 3, "cosine", "histogram (Lab)", 0.8)
    prompt[create]["inputs"]["images"] = ["90", 0]
    comfy_inprocess.clear_cache()
    entry = comfy_inprocess.run_prompt(prompt)
    # 33 frames in chunks of 12, 12 and 9 sharing 3 frames at each of the two joins
    stitched, decoded = comfy_inprocess.node_output("90"), comfy_inprocess.node_output(decode)
    assert stitched.shape[0] == 33 - 2 * 3
    # the first chunk is the colour reference and its own frames come through untouched
    torch.testing.assert_close(stitched[:9], decoded[:9])
    save = node_of_type(prompt, "SaveVideo")
    assert read_video(saved_file(comfy_inprocess.output_dir, entry, save))[0] == 27


def test_latent_chunks_stitch_in_latent_space_and_stream_to_a_file(comfy_inprocess, tiny_model_names):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=12, wan22_5b=True)
    decode = stream_to_file(prompt)
    prompt["90"] = stitcher(prompt[decode]["inputs"]["samples"], 6, 2)
    prompt[decode]["inputs"]["samples"] = ["90", 0]
    comfy_inprocess.clear_cache()
    entry = comfy_inprocess.run_prompt(prompt)
    stitched, sampled = comfy_inprocess.node_output("90")["samples"], comfy_inprocess.node_output(prompt["90"]["inputs"]["chunks"][0])["samples"]
    # chunks of frames 0-5 and 6-11; frames 4-5 and 6-7 show the same moments, crossfaded linearly
    # at t = 1/3, 2/3
    w = torch.tensor([1 / 3, 2 / 3]).view(1, 1, 2, 1, 1)
    expected = torch.cat([sampled[:, :, :4], (1 - w) * sampled[:, :, 4:6] + w * sampled[:, :, 6:8], sampled[:, :, 8:]], dim=2)
    torch.testing.assert_close(stitched, expected)
    assert read_video(saved_file(comfy_inprocess.output_dir, entry, decode))[0] == 4 * (10 - 1) + 1


def test_clear_errors_for_settings_that_cannot_work(comfy_inprocess, tiny_model_names):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=5, wan22_5b=True)
    sampler, decode = node_of_type(prompt, "LongVideoDiagonalQueueSampler"), node_of_type(prompt, "VAEDecode")
    prompt["90"] = stitcher([sampler, 0], 4, 4)
    prompt[decode]["inputs"]["samples"] = ["90", 0]
    with pytest.raises(AssertionError, match=r"overlap \(4\) must be smaller than chunk_length \(4\)"):
        comfy_inprocess.run_prompt(prompt)
    prompt["90"] = stitcher([sampler, 0], 4, 1, colour_anchor="mean/std (Lab)")
    comfy_inprocess.clear_cache()
    with pytest.raises(AssertionError, match="Colour anchoring works on decoded images, not latents"):
        comfy_inprocess.run_prompt(prompt)
    prompt["90"] = stitcher([sampler, 0], 4, 3)
    comfy_inprocess.clear_cache()
    with pytest.raises(AssertionError, match="the last chunk has only 1, not more than the overlap"):
        comfy_inprocess.run_prompt(prompt)


def test_new_nodes_are_listed_with_a_tooltip_on_every_input_and_output(comfy_server):
    info = comfy_server.object_info()
    for node in NEW_NODES:
        assert info[node]["category"] == "video/long"
        for name, spec in {**info[node]["input"]["required"], **info[node]["input"].get("optional", {})}.items():
            assert len(spec) > 1 and spec[1].get("tooltip"), f"{node}.{name} has no tooltip"
        assert all(info[node]["output_tooltips"]), node
    assert info["LongVideoDecodeToVideoFile"]["output_node"] is True
    assert info["LongVideoDecodeToVideoFile"]["output"] == ["VIDEO"]

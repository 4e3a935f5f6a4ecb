"""Each sampler node's output for a fixed seed on the tiny models, pinned bit for bit.

The digests were recorded before the samplers and their glue were restructured; a restructuring
that changes no behaviour leaves every bit of every output as it was. A digest changes only when
a change means to change the numbers: then say so in the commit and record the new digests
(``LONGVIDEO_PRINT_PINS=1`` prints them). The Diagonal Queue's digests were re-recorded when its
windows kept their full size while the queue drains: the last frame of each changed (the
lookahead windows of 4 frames had shrunk only in the last iteration), every other kept its bits.
"""
import hashlib
import os

import pytest
import torch

from input_media import GUIDE_IMAGE, write_guide_image
from tiny_workflows import add_prompt_schedule, node_of_type, tiny_workflow

SAVING_NODES = ("VAEDecode", "CreateVideo", "SaveVideo", "SaveAnimatedWEBP", "LongVideoDecodeToVideoFile")

# name -> (workflow, tiny_workflow arguments, sampler node type, sampler input changes)
CASES = {
    "fifo_wan21_lp_ld": ("fifo_wan21_t2v_1.3B", {"length": 7, "wan21": True}, "LongVideoDiagonalQueueSampler", {"seed": 3}),
    "fifo_wan22_5b_lp_ld": ("fifo_wan21_t2v_1.3B", {"length": 7, "wan22_5b": True}, "LongVideoDiagonalQueueSampler", {"seed": 4}),
    "fifo_wan22_5b_eta0": ("fifo_wan21_t2v_1.3B", {"length": 6, "wan22_5b": True}, "LongVideoDiagonalQueueSampler", {"eta": 0.0}),
    "fifo_ltxv_lp_ld": ("fifo_ltxv", {"length": 6}, "LongVideoDiagonalQueueSampler", {"seed": 5}),
    "fifo_cosmos_lp_ld": ("fifo_cosmos_predict2_2b", {"length": 6}, "LongVideoDiagonalQueueSampler", {"seed": 6}),
    "fifo_wan22_5b_batched": ("fifo_wan21_t2v_1.3B", {"length": 6, "wan22_5b": True}, "LongVideoDiagonalQueueSampler", {"seed": 13}),
    "fifo_wan22_5b_schedule": ("fifo_wan21_t2v_1.3B", {"length": 8, "wan22_5b": True}, "LongVideoDiagonalQueueSampler", {"seed": 14}),
    "pavdm_ltxv": ("pavdm_ltxv", {"length": 7}, "LongVideoProgressiveARSampler", {"seed": 7}),
    "pavdm_wan21_schedule": ("pavdm_wan21_t2v_1.3B_prompt_schedule", {"length": 7}, "LongVideoProgressiveARSampler", {"seed": 8}),
    "pavdm_wan22_5b_eta": ("pavdm_wan22_5b_extend", {"length": 5, "wan22_5b": True}, "LongVideoProgressiveARSampler", {"seed": 9, "eta": 0.5}),
    "pavdm_cosmos_extend": ("pavdm_cosmos_predict2_2b_extend", {"length": 5}, "LongVideoProgressiveARSampler", {"seed": 10}),
    "kstep_wan22_5b": ("kstep_wan22_5b", {}, "LongVideoKStepNoiseSearch", {"chunk_length": 5, "guide_frames": 1, "seed": 11}),
    "kstep_cosmos": ("kstep_cosmos_predict2_2b", {}, "LongVideoKStepNoiseSearch", {"chunk_length": 5, "seed": 12}),
}

# further changes to a case's prompt: (prompt, sampler id) -> None
def _batched(prompt, sampler_id):
    prompt[node_of_type(prompt, "LongVideoLatentPartition")]["inputs"]["window_batching"] = "batched"


def _switch_prompt_at_frame_3(prompt, sampler_id):
    ranges = [node["inputs"] for node in prompt.values() if node["class_type"] == "LongVideoPromptFrameRange"]
    if not ranges:
        add_prompt_schedule(prompt, sampler_id, switch_frame=3)
    for inputs in ranges:
        inputs.update({key: 3 for key in ("start_frame", "end_frame") if inputs[key] > 0})


ADJUST = {"fifo_wan22_5b_batched": _batched, "fifo_wan22_5b_schedule": _switch_prompt_at_frame_3, "pavdm_wan21_schedule": _switch_prompt_at_frame_3}

PINS = {
    "fifo_wan21_lp_ld": "ad727f3b02aa4d3f3dd4eaab00d53b85",
    "fifo_wan22_5b_lp_ld": "3b929a95de03a3d8c24f43172d64d9e4",
    "fifo_wan22_5b_eta0": "d1a721b7e410ed4c054316962d9fa7e4",
    "fifo_ltxv_lp_ld": "9f917d4f4684d0b82d3674b215117e6b",
    "fifo_cosmos_lp_ld": "91e5220281fe18ccc03a49ef627a7775",
    "fifo_wan22_5b_batched": "18cec7ff479b7d883081d18be7fb8c46",
    "fifo_wan22_5b_schedule": "5599edb17522e3970c79121aed30602a",
    "pavdm_ltxv": "c6fa7bb7c5d98e5a6b19e2ec9d602209",
    "pavdm_wan21_schedule": "552bfd19bce02c5e5f3a756b915bc772",
    "pavdm_wan22_5b_eta": "0b4457472ba270f5de7e16e982db133b",
    "pavdm_cosmos_extend": "67dd2ec3c4ba0973411e3d227bf4cf4c",
    "kstep_wan22_5b": "17184ed9c6ef883862b585ddd273bed6",
    "kstep_cosmos": "8ec5441b33c1166eb2abccfbbd8c92d3",
}


def digest(tensor: torch.Tensor) -> str:
    data = tensor.detach().cpu().contiguous()
    header = f"{data.dtype}{tuple(data.shape)}".encode()
    return hashlib.sha256(header + data.numpy().tobytes()).hexdigest()[:32]


def latent_only(prompt: dict, sampler_id: str) -> dict:
    """The workflow up to the sampler, its LATENT saved as is (no decode, no lossy video)."""
    for node_id in [i for i, node in prompt.items() if node["class_type"] in SAVING_NODES]:
        del prompt[node_id]
    prompt["99"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler_id, 1 if "KStep" in prompt[sampler_id]["class_type"] else 0], "filename_prefix": "pins/latent"}}
    return prompt


def without_video_decoding(prompt: dict) -> None:
    """The context clip from the guide image repeated, in place of Load Video.

    ComfyUI 0.33 decodes the same mp4 to slightly different pixels in different processes
    (up to 5/255 here), so a clip read by Load Video cannot be part of a bit-exact pin.
    """
    for node_id, node in prompt.items():
        if node["class_type"] == "LoadVideo":
            node.update(class_type="LoadImage", inputs={"image": GUIDE_IMAGE})
        elif node["class_type"] == "GetVideoComponents":
            node.update(class_type="RepeatImageBatch", inputs={"image": [node["inputs"]["video"][0], 0], "amount": 5})


def pinned_output(host, names, case):
    workflow, arguments, sampler_type, changes = CASES[case]
    prompt = tiny_workflow(workflow, names, **arguments)
    sampler_id = node_of_type(prompt, sampler_type)
    prompt[sampler_id]["inputs"].update(changes)
    ADJUST.get(case, lambda *_: None)(prompt, sampler_id)
    latent_only(prompt, sampler_id)
    without_video_decoding(prompt)
    write_guide_image(host.base_dir / "input")
    host.clear_cache()
    host.run_prompt(prompt)
    return host.node_output(sampler_id, 1 if sampler_type == "LongVideoKStepNoiseSearch" else 0)["samples"]


@pytest.mark.parametrize("case", CASES)
def test_sampler_output_is_pinned(comfy_inprocess, tiny_model_names, case):
    got = digest(pinned_output(comfy_inprocess, tiny_model_names, case))
    if os.environ.get("LONGVIDEO_PRINT_PINS"):
        print(f'PIN "{case}": "{got}",')
    assert got == PINS[case], f"{case}: the output's bits changed (digest {got}, pinned {PINS[case]})"

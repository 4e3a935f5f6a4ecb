"""What the samplers do with the LATENT they get, as ComfyUI's own KSampler does on ComfyUI 0.33."""

import pytest
from tiny_workflows import node_of_type, tiny_workflow

SAMPLERS = {"LongVideoDiagonalQueueSampler": "fifo_wan21_t2v_1.3B", "LongVideoProgressiveARSampler": "pavdm_wan21_t2v_1.3B_prompt_schedule"}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_an_empty_latent_of_another_family_is_resized_for_the_model_and_its_ratios_dropped(comfy_inprocess, tiny_model_names, sampler):
    # Empty Hunyuan Latent Video makes a 16-channel latent at 1/8 of 64 x 64 pixels and says so in the
    # LATENT (downscale_ratio_spacial 8); Wan 2.2-5B works at 48 channels and 1/16, so the sampler's
    # latent must be 48 x 4 x 4, as KSampler makes it
    prompt = tiny_workflow(SAMPLERS[sampler], tiny_model_names, length=5, wan22_5b=True)
    sampler_id = node_of_type(prompt, sampler)
    empty = prompt[sampler_id]["inputs"]["latent"][0]
    prompt[empty] = {"class_type": "EmptyHunyuanLatentVideo", "inputs": {"width": 64, "height": 64, "length": 5, "batch_size": 1}}
    prompt[node_of_type(prompt, "VAEDecode")]["inputs"]["samples"] = [sampler_id, 0]
    comfy_inprocess.clear_cache()
    comfy_inprocess.run_prompt(
        {node_id: node for node_id, node in prompt.items() if node["class_type"] not in ("CreateVideo", "SaveVideo")}
        | {"99": {"class_type": "PreviewImage", "inputs": {"images": [node_of_type(prompt, "VAEDecode"), 0]}}}
    )
    given = comfy_inprocess.node_output(empty)
    assert given["downscale_ratio_spacial"] == 8 and tuple(given["samples"].shape[-2:]) == (8, 8)
    out = comfy_inprocess.node_output(sampler_id)
    assert tuple(out["samples"].shape) == (1, 48, 5, 4, 4)
    assert "downscale_ratio_spacial" not in out and "downscale_ratio_temporal" not in out

"""Bad values, shapes and connections through the real executor: each one stopped before work with
the pack's own message (hostile_inputs.Outcome.refused_by_pack) that says what to change.

The cases the hostile-input review found (issue 13) are here by name; test_hostile_properties.py
throws generated ones.
"""

import math

import pytest
import torch
from hostile_inputs import Runner, ending_in_a_preview, tensor_source
from tiny_workflows import tiny_workflow

NAN = math.nan


@pytest.fixture(scope="module")
def runner(comfy_inprocess):
    return Runner(comfy_inprocess)


def fifo(names, **sampler):
    """Tiny Wan 2.1 Diagonal Queue workflow; sampler node "11", its latent "7", scheduler "8", decode "12"."""
    prompt = ending_in_a_preview(tiny_workflow("fifo_wan21_t2v_1.3B", names, length=5))
    prompt["11"]["inputs"].update(sampler)
    return prompt


def pavdm(names, **sampler):
    """Tiny Wan 2.1 PA-VDM workflow with a prompt schedule; sampler "11"."""
    prompt = ending_in_a_preview(tiny_workflow("pavdm_wan21_t2v_1.3B_prompt_schedule", names, length=5))
    prompt["11"]["inputs"].update(sampler)
    return prompt


def with_latent(prompt, node_id, input_name, value, source="90"):
    prompt[source] = tensor_source("LongVideoHostileLatent", value)
    prompt[node_id]["inputs"][input_name] = [source, 0]
    return prompt


def decode(names, latent, **changes):
    inputs = {
        "samples": ["2", 0],
        "vae": ["1", 0],
        "fps": 16.0,
        "filename_prefix": "longvideo/bad",
        "format": "mp4",
        "crf": 19,
        "tile_frames": 4,
        "tile_overlap": 1,
    }
    return {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": names["wan21_vae"]}},
        "2": tensor_source("LongVideoHostileLatent", latent),
        "3": {"class_type": "LongVideoDecodeToVideoFile", "inputs": inputs | changes},
    }


def stitch(chunks, **changes):
    source = "LongVideoHostileLatent" if isinstance(chunks, dict) else "LongVideoHostileImage"
    inputs = {"chunks": ["1", 0], "chunk_length": 4, "overlap": 1, "transition": "linear", "colour_anchor": "off", "strength": 1.0}
    return {
        "1": tensor_source(source, chunks),
        "2": {"class_type": "LongVideoChunkStitcher", "inputs": inputs | changes},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }


def kstep(names, guide=None, **search):
    """Tiny k-step Wan 2.2 workflow; its guide image comes from a tensor source instead of example.png."""
    prompt = ending_in_a_preview(tiny_workflow("kstep_wan22_5b", names))
    prompt["3"] = tensor_source("LongVideoHostileImage", torch.rand(1, 64, 64, 3) if guide is None else guide)
    prompt["11"]["inputs"].update(search)
    return prompt


def with_nan(shape, value=NAN):
    tensor = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    tensor.view(-1)[len(tensor.view(-1)) // 2] = value
    return tensor


def schedule_through_a_guider(names):
    prompt = pavdm(names)
    sampler = prompt["11"]["inputs"]
    prompt["95"] = {
        "class_type": "CFGGuider",
        "inputs": {"model": sampler.pop("model"), "positive": sampler.pop("positive"), "negative": sampler.pop("negative"), "cfg": 5.0},
    }
    sampler["guider"] = ["95", 0]
    return prompt


def unsupported_model(names):
    prompt = fifo(names)
    prompt["1"]["inputs"]["unet_name"] = names["unsupported_video"]
    return prompt


def empty_schedule(names):
    prompt = fifo(names)
    prompt["8"]["inputs"]["denoise"] = 0.0
    return prompt


def hostile_sigmas(names, sigmas):
    prompt = fifo(names)
    prompt["8"] = tensor_source("LongVideoHostileSigmas", sigmas)
    return prompt


CONTINUE = {"start": "continue the input latent"}
# name -> (prompt builder, words of the message)
CASES = {
    "prompt schedule through a GUIDER": (schedule_through_a_guider, "a GUIDER gives the sampler a single prompt"),
    "NaN latent to continue": (
        lambda n: with_latent(fifo(n, **CONTINUE), "11", "latent", with_nan((1, 16, 6, 8, 8))),
        "NaN or infinite values in the input latent",
    ),
    "infinite context latent": (
        lambda n: with_latent(pavdm(n), "11", "context", with_nan((1, 16, 3, 8, 8), math.inf)),
        "NaN or infinite values in the context latent",
    ),
    "latent to continue with 4 channels": (
        lambda n: with_latent(fifo(n, **CONTINUE), "11", "latent", torch.randn(1, 4, 6, 8, 8)),
        "The latent has 4 channels, but this Wan 2.1",
    ),
    "context with 4 channels": (lambda n: with_latent(pavdm(n), "11", "context", torch.randn(1, 4, 3, 8, 8)), "The context latent has 4 channels"),
    "latent without samples": (lambda n: with_latent(fifo(n), "11", "latent", {"noise_mask": torch.ones(1)}), "The latent input is not a LATENT with samples"),
    "latent with no frames": (lambda n: with_latent(fifo(n, **CONTINUE), "11", "latent", torch.randn(1, 16, 0, 8, 8)), "with a size in every dimension"),
    "3-D latent": (lambda n: with_latent(fifo(n), "11", "latent", torch.randn(16, 8, 8)), "with a size in every dimension"),
    "4-D latent to continue with a video model": (
        lambda n: with_latent(fifo(n, **CONTINUE), "11", "latent", torch.randn(1, 16, 8, 8)),
        "must be a video latent",
    ),
    "eta NaN (Diagonal Queue)": (lambda n: fifo(n, eta=NAN), "eta is nan"),
    "eta NaN (Progressive AR)": (lambda n: pavdm(n, eta=NAN), "eta is nan"),
    "cfg NaN": (lambda n: fifo(n, cfg=NAN), "cfg is nan"),
    "empty SIGMAS": (empty_schedule, "SIGMAS has 0 value(s)"),
    "SIGMAS of one value": (lambda n: hostile_sigmas(n, torch.ones(1)), "SIGMAS has 1 value(s)"),
    "NaN in SIGMAS": (lambda n: hostile_sigmas(n, torch.tensor([1.0, NAN, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0])), "NaN or infinite levels"),
    "2-D SIGMAS": (lambda n: hostile_sigmas(n, torch.ones(3, 3)), "must be a 1-D schedule"),
    "unsupported model family": (unsupported_model, "takes one noise level per video"),
    "4-D latent to a video VAE": (lambda n: decode(n, torch.randn(2, 16, 8, 8)), "The latent is an image latent"),
    "latent of 4 channels to a 16-channel VAE": (lambda n: decode(n, torch.randn(1, 4, 3, 2, 2)), "this VAE decodes 16-channel latents"),
    "NaN latent to decode": (lambda n: decode(n, with_nan((1, 16, 3, 2, 2))), "NaN or infinite values in the latent to decode"),
    "fps NaN": (lambda n: decode(n, torch.randn(1, 16, 3, 2, 2), fps=NAN), "fps is nan"),
    "empty filename_prefix": (lambda n: decode(n, torch.randn(1, 16, 3, 2, 2), filename_prefix=" "), "filename_prefix is empty"),
    "NUL in filename_prefix": (lambda n: decode(n, torch.randn(1, 16, 3, 2, 2), filename_prefix="a\x00b"), "control character"),
    "filename_prefix outside the output folder": (
        lambda n: decode(n, torch.randn(1, 16, 3, 2, 2), filename_prefix="../../escape"),
        "points outside the output folder",
    ),
    "absolute filename_prefix": (lambda n: decode(n, torch.randn(1, 16, 3, 2, 2), filename_prefix="/tmp/escape"), "points outside the output folder"),
    "filename_prefix without a name": (lambda n: decode(n, torch.randn(1, 16, 3, 2, 2), filename_prefix="longvideo/.."), "has no file name"),
    "filename_prefix too long for a file name": (
        lambda n: decode(n, torch.randn(1, 16, 3, 2, 2), filename_prefix="longvideo/" + "x" * 250),
        "file systems allow 255",
    ),
    "filename_prefix with a lone surrogate": (lambda n: decode(n, torch.randn(1, 16, 3, 2, 2), filename_prefix="a\ud800b"), "which no file name can hold"),
    "integer images to stitch": (lambda n: stitch(torch.randint(0, 255, (8, 4, 4, 3))), "an IMAGE holds floating-point colours"),
    "integer latent to continue": (
        lambda n: with_latent(fifo(n, **CONTINUE), "11", "latent", torch.ones(1, 16, 6, 8, 8, dtype=torch.int64)),
        "a latent holds floating-point numbers",
    ),
    "guide image too narrow for the video's shape": (lambda n: kstep(n, guide=torch.rand(1, 64, 1, 3)), "less than 2 pixels"),
    "no tile overlap for a video VAE": (lambda n: decode(n, torch.randn(1, 16, 3, 2, 2), tile_overlap=0), "tiles must share at least one latent frame"),
    "NaN images to stitch": (lambda n: stitch(with_nan((8, 4, 4, 3))), "NaN or infinite values in the chunks images"),
    "strength NaN": (lambda n: stitch(torch.rand(8, 4, 4, 3), strength=NAN), "strength is nan"),
    "grey images to colour-anchor": (lambda n: stitch(torch.rand(8, 4, 4, 1), colour_anchor="mean/std (Lab)"), "colour channel"),
    "3-D images to stitch": (lambda n: stitch(torch.rand(8, 4, 4)), "must be an IMAGE [frames, height, width, channels]"),
    "NaN latent to stitch": (lambda n: stitch({"samples": with_nan((1, 16, 8, 2, 2))}), "NaN or infinite values in the chunks latent"),
    "colour anchoring a latent": (
        lambda n: stitch({"samples": torch.randn(1, 16, 8, 2, 2)}, colour_anchor="mean/std (Lab)"),
        "Colour anchoring works on decoded images",
    ),
    "k-step cfg NaN": (lambda n: kstep(n, cfg=NAN), "cfg is nan"),
    "NaN guide image": (lambda n: kstep(n, guide=with_nan((1, 64, 64, 3))), "NaN or infinite values in the guide_image images"),
    "grey guide image": (lambda n: kstep(n, guide=torch.rand(1, 64, 64, 1)), "colour channel"),
    "guide image without frames": (lambda n: kstep(n, guide=torch.rand(0, 64, 64, 3)), "with a size in every dimension"),
}


def test_a_half_precision_guide_image_is_used_as_float(runner, tiny_model_names):
    assert runner.run(kstep(tiny_model_names, guide=torch.rand(1, 64, 64, 3).half())).succeeded


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_is_refused_with_the_packs_own_message(runner, tiny_model_names, case):
    build, words = CASES[case]
    outcome = runner.run(build(tiny_model_names))
    print(f"{case}: {outcome.describe()}")
    assert outcome.refused_by_pack(), outcome.describe()
    assert words in outcome.execution_error["exception_message"]


def test_the_unsupported_family_error_names_its_type_without_a_path(runner, tiny_model_names):
    error = runner.run(unsupported_model(tiny_model_names)).execution_error
    assert error["exception_type"] == "comfyui_longvideo.UnsupportedModelError"

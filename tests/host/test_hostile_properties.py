"""Property tier: generated bad values and shapes at every node's inputs, through the real executor.

Each example starts from a small valid prompt around one node of the pack and changes one to three
of its inputs to something hostile: widget values out of range, NaN, infinite, of the wrong type or
not among the options; file name prefixes that climb out of the output folder or hold control
characters; LATENT, IMAGE and SIGMAS tensors of any rank, size, dtype and content, LATENTs without
samples or with odd extra keys; connections left out. Whatever comes, the outcome must be one of:

- ComfyUI's validation rejects the prompt;
- the pack refuses with its own message (hostile_inputs.Outcome.refused_by_pack: a ValueError
  with text, raised by a `raise` statement of the pack);
- the node succeeds and every tensor it outputs is finite (no silently wrong result).

and no file appears outside the output folder. A slice runs against a real server, which must
keep serving. Examples are derandomized and bounded so the tier takes a few minutes on 2 CPUs.
"""

from __future__ import annotations

import copy
import math
import urllib.error
from pathlib import Path

import pytest
import torch
from hostile_inputs import Runner, http_get, tensor_source
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from input_media import write_guide_image
from pack_access import pack_module
from tiny_workflows import tiny_workflow

SETTINGS = dict(
    deadline=120_000,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
)
NAN, INF = math.nan, math.inf
MAX_ELEMENTS = 60_000

# ------------------------------------------------------------------------------------------ values

ODD_VALUES = [NAN, INF, -INF, "", "nan", "1e999", "12abc", None, True, {"__value__": NAN}, {"nested": [1]}, -0.0, 10**30, 1e-320]
ODD_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "a\nb",
    "\x7f",
    "../escape",
    "../../../../tmp/escape",
    "/tmp/escape",
    ".",
    "..",
    "a/..",
    "a/../..",
    "%year%/%nope%",
    "x" * 300,
    "x" * 244,
    "\ud800x",
    "\u00fc/\u4e2d\u6587/x",
    "a\\..\\b",
    "~/x",
    "$HOME/x",
    "longvideo/",
    "//x",
    "./x",
]


def widget_values(widget) -> st.SearchStrategy:
    """Values for one widget: mostly hostile (out of range, NaN, of another type, not an option), sometimes
    another valid value near the bottom of its range, so that the hostile ones meet other settings too."""
    from comfy_api.latest import io

    odd = st.sampled_from(ODD_VALUES)
    if isinstance(widget, (io.Int.Input, io.Float.Input)):
        is_int = isinstance(widget, io.Int.Input)
        low = widget.min if widget.min is not None else 0
        high = min(widget.max if widget.max is not None else low + 3, low + 3)
        numbers = [st.integers(low, high) if is_int else st.floats(low, high)]
        if widget.min is not None:
            numbers.append(st.integers(max_value=int(math.floor(widget.min)) - 1) if is_int else st.floats(max_value=widget.min, exclude_max=True))
        if widget.max is not None:
            numbers.append(st.integers(min_value=int(math.ceil(widget.max)) + 1) if is_int else st.floats(min_value=widget.max, exclude_min=True))
        return st.one_of(odd, *numbers)
    if isinstance(widget, io.Combo.Input):
        return st.one_of(odd, st.sampled_from(widget.options), st.text(max_size=20).filter(lambda text: text not in widget.options))
    if isinstance(widget, io.String.Input):
        return st.one_of(st.sampled_from(ODD_TEXT), st.text(max_size=40))
    return st.one_of(odd, st.booleans())


@st.composite
def tensors(draw, min_rank=0, max_rank=6) -> torch.Tensor:
    """Any rank and a small size, a common dtype, and normal, zero, huge, 0..1 or partly NaN/infinite values."""
    shape = draw(st.lists(st.sampled_from([0, 1, 2, 3, 4, 5, 8, 16, 48]), min_size=min_rank, max_size=max_rank).filter(lambda s: math.prod(s) <= MAX_ELEMENTS))
    tensor = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 1000))))
    content = draw(st.sampled_from(["normal", "zeros", "nan", "inf", "-inf", "huge", "unit"]))
    if content == "zeros":
        tensor.zero_()
    elif content == "huge":
        tensor *= 1e30
    elif content == "unit":
        tensor = tensor.sigmoid()
    elif tensor.numel():
        tensor.view(-1)[draw(st.integers(0, tensor.numel() - 1))] = {"nan": NAN, "inf": INF, "-inf": -INF}.get(content, 0.0)
    return tensor.to(draw(st.sampled_from([torch.float32, torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.bool])))


@st.composite
def video_latents(draw, channels=16):
    """Often near-valid video latents (5-D, the model's channels, few frames), sometimes anything."""
    if draw(st.booleans()):
        return draw(tensors())
    shape = [
        draw(st.sampled_from([0, 1, 2])),
        draw(st.sampled_from([channels, channels, 4, 48, 1])),
        draw(st.sampled_from([0, 1, 2, 3, 6])),
        draw(st.sampled_from([0, 1, 3, 4, 8])),
        draw(st.sampled_from([0, 1, 4, 5, 8])),
    ]
    tensor = torch.randn(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 1000))))
    if tensor.numel() and draw(st.booleans()):
        tensor.view(-1)[draw(st.integers(0, tensor.numel() - 1))] = draw(st.sampled_from([NAN, INF, -INF]))
    return tensor


@st.composite
def latents(draw, channels=16):
    """A LATENT dict: samples of any kind, sometimes with extra keys other nodes add, or none at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([{}, {"samples": None}, {"samples": "text"}, {"samples": [1, 2]}]))
    latent = {"samples": draw(video_latents(channels))}
    extras = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "noise_mask": tensors(max_rank=5),
                "batch_index": st.lists(st.integers(-3, 3), max_size=3),
                "downscale_ratio_spacial": st.sampled_from([0, -1, 8, 16, NAN, "x"]),
                "downscale_ratio_temporal": st.sampled_from([0, -4, 4, NAN, None]),
            },
        )
    )
    return latent | extras


@st.composite
def images(draw):
    """Often IMAGE-like [frames, height, width, channels] in 0..1, some holding a NaN or infinity; sometimes anything."""
    if draw(st.booleans()):
        return draw(tensors())
    shape = [
        draw(st.sampled_from([0, 1, 2, 5, 9])),
        draw(st.sampled_from([1, 2, 8, 16])),
        draw(st.sampled_from([1, 3, 8, 16])),
        draw(st.sampled_from([1, 3, 3, 4])),
    ]
    tensor = torch.rand(shape, generator=torch.Generator().manual_seed(draw(st.integers(0, 1000))))
    if tensor.numel() and draw(st.booleans()):
        tensor.view(-1)[draw(st.integers(0, tensor.numel() - 1))] = draw(st.sampled_from([NAN, INF, -INF]))
    return tensor


sigma_lists = st.one_of(tensors(max_rank=2), st.lists(st.one_of(st.floats(-2, 20), st.sampled_from([NAN, INF, 0.0])), max_size=8).map(torch.tensor))

# ------------------------------------------------------------------------------------------ prompts


def ending_in(prompt: dict, node_id: str) -> dict:
    """Only the node and what feeds it, ending in a preview of its first output (no decode or save)."""
    kept, todo = {}, [node_id]
    while todo:
        current = todo.pop()
        if current not in kept:
            kept[current] = prompt[current]
            todo += [value[0] for value in prompt[current]["inputs"].values() if isinstance(value, list) and len(value) == 2]
    return kept | {"99": {"class_type": "PreviewAny", "inputs": {"source": [node_id, 0]}}}


def experts_prompt(names):
    """The A14B Diagonal Queue workflow, Wan 2.2 Experts at node 10 and the sampler at node 16."""
    prompt = tiny_workflow("fifo_wan22_a14b_t2v", names, length=3, window=2, partitions=2)
    return ending_in(prompt, "16")


def sampler_prompt(names, workflow, **sampler):
    prompt = tiny_workflow(workflow, names, length=3, window=2, partitions=1, chunk_size=1, window_chunks=2)
    prompt["11"]["inputs"].update(sampler)
    return ending_in(prompt, "11")


def stitcher_prompt(_names):
    inputs = {"chunks": ["1", 0], "chunk_length": 4, "overlap": 1, "transition": "linear", "colour_anchor": "mean/std (Lab)", "strength": 0.5}
    return {
        "1": tensor_source("LongVideoHostileImage", torch.rand(8, 4, 4, 3)),
        "11": {"class_type": "LongVideoChunkStitcher", "inputs": inputs},
        "99": {"class_type": "PreviewAny", "inputs": {"source": ["11", 0]}},
    }


def decode_prompt(names):
    inputs = {
        "samples": ["2", 0],
        "vae": ["1", 0],
        "fps": 16.0,
        "filename_prefix": "longvideo/hostile",
        "format": "mp4",
        "crf": 30,
        "tile_frames": 4,
        "tile_overlap": 1,
    }
    return {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": names["wan21_vae"]}},
        "2": tensor_source("LongVideoHostileLatent", torch.randn(1, 16, 3, 2, 2)),
        "11": {"class_type": "LongVideoDecodeToVideoFile", "inputs": inputs},
    }


def kstep_prompt(names):
    prompt = tiny_workflow("kstep_wan22_5b", names)
    prompt["3"] = tensor_source("LongVideoHostileImage", torch.rand(1, 32, 32, 3))
    prompt["11"]["inputs"].update(width=32, height=32, chunk_length=5, chunks=1, candidates=2, preview_steps=1, steps=2, guide_frames=1)
    return ending_in(prompt, "11")


def open_clip_prompt(names):
    return {
        "11": {"class_type": "LongVideoOpenCLIPLoader", "inputs": {"checkpoint": names["open_clip"], "architecture": "ViT-B-32"}},
        "99": {"class_type": "PreviewAny", "inputs": {"source": ["11", 0]}},
    }


def set_input(prompt, node_id, name, value):
    prompt[node_id]["inputs"][name] = value


def feed(prompt, node_id, name, source_type, value):
    source = f"s{len(prompt)}"
    prompt[source] = tensor_source(source_type, value)
    prompt[node_id]["inputs"][name] = [source, 0]


def widget_changes(node_type: str, node_id: str, skip=()):
    """(node id, input, hostile value) for any widget of a node of the pack."""
    node_class = pack_module("nodes").NODE_CLASS_MAPPINGS[node_type]
    widgets = {item.id: item for item in node_class.define_schema().inputs if item.id not in skip and _is_widget(item)}
    return st.sampled_from(sorted(widgets)).flatmap(lambda name: widget_values(widgets[name]).map(lambda value: ("set", node_id, name, value)))


def _is_widget(item) -> bool:
    from comfy_api.latest import io

    return isinstance(item, (io.Int.Input, io.Float.Input, io.Combo.Input, io.String.Input, io.Boolean.Input))


def apply(prompt: dict, changes) -> dict:
    prompt = copy.deepcopy(prompt)
    for change in changes:
        kind, node_id, name, value = change
        if node_id not in prompt:
            continue
        if kind == "set":
            set_input(prompt, node_id, name, value)
        elif kind == "drop":
            prompt[node_id]["inputs"].pop(name, None)
        else:
            feed(prompt, node_id, name, kind, value)
    return prompt


def sampler_changes(node_type: str, with_context: bool):
    options = [
        widget_changes(node_type, "11"),
        latents().map(lambda value: ("LongVideoHostileLatent", "11", "latent", value)),
        sigma_lists.map(lambda value: ("LongVideoHostileSigmas", "11", "sigmas", value)),
        st.sampled_from(["model", "positive", "negative"]).map(lambda name: ("drop", "11", name, None)),
    ]
    if with_context:
        options += [
            latents().map(lambda value: ("LongVideoHostileLatent", "11", "context", value)),
            widget_changes("LongVideoPromptFrameRange", "16", skip=("conditioning",)),
            widget_changes("LongVideoPromptFrameRange", "17", skip=("conditioning",)),
        ]
    else:
        options += [widget_changes("LongVideoLatentPartition", "9"), widget_changes("LongVideoLookahead", "10")]
    return st.lists(st.one_of(*options), min_size=1, max_size=3)


NODES = {
    "LongVideoDiagonalQueueSampler": (
        lambda names: sampler_prompt(names, "fifo_wan21_t2v_1.3B"),
        lambda: sampler_changes("LongVideoDiagonalQueueSampler", False),
        100,
    ),
    "LongVideoProgressiveARSampler": (
        lambda names: sampler_prompt(names, "pavdm_wan21_t2v_1.3B_prompt_schedule"),
        lambda: sampler_changes("LongVideoProgressiveARSampler", True),
        100,
    ),
    "LongVideoChunkStitcher": (
        stitcher_prompt,
        lambda: st.lists(
            st.one_of(
                widget_changes("LongVideoChunkStitcher", "11"),
                images().map(lambda value: ("LongVideoHostileImage", "11", "chunks", value)),
                latents().map(lambda value: ("LongVideoHostileLatent", "11", "chunks", value)),
            ),
            min_size=1,
            max_size=3,
        ),
        150,
    ),
    "LongVideoDecodeToVideoFile": (
        decode_prompt,
        lambda: st.lists(
            st.one_of(widget_changes("LongVideoDecodeToVideoFile", "11"), latents().map(lambda value: ("LongVideoHostileLatent", "11", "samples", value))),
            min_size=1,
            max_size=3,
        ),
        150,
    ),
    "LongVideoKStepNoiseSearch": (
        kstep_prompt,
        lambda: st.lists(
            st.one_of(
                widget_changes("LongVideoKStepNoiseSearch", "11"),
                images().map(lambda value: ("LongVideoHostileImage", "11", "guide_image", value)),
                st.sampled_from(["clip_vision", "open_clip"]).map(lambda name: ("drop", "11", name, None)),
            ),
            min_size=1,
            max_size=2,
        ),
        80,
    ),
    "LongVideoOpenCLIPLoader": (open_clip_prompt, lambda: st.lists(widget_changes("LongVideoOpenCLIPLoader", "11"), min_size=1, max_size=2), 60),
    "LongVideoWanExperts": (
        experts_prompt,
        lambda: st.lists(
            st.one_of(
                widget_changes("LongVideoWanExperts", "10"),
                st.sampled_from(["high_noise_model", "low_noise_model"]).map(lambda name: ("drop", "10", name, None)),
                latents().map(lambda value: ("LongVideoHostileLatent", "16", "latent", value)),
            ),
            min_size=1,
            max_size=3,
        ),
        40,
    ),
}

# ------------------------------------------------------------------------------------------ checks


def files_outside(base_dir: Path) -> set[Path]:
    output = base_dir / "output"
    return {path for path in base_dir.rglob("*") if path.is_file() and not path.is_relative_to(output)}


def non_finite_outputs(runner: Runner, node_id: str) -> list[str]:
    import asyncio

    entry = runner.executor.caches.outputs.get(node_id)
    entry = asyncio.run(entry) if asyncio.iscoroutine(entry) else entry
    found = []
    for index, output in enumerate(entry.outputs if entry is not None else []):
        for value in output:
            tensor = value.get("samples") if isinstance(value, dict) else value
            if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                found.append(f"output {index} of shape {tuple(tensor.shape)}")
    return found


@pytest.fixture(scope="module")
def runner(comfy_inprocess):
    write_guide_image(comfy_inprocess.base_dir / "input")
    return Runner(comfy_inprocess)


@pytest.mark.parametrize("node_type", NODES)
def test_hostile_inputs_are_refused_cleanly_through_the_executor(runner, comfy_inprocess, tiny_model_names, node_type):
    build, changes, examples = NODES[node_type]
    base = build(tiny_model_names)
    assert runner.run(base).succeeded, f"the unchanged prompt must run: {runner.run(base).describe()}"
    before = files_outside(comfy_inprocess.base_dir)
    tally = {}

    @settings(max_examples=examples, **SETTINGS)
    @given(changes())
    def property_holds(hostile):
        outcome = runner.run(apply(base, hostile))
        label = "rejected" if outcome.rejected_at_validation else "refused" if outcome.refused_by_pack() else "succeeded" if outcome.succeeded else "raw"
        tally[label] = tally.get(label, 0) + 1
        assert label != "raw", f"{hostile!r:.600}\n-> {outcome.describe()}"
        if outcome.succeeded:
            assert non_finite_outputs(runner, "11") == [], f"{hostile!r:.600} gave non-finite outputs"
        assert files_outside(comfy_inprocess.base_dir) == before

    property_holds()
    print(f"{node_type}: {tally}")


# ------------------------------------------------------------------------------------------ server slice

SERVER_SETTINGS = dict(SETTINGS, max_examples=20)


def test_hostile_prompts_leave_the_server_serving(comfy_server, tiny_model_names):
    base = sampler_prompt(tiny_model_names, "fifo_wan21_t2v_1.3B")
    base["12"] = {"class_type": "VAELoader", "inputs": {"vae_name": tiny_model_names["wan21_vae"]}}
    base["13"] = {
        "class_type": "LongVideoDecodeToVideoFile",
        "inputs": {
            "samples": ["11", 0],
            "vae": ["12", 0],
            "fps": 16.0,
            "filename_prefix": "longvideo/hostile",
            "format": "mp4",
            "crf": 30,
            "tile_frames": 4,
            "tile_overlap": 1,
        },
    }
    del base["99"]
    server_changes = st.lists(
        st.one_of(
            widget_changes("LongVideoDiagonalQueueSampler", "11"),
            widget_changes("LongVideoDecodeToVideoFile", "13"),
            widget_changes("LongVideoLatentPartition", "9"),
        ),
        min_size=1,
        max_size=3,
    )
    tally = {}

    @settings(**SERVER_SETTINGS)
    @given(server_changes)
    def serving(hostile):
        try:
            entry = comfy_server.wait(comfy_server.queue(apply(base, hostile)), timeout=120)
            status = entry["status"]["status_str"]
        except AssertionError as rejected:
            assert "rejected the prompt" in str(rejected), str(rejected)[:600]
            status = "rejected"
        if status == "error":
            error = dict(entry["status"]["messages"]).get("execution_error", {})
            frames = error.get("traceback") or ["?"]
            assert error.get("exception_type") == "ValueError" and "ComfyUI-LongVideo" in frames[-1], f"{hostile!r:.400}: {str(error)[:600]}"
        tally[status] = tally.get(status, 0) + 1
        assert http_get(comfy_server.url + "/api/longvideo/layout?method=diagonal_queue&window=4")[0] == 200
        assert http_get(comfy_server.url + "/queue")[0] == 200

    try:
        serving()
    except urllib.error.URLError as down:
        pytest.fail(f"the server stopped answering: {down}")
    print(f"server: {tally}")

"""ComfyUI's own input validation stays on for every widget of every node of the pack.

ComfyUI 0.33's execution.validate_inputs skips its min, max and option checks for every input a
node's validate_inputs names, and for all inputs when it takes **kwargs; a message it returns is
repeated once per such input. So the pack has no validate_inputs: out-of-range values get
ComfyUI's own error, once, and the checks that relate two inputs run when the node starts, once.
"""

import math

import pytest
from hostile_inputs import Runner, tensor_source
from pack_access import pack_module

# the pack's node ids; the first test makes sure none is missing
PACK_NODES = (
    "LongVideoCheckpoints",
    "LongVideoChunkStitcher",
    "LongVideoDecodeToVideoFile",
    "LongVideoDiagonalQueueSampler",
    "LongVideoKStepNoiseSearch",
    "LongVideoLatentPartition",
    "LongVideoLookahead",
    "LongVideoOpenCLIPLoader",
    "LongVideoProgressiveARSampler",
    "LongVideoPromptFrameRange",
    "LongVideoWanExperts",
    "LongVideoFewStepQueue",
    "LongVideoReferenceAnchor",
)
NOT_AN_OPTION = "not one of the options"


@pytest.fixture(scope="module")
def runner(comfy_inprocess):
    return Runner(comfy_inprocess)


def widgets(node_id: str) -> dict:
    """Every widget of the node (an input with a value of its own) by name, from its schema."""
    from comfy_api.latest import io

    kinds = (io.Int.Input, io.Float.Input, io.Combo.Input, io.String.Input, io.Boolean.Input)
    node_class = pack_module("nodes").NODE_CLASS_MAPPINGS[node_id]
    return {item.id: item for item in node_class.define_schema().inputs if isinstance(item, kinds)}


def bad_values(widget) -> list:
    """Values the widget does not allow, with the error type ComfyUI gives each."""
    from comfy_api.latest import io

    if isinstance(widget, io.Combo.Input):
        return [(NOT_AN_OPTION, "value_not_in_list")]
    if not isinstance(widget, (io.Int.Input, io.Float.Input)):
        return []
    values = [("not a number", "invalid_input_type")]
    if widget.min is not None:
        values.append((widget.min - 1, "value_smaller_than_min"))
    if widget.max is not None:
        values.append((widget.max + 1, "value_bigger_than_max"))
        if isinstance(widget, io.Float.Input):
            values.append((math.inf, "value_bigger_than_max"))
    return values


def lone_node(node_id: str, **changes) -> dict:
    """The node with its widgets at their defaults and ``changes``, ending in an output so that it is validated."""
    values = {}
    for name, widget in widgets(node_id).items():
        options = getattr(widget, "options", None)
        values[name] = widget.default if widget.default is not None or not options else options[0]
    prompt = {"1": {"class_type": node_id, "inputs": values | changes}}
    schema = pack_module("nodes").NODE_CLASS_MAPPINGS[node_id].define_schema()
    if not schema.is_output_node:
        prompt["2"] = {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}
    return prompt


def test_the_list_covers_every_node_of_the_pack(comfy_inprocess):
    assert sorted(pack_module("nodes").NODE_CLASS_MAPPINGS) == sorted(PACK_NODES)


@pytest.mark.parametrize("node_id", PACK_NODES)
def test_every_widget_value_out_of_range_gets_comfyuis_own_error_once(runner, node_id):
    checked = 0
    for name, widget in widgets(node_id).items():
        for value, error_type in bad_values(widget):
            outcome = runner.run(lone_node(node_id, **{name: value}))
            about_it = [error for node, error in outcome.validation_errors if node == "1" and error.get("extra_info", {}).get("input_name") == name]
            assert [error["type"] for error in about_it] == [error_type], f"{name}={value!r}: {outcome.describe()}"
            assert not any(error["type"] == "custom_validation_failed" for _, error in outcome.validation_errors), outcome.describe()
            checked += 1
    print(f"{node_id}: {checked} out-of-range values, each refused once by ComfyUI's own check")


def stitcher(images, **changes):
    inputs = {"chunks": ["1", 0], "chunk_length": 4, "overlap": 1, "transition": "linear", "colour_anchor": "off", "strength": 1.0}
    return {
        "1": tensor_source("LongVideoHostileImage", images),
        "2": {"class_type": "LongVideoChunkStitcher", "inputs": inputs | changes},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }


def decode_to_file(names, **changes):
    import torch

    inputs = {
        "samples": ["2", 0],
        "vae": ["1", 0],
        "fps": 16.0,
        "filename_prefix": "longvideo/checked",
        "format": "mp4",
        "crf": 19,
        "tile_frames": 4,
        "tile_overlap": 1,
    }
    return {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": names["wan21_vae"]}},
        "2": tensor_source("LongVideoHostileLatent", torch.zeros(1, 16, 3, 2, 2)),
        "3": {"class_type": "LongVideoDecodeToVideoFile", "inputs": inputs | changes},
    }


def frame_range(**changes):
    conditioning = {"class_type": "LongVideoTestConditioning", "inputs": {"width": 16, "tokens": 2, "seed": 0, "scale": 1.0}}
    inputs = {"conditioning": ["1", 0], "start_frame": 0, "end_frame": -1}
    return {
        "1": conditioning,
        "2": {"class_type": "LongVideoPromptFrameRange", "inputs": inputs | changes},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }


@pytest.mark.parametrize(
    "make, changes, message",
    [
        ("stitcher", {"chunk_length": 4, "overlap": 4}, "overlap (4) must be smaller than chunk_length (4)"),
        ("decode", {"crf": 60}, "crf 60 is out of H.264's range 0-51"),
        ("decode", {"tile_frames": 4, "tile_overlap": 3}, "tile_overlap (3) can be at most half of tile_frames (4)"),
        ("frame_range", {"start_frame": 5, "end_frame": 5}, "end_frame (5) must be after start_frame (5)"),
    ],
)
def test_a_check_that_relates_two_inputs_says_so_once(runner, tiny_model_names, make, changes, message):
    import torch

    prompt = {
        "stitcher": lambda: stitcher(torch.rand(8, 4, 4, 3), **changes),
        "decode": lambda: decode_to_file(tiny_model_names, **changes),
        "frame_range": lambda: frame_range(**changes),
    }[make]()
    outcome = runner.run(prompt)
    assert outcome.refused_by_pack(), outcome.describe()
    assert outcome.text().count(message) == 1, outcome.text()

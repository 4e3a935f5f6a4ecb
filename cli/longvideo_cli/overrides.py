"""The command's overrides (--prompt, --negative, --frames, --seed, --model, --set) applied to a workflow."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass

from .exit_codes import UsageError
from .workflow_file import is_link, node_label

LONG_VIDEO_SAMPLERS_WITH_LENGTH = ("LongVideoDiagonalQueueSampler", "LongVideoProgressiveARSampler")
SEED_INPUTS = ("seed", "noise_seed")
MODEL_FILE_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx")


@dataclass(frozen=True)
class Change:
    node_id: str
    class_type: str
    input_name: str
    old: object
    new: object
    unit: str = ""

    def describe(self) -> str:
        old = "(not set)" if self.old is _UNSET else _short(self.old)
        unit = f" {self.unit}" if self.unit else ""
        return f"node {self.node_id} ({self.class_type}) {self.input_name}: {old} -> {_short(self.new)}{unit}"


_UNSET = object()


def _short(value, limit: int = 70) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 4] + '..."'


def _change(workflow: dict, node_id: str, input_name: str, new, unit: str = "") -> Change:
    node = workflow[node_id]
    old = node["inputs"].get(input_name, _UNSET)
    node["inputs"][input_name] = new
    return Change(node_id, node["class_type"], input_name, old, new, unit)


@dataclass
class Overrides:
    prompt: str | None = None
    negative: str | None = None
    frames: int | None = None
    seed: int | None = None
    models: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()


def apply_overrides(workflow: dict, overrides: Overrides) -> tuple[dict, list[Change]]:
    """A changed copy of the workflow and the changes; --set comes last, so it wins."""
    workflow = copy.deepcopy(workflow)
    changes = []
    for spec in overrides.models:
        changes += replace_model_file(workflow, *parse_model_spec(spec))
    if overrides.seed is not None:
        changes += set_seed(workflow, overrides.seed)
    if overrides.frames is not None:
        changes += set_frames(workflow, overrides.frames)
    if overrides.prompt is not None:
        changes.append(set_prompt_text(workflow, "positive", overrides.prompt))
    if overrides.negative is not None:
        changes.append(set_prompt_text(workflow, "negative", overrides.negative))
    for spec in overrides.sets:
        changes.append(set_input(workflow, *parse_set_spec(spec)))
    return workflow, changes


def set_seed(workflow: dict, seed: int) -> list[Change]:
    changes = [
        _change(workflow, node_id, name, seed)
        for node_id, node in workflow.items()
        for name in SEED_INPUTS
        if name in node["inputs"] and not is_link(node["inputs"][name])
    ]
    if not changes:
        raise UsageError("--seed: the workflow has no seed or noise_seed input.")
    return changes


def set_frames(workflow: dict, frames: int) -> list[Change]:
    if frames < 1:
        raise UsageError("--frames must be at least 1.")
    samplers = [node_id for node_id, node in workflow.items() if node["class_type"] in LONG_VIDEO_SAMPLERS_WITH_LENGTH]
    if samplers:
        return [_change(workflow, node_id, "length", frames, "latent frames") for node_id in samplers]
    noise_search = [node_id for node_id, node in workflow.items() if "chunks" in node["inputs"]]
    if noise_search:
        node_id = noise_search[0]
        raise UsageError(
            f"--frames: {node_label(workflow, node_id)} has no length; it makes `chunks` chunks of `chunk_length` "
            f"frames each. Set the number of chunks with --set {node_id}.chunks=N."
        )
    raise UsageError(
        "--frames sets the `length` of a Diagonal Queue or Progressive AR sampler, and this workflow has neither; "
        "use --set ID.INPUT=N for the node that sets its length."
    )


def parse_model_spec(spec: str) -> tuple[str, str]:
    old, separator, new = spec.partition("=")
    if not separator or not old or not new:
        raise UsageError(f"--model expects OLD=NEW (file names), got {spec!r}.")
    return old, new


def replace_model_file(workflow: dict, old: str, new: str) -> list[Change]:
    changes = [_change(workflow, node_id, name, new) for node_id, node in workflow.items() for name, value in list(node["inputs"].items()) if value == old]
    if not changes:
        used = sorted(model_files(workflow))
        listed = ", ".join(used) if used else "none"
        raise UsageError(f"--model: no input of the workflow is {old!r}. Model files it uses: {listed}.")
    return changes


def model_files(workflow: dict) -> set[str]:
    return {value for node in workflow.values() for value in node["inputs"].values() if isinstance(value, str) and value.lower().endswith(MODEL_FILE_SUFFIXES)}


def parse_set_spec(spec: str) -> tuple[str, str, object]:
    """--set ID.INPUT=VALUE; VALUE is JSON when it parses (numbers, true, [\"5\", 0]), else a string."""
    target, separator, text = spec.partition("=")
    node_id, dot, input_name = target.partition(".")
    if not separator or not dot or not node_id or not input_name:
        raise UsageError(f"--set expects ID.INPUT=VALUE (e.g. 11.length=64), got {spec!r}.")
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return node_id, input_name, value


def set_input(workflow: dict, node_id: str, input_name: str, value) -> Change:
    if node_id not in workflow:
        ids = ", ".join(f"{key} ({node['class_type']})" for key, node in workflow.items())
        raise UsageError(f"--set: the workflow has no node {node_id!r}. Its nodes: {ids}.")
    return _change(workflow, node_id, input_name, value)


# --- following conditioning back to the text encoders ------------------------------------------


def set_prompt_text(workflow: dict, side: str, text: str) -> Change:
    """Set `text` on the one text encoder behind the samplers' `side` (positive or negative) input."""
    option = "--prompt" if side == "positive" else "--negative"
    encoders = text_encoders_on(workflow, side)
    other_side = text_encoders_on(workflow, "negative" if side == "positive" else "positive")
    if not encoders:
        raise UsageError(f'{option}: no text encoder found behind a sampler\'s {side} input; set the text with --set ID.text="...".')
    if len(encoders) > 1:
        listed = ", ".join(node_label(workflow, node_id) for node_id in sorted(encoders, key=_id_order))
        raise UsageError(
            f"{option}: the {side} conditioning comes from {len(encoders)} text encoders ({listed}), e.g. a prompt "
            'schedule; set each text with --set ID.text="...".'
        )
    [encoder] = encoders
    if encoder in other_side:
        raise UsageError(
            f"{option}: {node_label(workflow, encoder)} feeds both the positive and the negative input; "
            'set its text with --set ID.text="..." if that is what you mean.'
        )
    inputs = workflow[encoder]["inputs"]
    if "text" not in inputs:
        raise UsageError(f'{option}: {node_label(workflow, encoder)} has no `text` input; set its prompt inputs with --set {encoder}.INPUT="...".')
    if is_link(inputs["text"]):
        source = inputs["text"][0]
        raise UsageError(
            f'{option}: the text of {node_label(workflow, encoder)} comes from {node_label(workflow, source)}; set it there with --set {source}.INPUT="...".'
        )
    return _change(workflow, encoder, "text", text)


def _id_order(node_id: str):
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)


def conditioning_consumers(workflow: dict) -> list[str]:
    """Nodes that take a `positive` link and whose outputs feed no other node's conditioning.

    That is the sampler (or guider) end of the conditioning chain: LTXVConditioning and its kind
    also take `positive`, but pass it on to the sampler.
    """
    fed_as_conditioning = {value[0] for node in workflow.values() for name, value in node["inputs"].items() if _is_conditioning_input(name) and is_link(value)}
    return [node_id for node_id, node in workflow.items() if is_link(node["inputs"].get("positive")) and node_id not in fed_as_conditioning]


def text_encoders_on(workflow: dict, side: str) -> set[str]:
    encoders: set[str] = set()
    for node_id in conditioning_consumers(workflow):
        link = workflow[node_id]["inputs"].get(side)
        if is_link(link):
            encoders |= _encoders_behind(workflow, link, set())
    return encoders


def _encoders_behind(workflow: dict, link: list, visited: set) -> set[str]:
    node_id, output_index = link
    if node_id not in workflow or (node_id, output_index) in visited:
        return set()
    visited.add((node_id, output_index))
    inputs = workflow[node_id]["inputs"]
    if "text" in inputs or is_link(inputs.get("clip")):
        return {node_id}
    if is_link(inputs.get("positive")) and is_link(inputs.get("negative")):
        # ComfyUI's convention for nodes that condition both prompts (LTXVConditioning,
        # WanImageToVideo, ControlNet apply, ...): outputs 0 and 1 are positive and negative.
        followed = {0: [inputs["positive"]], 1: [inputs["negative"]]}.get(output_index, [])
    else:
        followed = [value for name, value in inputs.items() if _is_conditioning_input(name) and is_link(value)]
    found: set[str] = set()
    for upstream in followed:
        found |= _encoders_behind(workflow, upstream, visited)
    return found


def _is_conditioning_input(name: str) -> bool:
    return name in ("positive", "negative") or name.startswith("conditioning")

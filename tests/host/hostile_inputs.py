"""Feeding arbitrary values to the pack's nodes through the real executor, and judging what comes back.

Tensor sources: test-only nodes (registered in the in-process ComfyUI only) that output a tensor
the test put in TENSORS under a key, so any shape, dtype or value reaches a node the way an
upstream node's output would.

run() validates and executes a prompt like the server does and returns an Outcome. A refusal is
"the pack's own" when execution stopped with a ValueError that a `raise` statement of this pack
raised (the innermost traceback frame is a file of the pack and its line a raise), with a message:
a raw error from torch, PyAV or ComfyUI, a ValueError Python raised inside a line of the pack, or
any other exception type, is not.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from comfy_host import PACK_ROOT

TENSORS: dict = {}
PACK_EXCEPTION_TYPES = ("ValueError", "comfyui_longvideo.UnsupportedModelError")
BUILTIN_VALIDATION_ERRORS = ("value_smaller_than_min", "value_bigger_than_max", "value_not_in_list", "invalid_input_type")


def _tensor_node(io_type: str, wrap):
    class TensorSource:
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"key": ("STRING", {"default": ""})}}

        RETURN_TYPES = (io_type,)
        FUNCTION = "give"
        CATEGORY = "_for_testing/longvideo"

        def give(self, key):
            return (wrap(TENSORS[key]),)

    return TensorSource


TENSOR_NODES = {
    "LongVideoHostileLatent": _tensor_node("LATENT", lambda value: value if isinstance(value, dict) else {"samples": value}),
    "LongVideoHostileImage": _tensor_node("IMAGE", lambda value: value),
    "LongVideoHostileSigmas": _tensor_node("SIGMAS", lambda value: value),
}


def register_tensor_nodes() -> None:
    import nodes

    nodes.NODE_CLASS_MAPPINGS.update(TENSOR_NODES)


def tensor_source(node_type: str, value) -> dict:
    """A prompt node that outputs ``value`` (a LATENT dict or tensor, an IMAGE or SIGMAS tensor)."""
    key = uuid.uuid4().hex
    TENSORS[key] = value
    return {"class_type": node_type, "inputs": {"key": key}}


def ending_in_a_preview(prompt: dict) -> dict:
    """Save Video's format widget is a dynamic combo on ComfyUI 0.33 that API prompts do not fill; preview instead."""
    prompt = copy.deepcopy(prompt)
    for node_id, node in list(prompt.items()):
        if node["class_type"] == "CreateVideo":
            images = node["inputs"]["images"]
            del prompt[node_id]
            prompt[node_id] = {"class_type": "PreviewImage", "inputs": {"images": images}}
        elif node["class_type"] == "SaveVideo":
            del prompt[node_id]
    return prompt


def http_get(url: str, timeout: float = 30.0) -> tuple[int, bytes, float]:
    """Status, body and seconds of one GET."""
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, body, time.perf_counter() - started


class _QuietServer:
    def __init__(self):
        self.client_id = None
        self.last_node_id = None
        self.last_prompt_id = None
        self.messages: list = []

    def send_sync(self, event, data, sid=None):
        self.messages.append((event, data))

    def queue_updated(self):
        pass


@dataclass
class Outcome:
    validation_errors: list = field(default_factory=list)  # (node id, error) for every node error
    execution_error: dict | None = None
    succeeded: bool = False

    @property
    def rejected_at_validation(self) -> bool:
        return bool(self.validation_errors)

    def refused_by_pack(self) -> bool:
        error = self.execution_error
        if error is None or error.get("exception_type") not in PACK_EXCEPTION_TYPES or not error.get("exception_message"):
            return False
        frames = error.get("traceback") or []
        return bool(frames) and _frame_path(frames[-1]).is_relative_to(PACK_ROOT) and _frame_code(frames[-1]).startswith("raise ")

    def describe(self) -> str:
        if self.validation_errors:
            return "rejected: " + "; ".join(f"{e.get('type')} {e.get('details')}" for _, e in self.validation_errors)[:600]
        if self.execution_error:
            error = self.execution_error
            where = (error.get("traceback") or ["?"])[-1].strip().splitlines()[0]
            return f"{error.get('node_type')} raised {error.get('exception_type')}: {error.get('exception_message')} [{where}]"[:800]
        return "succeeded" if self.succeeded else "did not finish"

    def text(self) -> str:
        """Everything the user would be shown, for counting how often a message appears."""
        return json.dumps([[e for _, e in self.validation_errors], self.execution_error and self.execution_error.get("exception_message")])


def _frame_path(frame: str) -> Path:
    # traceback.format_tb lines start '  File "<path>", line <n>, in <name>'
    return Path(frame.split('"')[1]).resolve()


def _frame_code(frame: str) -> str:
    """The first source line of a formatted frame: a `raise` when the pack raised, not when Python or a
    library raised inside a line of the pack (a ValueError from unpacking, for example)."""
    lines = frame.splitlines()
    return lines[1].strip() if len(lines) > 1 else ""


class Runner:
    """The server's two steps, validate_prompt then PromptExecutor.execute, on the in-process ComfyUI."""

    def __init__(self, host):
        import execution

        register_tensor_nodes()
        self.host = host
        self.server = _QuietServer()
        self.executor = execution.PromptExecutor(self.server, cache_type=execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0, "ram_inactive": 0})

    def run(self, prompt: dict) -> Outcome:
        import execution

        prompt = json.loads(json.dumps(prompt))  # as it would arrive over HTTP (NaN survives: Python's JSON reads it)
        prompt_id = str(uuid.uuid4())
        valid, error, outputs, node_errors = asyncio.run(execution.validate_prompt(prompt_id, prompt, None))
        if not valid:
            errors = [(node_id, reason) for node_id, info in node_errors.items() for reason in info.get("errors", [])]
            return Outcome(validation_errors=errors or [(None, error)])
        self.executor.execute(prompt, prompt_id, extra_data={}, execute_outputs=outputs)
        events = dict(self.executor.status_messages)
        return Outcome(execution_error=events.get("execution_error"), succeeded="execution_success" in events)

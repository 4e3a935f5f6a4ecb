"""GET /longvideo/layout: the layout the editor extension (web/) draws on the sampler nodes.

The browser sends the widget values; the answer comes from samplers/layout_summary.py, so the
drawing never re-implements the schedules in JavaScript.

Anyone who can reach the server can call the route, so every request does bounded work: numbers
longer than MAX_DIGITS are refused, values are clamped to the ranges the sampler widgets allow
(read from the node schemas), the summary's cost is arithmetic, and the summary is built and
encoded on a worker thread so that the event loop keeps serving other requests meanwhile.
"""
from __future__ import annotations

import asyncio
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Callable

from aiohttp import web

from ..samplers.diagonal_queue import QueueLayout
from ..samplers.layout_summary import queue_summary, window_summary
from ..samplers.progressive_ar import ChunkLayout
from .diagonal_queue import START_FROM_CLIP, DiagonalQueueSampler, FewStepQueue, LatentPartition
from .progressive_ar import ProgressiveARSampler

ROUTE = "/longvideo/layout"
# the largest widget value (100,000 frames) has 6 digits; anything much longer is not a widget value
MAX_DIGITS = 9
INTEGER = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}")
# ComfyUI's schedulers with a steps widget (BasicScheduler, KarrasScheduler, LTXVScheduler, ...) stop at 10,000
MAX_SCHEDULER_STEPS = 10_000
ECHOED_CHARACTERS = 40
# a Reference Anchor shows one clean latent frame in front of every window
MAX_REFERENCE_FRAMES = 1

# one worker: layouts are computed one after another, never many at once on the server's CPUs
_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="longvideo-layout")


def register_layout_route() -> bool:
    """Add the route to the running ComfyUI server; returns False where there is none."""
    # Only a server that main.py started has an instance. Importing server.py here would pull the
    # whole web stack into processes that run no server (tests, scripts), so look, don't import.
    server = sys.modules.get("server")
    prompt_server = getattr(getattr(server, "PromptServer", None), "instance", None)
    if prompt_server is None:
        return False
    prompt_server.routes.get(ROUTE)(layout_handler)
    return True


def _widget_range(node, name: str) -> tuple[int, int]:
    widget = next(item for item in node.define_schema().inputs if item.id == name)
    return widget.min, widget.max


# per method: query parameter -> the range of the widget it comes from
WIDGET_RANGES = {
    "diagonal_queue": {
        "length": _widget_range(DiagonalQueueSampler, "length"),
        "window": _widget_range(DiagonalQueueSampler, "window"),
        "partitions": _widget_range(LatentPartition, "partitions"),
        "frames_per_level": _widget_range(FewStepQueue, "frames_per_level"),
        "steps": (1, MAX_SCHEDULER_STEPS),
        "reference_frames": (0, MAX_REFERENCE_FRAMES),
    },
    "progressive_ar": {
        "length": _widget_range(ProgressiveARSampler, "length"),
        "chunk_size": _widget_range(ProgressiveARSampler, "chunk_size"),
        "window_chunks": _widget_range(ProgressiveARSampler, "window_chunks"),
        "steps": (1, MAX_SCHEDULER_STEPS),
        "reference_frames": (0, MAX_REFERENCE_FRAMES),
    },
}


class MalformedQuery(ValueError):
    pass


async def layout_handler(request: web.Request) -> web.Response:
    """The layout, or {"error": why} with status 200 for widget values the sampler would refuse:
    the editor sends whatever the user is typing, and that answer is drawn, not a failed request.
    A malformed query gets status 400."""
    try:
        summarise = _summary_of(request.query)
    except MalformedQuery as error:
        return web.json_response({"error": str(error)}, status=400)
    body = await asyncio.get_running_loop().run_in_executor(_worker, _answer, summarise)
    return web.Response(text=body, content_type="application/json")


def _summary_of(query) -> Callable[[], dict]:
    """Check the query and return the work of answering it, bounded by the widget ranges."""
    method = query.get("method")
    if method not in WIDGET_RANGES:
        raise MalformedQuery(f"Unknown method {_echo(method)}: use diagonal_queue or progressive_ar.")
    value = partial(_bounded_int, query, WIDGET_RANGES[method])
    steps, length = value("steps", None), value("length", None)
    # clean frames a Reference Anchor adds to every call
    reference = value("reference_frames", 0)
    if method == "diagonal_queue":
        # the cost of a run is known only when the sampler makes its own first clip
        first_clip = query.get("start", START_FROM_CLIP) == START_FROM_CLIP
        lookahead = query.get("lookahead") == "true"
        layout = (value("window"), value("partitions", 1), lookahead, value("frames_per_level", 1))
        return partial(_queue_summary, layout, steps, length if first_clip else None, reference)
    return partial(_window_summary, value("chunk_size"), value("window_chunks"), steps, length, reference)


def _queue_summary(layout, steps, length, reference) -> dict:
    return queue_summary(QueueLayout(*layout), steps, length, reference)


def _window_summary(chunk_size, window_chunks, steps, length, reference) -> dict:
    return window_summary(ChunkLayout(chunk_size, window_chunks), steps, length, reference)


def _answer(summarise: Callable[[], dict]) -> str:
    """The JSON answer; a layout the sampler refuses is answered with its message."""
    try:
        return json.dumps(summarise())
    except ValueError as refused:
        return json.dumps({"error": str(refused)})


def _bounded_int(query, ranges: dict, name: str, default=...):
    """An integer parameter clamped to its widget's range; a missing one takes ``default``, if given."""
    text = query.get(name, "")
    if text == "":
        if default is ...:
            raise MalformedQuery(f"Missing query parameter {name!r}.")
        return default
    if not INTEGER.fullmatch(text):
        raise MalformedQuery(f"Query parameters must be integers of at most {MAX_DIGITS} digits; {name} is {_echo(text)}.")
    low, high = ranges[name]
    return min(max(int(text), low), high)


def _echo(text) -> str:
    """A query value quoted in a message, cut short: the answer stays small whatever was sent."""
    text = repr(text)
    return text if len(text) <= ECHOED_CHARACTERS else text[:ECHOED_CHARACTERS] + "..."

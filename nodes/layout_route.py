"""GET /longvideo/layout: the layout the editor extension (web/) draws on the sampler nodes.

The browser sends the widget values; the answer comes from samplers/layout_summary.py, so the
drawing never re-implements the schedules in JavaScript.
"""
from __future__ import annotations

import sys

from aiohttp import web

from ..samplers.diagonal_queue import QueueLayout
from ..samplers.layout_summary import queue_summary, window_summary
from ..samplers.progressive_ar import ChunkLayout
from .diagonal_queue import START_FROM_CLIP

ROUTE = "/longvideo/layout"


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


async def layout_handler(request: web.Request) -> web.Response:
    """The layout, or {"error": why} with status 200 for widget values the sampler would refuse:
    the editor sends whatever the user is typing, and that answer is drawn, not a failed request.
    A malformed query gets status 400."""
    query = request.query
    method = query.get("method")
    try:
        steps, length = _optional_int(query, "steps"), _optional_int(query, "length")
        # clean frames a Reference Anchor adds to every call
        reference = _optional_int(query, "reference_frames") or 0
        if method == "diagonal_queue":
            sizes = int(query["window"]), int(query.get("partitions", 1)), query.get("lookahead") == "true", int(query.get("frames_per_level", 1))
        elif method == "progressive_ar":
            sizes = int(query["chunk_size"]), int(query["window_chunks"])
        else:
            return web.json_response({"error": f"Unknown method {method!r}: use diagonal_queue or progressive_ar."}, status=400)
    except KeyError as missing:
        return web.json_response({"error": f"Missing query parameter {missing}."}, status=400)
    except ValueError as error:
        return web.json_response({"error": f"Query parameters must be integers: {error}"}, status=400)
    try:
        if method == "diagonal_queue":
            # the cost of a run is known only when the sampler makes its own first clip
            first_clip = query.get("start", START_FROM_CLIP) == START_FROM_CLIP
            summary = queue_summary(QueueLayout(*sizes), steps, length if first_clip else None, reference)
        else:
            summary = window_summary(ChunkLayout(*sizes), steps, length, reference)
    except ValueError as refused:
        return web.json_response({"error": str(refused)})
    return web.json_response(summary)


def _optional_int(query, name):
    value = query.get(name)
    return None if value in (None, "") else int(value)

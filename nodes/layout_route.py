"""GET /longvideo/layout: the layout the editor extension (web/) draws on the sampler nodes.

The browser sends the widget values; the answer comes from samplers/layout_summary.py, so the
drawing never re-implements the schedules in JavaScript. With Wan 2.2 Experts connected it also
sends the experts' boundary and what the scheduler's SIGMAS depend on (the scheduler's name, steps
and denoise, the ModelSamplingSD3 shift of its model), and the SIGMAS are computed here by
ComfyUI's own BasicScheduler and ModelSamplingSD3, so the answer can say which expert serves
each slot.

Anyone who can reach the server can call the route, so every request does bounded work: numbers
longer than MAX_DIGITS (and fractions longer than MAX_FRACTION_DIGITS) are refused, values are
clamped to the ranges the widgets allow (read from the node schemas), a schedule is computed for
at most MAX_SCHEDULER_STEPS steps, the summary's cost is arithmetic, and the summary is built and
encoded on a worker thread so that the event loop keeps serving other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace
from typing import Callable, Optional

from aiohttp import web
from comfy.model_base import ModelType, model_sampling
from comfy.samplers import SCHEDULER_HANDLERS
from comfy.supported_models import WAN21_T2V
from comfy_extras.nodes_custom_sampler import BasicScheduler
from comfy_extras.nodes_model_advanced import ModelSamplingSD3

from ..samplers.diagonal_queue import QueueLayout
from ..samplers.layout_summary import ExpertSchedule, queue_summary, window_summary
from ..samplers.progressive_ar import ChunkLayout
from .adapter.inputs import check_sigmas
from .diagonal_queue import START_FROM_CLIP, DiagonalQueueSampler, FewStepQueue, LatentPartition
from .experts import AUTO_BOUNDARY, IMAGE_TO_VIDEO_BOUNDARY, TEXT_TO_VIDEO_BOUNDARY, WanExperts
from .progressive_ar import ProgressiveARSampler

ROUTE = "/longvideo/layout"
# the largest widget value (100,000 frames) has 6 digits; anything much longer is not a widget value
MAX_DIGITS = 9
INTEGER = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}")
# a widget's float as JavaScript writes it (0.875, 8, 0.30000000000000004); no exponents, NaN or Infinity
MAX_FRACTION_DIGITS = 20
DECIMAL = re.compile(rf"-?[0-9]{{1,{MAX_DIGITS}}}(\.[0-9]{{1,{MAX_FRACTION_DIGITS}}})?")
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


def _widget_range(node, name: str) -> tuple:
    widget = next(item for item in node.define_schema().inputs if item.id == name)
    return widget.min, widget.max


def _legacy_widget_range(node, name: str) -> tuple:
    options = node.INPUT_TYPES()["required"][name][1]
    return options["min"], options["max"]


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


# the experts' query parameters -> the range of the widget each comes from
EXPERT_RANGES = {
    "boundary": _widget_range(WanExperts, "boundary"),
    "shift": _legacy_widget_range(ModelSamplingSD3, "shift"),
    "denoise": _widget_range(BasicScheduler, "denoise"),
}
# boundary 0 (auto) is Wan 2.2's own for the model's task, which the editor guesses from the file name
AUTO_BOUNDARIES = {"text_to_video": TEXT_TO_VIDEO_BOUNDARY, "image_to_video": IMAGE_TO_VIDEO_BOUNDARY}
# Wan 2.2 A14B's experts are Wan 2.1-architecture models (nodes/experts.py check_pair): their model
# sampling without a ModelSamplingSD3 node is Wan 2.1's
WAN_MODEL_CONFIG = SimpleNamespace(sampling_settings=WAN21_T2V.sampling_settings)


class MalformedQuery(ValueError):
    pass


@dataclass(frozen=True)
class ExpertQuery:
    """The experts' boundary and what the scheduler's SIGMAS are made of, as the editor sent them."""

    boundary: float
    scheduler: str  # the BasicScheduler's
    shift: Optional[float]  # None: no ModelSamplingSD3 before the scheduler (the model's own)
    denoise: float


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
    experts = _expert_query(query)
    # the experts' levels come from the schedule, which needs the steps
    steps = value("steps") if experts else value("steps", None)
    length = value("length", None)
    # clean frames a Reference Anchor adds to every call
    reference = value("reference_frames", 0)
    if method == "diagonal_queue":
        # the cost of a run is known only when the sampler makes its own first clip
        first_clip = query.get("start", START_FROM_CLIP) == START_FROM_CLIP
        lookahead = query.get("lookahead") == "true"
        layout = partial(QueueLayout, value("window"), value("partitions", 1), lookahead, value("frames_per_level", 1))
        return partial(_summary, queue_summary, layout, steps, length if first_clip else None, reference, experts)
    return partial(_summary, window_summary, partial(ChunkLayout, value("chunk_size"), value("window_chunks")), steps, length, reference, experts)


def _expert_query(query) -> Optional[ExpertQuery]:
    """The experts' parameters, where the editor sent a boundary (Wan 2.2 Experts is connected)."""
    if "boundary" not in query:
        return None
    if not query.get("scheduler"):
        raise MalformedQuery("Missing query parameter 'scheduler': the experts' levels come from a BasicScheduler's schedule.")
    number = partial(_bounded_decimal, query, EXPERT_RANGES)
    boundary = number("boundary")
    if boundary == AUTO_BOUNDARY:
        task = query.get("task")
        if task not in AUTO_BOUNDARIES:
            raise MalformedQuery(f"With boundary 0 (Wan 2.2's own), task must be one of {', '.join(AUTO_BOUNDARIES)}, not {_echo(task)}.")
        boundary = AUTO_BOUNDARIES[task]
    return ExpertQuery(boundary, query["scheduler"], number("shift", None), number("denoise", 1.0))


def _summary(summarise, layout_of, steps, length, reference, experts: Optional[ExpertQuery]) -> dict:
    """The summary of the layout; with experts, each slot's expert on the SIGMAS the editor's graph makes."""
    layout = layout_of()
    if experts is None:
        return summarise(layout, steps, length, reference)
    schedule, problem = _expert_schedule(experts, steps)
    summary = summarise(layout, steps, length, reference, schedule)
    summary["expert_schedule"] = {
        "boundary": experts.boundary,
        "scheduler": experts.scheduler if experts.scheduler in SCHEDULER_HANDLERS else None,
        "shift": WAN_MODEL_CONFIG.sampling_settings["shift"] if experts.shift is None else experts.shift,
        "denoise": experts.denoise,
    }
    if problem:
        summary["expert_warning"] = problem
    return summary


def _expert_schedule(experts: ExpertQuery, steps: int) -> tuple[Optional[ExpertSchedule], Optional[str]]:
    """The experts on the SIGMAS ComfyUI's BasicScheduler makes, or why there are none to draw."""
    if experts.scheduler not in SCHEDULER_HANDLERS:
        return None, f"Unknown scheduler {_echo(experts.scheduler)}: ComfyUI's are {', '.join(SCHEDULER_HANDLERS)}."
    if experts.denoise > 0 and steps / experts.denoise > MAX_SCHEDULER_STEPS:
        return None, f"steps / denoise = {steps} / {experts.denoise:g} is more than the {MAX_SCHEDULER_STEPS} steps the drawing computes a schedule for."
    sigmas = BasicScheduler.execute(model=_scheduler_model(experts.shift), scheduler=experts.scheduler, steps=steps, denoise=experts.denoise).result[0]
    try:
        check_sigmas(sigmas)
    except ValueError as refused:
        return None, str(refused)
    return ExpertSchedule((experts.boundary,), sigmas), None


class _SamplingOnly:
    """What ModelSamplingSD3 and BasicScheduler use of a MODEL (its model sampling and the config a
    new one is built from), for the editor's experts, which have no weights here."""

    def __init__(self, sampling):
        self.model = SimpleNamespace(model_config=WAN_MODEL_CONFIG)
        self.model_sampling = sampling

    def clone(self) -> "_SamplingOnly":
        return _SamplingOnly(self.model_sampling)

    def get_model_object(self, name: str):
        return getattr(self, name)

    def add_object_patch(self, name: str, patch) -> None:
        setattr(self, name, patch)


def _scheduler_model(shift: Optional[float]) -> _SamplingOnly:
    """The scheduler's model: Wan 2.1's model sampling, through ComfyUI's ModelSamplingSD3 where a shift is given."""
    model = _SamplingOnly(model_sampling(WAN_MODEL_CONFIG, ModelType.FLOW))
    return model if shift is None else ModelSamplingSD3().patch(model, shift)[0]


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


def _bounded_decimal(query, ranges: dict, name: str, default=...):
    """A decimal parameter clamped to its widget's range; a missing one takes ``default``, if given."""
    text = query.get(name, "")
    if text == "":
        if default is ...:
            raise MalformedQuery(f"Missing query parameter {name!r}.")
        return default
    if not DECIMAL.fullmatch(text):
        raise MalformedQuery(
            f"Query parameter {name} must be a decimal number of at most {MAX_DIGITS} digits before the point and "
            f"{MAX_FRACTION_DIGITS} after it; it is {_echo(text)}."
        )
    low, high = ranges[name]
    return min(max(float(text), low), high)


def _echo(text) -> str:
    """A query value quoted in a message, cut short: the answer stays small whatever was sent."""
    text = repr(text)
    return text if len(text) <= ECHOED_CHARACTERS else text[:ECHOED_CHARACTERS] + "..."

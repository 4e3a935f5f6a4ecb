"""What the editor draws on the sampler nodes: the queue or window for a set of widget values.

Both summaries share one shape, so one drawing serves both samplers: the latent frame slots the
model sees, oldest (cleanest) first, each with the steps it has left (0 = clean context, the
schedule's step count = fresh noise), the group each slot belongs to (a partition of the queue,
or a chunk of the window; -1 for clean context), the windows the model is called on (the slots
each reads, and the slots it writes), and the cost. With experts (Wan 2.2 A14B) and the schedule
they run on, each slot also has the expert that denoises it (-1 for clean context), and the
windows and cost are those the sampler runs with the experts. Everything comes from the layouts
and functions the samplers run with, so the drawing cannot drift from the sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .diagonal_queue import QueueLayout, calls_of_iteration, split_at_expert_boundary
from .experts import Experts, check_boundaries
from .progressive_ar import ChunkLayout, call_count, chunk_count, chunks_in_window, window_levels


@dataclass(frozen=True)
class ExpertSchedule:
    """Experts whose bands meet at ``boundaries`` (noisiest band first, as samplers.experts), and
    the SIGMAS the sampler runs them on."""

    boundaries: tuple[float, ...]
    sigmas: torch.Tensor

    @property
    def bands(self) -> Experts:
        return Experts([None] * (len(self.boundaries) + 1), self.boundaries)

    def problem(self, holder) -> Optional[str]:
        """Why the sampler would refuse these experts on this schedule, or None."""
        if holder.steps_problem(len(self.sigmas) - 1):
            return "Which expert serves each slot is drawn once the scheduler's steps fit."
        try:
            holder.check_sigmas(self.sigmas)
            check_boundaries(self.boundaries, self.sigmas)
        except ValueError as refused:
            return str(refused)
        return None


def queue_summary(
    layout: QueueLayout, steps: Optional[int] = None, length: Optional[int] = None, reference_frames: int = 0, experts: Optional[ExpertSchedule] = None
) -> dict:
    """The diagonal queue of one steady-state iteration.

    ``steps`` is the connected scheduler's step count, if known; ``length`` the output latent
    frames, which gives ``run_calls`` for the sampler's default start (a first clip sampled with
    the whole schedule, re-noised into the queue); ``reference_frames`` the clean frames anchoring
    shows in front of every window (anchoring.py), which every call pays for. With ``experts``
    (whose SIGMAS give the steps) the queue is the one the sampler runs: split at the experts'
    boundary without lookahead, a window with frames of several experts called once per expert.
    """
    steps = steps if experts is None else len(experts.sigmas) - 1
    problem = None if experts is None else experts.problem(layout)
    slot_experts = None
    bands = Experts([None])
    if experts is not None and problem is None:
        bands = experts.bands
        layout = split_at_expert_boundary(layout, bands, experts.sigmas)
        slot_experts = bands.expert_of(layout.slot_sigmas(experts.sigmas)[0]).tolist()
    windows = layout.windows()
    g = layout.frames_per_level
    calls = calls_of_iteration(bands, slot_experts or [0] * (layout.context_slots + layout.slots), windows, 1, 0, lambda position: 0)
    first_written = [call.written[0][1] for _, _, call in calls]
    return {
        "method": "diagonal_queue",
        "group_name": "partition",
        "levels": layout.levels,
        "steps": steps,
        "steps_needed": str(layout.levels),
        "steps_warning": None if steps is None else layout.steps_problem(steps),
        "context_slots": layout.context_slots,
        "steps_left": [0] * layout.context_slots + [j // g + 1 for j in range(layout.slots)],
        "group": [-1] * layout.context_slots + _partition_of_slots(layout, windows),
        "windows": [{"start": w.start, "stop": w.stop, "write_start": w.write_start, "write_stop": w.write_end} for w in windows],
        "frames_per_call": layout.window + reference_frames,
        "reference_frames": reference_frames,
        "calls_per_frame": len(calls) / g if g > 1 else len(calls),
        "run_calls": None if length is None else _queue_run_calls(layout, first_written, length),
        "expert": None if slot_experts is None else [-1] * layout.context_slots + slot_experts[layout.context_slots :],
        "expert_warning": problem,
    }


def _partition_of_slots(layout: QueueLayout, windows: list) -> list[int]:
    """The partition of each in-flight slot: without lookahead the window that writes it (the
    experts' split moves the partition edges), with lookahead the pair of half-windows."""
    if layout.lookahead:
        return [j // layout.window for j in range(layout.slots)]
    return [k for k, w in enumerate(windows) for _ in range(w.write_start, w.write_end)]


def _queue_run_calls(layout: QueueLayout, first_written: list[int], length: int) -> int:
    """Model calls of a run with the default start, counted without walking the iterations.

    ``first_written``: the first slot each call of a full iteration writes (one call per window,
    or per expert of a window). The first clip takes one call per level. Then ``T`` frames (warm-up
    included) leave the queue, ``g = frames_per_level`` per iteration, over ``ceil(T / g)``
    iterations; at iteration ``p`` ``min(slots, T - p g)`` frames are in flight (in_flight), and a
    call runs while more frames are in flight than its first written slot's offset ``o`` from the
    head: in ``ceil((T - o) / g)`` iterations.
    """
    total = layout.warmup_frames(layout.window) + length
    g = layout.frames_per_level
    iterations = layout.queue_iterations(total)
    offsets = [first - layout.context_slots for first in first_written]
    return layout.levels + sum(min(iterations, max(0, -(-(total - offset) // g))) for offset in offsets)


def window_summary(
    layout: ChunkLayout, steps: Optional[int] = None, length: Optional[int] = None, reference_frames: int = 0, experts: Optional[ExpertSchedule] = None
) -> dict:
    """The progressive window right after a shift, when it is full.

    Without a usable ``steps`` the window is drawn for PA-VDM's own setting, one step per noisy
    latent frame. ``reference_frames``: as for queue_summary. With ``experts`` (whose SIGMAS give
    the steps) a window step calls each expert whose band holds one of its chunks.
    """
    steps = steps if experts is None else len(experts.sigmas) - 1
    warning = None if steps is None else layout.steps_problem(steps)
    drawn_steps = layout.noisy_frames if steps is None or warning else steps
    shift = drawn_steps // layout.window_chunks
    full_window = chunks_in_window((layout.window_chunks - 1) * shift, layout.window_chunks, layout.window_chunks, drawn_steps)
    steps_left, group = [0] * layout.chunk, [-1] * layout.chunk
    for j, left in full_window:
        steps_left += [left] * layout.chunk
        group += [j] * layout.chunk
    problem = None if experts is None else experts.problem(layout)
    frame_experts, extra_calls = None, 0
    if experts is not None and problem is None:
        bands = experts.bands
        levels = window_levels(experts.sigmas, full_window, [layout.chunk] * len(full_window), drawn_steps, layout.chunk, 0)
        frame_experts = [-1] * layout.chunk + bands.expert_of(levels[layout.chunk :]).tolist()
        extra_calls = _extra_calls_per_chunk(bands.expert_of(experts.sigmas[:-1]).tolist(), shift)
    chunks = None if length is None else chunk_count(length, layout.chunk)
    return {
        "method": "progressive_ar",
        "group_name": "chunk",
        "levels": drawn_steps,
        "steps": steps,
        "steps_needed": f"a multiple of {layout.window_chunks} (PA-VDM: {layout.noisy_frames})",
        "steps_warning": warning,
        "context_slots": layout.chunk,
        "steps_left": steps_left,
        "group": group,
        "windows": [{"start": 0, "stop": layout.window_frames, "write_start": layout.chunk, "write_stop": layout.window_frames}],
        "frames_per_call": layout.window_frames + reference_frames,
        "reference_frames": reference_frames,
        "calls_per_frame": (shift + extra_calls) / layout.chunk,
        "run_calls": None if chunks is None else call_count(chunks, layout.window_chunks, drawn_steps) + (chunks - 1) * extra_calls,
        "expert": frame_experts,
        "expert_warning": problem,
    }


def _extra_calls_per_chunk(level_experts: list[int], shift: int) -> int:
    """Model calls beyond one per window step that each chunk adds to a run, given the expert of each
    level of the schedule (noisiest first).

    A window step calls every expert whose band holds one of its chunks. The chunks' levels fall
    monotonically, so the experts called are one more than the changes of expert between
    neighbouring chunks. Chunk j and chunk j + 1 share the window for ``steps - shift`` steps, with
    chunk j at level ``i`` from ``shift`` to ``steps - 1`` and chunk j + 1 at ``i - shift``.
    """
    return sum(level_experts[i] != level_experts[i - shift] for i in range(shift, len(level_experts)))

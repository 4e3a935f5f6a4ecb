"""What the editor draws on the sampler nodes: the queue or window for a set of widget values.

Both summaries share one shape, so one drawing serves both samplers: the latent frame slots the
model sees, oldest (cleanest) first, each with the steps it has left (0 = clean context, the
schedule's step count = fresh noise), the group each slot belongs to (a partition of the queue,
or a chunk of the window; -1 for clean context), the windows the model is called on, and the
cost. Everything comes from the layouts the samplers run with, so the drawing cannot drift from
the sampling.
"""
from __future__ import annotations

from typing import Optional

from .diagonal_queue import QueueLayout
from .progressive_ar import ChunkLayout, call_count, chunk_count, chunks_in_window


def queue_summary(layout: QueueLayout, steps: Optional[int] = None, length: Optional[int] = None, reference_frames: int = 0) -> dict:
    """The diagonal queue of one steady-state iteration.

    ``steps`` is the connected scheduler's step count, if known; ``length`` the output latent
    frames, which gives ``run_calls`` for the sampler's default start (a first clip sampled with
    the whole schedule, re-noised into the queue); ``reference_frames`` the clean frames anchoring
    shows in front of every window (anchoring.py), which every call pays for.
    """
    windows = layout.windows()
    g = layout.frames_per_level
    return {
        "method": "diagonal_queue",
        "group_name": "partition",
        "levels": layout.levels,
        "steps": steps,
        "steps_needed": str(layout.levels),
        "steps_warning": None if steps is None else layout.steps_problem(steps),
        "context_slots": layout.context_slots,
        "steps_left": [0] * layout.context_slots + [j // g + 1 for j in range(layout.slots)],
        "group": [-1] * layout.context_slots + [j // layout.window for j in range(layout.slots)],
        "windows": [{"start": w.start, "stop": w.stop, "write_start": w.write_start} for w in windows],
        "frames_per_call": layout.window + reference_frames,
        "reference_frames": reference_frames,
        "calls_per_frame": len(windows) / g if g > 1 else len(windows),
        "run_calls": None if length is None else _queue_run_calls(layout, windows, length),
    }


def _queue_run_calls(layout: QueueLayout, windows: list, length: int) -> int:
    """Model windows of a run with the default start, counted without walking the iterations.

    The first clip takes one call per level. Then ``T`` frames (warm-up included) leave the queue,
    ``g = frames_per_level`` per iteration, over ``ceil(T / g)`` iterations; at iteration ``p``
    ``min(slots, T - p g)`` frames are in flight (in_flight), and a window runs while more frames
    are in flight than its write offset ``o`` from the head: in ``ceil((T - o) / g)`` iterations.
    """
    total = layout.warmup_frames(layout.window) + length
    g = layout.frames_per_level
    iterations = layout.queue_iterations(total)
    offsets = [w.write_start - layout.context_slots for w in windows]
    return layout.levels + sum(min(iterations, max(0, -(-(total - offset) // g))) for offset in offsets)


def window_summary(layout: ChunkLayout, steps: Optional[int] = None, length: Optional[int] = None, reference_frames: int = 0) -> dict:
    """The progressive window right after a shift, when it is full.

    Without a usable ``steps`` the window is drawn for PA-VDM's own setting, one step per noisy
    latent frame. ``reference_frames``: as for queue_summary.
    """
    warning = None if steps is None else layout.steps_problem(steps)
    drawn_steps = layout.noisy_frames if steps is None or warning else steps
    shift = drawn_steps // layout.window_chunks
    full_window = chunks_in_window((layout.window_chunks - 1) * shift, layout.window_chunks, layout.window_chunks, drawn_steps)
    steps_left, group = [0] * layout.chunk, [-1] * layout.chunk
    for j, left in full_window:
        steps_left += [left] * layout.chunk
        group += [j] * layout.chunk
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
        "windows": [{"start": 0, "stop": layout.window_frames, "write_start": layout.chunk}],
        "frames_per_call": layout.window_frames + reference_frames,
        "reference_frames": reference_frames,
        "calls_per_frame": shift / layout.chunk,
        "run_calls": None if length is None else call_count(chunk_count(length, layout.chunk), layout.window_chunks, drawn_steps),
    }

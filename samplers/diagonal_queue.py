"""Diagonal denoising over a queue of latent frames (FIFO-Diffusion, arXiv 2405.11473).

Level convention. ``sigmas`` is a ComfyUI schedule ``sigma_0 > ... > sigma_S`` (normally
``sigma_S = 0``) with ``S = window * partitions`` levels. In-flight slot ``j`` (0 = head) holds a
frame at ``sigma_{S-1-j}``; one iteration moves it to ``sigma_{S-j}``, so the head reaches
``sigma_S`` and leaves the queue. Every frame meets each level exactly once and no model call is
spent on a finished frame (the official code labels the head level t_0 and spends an identity
step on it; docs/algorithms.md §1.2). With lookahead, ``window // 2`` context slots in front of the head hold
the most recently finished frames.

All windows of an iteration read the queue as it was before the iteration (the Jacobi update of
the reference), so evaluating windows one by one or batched gives the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import torch

from .frame_levels import FRAME_DIM, Callback, Denoiser, IterationCounter, NoiseSpace, add_noise, check_run, check_schedule, fresh_noise, sample_clip, step


@dataclass(frozen=True)
class Window:
    start: int  # first queue slot the model sees
    stop: int  # one past the last slot
    write_start: int  # slots [write_start, stop) are written back


@dataclass(frozen=True)
class QueueLayout:
    window: int
    partitions: int = 1
    lookahead: bool = False

    def __post_init__(self):
        if self.window < 1:
            raise ValueError(f"The window must hold at least 1 latent frame, got {self.window}.")
        if self.partitions < 1:
            raise ValueError(f"Latent partitions must be at least 1, got {self.partitions}.")
        if self.lookahead and self.window < 2:
            raise ValueError("Lookahead splits each window in two halves, so it needs a window of at least 2 latent frames.")

    @property
    def levels(self) -> int:
        """Noise levels in the queue, one in-flight frame per level."""
        return self.window * self.partitions

    @property
    def context_slots(self) -> int:
        return self.window // 2 if self.lookahead else 0

    @property
    def frames_per_call(self) -> int:
        """Latent frames one window shows the model."""
        return self.window

    @property
    def windows_per_iteration(self) -> int:
        """Windows of a full iteration: the most that can share one model call."""
        return len(self.windows())

    def warmup_frames(self, clip_frames: int) -> int:
        """Frames that leave the queue before the first frame of a warm-start clip of that length."""
        return self.levels - min(clip_frames, self.levels)

    def _write_sizes(self) -> list[int]:
        if not self.lookahead:
            return [self.window] * self.partitions
        # halves alternate ceil/floor so odd windows tile too (the Open-Sora-Plan variant, docs/algorithms.md §1.4)
        return [(self.window + 1) // 2, self.window // 2] * self.partitions

    def windows(self, in_flight: Optional[int] = None) -> list[Window]:
        """The windows of one iteration when the first ``in_flight`` frames are still in the queue.

        Written regions tile the in-flight slots exactly once. While the queue drains at the end, a
        window whose region is cut short slides back so the model still sees ``window`` frames.
        """
        in_flight = self.levels if in_flight is None else in_flight
        end_of_queue = self.context_slots + in_flight
        out = []
        write_start = self.context_slots
        for size in self._write_sizes():
            if write_start >= end_of_queue:
                break
            stop = min(write_start + size, end_of_queue)
            out.append(Window(max(0, stop - self.window), stop, write_start))
            write_start += size
        return out

    def slot_sigmas(self, sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-slot current and next levels, context slots first, for a schedule check_sigmas accepts."""
        context = sigmas[-1:].expand(self.context_slots)
        now = torch.cat([context, sigmas[:-1].flip(0)])
        nxt = torch.cat([context, sigmas[1:].flip(0)])
        return now, nxt

    def check_sigmas(self, sigmas: torch.Tensor) -> None:
        check_schedule(sigmas, "queue", self.steps_problem)

    def steps_problem(self, steps: int) -> Optional[str]:
        """Why a schedule of ``steps`` steps does not fit the queue, or None when it does."""
        if steps == self.levels:
            return None
        return (
            f"The queue holds window x partitions = {self.window} x {self.partitions} = {self.levels} noise "
            f"levels, so SIGMAS must have {self.levels + 1} values ({self.levels} steps), but it has {steps + 1} "
            f"values ({steps} steps). "
            f"Set the scheduler's steps to {self.levels}, or change the window or partitions."
        )

    def iterations(self, num_frames: int, clip_frames: Optional[int] = None) -> int:
        """Iterations of a run: the first clip's steps (none when a clip is given), warm-up frames, output frames."""
        first_clip_steps = self.levels if clip_frames is None else 0
        return first_clip_steps + self.warmup_frames(self.window if clip_frames is None else clip_frames) + num_frames

    def in_flight_counts(self, total: int) -> Iterator[int]:
        """Frames in flight at each of the ``total`` iterations: the queue is full, then drains (flush)."""
        in_flight = min(self.levels, total)
        for position in range(total):
            yield in_flight
            if position + self.levels >= total:
                in_flight -= 1


def initial_queue(
    clip: torch.Tensor,
    sigmas: torch.Tensor,
    layout: QueueLayout,
    space: NoiseSpace,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, int]:
    """Fill the queue by re-noising a clip to the diagonal levels (the official warm start, docs/algorithms.md §1.3).

    The last ``L = min(clip frames, levels)`` clip frames go to the noisiest slots in order; the
    slots in front of them hold copies of the first of those frames. Returns the queue and the
    number of warm-up frames (the copies) that leave the queue before the clip's first frame.
    """
    warmup = layout.warmup_frames(clip.shape[FRAME_DIM])
    clip = clip[:, :, clip.shape[FRAME_DIM] - (layout.levels - warmup) :]
    source = [0] * layout.context_slots + [max(0, j - warmup) for j in range(layout.levels)]
    now, _ = layout.slot_sigmas(sigmas)
    frames = clip[:, :, source]
    noise = fresh_noise(frames.shape, generator, frames)
    return add_noise(frames, noise, now.to(frames), space), warmup


def generate(
    denoise: Denoiser,
    frame_shape: Sequence[int],
    sigmas: torch.Tensor,
    *,
    layout: QueueLayout,
    num_frames: int,
    space: NoiseSpace,
    clip: Optional[torch.Tensor] = None,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    prompt_of_frame: Callable[[int], int] = lambda frame: 0,
    windows_per_call: int = 1,
    device: Optional[torch.device] = None,
    callback: Optional[Callback] = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Diagonal-queue video: yields ``(frame index, latent [B, C, 1, H, W])`` as each frame leaves the queue.

    The queue starts from ``clip``, a clean clip ``[B, C, F, H, W]`` whose last frames are re-noised
    into it; without one it starts from a first clip of ``window`` frames sampled here with the
    whole schedule (the official start). Warm-up frames come first with negative indices (they
    are not part of the video; the official method discards them); then exactly ``num_frames``
    frames with indices 0..num_frames-1, a given clip's frames re-denoised first.

    The arguments are checked when this is called, before any model call.
    """
    check_run(layout, sigmas, num_frames, frame_shape, clip)
    return _run(denoise, frame_shape, sigmas, layout, num_frames, space, clip, eta, generator, prompt_of_frame, windows_per_call, device, callback)


def _run(denoise, frame_shape, sigmas, layout, num_frames, space, clip, eta, generator, prompt_of_frame, windows_per_call, device, callback):
    progress = IterationCounter(layout.iterations(num_frames, None if clip is None else clip.shape[FRAME_DIM]), callback)
    if clip is None:
        batch, channels, height, width = frame_shape
        noise = fresh_noise((batch, channels, layout.window, height, width), generator, torch.zeros(1, device=device))
        clip = sample_clip(denoise, noise, sigmas, space=space, eta=eta, generator=generator, prompt=prompt_of_frame(0), callback=progress.step)
    queue, warmup = initial_queue(clip, sigmas, layout, space, generator)
    position_prompt = lambda position: prompt_of_frame(max(0, position - warmup))  # noqa: E731
    for position, frame in _run_queue(denoise, queue, sigmas, layout, warmup + num_frames, space, eta, generator, windows_per_call, position_prompt):
        index = position - warmup
        yield index, frame
        progress.step(frame if index >= 0 else None)


def _run_queue(denoise, queue, sigmas, layout, total, space, eta, generator, windows_per_call, prompt_of_position):
    """Dequeue ``total`` frames, yielding ``(position, latent [B, C, 1, H, W])`` as each one finishes.

    Fresh noise enters the tail only while it will still be dequeued; after that the queue drains
    (flush), so the last frames are finished and no model call is spent on frames nobody keeps.
    """
    context = layout.context_slots
    queue = queue[:, :, : context + min(layout.levels, total)]
    now, nxt = (level.to(queue) for level in layout.slot_sigmas(sigmas))
    for position, in_flight in enumerate(layout.in_flight_counts(total)):
        queue = _advance(denoise, queue, now, nxt, layout, in_flight, position, space, eta, generator, windows_per_call, prompt_of_position)
        yield position, queue[:, :, context : context + 1].clone()
        enqueue = position + layout.levels < total
        tail = [fresh_noise(queue[:, :, :1].shape, generator, queue) * sigmas[0]] if enqueue else []
        queue = torch.cat([queue[:, :, 1:], *tail], dim=FRAME_DIM)


def _advance(denoise, queue, now, nxt, layout, in_flight, first_position, space, eta, generator, windows_per_call, prompt_of_position):
    """One diagonal iteration: every in-flight frame moves down one level."""
    batch = queue.shape[0]
    context = layout.context_slots
    noise = fresh_noise(queue.shape, generator, queue) if eta > 0 else None
    updated = queue.clone()
    for prompt, group in _window_groups(layout.windows(in_flight), windows_per_call, first_position - context, prompt_of_position):
        x = torch.cat([queue[:, :, w.start : w.stop] for w in group])
        levels = torch.stack([now[w.start : w.stop] for w in group]).repeat_interleave(batch, dim=0)
        denoised = denoise(x, levels, prompt)
        for k, w in enumerate(group):
            rows = slice(k * batch, (k + 1) * batch)
            own = slice(w.write_start - w.start, None)
            updated[:, :, w.write_start : w.stop] = step(
                x[rows, :, own],
                denoised[rows, :, own],
                now[w.write_start : w.stop],
                nxt[w.write_start : w.stop],
                space,
                eta,
                None if noise is None else noise[:, :, w.write_start : w.stop],
            )
    return updated


def _window_groups(windows, windows_per_call, position_of_slot_zero, prompt_of_position):
    """Windows that go into one model call: up to ``windows_per_call`` of the same length and prompt."""
    groups: list[tuple[int, list[Window]]] = []
    filling: dict[tuple[int, int], list[Window]] = {}
    for w in windows:
        prompt = prompt_of_position(position_of_slot_zero + (w.write_start + w.stop - 1) // 2)
        kind = (w.stop - w.start, prompt)
        group = filling.get(kind)
        if group is None or len(group) >= windows_per_call:
            group = filling[kind] = []
            groups.append((prompt, group))
        group.append(w)
    return groups

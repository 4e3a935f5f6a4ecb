"""Diagonal denoising over a queue of latent frames (FIFO-Diffusion, arXiv 2405.11473).

Level convention. ``sigmas`` is a ComfyUI schedule ``sigma_0 > ... > sigma_S`` (normally
``sigma_S = 0``) with ``S = window * partitions`` levels. In-flight slot ``j`` (0 = head) holds a
frame at ``sigma_{S-1-j}``; one iteration moves it to ``sigma_{S-j}``, so the head reaches
``sigma_S`` and leaves the queue. Every frame meets each level exactly once and no model call is
spent on a finished frame (the official code labels the head level t_0 and spends an identity
step on it, specs §1.3). With lookahead, ``window // 2`` context slots in front of the head hold
the most recently finished frames.

All windows of an iteration read the queue as it was before the iteration (the Jacobi update of
the reference), so evaluating windows one by one or batched gives the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch

from .frame_levels import FRAME_DIM, Denoiser, NoiseSpace, add_noise, check_schedule, fresh_noise, step


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
    def length(self) -> int:
        return self.context_slots + self.levels

    def warmup_frames(self, clip_frames: int) -> int:
        """Frames that leave the queue before the first frame of a warm-start clip of that length."""
        return self.levels - min(clip_frames, self.levels)

    def _write_sizes(self) -> list[int]:
        if not self.lookahead:
            return [self.window] * self.partitions
        # halves alternate ceil/floor so odd windows tile too (the Open-Sora-Plan variant, specs §1.12)
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
        """Per-slot current and next levels, context slots first."""
        self.check_sigmas(sigmas)
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
    """Fill the queue by re-noising a clip to the diagonal levels (the official warm start, specs §1.4).

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


def run_queue(
    denoise: Denoiser,
    queue: torch.Tensor,
    sigmas: torch.Tensor,
    layout: QueueLayout,
    total: int,
    space: NoiseSpace,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    batch_windows: bool = False,
    prompt_of_position: Callable[[int], int] = lambda position: 0,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Dequeue ``total`` frames, yielding ``(position, latent [B, C, H, W])`` as each one finishes.

    Fresh noise enters the tail only while it will still be dequeued; after that the queue drains
    (flush), so the last frames are finished and no model call is spent on frames nobody keeps.
    """
    context = layout.context_slots
    queue = queue[:, :, : context + min(layout.levels, total)]
    now, nxt = (level.to(queue) for level in layout.slot_sigmas(sigmas))
    for position, in_flight in enumerate(layout.in_flight_counts(total)):
        queue = _advance(
            denoise, queue, now, nxt, layout, in_flight, position, space, eta, generator, batch_windows, prompt_of_position
        )
        yield position, queue[:, :, context].clone()
        enqueue = position + layout.levels < total
        tail = [fresh_noise(queue[:, :, :1].shape, generator, queue) * sigmas[0]] if enqueue else []
        queue = torch.cat([queue[:, :, 1:], *tail], dim=FRAME_DIM)


def _advance(denoise, queue, now, nxt, layout, in_flight, first_position, space, eta, generator, batch_windows, prompt_of_position):
    """One diagonal iteration: every in-flight frame moves down one level."""
    batch = queue.shape[0]
    context = layout.context_slots
    noise = fresh_noise(queue.shape, generator, queue) if eta > 0 else None
    updated = queue.clone()
    for prompt, group in _window_groups(layout.windows(in_flight), batch_windows, first_position - context, prompt_of_position):
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


def _window_groups(windows, batch_windows, position_of_slot_zero, prompt_of_position):
    """Windows that go into one model call: all of the same length and prompt, or one each."""
    groups: dict[tuple[int, int], list[Window]] = {}
    for index, w in enumerate(windows):
        prompt = prompt_of_position(position_of_slot_zero + (w.write_start + w.stop - 1) // 2)
        key = (w.stop - w.start, prompt) if batch_windows else (index, prompt)
        groups.setdefault(key, []).append(w)
    return [(key[1], group) for key, group in groups.items()]


def generate(
    denoise: Denoiser,
    clip: torch.Tensor,
    sigmas: torch.Tensor,
    layout: QueueLayout,
    num_frames: int,
    space: NoiseSpace,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    batch_windows: bool = False,
    prompt_of_frame: Callable[[int], int] = lambda frame: 0,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Diagonal-queue video from a warm-start clip: yields ``(frame index, latent)`` per dequeued frame.

    Warm-up frames come first with negative indices (the official method discards them); then
    exactly ``num_frames`` frames with indices 0..num_frames-1, the clip's frames re-denoised
    first and new frames after them.
    """
    if num_frames < 1:
        raise ValueError(f"The number of frames must be at least 1, got {num_frames}.")
    queue, warmup = initial_queue(clip, sigmas, layout, space, generator)
    frames = run_queue(
        denoise,
        queue,
        sigmas,
        layout,
        warmup + num_frames,
        space,
        eta,
        generator,
        batch_windows,
        lambda position: prompt_of_frame(max(0, position - warmup)),
    )
    for position, frame in frames:
        yield position - warmup, frame

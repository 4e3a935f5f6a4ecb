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

from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Optional, Sequence, Union

import torch

from .experts import Experts, as_experts, expert_runs
from .frame_levels import FRAME_DIM, Callback, Denoiser, IterationCounter, NoiseSpace, add_noise, check_run, check_schedule, fresh_noise, sample_clip, step


@dataclass(frozen=True)
class Window:
    start: int  # first queue slot the model sees
    stop: int  # one past the last slot
    write_start: int  # slots [write_start, write_end) are written back
    write_stop: Optional[int] = None  # None: to the window's end

    @property
    def write_end(self) -> int:
        return self.stop if self.write_stop is None else self.write_stop


@dataclass(frozen=True)
class QueueLayout:
    window: int
    partitions: int = 1
    lookahead: bool = False
    # experts (without lookahead): the in-flight slot where their bands meet; partition edges fall
    # on it and no window reads across it, so no window holds frames of two experts (docs/algorithms.md §1.7)
    split: Optional[int] = None

    def __post_init__(self):
        if self.window < 1:
            raise ValueError(f"The window must hold at least 1 latent frame, got {self.window}.")
        if self.partitions < 1:
            raise ValueError(f"Latent partitions must be at least 1, got {self.partitions}.")
        if self.lookahead and self.window < 2:
            raise ValueError("Lookahead splits each window in two halves, so it needs a window of at least 2 latent frames.")
        if self.split is not None and (self.lookahead or not 0 < self.split < self.levels):
            raise ValueError(f"An experts' split at slot {self.split} needs 0 < split < {self.levels} levels and no lookahead.")

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
            edge = 0 if self.split is None else self.split % self.window
            first = [edge] if edge else []
            return first + [self.window] * (self.partitions - 1) + [self.window - edge]
        # halves alternate ceil/floor so odd windows tile too (the Open-Sora-Plan variant, docs/algorithms.md §1.4)
        return [(self.window + 1) // 2, self.window // 2] * self.partitions

    def windows(self, in_flight: Optional[int] = None) -> list[Window]:
        """The windows of one iteration when the first ``in_flight`` frames are still in the queue.

        Written regions tile the in-flight slots exactly once. While the queue drains at the end, a
        window whose region is cut short slides back so the model still sees ``window`` frames. With
        an experts' split, a window stays on its side of it (and may hold fewer frames there).
        """
        in_flight = self.levels if in_flight is None else in_flight
        end_of_queue = self.context_slots + in_flight
        out = []
        write_start = self.context_slots
        for size in self._write_sizes():
            if write_start >= end_of_queue:
                break
            stop = min(write_start + size, end_of_queue)
            if self.lookahead:
                start, window_stop = max(0, stop - self.window), stop
            else:
                low, high = self._segment(write_start, end_of_queue)
                start = max(low, min(write_start, high - self.window))
                window_stop = min(start + self.window, high)
            out.append(Window(start, window_stop, write_start, None if stop == window_stop else stop))
            write_start += size
        return out

    def _segment(self, slot: int, end_of_queue: int) -> tuple[int, int]:
        """The slots a window writing ``slot`` may read: all in-flight ones, or its side of the experts' split."""
        if self.split is None:
            return self.context_slots, end_of_queue
        split = self.context_slots + self.split
        return (self.context_slots, min(split, end_of_queue)) if slot < split else (split, end_of_queue)

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
    denoise: Union[Denoiser, Experts],
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

    ``denoise`` is one denoiser, or Experts that each serve a band of levels (every frame is
    denoised by the expert of its level). The queue starts from ``clip``, a clean clip
    ``[B, C, F, H, W]`` whose last frames are re-noised into it; without one it starts from a first
    clip of ``window`` frames sampled here with the whole schedule (the official start). Warm-up
    frames come first with negative indices (they are not part of the video; the official method
    discards them); then exactly ``num_frames`` frames with indices 0..num_frames-1, a given clip's
    frames re-denoised first.

    The arguments are checked when this is called, before any model call.
    """
    check_run(layout, sigmas, num_frames, frame_shape, clip)
    return _run(as_experts(denoise), frame_shape, sigmas, layout, num_frames, space, clip, eta, generator, prompt_of_frame, windows_per_call, device, callback)


def _run(experts, frame_shape, sigmas, layout, num_frames, space, clip, eta, generator, prompt_of_frame, windows_per_call, device, callback):
    progress = IterationCounter(layout.iterations(num_frames, None if clip is None else clip.shape[FRAME_DIM]), callback)
    if clip is None:
        batch, channels, height, width = frame_shape
        noise = fresh_noise((batch, channels, layout.window, height, width), generator, torch.zeros(1, device=device))
        clip = sample_clip(experts, noise, sigmas, space=space, eta=eta, generator=generator, prompt=prompt_of_frame(0), callback=progress.step)
    queue, warmup = initial_queue(clip, sigmas, layout, space, generator)
    layout = split_at_expert_boundary(layout, experts, sigmas)
    position_prompt = lambda position: prompt_of_frame(max(0, position - warmup))  # noqa: E731
    for position, frame in _run_queue(experts, queue, sigmas, layout, warmup + num_frames, space, eta, generator, windows_per_call, position_prompt):
        index = position - warmup
        yield index, frame
        progress.step(frame if index >= 0 else None)


def split_at_expert_boundary(layout, experts, sigmas):
    """Without lookahead, the layout split where the experts' bands meet (docs/algorithms.md §1.7)."""
    if experts.count == 1 or layout.lookahead:
        return layout
    in_flight = experts.expert_of(layout.slot_sigmas(sigmas)[0][layout.context_slots :])
    changes = (in_flight[1:] != in_flight[:-1]).nonzero()
    return layout if len(changes) != 1 else replace(layout, split=int(changes[0]) + 1)


def _run_queue(experts, queue, sigmas, layout, total, space, eta, generator, windows_per_call, prompt_of_position):
    """Dequeue ``total`` frames, yielding ``(position, latent [B, C, 1, H, W])`` as each one finishes.

    Fresh noise enters the tail only while it will still be dequeued; after that the queue drains
    (flush), so the last frames are finished and no model call is spent on frames nobody keeps.
    With an experts' split, the noisier expert runs up to ``experts.switch_every`` iterations ahead
    (_run_ahead); the frames are the same bits.
    """
    context = layout.context_slots
    queue = queue[:, :, : context + min(layout.levels, total)]
    now, nxt = (level.to(queue) for level in layout.slot_sigmas(sigmas))
    slot_experts = experts.expert_of(now).tolist()
    split = _segment_split(layout) if experts.switch_every > 1 else None
    in_flight_counts = list(layout.in_flight_counts(total))
    position = 0
    while position < total:
        block = 1
        if split is not None and in_flight_counts[position] == layout.levels and (generator is not None or eta <= 0):
            while block < experts.switch_every and position + block < total and in_flight_counts[position + block] == layout.levels:
                block += 1
        calls = [
            calls_of_iteration(experts, slot_experts, layout.windows(in_flight_counts[position + t]), windows_per_call, position + t - context, prompt_of_position)
            for t in range(block)
        ]
        enqueues = [position + t + layout.levels < total for t in range(block)]
        if block > 1:
            queue = yield from _run_ahead(experts, queue, split, calls, enqueues, now, nxt, space, eta, generator, sigmas, position)
        else:
            noise, tail = _draw_noise(queue, generator, eta, sigmas, enqueues[0])
            queue = _advance(experts, calls[0], queue, now, nxt, space, eta, noise)
            yield position, queue[:, :, context : context + 1].clone()
            queue = torch.cat([queue[:, :, 1:], *tail], dim=FRAME_DIM)
        position += block


def _draw_noise(queue, generator, eta, sigmas, enqueue):
    """One iteration's random draws, in the order the iteration makes them: the step noise, then the tail."""
    noise = fresh_noise(queue.shape, generator, queue) if eta > 0 else None
    tail = [fresh_noise(queue[:, :, :1].shape, generator, queue) * sigmas[0]] if enqueue else []
    return noise, tail


def _segment_split(layout):
    """The slot below which the cleaner expert works, where the layout has an experts' split: its
    windows never read across it, so frames flow only from the noisier segment into the cleaner one."""
    return None if layout.split is None else layout.context_slots + layout.split


def _run_ahead(experts, queue, split, calls, enqueues, now, nxt, space, eta, generator, sigmas, position):
    """``len(calls)`` iterations of a full queue, the noisier segment (slots from ``split`` on) first
    for all of them, its frames that cross into the cleaner segment kept until the cleaner expert
    takes them. The noise is drawn in the plain order; the cleaner segment draws its share again
    from the generator's saved states, so running ahead holds no noise in advance."""
    noisy_calls = [[call for call in iteration if call[2].windows[0].start >= split] for iteration in calls]
    clean_calls = [[call for call in iteration if call[2].windows[0].start < split] for iteration in calls]
    noisy, crossing, states = queue, [], []
    for iteration_calls, enqueue in zip(noisy_calls, enqueues):
        states.append(generator.get_state() if eta > 0 else None)
        noise, tail = _draw_noise(noisy, generator, eta, sigmas, enqueue)
        noisy = _advance(experts, iteration_calls, noisy, now, nxt, space, eta, noise)
        crossing.append(noisy[:, :, split : split + 1].clone())  # a copy: a view would keep the whole queue alive
        noisy = torch.cat([noisy[:, :, 1:], *tail], dim=FRAME_DIM)
    replay = torch.Generator(device=generator.device) if eta > 0 else None
    clean = queue[:, :, :split]
    for t, (iteration_calls, state) in enumerate(zip(clean_calls, states)):
        noise = None
        if state is not None:
            replay.set_state(state)
            noise = fresh_noise(queue.shape, replay, queue)
        clean = _advance(experts, iteration_calls, clean, now, nxt, space, eta, noise)
        yield position + t, clean[:, :, :1].clone()
        clean = torch.cat([clean[:, :, 1:], crossing[t]], dim=FRAME_DIM)
    return torch.cat([clean, noisy[:, :, split:]], dim=FRAME_DIM)


def _advance(experts, calls, queue, now, nxt, space, eta, noise):
    """One diagonal iteration: every in-flight frame moves down one level, by its own expert."""
    batch = queue.shape[0]
    updated = queue.clone()
    for expert, prompt, call in calls:
        x = torch.cat([queue[:, :, w.start : w.stop] for w in call.windows])
        levels = torch.stack([now[w.start : w.stop] for w in call.windows]).repeat_interleave(batch, dim=0)
        denoised = experts(expert, x, levels, prompt)
        for k, (w, first, stop) in enumerate(call.written):
            rows = slice(k * batch, (k + 1) * batch)
            own = slice(first - w.start, stop - w.start)
            updated[:, :, first:stop] = step(
                x[rows, :, own],
                denoised[rows, :, own],
                now[first:stop],
                nxt[first:stop],
                space,
                eta,
                None if noise is None else noise[:, :, first:stop],
            )
    return updated


@dataclass
class ModelCall:
    """Windows that share one model call, each with the slots ``[first, stop)`` this call's expert writes."""

    written: list[tuple[Window, int, int]] = field(default_factory=list)

    @property
    def windows(self) -> list[Window]:
        return [w for w, _, _ in self.written]


def calls_of_iteration(experts, slot_experts, windows, windows_per_call, position_of_slot_zero, prompt_of_position):
    """The model calls of one iteration: ``(expert, prompt, windows)``, up to ``windows_per_call`` windows
    of the same expert, length and prompt each, all calls of one expert together."""
    by_expert: dict[int, list[tuple[int, ModelCall]]] = {}
    filling: dict[tuple[int, int, int], ModelCall] = {}
    for w in windows:
        prompt = prompt_of_position(position_of_slot_zero + (w.write_start + w.write_end - 1) // 2)
        for expert, first, stop in expert_runs(slot_experts[w.write_start : w.write_end], offset=w.write_start):
            kind = (expert, w.stop - w.start, prompt)
            call = filling.get(kind)
            if call is None or len(call.written) >= windows_per_call:
                call = filling[kind] = ModelCall()
                by_expert.setdefault(expert, []).append((prompt, call))
            call.written.append((w, first, stop))
    return [(expert, prompt, call) for expert in experts.order(by_expert) for prompt, call in by_expert[expert]]

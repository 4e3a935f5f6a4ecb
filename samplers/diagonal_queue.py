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

from .anchoring import FIRST_FRAME, denoise_with_reference
from .experts import Experts, as_experts, expert_runs
from .frame_levels import FRAME_DIM, Callback, Denoiser, IterationCounter, NoiseSpace, add_noise, check_run, check_schedule, fresh_noise, sample_clip, step
from .run_state import Reroll, check_frames, raise_late_reroll, resume_on


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
    # few-step models (docs/algorithms.md §1.8): g consecutive slots share a level, so the queue of
    # window x partitions frames needs window x partitions / g levels and g frames leave per iteration
    frames_per_level: int = 1
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
        if self.frames_per_level < 1 or self.slots % self.frames_per_level:
            raise ValueError(
                f"frames_per_level must divide the {self.slots} frames of the queue (window x partitions = {self.window} x "
                f"{self.partitions}), got {self.frames_per_level}."
            )
        if self.split is not None and (self.lookahead or not 0 < self.split < self.slots or self.split % self.frames_per_level):
            raise ValueError(f"An experts' split at slot {self.split} needs 0 < split < {self.slots} slots on a level edge and no lookahead.")

    @property
    def slots(self) -> int:
        """Frames in flight in a full queue."""
        return self.window * self.partitions

    @property
    def levels(self) -> int:
        """Noise levels in the queue: one per in-flight frame, or per group of frames_per_level."""
        return self.slots // self.frames_per_level

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
        return self.slots - min(clip_frames, self.slots)

    def _write_sizes(self) -> list[int]:
        if not self.lookahead:
            edge = 0 if self.split is None else self.split % self.window
            first = [edge] if edge else []
            return first + [self.window] * (self.partitions - 1) + [self.window - edge]
        # halves alternate ceil/floor so odd windows tile too (the Open-Sora-Plan variant, docs/algorithms.md §1.4)
        return [(self.window + 1) // 2, self.window // 2] * self.partitions

    def windows(self, in_flight: Optional[int] = None, front: Optional[int] = None) -> list[Window]:
        """The windows of one iteration with ``in_flight`` frames in flight behind ``front`` clean frames.

        Written regions tile the in-flight slots exactly once. A window whose region is cut short
        slides back so the model still sees ``window`` frames, into the clean frames in front of
        the head when it must: while the queue drains, the frames it finished stay there (as in
        the lookahead context), so every window keeps its full size to the end (docs/algorithms.md
        §1.5). With an experts' split, a window stays on its side of it (and may hold fewer frames there).
        """
        in_flight = self.slots if in_flight is None else in_flight
        front = self.context_slots if front is None else front
        end_of_queue = front + in_flight
        out = []
        write_start = front
        for size in self._write_sizes():
            if write_start >= end_of_queue:
                break
            stop = min(write_start + size, end_of_queue)
            if self.lookahead:
                start, window_stop = max(0, stop - self.window), stop
            else:
                low, high = self._segment(write_start, front, end_of_queue)
                start = max(low, min(write_start, high - self.window))
                window_stop = min(start + self.window, high)
            out.append(Window(start, window_stop, write_start, None if stop == window_stop else stop))
            write_start += size
        return out

    def _segment(self, slot: int, front: int, end_of_queue: int) -> tuple[int, int]:
        """The slots a window writing ``slot`` may read: all of the queue, or its side of the experts' split."""
        if self.split is None:
            return 0, end_of_queue
        split = front + self.split
        return (0, min(split, end_of_queue)) if slot < split else (split, end_of_queue)

    def in_flight_sigmas(self, sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Current and next level of each in-flight slot of a full queue, head first."""
        g = self.frames_per_level
        return sigmas[:-1].flip(0).repeat_interleave(g), sigmas[1:].flip(0).repeat_interleave(g)

    def slot_sigmas(self, sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-slot current and next levels, context slots first, for a schedule check_sigmas accepts."""
        context = sigmas[-1:].expand(self.context_slots)
        now, nxt = self.in_flight_sigmas(sigmas)
        return torch.cat([context, now]), torch.cat([context, nxt])

    def check_sigmas(self, sigmas: torch.Tensor) -> None:
        check_schedule(sigmas, "queue", self.steps_problem)

    def steps_problem(self, steps: int) -> Optional[str]:
        """Why a schedule of ``steps`` steps does not fit the queue, or None when it does."""
        if steps == self.levels:
            return None
        sizes = f"window x partitions = {self.window} x {self.partitions}"
        if self.frames_per_level > 1:
            sizes = f"window x partitions / frames_per_level = {self.window} x {self.partitions} / {self.frames_per_level}"
        return (
            f"The queue holds {sizes} = {self.levels} noise "
            f"levels, so SIGMAS must have {self.levels + 1} values ({self.levels} steps), but it has {steps + 1} "
            f"values ({steps} steps). "
            f"Set the scheduler's steps to {self.levels}, or change the window or partitions."
        )

    def queue_iterations(self, total: int) -> int:
        """Iterations that dequeue ``total`` frames (warm-up frames included), ``frames_per_level`` at a time."""
        return -(-total // self.frames_per_level)

    def iterations(self, num_frames: int, clip_frames: Optional[int] = None) -> int:
        """Iterations of a run: the first clip's steps (none when a clip is given), warm-up frames, output frames."""
        first_clip_steps = self.levels if clip_frames is None else 0
        return first_clip_steps + self.queue_iterations(self.warmup_frames(self.window if clip_frames is None else clip_frames) + num_frames)

    def in_flight(self, position: int, total: int) -> int:
        """Frames in flight at iteration ``position`` of a run that dequeues ``total``: the queue is full, then drains (flush)."""
        return min(self.slots, total - position * self.frames_per_level)

    def enqueued(self, position: int, total: int) -> int:
        """Fresh noise frames that enter the tail after iteration ``position``: only those that will still be dequeued."""
        return max(0, min(self.frames_per_level, total - position * self.frames_per_level - self.slots))

    def in_flight_counts(self, total: int) -> Iterator[int]:
        """Frames in flight at each iteration of a run that dequeues ``total`` frames."""
        for position in range(self.queue_iterations(total)):
            yield self.in_flight(position, total)

    def reroll_position(self, from_frame: int, warmup: int) -> int:
        """The first iteration whose frames all come at or after output frame ``from_frame``."""
        return -(-(from_frame + warmup) // self.frames_per_level)

    def reroll_switch(self, state: "QueueState", from_frame: int, steps: int) -> tuple[int, int]:
        """For a re-roll from ``from_frame`` that goes on from ``state``: the first frame it may change,
        and the iteration of the run after which it has taken over (Progress numbering)."""
        position = self.reroll_position(from_frame, state.warmup)
        return position * self.frames_per_level - state.warmup, state.iteration - state.position + position


@dataclass(frozen=True)
class QueueState:
    """Where a diagonal-queue run stands between two iterations: given it, a run goes on with the
    same bits as one that never stopped (the queue and its levels, the random generator, the
    reference), and nothing of the frames it already emitted."""

    queue: torch.Tensor  # clean frames in front of the head, then the frames in flight, head first
    in_flight: int
    position: int  # iterations of the queue done
    warmup: int  # frames that leave the queue before output frame 0
    iteration: int  # iterations of the whole run done, the first clip's steps included (progress)
    next_frame: int  # output frames emitted
    generator: Optional[torch.Tensor] = None  # the random generator's state
    reference: Optional[torch.Tensor] = None  # clean frames in front of every window (anchoring)
    reference_frame: int = 0  # the output frame the reference's first frame is (the denoiser is told)

    def to_record(self) -> tuple[dict, dict]:
        """Its tensors and its numbers, for a file."""
        tensors = {"queue": self.queue, "generator": self.generator, "reference": self.reference}
        return {k: v.cpu() for k, v in tensors.items() if v is not None}, {k: getattr(self, k) for k in (*_QUEUE_NUMBERS, "reference_frame")}

    @classmethod
    def from_record(cls, tensors: dict, numbers: dict) -> "QueueState":
        # a record saved before the reference's frame was kept has none: its run's denoisers did not read frames
        return cls(
            tensors["queue"],
            **{k: int(numbers[k]) for k in _QUEUE_NUMBERS},
            generator=tensors.get("generator"),
            reference=tensors.get("reference"),
            reference_frame=int(numbers.get("reference_frame", 0)),
        )


_QUEUE_NUMBERS = ("in_flight", "position", "warmup", "iteration", "next_frame")


def initial_queue(
    clip: torch.Tensor,
    sigmas: torch.Tensor,
    layout: QueueLayout,
    space: NoiseSpace,
    generator: Optional[torch.Generator] = None,
) -> tuple[torch.Tensor, int]:
    """Fill the queue by re-noising a clip to the diagonal levels (the official warm start, docs/algorithms.md §1.3).

    The last ``L = min(clip frames, slots)`` clip frames go to the noisiest slots in order; the
    slots in front of them hold copies of the first of those frames. Returns the queue and the
    number of warm-up frames (the copies) that leave the queue before the clip's first frame.
    """
    warmup = layout.warmup_frames(clip.shape[FRAME_DIM])
    clip = clip[:, :, clip.shape[FRAME_DIM] - (layout.slots - warmup) :]
    source = [0] * layout.context_slots + [max(0, j - warmup) for j in range(layout.slots)]
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
    reference: Union[None, torch.Tensor, str] = None,
    resume: Optional[QueueState] = None,
    reroll: Optional[Reroll] = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Diagonal-queue video: yields ``(first frame index, latent [B, C, n, H, W])`` as frames leave the queue.

    ``denoise`` is one denoiser, or Experts that each serve a band of levels (every frame is
    denoised by the expert of its level). The queue starts from ``clip``, a clean clip
    ``[B, C, F, H, W]`` whose last frames are re-noised into it; without one it starts from a first
    clip of ``window`` frames sampled here with the whole schedule (the official start). Warm-up
    frames come first with negative indices (they are not part of the video; the official method
    discards them); then exactly ``num_frames`` frames with indices 0..num_frames-1, a given clip's
    frames re-denoised first. ``frames_per_level`` frames leave per iteration.

    ``reference``: clean frames ``[B, C, r, H, W]`` in front of every window, or FIRST_FRAME for
    the first clip's (or the given clip's) first frame (anchoring.py). ``resume``: a state the
    callback reported (Progress.state); the run goes on from it (``clip`` is then not used) and
    yields only the frames after it. ``reroll``: from the first frame at or after
    ``reroll.from_frame`` that leaves the queue with a new group, draw from its generator and take
    its prompts (run_state.Reroll).

    The denoiser is told the output frame of every frame it sees (frame_levels.Denoiser): warm-up
    frames and the lookahead context in front of them count down from -1, the first clip is frames
    0 .. window - 1, a given clip's frames are numbered so that its last ones are 0, 1, ...; the
    FIRST_FRAME reference is the clip's first frame by that numbering.

    The arguments are checked when this is called, before any model call.
    """
    check_run(layout, sigmas, num_frames, frame_shape, clip, reference)
    if resume is not None:
        _check_resume(resume, frame_shape, layout, resume.warmup + num_frames)
        if reroll is not None and layout.reroll_position(reroll.from_frame, resume.warmup) < resume.position:
            raise_late_reroll(resume, reroll)
    return _run(
        as_experts(denoise),
        frame_shape,
        sigmas,
        layout,
        num_frames,
        space,
        clip,
        eta,
        generator,
        prompt_of_frame,
        windows_per_call,
        device,
        callback,
        reference,
        resume,
        reroll,
    )


def _check_resume(state: QueueState, frame_shape, layout: QueueLayout, total: int) -> None:
    check_frames(state.queue, frame_shape, layout.context_slots + min(layout.slots, total), "queue")
    in_flight = max(0, layout.in_flight(state.position, total))
    if state.position > layout.queue_iterations(total) or state.in_flight != in_flight:
        raise ValueError(
            f"The state was saved with {state.in_flight} frames in flight, but with {total - state.warmup} output frames the queue "
            f"would hold {in_flight} at that point: the length can change only while the queue has not begun to drain."
        )


def _run(
    experts,
    frame_shape,
    sigmas,
    layout,
    num_frames,
    space,
    clip,
    eta,
    generator,
    prompt_of_frame,
    windows_per_call,
    device,
    callback,
    reference,
    resume,
    reroll,
):
    if resume is None:
        progress = IterationCounter(layout.iterations(num_frames, None if clip is None else clip.shape[FRAME_DIM]), callback)
        given = None if reference is FIRST_FRAME else reference
        if clip is None:
            batch, channels, height, width = frame_shape
            noise = fresh_noise((batch, channels, layout.window, height, width), generator, torch.zeros(1, device=device))
            clip = sample_clip(
                experts, noise, sigmas, space=space, eta=eta, generator=generator, prompt=prompt_of_frame(0), reference=given, callback=progress.step
            )
        queue, warmup = initial_queue(clip, sigmas, layout, space, generator)
        total = warmup + num_frames
        # frames that will never leave the queue are not kept
        queue = queue[:, :, : layout.context_slots + min(layout.slots, total)]
        # the clip's last frames become output frames 0, 1, ...: its first frame is frame 0 or one before it
        first_of_clip = min(0, layout.slots - clip.shape[FRAME_DIM])
        state = QueueState(
            queue,
            layout.in_flight(0, total),
            0,
            warmup,
            progress.done,
            0,
            reference=clip[:, :, :1] if reference is FIRST_FRAME else given,
            reference_frame=first_of_clip if reference is FIRST_FRAME else 0,
        )
    else:
        state = resume_on(resume, generator, device)
        progress = IterationCounter(state.iteration - state.position + layout.queue_iterations(state.warmup + num_frames), callback, state.iteration)
    layout = split_at_expert_boundary(layout, experts, sigmas)
    for position, frames, after in _run_queue(
        experts, state, sigmas, layout, state.warmup + num_frames, space, eta, generator, windows_per_call, prompt_of_frame, reroll
    ):
        index = position - state.warmup
        if index < 0 < index + frames.shape[FRAME_DIM]:
            yield index, frames[:, :, :-index]
            frames, index = frames[:, :, -index:], 0
        yield index, frames
        progress.step(frames if index >= 0 else None, after)


def split_at_expert_boundary(layout, experts, sigmas):
    """Without lookahead, the layout split where the experts' bands meet (docs/algorithms.md §1.7)."""
    if experts.count == 1 or layout.lookahead:
        return layout
    in_flight = experts.expert_of(layout.in_flight_sigmas(sigmas)[0])
    changes = (in_flight[1:] != in_flight[:-1]).nonzero()
    return layout if len(changes) != 1 else replace(layout, split=int(changes[0]) + 1)


def _run_queue(experts, state, sigmas, layout, total, space, eta, generator, windows_per_call, prompt_of_frame, reroll):
    """Advance ``state`` until ``total`` frames have left the queue, yielding ``(position, latent [B, C, n, H, W], state
    after the iteration)`` as each iteration's head frames finish (the state is None inside a block run ahead).

    Fresh noise enters the tail only while it will still be dequeued; after that the queue drains
    (flush), keeping the frames it finishes in front as clean context, so the last frames are
    finished like all others, in windows of full size. With an experts' split, the noisier expert
    runs up to ``experts.switch_every`` iterations ahead (_run_ahead); the frames are the same bits.
    """
    g = layout.frames_per_level
    queue = state.queue
    inflight_now, inflight_next = (level.to(queue) for level in layout.in_flight_sigmas(sigmas))
    clean = sigmas[-1:].to(queue)
    inflight_experts = experts.expert_of(inflight_now).tolist()
    # with an experts' split the cleaner expert's windows never read across it, so frames flow only
    # from the noisier segment into the cleaner one, and the noisier one can run ahead
    split = layout.split if experts.switch_every > 1 else None
    iterations = layout.queue_iterations(total)
    switch = None if reroll is None else layout.reroll_position(reroll.from_frame, state.warmup)
    # the queue tensor keeps its length: each iteration drops as many frames at the front as enter the tail
    length = queue.shape[FRAME_DIM]

    def prompt_of_position(position):
        return prompt_of_frame(max(0, position - state.warmup))

    def iteration_plan(position):
        in_flight = layout.in_flight(position, total)
        front = length - in_flight
        now = torch.cat([clean.expand(front), inflight_now[:in_flight]])
        nxt = torch.cat([clean.expand(front), inflight_next[:in_flight]])
        slot_experts = inflight_experts[:1] * front + inflight_experts[:in_flight]
        calls = calls_of_iteration(experts, slot_experts, layout.windows(in_flight, front), windows_per_call, position * g - front, prompt_of_position)
        # the output frame in each slot: the head in flight is the frame this iteration dequeues
        frames = torch.arange(length) + (position * g - front - state.warmup)
        return front, in_flight, now, nxt, frames, calls

    position = state.position
    while position < iterations:
        if position == switch:
            generator, prompt_of_frame = reroll.switch(generator, prompt_of_frame)
        block = 1
        if split is not None and layout.in_flight(position, total) == layout.slots and (generator is not None or eta <= 0):
            last = iterations if switch is None or switch <= position else switch
            while block < experts.switch_every and position + block < last and layout.in_flight(position + block, total) == layout.slots:
                block += 1
        plans = [iteration_plan(position + t) for t in range(block)]
        if block > 1:
            enqueues = [layout.enqueued(position + t, total) for t in range(block)]
            ahead = _run_ahead(experts, queue, split, plans, enqueues, space, eta, generator, sigmas, g, layout.context_slots, state)
            for t in range(block - 1):
                yield (position + t) * g, next(ahead), None
            finished = next(ahead)
            queue = _returned(ahead)
        else:
            front, in_flight, now, nxt, frames, calls = plans[0]
            enqueue = layout.enqueued(position, total)
            noise, tail = _draw_noise(queue, generator, eta, sigmas, enqueue, kept=front - layout.context_slots)
            queue = _advance(experts, calls, queue, now, nxt, frames, space, eta, noise, state)
            finished = queue[:, :, front : front + min(g, in_flight)].clone()
            queue = torch.cat([queue[:, :, enqueue:], *tail], dim=FRAME_DIM)
        done = position + block
        state = replace(
            state,
            queue=queue,
            in_flight=max(0, layout.in_flight(done, total)),
            position=done,
            iteration=state.iteration + block,
            next_frame=max(0, min(done * g, total) - state.warmup),
            generator=None if generator is None else generator.get_state(),
        )
        yield (done - 1) * g, finished, state
        position = done


def _returned(generator):
    """What a generator returns after its last yield."""
    try:
        next(generator)
    except StopIteration as finished:
        return finished.value
    raise RuntimeError("The generator yielded more than expected.")


def _draw_noise(queue, generator, eta, sigmas, enqueue, kept=0):
    """One iteration's random draws, in the order the iteration makes them: the step noise, then the tail.

    The step noise covers the context slots and the frames in flight, not the ``kept`` finished
    frames in front of them while the queue drains, which are never written.
    """
    noise = None
    if eta > 0:
        drawn = fresh_noise((*queue.shape[:2], queue.shape[FRAME_DIM] - kept, *queue.shape[3:]), generator, queue)
        noise = torch.cat([drawn.new_zeros((*queue.shape[:2], kept, *queue.shape[3:])), drawn], dim=FRAME_DIM)
    tail = [fresh_noise((*queue.shape[:2], enqueue, *queue.shape[3:]), generator, queue) * sigmas[0]] if enqueue else []
    return noise, tail


def _run_ahead(experts, queue, split, plans, enqueues, space, eta, generator, sigmas, g, context, queue_state):
    """The iterations of ``plans`` (each a full queue), the noisier segment (slots from ``split`` on,
    counted from the head) first for all of them, its frames that cross into the cleaner segment
    kept until the cleaner expert takes them. The noise is drawn in the plain order; the cleaner
    segment draws its share again from the generator's saved states, so running ahead holds no
    noise in advance. Yields each iteration's finished head frames and returns the queue after the
    last iteration."""
    noisy, crossing, states = queue, [], []
    for (front, _, now, nxt, frames, calls), enqueue in zip(plans, enqueues):
        states.append(generator.get_state() if eta > 0 else None)
        noise, tail = _draw_noise(noisy, generator, eta, sigmas, enqueue, kept=front - context)
        noisy = _advance(
            experts, [call for call in calls if call[2].windows[0].start >= front + split], noisy, now, nxt, frames, space, eta, noise, queue_state
        )
        crossing.append(noisy[:, :, front + split : front + split + g].clone())  # a copy: a view would keep the whole queue alive
        noisy = torch.cat([noisy[:, :, enqueue:], *tail], dim=FRAME_DIM)
    replay = torch.Generator(device=generator.device) if eta > 0 else None
    clean = queue[:, :, : plans[0][0] + split]
    for (front, _, now, nxt, frames, calls), enqueue, state, crossed in zip(plans, enqueues, states, crossing):
        noise = None
        if state is not None:
            replay.set_state(state)
            noise, _ = _draw_noise(queue, replay, eta, sigmas, 0, kept=front - context)
        clean = _advance(experts, [call for call in calls if call[2].windows[0].start < front + split], clean, now, nxt, frames, space, eta, noise, queue_state)
        yield clean[:, :, front : front + g].clone()
        clean = torch.cat([clean[:, :, enqueue:], crossed], dim=FRAME_DIM)
    return torch.cat([clean, noisy[:, :, clean.shape[FRAME_DIM] :]], dim=FRAME_DIM)


def _advance(experts, calls, queue, now, nxt, frames, space, eta, noise, queue_state):
    """One diagonal iteration: every in-flight frame moves down one level, by its own expert.
    ``frames``: the output frame in each slot; ``queue_state``: the run's QueueState, for its reference."""
    batch = queue.shape[0]
    updated = queue.clone()
    for expert, prompt, call in calls:
        x = torch.cat([queue[:, :, w.start : w.stop] for w in call.windows])
        levels = torch.stack([now[w.start : w.stop] for w in call.windows]).repeat_interleave(batch, dim=0)
        shown_frames = torch.stack([frames[w.start : w.stop] for w in call.windows]).repeat_interleave(batch, dim=0)
        denoised = denoise_with_reference(experts.serving(expert, prompt), x, levels, shown_frames, queue_state.reference, queue_state.reference_frame)
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

"""Progressive autoregressive sampling (PA-VDM, Xie et al.; docs/algorithms.md §2).

The window holds up to ``window_chunks`` noisy chunks of ``chunk`` latent frames at progressively
rising noise levels, behind one clean context chunk. All frames of a chunk share a level. Every
model call moves each chunk one level down the ComfyUI schedule ``sigma_0 > ... > sigma_T = 0``;
every ``steps_per_shift = T / window_chunks`` calls the oldest chunk reaches 0, is emitted and
becomes the new context, and a fresh noise chunk enters at ``sigma_0``.

Bookkeeping is one rule: chunk ``j`` enters before call ``j * steps_per_shift`` and takes the next
``T`` calls. It covers the initialisation stage (the window grows one chunk per shift), the regular
stage and the termination stage (no more noise enters, the window shrinks) of the official
``variable_length`` loop, and gives its step count ``steps_per_shift * (chunks + window_chunks - 1)``.
With the official setting ``T = chunk * window_chunks`` this reproduces the level table of the
reference, ``tau(j, s) = 1000 * (c (j + 1) - s) / F`` (the ComfyUI schedule replaces its
timestep transform).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence, Union

import torch

from .anchoring import FIRST_FRAME, denoise_with_reference
from .experts import Experts, as_experts
from .frame_levels import FRAME_DIM, Callback, Denoiser, IterationCounter, NoiseSpace, check_run, check_schedule, fresh_noise, step
from .run_state import Reroll, check_frames, raise_late_reroll, resume_on


@dataclass(frozen=True)
class ChunkLayout:
    chunk: int  # latent frames per chunk: they share one level and leave the window together
    window_chunks: int  # noisy chunks in a full window (the clean context chunk comes on top)

    def __post_init__(self):
        if self.chunk < 1:
            raise ValueError(f"A chunk must hold at least 1 latent frame, got {self.chunk}.")
        if self.window_chunks < 1:
            raise ValueError(f"The window must hold at least 1 noisy chunk, got {self.window_chunks}.")

    @property
    def noisy_frames(self) -> int:
        return self.chunk * self.window_chunks

    @property
    def window_frames(self) -> int:
        """Latent frames the model sees in a full window: the context chunk and the noisy chunks."""
        return self.chunk + self.noisy_frames

    @property
    def frames_per_call(self) -> int:
        return self.window_frames

    @property
    def windows_per_iteration(self) -> int:
        """One window per model call: there is nothing to batch."""
        return 1

    def iterations(self, num_frames: int, steps: int) -> int:
        """Model calls (window steps) of a run of ``num_frames`` output frames."""
        return call_count(chunk_count(num_frames, self.chunk), self.window_chunks, steps)

    def check_sigmas(self, sigmas: torch.Tensor) -> None:
        check_schedule(sigmas, "window", self.steps_problem)

    def reroll_switch(self, state, from_frame: int, steps: int) -> tuple[int, int]:
        """For a re-roll from ``from_frame``: the first frame it may change (the first chunk that starts
        at or after it), and the call after which it has taken over (Progress numbering)."""
        return -(-from_frame // self.chunk) * self.chunk, reroll_call(from_frame, self.chunk, self.window_chunks, steps)

    def steps_problem(self, steps: int) -> Optional[str]:
        """Why a schedule of ``steps`` steps does not fit the window, or None when it does."""
        if steps >= 1 and steps % self.window_chunks == 0:
            return None
        return (
            f"SIGMAS has {steps} steps, but the window holds {self.window_chunks} noisy chunks, so the steps must be a "
            f"multiple of {self.window_chunks}: every steps / window chunks model calls the oldest chunk is finished "
            f"and a new one enters. PA-VDM uses one step per noisy latent frame: chunk x window chunks = "
            f"{self.chunk} x {self.window_chunks} = {self.noisy_frames} steps."
        )


def chunk_count(num_frames: int, chunk: int) -> int:
    return -(-num_frames // chunk)


def call_count(num_chunks: int, window_chunks: int, steps: int) -> int:
    """Model calls (window steps) that make ``num_chunks`` chunks."""
    return steps // window_chunks * (num_chunks + window_chunks - 1)


def chunks_in_window(call: int, num_chunks: int, window_chunks: int, steps: int) -> list[tuple[int, int]]:
    """The chunks in the window at model call ``call`` (oldest first), each with the steps it has left.

    A chunk with ``r`` steps left is at ``sigmas[steps - r]`` and moves to ``sigmas[steps - r + 1]``;
    it is finished after the call in which ``r == 1``. Chunk ``j`` enters before call ``j * shift``
    and takes the next ``steps`` calls, so only the chunks from ``(call - steps) // shift + 1`` on
    can still be in the window: the work is one window's, whatever the call or the number of chunks.
    """
    shift = steps // window_chunks
    first = max(0, (call - steps) // shift + 1)
    entered = min(num_chunks, call // shift + 1)
    return [(j, steps - (call - j * shift)) for j in range(first, entered)]


def chunk_schedule(num_chunks: int, window_chunks: int, steps: int) -> Iterator[list[tuple[int, int]]]:
    """For every model call, the chunks in the window (chunks_in_window)."""
    for call in range(call_count(num_chunks, window_chunks, steps)):
        yield chunks_in_window(call, num_chunks, window_chunks, steps)


def reroll_call(from_frame: int, chunk: int, window_chunks: int, steps: int) -> int:
    """The first call after which every chunk to finish starts at or after ``from_frame``: the call
    after the one that finishes the chunk before it."""
    first_chunk = -(-from_frame // chunk)
    return 0 if first_chunk == 0 else (first_chunk - 1) * (steps // window_chunks) + steps


@dataclass(frozen=True)
class WindowState:
    """Where a progressive-window run stands between two model calls: given it, a run goes on with
    the same bits as one that never stopped (the chunks in the window, the context, the random
    generator, the reference), and nothing of the chunks it already emitted."""

    call: int  # model calls (window steps) done
    next_frame: int  # output frames emitted
    context: Optional[torch.Tensor]  # the clean context chunk
    chunks: dict  # index -> latent of every chunk in the window, not yet finished
    generator: Optional[torch.Tensor] = None  # the random generator's state
    reference: Optional[torch.Tensor] = None  # clean frames in front of every window (anchoring)
    reference_frame: int = 0  # the output frame the reference's first frame is (the denoiser is told)

    @property
    def iteration(self) -> int:
        return self.call

    def to_record(self) -> tuple[dict, dict]:
        """Its tensors and its numbers, for a file."""
        tensors = {"context": self.context, "generator": self.generator, "reference": self.reference}
        tensors.update((f"chunk_{j}", latent) for j, latent in self.chunks.items())
        return {k: v.cpu() for k, v in tensors.items() if v is not None}, {
            "call": self.call,
            "next_frame": self.next_frame,
            "reference_frame": self.reference_frame,
        }

    @classmethod
    def from_record(cls, tensors: dict, numbers: dict) -> "WindowState":
        chunks = {int(name[len("chunk_") :]): latent for name, latent in tensors.items() if name.startswith("chunk_")}
        return cls(
            int(numbers["call"]),
            int(numbers["next_frame"]),
            tensors.get("context"),
            dict(sorted(chunks.items())),
            # a record saved before the reference's frame was kept has none: its run's denoisers did not read frames
            tensors.get("generator"),
            tensors.get("reference"),
            int(numbers.get("reference_frame", 0)),
        )


def generate(
    denoise: Union[Denoiser, Experts],
    frame_shape: Sequence[int],
    sigmas: torch.Tensor,
    *,
    layout: ChunkLayout,
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
    resume: Optional[WindowState] = None,
    reroll: Optional[Reroll] = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield ``(first frame index, chunk latent [B, C, c, H, W])`` as each chunk is finished.

    ``denoise`` is one denoiser, or Experts that each serve a band of levels: a window holding
    frames of several bands is evaluated by each of their experts, and every frame takes its own
    expert's prediction. ``clip`` is an optional clean clip ``[B, C, F, H, W]`` to extend: its last ``chunk`` frames are
    the first context chunk. Without it the first chunk is made from noise alone. Exactly
    ``num_frames`` new frames come out; a last partial chunk is sampled at its own size rather
    than trimmed. Frames under different prompts in one window each get their own prompt's
    prediction (one model call per prompt present in the window). The window is one model call,
    whatever ``windows_per_call`` allows.

    ``reference``: clean frames ``[B, C, r, H, W]`` in front of every window, or FIRST_FRAME for
    the clip's first frame (without a clip, the first finished frame, from then on) (anchoring.py).
    ``resume``: a state the callback reported (Progress.state); the run goes on from it and
    yields only the chunks after it. ``reroll``: from the first chunk that starts at or after
    ``reroll.from_frame``, draw from its generator and take its prompts (run_state.Reroll).

    The denoiser is told the output frame of every frame it sees (frame_levels.Denoiser): a given
    clip comes before frame 0 (its context frames are -c .. -1, its first frame, the FIRST_FRAME
    reference, is -F), the context after that is the chunk before the window's first.

    The arguments are checked when this is called, before any model call.
    """
    check_run(layout, sigmas, num_frames, frame_shape, clip, reference)
    if resume is not None:
        _check_resume(resume, frame_shape, layout, num_frames, len(sigmas) - 1)
        if reroll is not None and reroll_call(reroll.from_frame, layout.chunk, layout.window_chunks, len(sigmas) - 1) < resume.call:
            raise_late_reroll(resume, reroll)
    return _run(
        as_experts(denoise), frame_shape, sigmas, layout, num_frames, space, clip, eta, generator, prompt_of_frame, device, callback, reference, resume, reroll
    )


def _check_resume(state: WindowState, frame_shape, layout: ChunkLayout, num_frames: int, steps: int) -> None:
    num_chunks = chunk_count(num_frames, layout.chunk)
    if state.call > 0:
        expected = [j for j, left in chunks_in_window(state.call - 1, num_chunks, layout.window_chunks, steps) if left > 1]
        if list(state.chunks) != expected:
            raise ValueError(
                f"The state was saved with chunks {list(state.chunks)} in the window, but with {num_frames} output frames the window "
                f"would hold chunks {expected} at that point: the length can change only while no chunk of the end has entered."
            )
    for j, latent in state.chunks.items():
        check_frames(latent, frame_shape, min(layout.chunk, num_frames - j * layout.chunk), f"chunk {j}")
    if state.context is not None:
        check_frames(state.context, frame_shape, state.context.shape[FRAME_DIM], "context")


def _run(experts, frame_shape, sigmas, layout, num_frames, space, clip, eta, generator, prompt_of_frame, device, callback, reference, resume, reroll):
    steps = len(sigmas) - 1
    batch, channels, height, width = frame_shape
    num_chunks = chunk_count(num_frames, layout.chunk)
    calls = call_count(num_chunks, layout.window_chunks, steps)
    like = torch.zeros((), device=device)
    if resume is None:
        given = clip[:, :, :1] if reference is FIRST_FRAME and clip is not None else (None if reference is FIRST_FRAME else reference)
        # the clip comes before output frame 0: its first frame is frame -F
        given_frame = -clip.shape[FRAME_DIM] if reference is FIRST_FRAME and clip is not None else 0
        state = WindowState(0, 0, None if clip is None else clip[:, :, -layout.chunk :], {}, reference=given, reference_frame=given_frame)
    else:
        state = resume_on(resume, generator, device)
    progress = IterationCounter(calls, callback, state.call)
    switch = None if reroll is None else reroll_call(reroll.from_frame, layout.chunk, layout.window_chunks, steps)
    context, chunks, reference_frames, reference_frame = state.context, dict(state.chunks), state.reference, state.reference_frame
    for call in range(state.call, calls):
        if call == switch:
            generator, prompt_of_frame = reroll.switch(generator, prompt_of_frame)
        in_window = chunks_in_window(call, num_chunks, layout.window_chunks, steps)
        for j, left in in_window:
            if left == steps:
                frames = min(layout.chunk, num_frames - j * layout.chunk)
                chunks[j] = fresh_noise((batch, channels, frames, height, width), generator, like) * sigmas[0]
        sizes = [chunks[j].shape[FRAME_DIM] for j, _ in in_window]
        context_frames = 0 if context is None else context.shape[FRAME_DIM]
        x = torch.cat(([] if context is None else [context]) + [chunks[j] for j, _ in in_window], dim=FRAME_DIM)
        now, nxt = (window_levels(sigmas, in_window, sizes, steps, context_frames, ahead) for ahead in (0, 1))
        first_frame = in_window[0][0] * layout.chunk
        prompts = [prompt_of_frame(first_frame + k) for k in range(x.shape[FRAME_DIM] - context_frames)]
        # the context is the chunk before the window's first (or the clip's last frames, before frame 0)
        frames = torch.arange(first_frame - context_frames, first_frame - context_frames + x.shape[FRAME_DIM]).expand(batch, -1)
        denoised = _denoise_per_expert_and_prompt(experts, x, now.expand(batch, -1), frames, prompts, context_frames, reference_frames, reference_frame)
        noise = fresh_noise(x.shape, generator, x) if eta > 0 else None
        x = step(x, denoised, now, nxt, space, eta, noise)
        stepped = x[:, :, context_frames:].split(sizes, dim=FRAME_DIM)
        chunks.update((j, frames) for (j, _), frames in zip(in_window, stepped))
        head, left = in_window[0]
        finished = left == 1
        if finished:
            context = chunks.pop(head)
            if reference is FIRST_FRAME and reference_frames is None:
                reference_frames, reference_frame = context[:, :, :1], 0
        next_frame = (head + 1) * layout.chunk if finished else state.next_frame
        state = WindowState(
            call + 1,
            min(num_frames, next_frame),
            context,
            dict(chunks),
            None if generator is None else generator.get_state(),
            reference_frames,
            reference_frame,
        )
        if finished:
            yield head * layout.chunk, context
        progress.step(context if finished else None, state)


def window_levels(sigmas, in_window, sizes, steps, context_frames, ahead):
    """Each window frame's level, the clean context first: ``ahead = 0`` before the call, ``1`` after it."""
    chunk_levels = [sigmas[steps - left + ahead].expand(size) for (_, left), size in zip(in_window, sizes)]
    return torch.cat([sigmas.new_zeros(context_frames), *chunk_levels])


def _denoise_per_expert_and_prompt(experts, x, levels, frames, prompts, context_frames, reference, reference_frame):
    """One model call per expert and prompt in the window; every noisy frame keeps its own expert's and prompt's x0."""
    own = list(zip(experts.expert_of(levels[0, context_frames:]).tolist(), prompts))
    denoised = None
    for expert in experts.order(e for e, _ in own):
        for prompt in dict.fromkeys(p for e, p in own if e == expert):
            prediction = denoise_with_reference(experts.serving(expert, prompt), x, levels, frames, reference, reference_frame)
            if denoised is None:
                denoised = prediction
                continue
            mine = [context_frames + k for k, key in enumerate(own) if key == (expert, prompt)]
            denoised[:, :, mine] = prediction[:, :, mine]
    return denoised

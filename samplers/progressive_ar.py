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

from .experts import Experts, as_experts
from .frame_levels import FRAME_DIM, Callback, Denoiser, IterationCounter, NoiseSpace, check_run, check_schedule, fresh_noise, step


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


def chunk_schedule(num_chunks: int, window_chunks: int, steps: int) -> Iterator[list[tuple[int, int]]]:
    """For every model call, the chunks in the window (oldest first) with the steps each has left.

    A chunk with ``r`` steps left is at ``sigmas[steps - r]`` and moves to ``sigmas[steps - r + 1]``;
    it is finished after the call in which ``r == 1``.
    """
    for call in range(call_count(num_chunks, window_chunks, steps)):
        yield chunks_in_window(call, num_chunks, window_chunks, steps)


def chunks_in_window(call: int, num_chunks: int, window_chunks: int, steps: int) -> list[tuple[int, int]]:
    """The chunks in the window at model call ``call`` (oldest first), each with the steps it has left.

    Chunk ``j`` enters before call ``j * shift`` and takes the next ``steps`` calls, so only the
    chunks from ``(call - steps) // shift + 1`` on can still be in the window: the work is one
    window's, whatever the call or the number of chunks.
    """
    shift = steps // window_chunks
    first = max(0, (call - steps) // shift + 1)
    entered = min(num_chunks, call // shift + 1)
    return [(j, steps - (call - j * shift)) for j in range(first, entered)]


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

    The arguments are checked when this is called, before any model call.
    """
    check_run(layout, sigmas, num_frames, frame_shape, clip)
    return _run(as_experts(denoise), frame_shape, sigmas, layout, num_frames, space, clip, eta, generator, prompt_of_frame, device, callback)


def _run(experts, frame_shape, sigmas, layout, num_frames, space, clip, eta, generator, prompt_of_frame, device, callback):
    steps = len(sigmas) - 1
    batch, channels, height, width = frame_shape
    progress = IterationCounter(layout.iterations(num_frames, steps), callback)
    like = torch.zeros((), device=device)
    context = None if clip is None else clip[:, :, -layout.chunk :]
    chunks: dict[int, torch.Tensor] = {}
    for in_window in chunk_schedule(chunk_count(num_frames, layout.chunk), layout.window_chunks, steps):
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
        denoised = _denoise_per_expert_and_prompt(experts, x, now.expand(batch, -1), prompts, context_frames)
        noise = fresh_noise(x.shape, generator, x) if eta > 0 else None
        x = step(x, denoised, now, nxt, space, eta, noise)
        stepped = x[:, :, context_frames:].split(sizes, dim=FRAME_DIM)
        chunks.update((j, frames) for (j, _), frames in zip(in_window, stepped))
        head, left = in_window[0]
        if left == 1:
            context = chunks.pop(head)
            yield head * layout.chunk, context
        progress.step(context if left == 1 else None)


def window_levels(sigmas, in_window, sizes, steps, context_frames, ahead):
    """Each window frame's level, the clean context first: ``ahead = 0`` before the call, ``1`` after it."""
    chunk_levels = [sigmas[steps - left + ahead].expand(size) for (_, left), size in zip(in_window, sizes)]
    return torch.cat([sigmas.new_zeros(context_frames), *chunk_levels])


def _denoise_per_expert_and_prompt(experts, x, levels, prompts, context_frames):
    """One model call per expert and prompt in the window; every noisy frame keeps its own expert's and prompt's x0."""
    own = list(zip(experts.expert_of(levels[0, context_frames:]).tolist(), prompts))
    denoised = None
    for expert in experts.order(e for e, _ in own):
        for prompt in dict.fromkeys(p for e, p in own if e == expert):
            prediction = experts(expert, x, levels, prompt)
            if denoised is None:
                denoised = prediction
                continue
            mine = [context_frames + k for k, key in enumerate(own) if key == (expert, prompt)]
            denoised[:, :, mine] = prediction[:, :, mine]
    return denoised

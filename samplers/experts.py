"""Denoisers that each serve a band of noise levels, as Wan 2.2 A14B's high-noise and low-noise experts.

Expert ``i`` serves the levels in ``[boundaries[i], boundaries[i - 1])``, with the boundaries
descending: expert 0 the noisiest band (``sigma >= boundaries[0]``), the last expert the cleanest.
In a diagonal queue or a progressive window the frames sit at many levels at once, so one
iteration can need several experts; every frame is denoised by the expert of its own level.

Switching experts costs a model load when only one fits in memory, so the samplers order their
calls: all calls of one expert, then the next, starting each iteration with the expert the last
one ended with. ``switches`` counts the changes of expert between consecutive calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Sequence, Union

import torch

if TYPE_CHECKING:
    from .frame_levels import Denoiser


class Experts:
    """``switch_every``: iterations one expert may run ahead of the other where the samplers can
    reorder their work that way (the Diagonal Queue with Latent Partition and no Lookahead); 1
    keeps the iterations in step."""

    def __init__(self, denoisers: Sequence["Denoiser"], boundaries: Sequence[float] = (), switch_every: int = 1):
        if len(boundaries) != len(denoisers) - 1:
            raise ValueError(f"{len(denoisers)} experts need {len(denoisers) - 1} boundaries between their bands, got {len(boundaries)}.")
        if any(lower >= upper for upper, lower in zip(boundaries, boundaries[1:])):
            raise ValueError(f"Expert boundaries must descend, from the noisiest band down: got {list(boundaries)}.")
        if switch_every < 1:
            raise ValueError(f"switch_every must be at least 1, got {switch_every}.")
        self.switch_every = switch_every
        self.denoisers = list(denoisers)
        self.boundaries = torch.tensor([float(b) for b in boundaries], dtype=torch.float64)
        self.current: int | None = None  # the expert of the last call
        self.switches = 0

    @property
    def count(self) -> int:
        return len(self.denoisers)

    def expert_of(self, levels: torch.Tensor) -> torch.Tensor:
        """The expert serving each level (same shape, int64): the number of boundaries above it."""
        return (levels.detach().to("cpu", torch.float64)[..., None] < self.boundaries).sum(-1)

    def needed(self, levels: torch.Tensor) -> set[int]:
        """Experts of the frames still to denoise (level above 0); clean frames need none."""
        noisy = levels[levels > 0]
        return set(self.expert_of(noisy).unique().tolist())

    def order(self, needed: Iterable[int]) -> list[int]:
        """The needed experts in calling order: the current one first (no switch), then by band."""
        needed = sorted(set(needed))
        if self.current in needed:
            needed.remove(self.current)
            needed.insert(0, self.current)
        return needed

    def __call__(self, expert: int, x: torch.Tensor, levels: torch.Tensor, prompt: int, frames: torch.Tensor) -> torch.Tensor:
        if self.current is not None and expert != self.current:
            self.switches += 1
        self.current = expert
        return self.denoisers[expert](x, levels, prompt, frames)

    def serving(self, expert: int, prompt: int) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
        """One expert under one prompt, called as ``(x, levels, frames)`` (anchoring.denoise_with_reference)."""
        return lambda x, levels, frames: self(expert, x, levels, prompt, frames)


def check_boundaries(boundaries, sigmas: torch.Tensor) -> None:
    """Every expert serves at least one level of the schedule."""
    levels = sigmas[sigmas > 0]
    for boundary in boundaries:
        above = int((levels >= boundary).sum())
        if above == 0 or above == len(levels):
            side, expert = ("above", "high-noise") if above == 0 else ("at or below", "low-noise")
            raise ValueError(
                f"The experts' boundary {boundary:g} is {side} every noise level of the schedule ({float(levels.max()):.3g} to "
                f"{float(levels.min()):.3g}), so the {expert} expert would never run. Set the boundary between them (0 picks Wan 2.2's own) "
                f"or change the scheduler's shift."
            )


def as_experts(denoise: Union["Denoiser", Experts]) -> Experts:
    """One denoiser is a single expert serving every level."""
    return denoise if isinstance(denoise, Experts) else Experts([denoise])


def expert_runs(experts_in_order: Sequence[int], offset: int = 0) -> list[tuple[int, int, int]]:
    """``(expert, first, stop)`` of each run of consecutive positions served by one expert."""
    runs: list[list[int]] = []
    for position, expert in enumerate(experts_in_order, start=offset):
        if runs and runs[-1][0] == expert:
            runs[-1][2] = position + 1
        else:
            runs.append([expert, position, position + 1])
    return [(expert, first, stop) for expert, first, stop in runs]

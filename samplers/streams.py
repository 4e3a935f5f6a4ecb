"""A second stream (sound) carried with the video frames, each frame with the units that span its time.

Some models make video and sound together (LTX-2: a video latent ``[B, C, F, H, W]`` and an audio
latent ``[B, 8, T, 16]``). The samplers move, noise and denoise latent frames; a second stream with
its own time rate rides along by packing: frame ``k`` owns the stream's units
``[unit_bounds(k), unit_bounds(k + 1))`` and a packed frame holds its video latent frame and its own
units, the rest of its slot padding. A packed video is ``[B, 1, F, 1, D]`` with
``D = C * H * W + max_units * unit elements``, so the samplers handle it as any other latent: a frame
and its units enter as noise together, are denoised by the same call and leave together. Only the
denoiser unpacks, which is why every denoiser is told the output-frame index of every frame it sees
(docs/algorithms.md §6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch


@dataclass(frozen=True)
class SecondStream:
    """A stream of units along time, ``units_shape`` without batch and time (LTX-2's audio: (8, 16)),
    its time axis at ``time_dim`` of the whole tensor (LTX-2: 2 in ``[B, 8, T, 16]``; MiniMax H3: 3 in
    ``[B, 32, 2, A]``). ``unit_bounds(k)`` is the first unit of frame ``k`` for every integer ``k``
    (warm-up frames are negative) and never decreases; no frame owns more than ``max_units`` units."""

    units_shape: tuple[int, ...]
    time_dim: int
    unit_bounds: Callable[[int], int]
    max_units: int

    def __post_init__(self):
        if not 1 <= self.time_dim <= len(self.units_shape) + 1:
            raise ValueError(f"The time axis of a stream of units {self.units_shape} is one of dims 1..{len(self.units_shape) + 1}, got {self.time_dim}.")
        if self.max_units < 1:
            raise ValueError(f"A frame's slot must hold at least 1 unit, got max_units {self.max_units}.")

    @property
    def unit_elements(self) -> int:
        return math.prod(self.units_shape)

    def units_of(self, frames: torch.Tensor) -> torch.Tensor:
        """How many units each frame owns, same shape as ``frames``."""
        flat = frames.flatten().tolist()
        bounds = {k: self.unit_bounds(k) for k in {*flat, *(k + 1 for k in flat)}}
        counts = torch.tensor([bounds[k + 1] - bounds[k] for k in flat], dtype=torch.long).view(frames.shape)
        if bool((counts < 0).any()) or bool((counts > self.max_units).any()):
            worst = int(frames.flatten()[(counts.flatten() < 0) | (counts.flatten() > self.max_units)][0])
            raise ValueError(
                f"Frame {worst} owns units [{bounds[worst]}, {bounds[worst + 1]}): unit_bounds must not decrease and no frame may own "
                f"more than max_units = {self.max_units} units."
            )
        return counts


@dataclass(frozen=True)
class FramePacking:
    """Packs video latent frames of ``video_frame`` (channels, height, width) with their units of ``stream``."""

    stream: SecondStream
    video_frame: tuple[int, int, int]

    @property
    def video_elements(self) -> int:
        return math.prod(self.video_frame)

    @property
    def frame_elements(self) -> int:
        """D: the elements of one packed frame."""
        return self.video_elements + self.stream.max_units * self.stream.unit_elements

    def pack(self, video: torch.Tensor, units: torch.Tensor, first_frame: int) -> torch.Tensor:
        """``video [B, C, F, H, W]`` and the stream ``units`` spanning frames ``first_frame ..
        first_frame + F - 1`` (its time axis runs from unit ``unit_bounds(first_frame)``) as packed
        frames ``[B, 1, F, 1, D]``, the padding zero."""
        batch, frames = video.shape[0], video.shape[2]
        expected = self.stream.unit_bounds(first_frame + frames) - self.stream.unit_bounds(first_frame)
        if units.shape[0] != batch or units.shape[self.stream.time_dim] != expected:
            raise ValueError(
                f"Frames {first_frame}..{first_frame + frames - 1} span {expected} units of the second stream for a batch of {batch}, but "
                f"its tensor {tuple(units.shape)} has {units.shape[self.stream.time_dim]} along dim {self.stream.time_dim}."
            )
        indices = (torch.arange(frames) + first_frame).expand(batch, frames)
        padding = video.new_zeros(batch, 1, frames, 1, self.frame_elements)
        return self.repack(video, list(units.split(1)), indices, padding)

    def video(self, packed: torch.Tensor) -> torch.Tensor:
        """The video latent frames ``[N, C, F, H, W]`` of packed frames ``[N, 1, F, 1, D]``: every slot starts with its video frame."""
        rows, length = packed.shape[0], packed.shape[2]
        slots = packed.reshape(rows, length, self.frame_elements)
        return slots[..., : self.video_elements].reshape(rows, length, *self.video_frame).movedim(1, 2)

    def unpack(self, packed: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Rows ``packed [N, 1, F, 1, D]`` whose frames are output frames ``frames [N, F]``: the video
        ``[N, C, F, H, W]`` and, per row, its frames' units in frame order ``[1, ..., T_n, ...]`` (rows at
        different places in the video can own different numbers of units)."""
        rows, length = packed.shape[0], packed.shape[2]
        slots = packed.reshape(rows, length, self.frame_elements)
        video = self.video(packed)
        units = slots[..., self.video_elements :].reshape(rows, length, self.stream.max_units, self.stream.unit_elements)
        owned = self._owned(frames).to(packed.device)
        return video, [self._stream_layout(units[n][owned[n]]) for n in range(rows)]

    def repack(self, video: torch.Tensor, units: Sequence[torch.Tensor], frames: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        """The inverse of unpack: packed rows holding ``video`` and each row's ``units`` for output
        frames ``frames``, every element no unit fills taken from ``padding [N, 1, F, 1, D]``."""
        rows, length = video.shape[0], video.shape[2]
        slots = padding.reshape(rows, length, self.frame_elements).clone()
        slots[..., : self.video_elements] = video.movedim(2, 1).reshape(rows, length, self.video_elements).to(slots)
        packed_units = slots[..., self.video_elements :].view(rows, length, self.stream.max_units, self.stream.unit_elements)
        owned = self._owned(frames).to(slots.device)
        for n in range(rows):
            row_units = units[n].movedim(self.stream.time_dim, 1).reshape(-1, self.stream.unit_elements)
            if row_units.shape[0] != int(owned[n].sum()):
                raise ValueError(
                    f"Row {n}'s frames {frames[n].tolist()} own {int(owned[n].sum())} units of the second stream, but it was given {row_units.shape[0]}."
                )
            packed_units[n][owned[n]] = row_units.to(slots)
        return slots.view(rows, 1, length, 1, self.frame_elements)

    def _owned(self, frames: torch.Tensor) -> torch.Tensor:
        """``[N, F, max_units]``: which unit places of each frame's slot hold one of its units."""
        return torch.arange(self.stream.max_units) < self.stream.units_of(frames)[..., None]

    def _stream_layout(self, row_units: torch.Tensor) -> torch.Tensor:
        """``[T, unit elements]`` as the stream's tensor of batch 1, time at its own dim."""
        return row_units.reshape(1, row_units.shape[0], *self.stream.units_shape).movedim(1, self.stream.time_dim)

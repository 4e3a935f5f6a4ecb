"""A Gaussian audio-video process whose exact denoiser is known, over packed frames (samplers/streams.py).

Video frames are GaussianVideo's: every element an AR(1) series over the frames, ``K[i, j] =
rho^|i - j|`` by output-frame index, mean ``video_mean``. A unit of the second stream owned by frame
``f`` pairs its element ``e`` with element ``e`` of that frame's video latent:
``unit = unit_mean + beta * (frame - video_mean) + sqrt(1 - beta^2) * own noise``, so every unit has
variance 1, correlation ``beta`` with its own frame, ``beta * rho^|f - g|`` with frame ``g`` and
``beta^2 * rho^|f - g|`` with a unit of frame ``g``. Each unit sits at the level of its frame's slot;
the posterior mean over a packed window is one linear solve per element over its video frames and units.
"""

from __future__ import annotations

import math

import torch

from samplers.frame_levels import NoiseSpace
from samplers.streams import FramePacking


class GaussianAudioVideo:
    def __init__(self, space: NoiseSpace, packing: FramePacking, rho: float = 0.9, beta: float = 0.8, video_mean: float = 0.5, unit_mean: float = -0.3):
        if packing.stream.unit_elements != packing.video_elements:
            raise ValueError("Each unit element pairs with one element of its frame: they need as many elements.")
        self.space, self.packing = space, packing
        self.rho, self.beta, self.video_mean, self.unit_mean = rho, beta, video_mean, unit_mean

    def owners(self, frames: list[int]) -> list[int]:
        """The frame owning each unit of these frames, in the order unpack gives them."""
        counts = self.packing.stream.units_of(torch.tensor(frames)).tolist()
        return [frame for frame, count in zip(frames, counts) for _ in range(count)]

    def covariance(self, frames: list[int]) -> torch.Tensor:
        """Per element: the covariance of the video frames, then the units they own."""
        owners = self.owners(frames)
        index = torch.tensor(frames + owners, dtype=torch.float64)
        k = self.rho ** (index[:, None] - index[None, :]).abs()
        is_unit = torch.tensor([0.0] * len(frames) + [1.0] * len(owners), dtype=torch.float64)
        scale = self.beta**is_unit
        cov = scale[:, None] * k * scale[None, :]
        return cov + torch.diag(is_unit * (1.0 - self.beta**2))

    def means(self, frames: list[int]) -> torch.Tensor:
        return torch.tensor([self.video_mean] * len(frames) + [self.unit_mean] * len(self.owners(frames)), dtype=torch.float64)

    def sample(self, batch: int, first_frame: int, frames: int, generator: torch.Generator) -> torch.Tensor:
        """``batch`` clean clips of output frames ``first_frame ..``, packed."""
        indices = list(range(first_frame, first_frame + frames))
        chol = torch.linalg.cholesky(self.covariance(indices))
        white = torch.randn(batch, chol.shape[0], self.packing.video_elements, generator=generator, dtype=torch.float64)
        items = torch.einsum("ij,bje->bie", chol, white) + self.means(indices)[:, None]
        video, units = self._split(items, frames)
        return self.packing.pack(video.float(), units.float(), first_frame)

    def denoise(self, x: torch.Tensor, levels: torch.Tensor, prompt: int, frames: torch.Tensor) -> torch.Tensor:
        """Exact posterior mean of packed windows ``x [N, 1, F, 1, D]`` at ``levels [N, F]`` holding output
        frames ``frames [N, F]``; the padding comes back as it went in. Rows of one window (the same
        frames at the same levels) share one solve."""
        video, units = self.packing.unpack(x, frames)
        windows: dict[tuple, list[int]] = {}
        for n in range(x.shape[0]):
            windows.setdefault((tuple(frames[n].tolist()), tuple(levels[n].tolist())), []).append(n)
        video_x0, units_x0 = torch.empty_like(video), [None] * x.shape[0]
        for (own, own_levels), rows in windows.items():
            items = torch.stack([self._items(video[n], units[n]) for n in rows])
            row_video, row_units = self._split(self._posterior(items, list(own), torch.tensor(own_levels)), len(own))
            for i, n in enumerate(rows):
                video_x0[n], units_x0[n] = row_video[i].to(video), row_units[i : i + 1].to(video)
        return self.packing.repack(video_x0, units_x0, frames, x)

    def _posterior(self, items: torch.Tensor, frames: list[int], levels: torch.Tensor) -> torch.Tensor:
        counts = self.packing.stream.units_of(torch.tensor(frames)).tolist()
        item_levels = torch.cat([levels.double(), levels.double().repeat_interleave(torch.tensor(counts))])
        scale = 1.0 - item_levels if self.space is NoiseSpace.RECTIFIED_FLOW else torch.ones_like(item_levels)
        cov, mean = self.covariance(frames), self.means(frames)
        observed = scale[:, None] * cov * scale[None, :] + torch.diag(item_levels**2)
        gain = torch.linalg.solve(observed, (cov * scale[None, :]).T).T
        return mean[:, None] + torch.einsum("ij,bje->bie", gain, items - (scale * mean)[:, None])

    def _split(self, items: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, frames + units, elements]`` as the video ``[B, C, F, H, W]`` and the stream's tensor."""
        batch = items.shape[0]
        video = items[:, :frames].reshape(batch, frames, *self.packing.video_frame).movedim(1, 2)
        units = items[:, frames:].reshape(batch, -1, *self.packing.stream.units_shape).movedim(1, self.packing.stream.time_dim)
        return video, units

    def _items(self, video: torch.Tensor, units: torch.Tensor) -> torch.Tensor:
        """One row's ``[frames + units, elements]``: its video ``[C, F, H, W]``, then its units ``[1, ..., T, ...]``."""
        time = self.packing.stream.time_dim
        unit_rows = units.movedim(time, 1).reshape(units.shape[time], -1)
        return torch.cat([video.movedim(1, 0).reshape(video.shape[1], -1), unit_rows]).double()


def unit_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Correlation of two sets of samples of the same shape, over all their elements."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).mean() / math.sqrt(float((a * a).mean() * (b * b).mean())))

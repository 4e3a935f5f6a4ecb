"""A Gaussian video process whose exact denoiser is known for any per-frame noise levels.

Clean videos are ``x0 ~ N(mean_p, K (x) I)``: frames correlated by ``K[i, j] = rho^|i - j|``,
channels and pixels independent, the mean set by the prompt index ``p``. A frame at level sigma is
``a * x0 + sigma * noise`` with ``a = 1`` (variance exploding) or ``a = 1 - sigma`` (rectified
flow), so ``E[x0 | x]`` is a per-pixel linear solve over the frames of the window.
"""

from __future__ import annotations

import torch

from samplers.frame_levels import NoiseSpace


class GaussianVideo:
    def __init__(self, space: NoiseSpace, rho: float = 0.9, prompt_means=(0.5,), channels=2, height=3, width=4):
        self.space = space
        self.rho = rho
        self.prompt_means = prompt_means
        self.shape = (channels, height, width)
        self.calls: list[tuple[tuple[int, ...], torch.Tensor, int]] = []

    def correlation(self, frames: int) -> torch.Tensor:
        index = torch.arange(frames, dtype=torch.float64)
        return self.rho ** (index[:, None] - index[None, :]).abs()

    def sample(self, batch: int, frames: int, generator: torch.Generator, prompt: int = 0) -> torch.Tensor:
        chol = torch.linalg.cholesky(self.correlation(frames))
        white = torch.randn(batch, *self.shape[:1], frames, *self.shape[1:], generator=generator, dtype=torch.float64)
        return (torch.einsum("fg,ncghw->ncfhw", chol, white) + self.prompt_means[prompt]).float()

    def signal_scale(self, sigmas: torch.Tensor) -> torch.Tensor:
        return 1.0 - sigmas if self.space is NoiseSpace.RECTIFIED_FLOW else torch.ones_like(sigmas)

    def denoise(self, x: torch.Tensor, sigmas: torch.Tensor, prompt: int, frames: torch.Tensor) -> torch.Tensor:
        """Exact posterior mean for windows ``x [N, C, F, H, W]`` at levels ``sigmas [N, F]`` (the process
        is stationary: which output ``frames`` the windows hold does not change it)."""
        self.calls.append((tuple(x.shape), sigmas.detach().clone(), prompt))
        sigmas = sigmas.double()
        mean = self.prompt_means[prompt]
        k = self.correlation(x.shape[2])
        a = self.signal_scale(sigmas)
        observed_cov = a[:, :, None] * k * a[:, None, :] + torch.diag_embed(sigmas**2)
        gain = torch.linalg.solve(observed_cov, (k * a[:, None, :]).transpose(1, 2)).transpose(1, 2)
        residual = x.double() - a[:, None, :, None, None] * mean
        return (mean + torch.einsum("nfg,ncghw->ncfhw", gain, residual)).to(x.dtype)


def frames_from_zero(x: torch.Tensor) -> torch.Tensor:
    """The ``frames`` argument for windows ``x [N, C, F, H, W]`` that each hold output frames 0 .. F - 1."""
    return torch.arange(x.shape[2]).expand(x.shape[0], -1)

"""Per-frame noise-level arithmetic shared by the long-video samplers.

Latents are laid out as ``[batch, channels, frames, height, width]`` and every frame carries its
own sigma. Sigmas follow ComfyUI's k-diffusion convention: a noisy latent is either
``x0 + sigma * noise`` (variance exploding: EPS / V-prediction models) or
``(1 - sigma) * x0 + sigma * noise`` (rectified flow: Wan, LTX-Video, HunyuanVideo).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Callable, Optional, Sequence

import torch

from .anchoring import denoise_with_reference
from .experts import as_experts

FRAME_DIM = 2

# predict x0 for a batch of windows: latents [N, C, F, H, W], per-frame sigmas [N, F], prompt index,
# and the output-frame index of every frame [N, F] (int64, on the CPU): warm-up frames are negative;
# a denoiser of frames that carry a second stream unpacks them by it (streams.py)
Denoiser = Callable[[torch.Tensor, torch.Tensor, int, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Progress:
    """What every sampler reports after each iteration (one step further for every frame it holds)."""

    iteration: int  # iterations done: 1 after the first
    iterations: int  # iterations of the whole run
    finished: Optional[torch.Tensor] = None  # output frames finished in this iteration [B, C, n, H, W], model space
    # where the run stands after this iteration (samplers.run_state), when it can go on from here:
    # a resumable run saves it; None while an iteration is half done (the queue's experts running ahead)
    state: Optional[object] = None


Callback = Callable[[Progress], None]


class IterationCounter:
    """Numbers the iterations of one run and reports each to the callback; ``done`` iterations came before (a resumed run)."""

    def __init__(self, iterations: int, callback: Optional[Callback], done: int = 0):
        self.iterations, self.callback, self.done = iterations, callback, done

    def step(self, finished: Optional[torch.Tensor] = None, state: Optional[object] = None) -> None:
        self.done += 1
        if self.callback is not None:
            self.callback(Progress(self.done, self.iterations, finished, state))


class NoiseSpace(str, Enum):
    VARIANCE_EXPLODING = "variance_exploding"
    RECTIFIED_FLOW = "rectified_flow"


def per_frame(levels: torch.Tensor, ndim: int = 5) -> torch.Tensor:
    """View per-frame levels ``[F]`` or ``[N, F]`` so they broadcast over ``[N, C, F, H, W]``."""
    if levels.ndim == 1:
        return levels.view(1, 1, -1, *([1] * (ndim - 3)))
    return levels.view(levels.shape[0], 1, levels.shape[1], *([1] * (ndim - 3)))


def check_schedule(sigmas: torch.Tensor, holder: str, steps_problem: Callable[[int], Optional[str]]) -> None:
    """A 1-D denoising schedule whose step count suits the holder, every level of which but the last holds a noisy frame."""
    if sigmas.ndim != 1:
        raise ValueError(f"SIGMAS must be a 1-D schedule, but it has shape {tuple(sigmas.shape)}.")
    problem = steps_problem(len(sigmas) - 1)
    if problem:
        raise ValueError(problem)
    if bool((sigmas[1:] > sigmas[:-1]).any()):
        raise ValueError(f"SIGMAS must not increase: the {holder} needs a denoising schedule from noisy to clean.")
    if float(sigmas[-2]) <= 0.0:
        raise ValueError(f"SIGMAS may end at 0 only once: every {holder} level except the last must be above 0.")


def check_run(layout, sigmas: torch.Tensor, num_frames: int, frame_shape: Sequence[int], clip: Optional[torch.Tensor], reference=None) -> None:
    """The checks every sampler makes before its first model call: schedule, length, shapes."""
    layout.check_sigmas(sigmas)
    if num_frames < 1:
        raise ValueError(f"The number of frames must be at least 1, got {num_frames}.")
    if len(frame_shape) != 4:
        raise ValueError(f"frame_shape is (batch, channels, height, width), got {tuple(frame_shape)}.")
    if clip is not None:
        batch, channels, height, width = frame_shape
        if clip.ndim != 5 or (clip.shape[0], clip.shape[1], *clip.shape[3:]) != (batch, channels, height, width):
            raise ValueError(f"The clip {tuple(clip.shape)} is not a video of frames {tuple(frame_shape)}: [batch, channels, frames, height, width].")
    if isinstance(reference, torch.Tensor) and (reference.ndim != 5 or (reference.shape[0], reference.shape[1], *reference.shape[3:]) != tuple(frame_shape)):
        raise ValueError(f"The reference {tuple(reference.shape)} is not a clip of frames {tuple(frame_shape)}: [batch, channels, frames, height, width].")


def add_noise(clean: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor, space: NoiseSpace) -> torch.Tensor:
    """Noise every frame of ``clean`` to its own level."""
    s = per_frame(sigmas, clean.ndim).to(clean)
    if space is NoiseSpace.RECTIFIED_FLOW:
        return (1.0 - s) * clean + s * noise
    return clean + s * noise


def step(
    x: torch.Tensor,
    denoised: torch.Tensor,
    sigmas: torch.Tensor,
    sigmas_next: torch.Tensor,
    space: NoiseSpace,
    eta: float = 0.0,
    noise: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Move every frame from its level to its next level.

    ``eta = 0`` is the deterministic Euler step in sigma space (DDIM with eta 0);
    ``eta > 0`` is the ancestral step (eta 1: DDPM-like), which needs fresh ``noise`` per frame.
    Frames whose level is already 0 are returned unchanged.
    """
    s = per_frame(sigmas, x.ndim).to(x)
    s_next = per_frame(sigmas_next, x.ndim).to(x)
    safe_s = torch.where(s > 0, s, torch.ones_like(s))
    if eta <= 0.0:
        stepped = x + (s_next - s) * (x - denoised) / safe_s
    elif space is NoiseSpace.RECTIFIED_FLOW:
        stepped = _ancestral_flow_step(x, denoised, s, safe_s, s_next, eta, noise)
    else:
        stepped = _ancestral_ve_step(x, denoised, s, safe_s, s_next, eta, noise)
    return torch.where(s > 0, stepped, x)


def _ancestral_ve_step(x, denoised, s, safe_s, s_next, eta, noise):
    # k-diffusion's get_ancestral_step, per frame
    sigma_up = torch.minimum(s_next, eta * (s_next**2 * (s**2 - s_next**2) / safe_s**2).clamp(min=0).sqrt())
    sigma_down = (s_next**2 - sigma_up**2).clamp(min=0).sqrt()
    return x + (sigma_down - s) * (x - denoised) / safe_s + noise * sigma_up


def _ancestral_flow_step(x, denoised, s, safe_s, s_next, eta, noise):
    # rectified-flow ancestral step (as ComfyUI's euler_ancestral_RF), per frame: overshoot down to
    # sigma_down along the flow, then re-noise up to sigma_next keeping the variance consistent
    sigma_down = s_next * (1.0 + (s_next / safe_s - 1.0) * eta)
    alpha_next = 1.0 - s_next
    alpha_down = 1.0 - sigma_down
    renoise = (s_next**2 - sigma_down**2 * alpha_next**2 / alpha_down**2).clamp(min=0).sqrt()
    ratio = sigma_down / safe_s
    x = ratio * x + (1.0 - ratio) * denoised
    return (alpha_next / alpha_down) * x + noise * renoise


def sample_clip(
    denoise,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    space: NoiseSpace,
    eta: float = 0.0,
    generator: Optional[torch.Generator] = None,
    prompt: int = 0,
    reference: Optional[torch.Tensor] = None,
    callback: Optional[Callable[[], None]] = None,
) -> torch.Tensor:
    """Ordinary sampling of a clip: every frame at the same level, one model call per level.

    ``denoise`` is a Denoiser or Experts (each step by the expert of its level); ``noise`` is
    unit noise ``[B, C, F, H, W]``; ``sigmas`` the descending schedule (ComfyUI SIGMAS).
    ``reference``: clean frames the model sees in front of the clip (anchoring.denoise_with_reference),
    told frames 0 .. r - 1 as every given reference is; the clip is output frames 0 .. F - 1.
    ``callback()`` is called after each step.
    """
    experts = as_experts(denoise)
    frames = noise.shape[FRAME_DIM]
    indices = torch.arange(frames).expand(noise.shape[0], frames)
    # pure noise at the first level is sigma_max * noise in both noise spaces
    x = noise * sigmas[0]
    for i in range(len(sigmas) - 1):
        level = sigmas[i].expand(noise.shape[0], frames)
        level_next = sigmas[i + 1].expand(noise.shape[0], frames)
        denoised = denoise_with_reference(experts.serving(int(experts.expert_of(sigmas[i])), prompt), x, level, indices, reference, 0)
        fresh = fresh_noise(x.shape, generator, x) if eta > 0 else None
        x = step(x, denoised, level, level_next, space, eta, fresh)
        if callback is not None:
            callback()
    return x


def fresh_noise(shape, generator: Optional[torch.Generator], like: torch.Tensor) -> torch.Tensor:
    """Unit Gaussian noise drawn on the generator's device (CPU), so results do not depend on the GPU."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(shape, generator=generator, device=device, dtype=torch.float32).to(like)

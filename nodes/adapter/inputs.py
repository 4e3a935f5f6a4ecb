"""What the per-frame run checks before any work: the schedule, and the latent against the model."""

from __future__ import annotations

import torch

from .families import PACKED_ROW_MASKS, Family


def check_sigmas(sigmas) -> None:
    """A 1-D schedule of at least one step with finite levels; the sampler checks the rest (step count, order)."""
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1:
        shape = tuple(sigmas.shape) if isinstance(sigmas, torch.Tensor) else type(sigmas).__name__
        raise ValueError(f"SIGMAS must be a 1-D schedule from a scheduler node, but it has shape {shape}.")
    if len(sigmas) < 2:
        raise ValueError(
            f"SIGMAS has {len(sigmas)} value(s), but the sampler needs a schedule of at least one step (two values): "
            f"a scheduler with denoise 0, or a split that keeps a single level, gives one that is too short."
        )
    if not bool(torch.isfinite(sigmas).all()):
        raise ValueError(f"SIGMAS holds NaN or infinite levels ({sigmas.tolist()[:8]} ...): check the scheduler and the nodes after it.")


def check_latent_channels(video: torch.Tensor, model, family: Family) -> None:
    """The latent must have the model's channels (an empty one was already resized, as KSampler does)."""
    # MiniMax H3's latent format gives the wider of its two streams (the audio's 32 channels); its video has the transformer's
    expected = model.diffusion_model.latents_dim if family.mechanism == PACKED_ROW_MASKS else model.latent_format.latent_channels
    if video.shape[1] != expected:
        raise ValueError(
            f"The latent has {video.shape[1]} channels, but this {family.name} model works on {expected}-channel latents: "
            f"make it with an empty latent node for this model, or encode the clip with this model's VAE."
        )

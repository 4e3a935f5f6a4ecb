"""Reference anchoring: clean frames the model sees in front of every window, and nothing else.

ComfyUI's context windows can keep the first latent frame in every window (``retain_first_frame``)
so that far-apart windows still see where the video started. The samplers do the same with a
reference of ``r`` clean latent frames (the video's own first frame, or an image through the VAE):
it goes in front of every window at level 0, is never written back and never emitted, and the
model's prediction for it is dropped. To the model it is a clean frame given as condition, as a
context chunk is (docs/algorithms.md §4). Each model call then sees ``r`` more frames.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

# the reference is the video's own first frame: the first clip's (or the given clip's) first frame,
# or, for a progressive window started from noise, the first finished frame once there is one; the
# denoiser is told the output-frame index of the frame it is. A reference given as a tensor is told
# frames 0 .. r - 1: it stands for the start of the video it anchors.
FIRST_FRAME = "first frame"

_FRAMES = 2  # [N, C, F, H, W]


def denoise_with_reference(
    denoise: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    levels: torch.Tensor,
    frames: torch.Tensor,
    reference: Optional[torch.Tensor],
    reference_frame: int,
) -> torch.Tensor:
    """``denoise(x, levels, frames)`` for windows ``x [N, C, F, H, W]`` at ``levels [N, F]`` that hold
    output frames ``frames [N, F]``, each window shown behind ``reference [B, C, r, H, W]`` at level 0
    as frames ``reference_frame .. reference_frame + r - 1`` (N = windows x B, window-major, as the
    samplers stack them); returns the prediction for the window frames only."""
    if reference is None:
        return denoise(x, levels, frames)
    count = reference.shape[_FRAMES]
    windows = x.shape[0] // reference.shape[0]
    shown = torch.cat([reference.to(x).repeat(windows, 1, 1, 1, 1), x], dim=_FRAMES)
    clean = levels.new_zeros(levels.shape[0], count)
    own = torch.arange(reference_frame, reference_frame + count).expand(frames.shape[0], count)
    return denoise(shown, torch.cat([clean, levels], dim=1), torch.cat([own, frames], dim=1))[:, :, count:]


def reference_frames(reference) -> int:
    """Frames a reference adds to every model call: ``r`` for a tensor, 1 for the first frame."""
    if reference is None:
        return 0
    return 1 if isinstance(reference, str) else reference.shape[_FRAMES]

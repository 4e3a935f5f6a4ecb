"""ComfyUI's progress bar with a preview of the latest finished latent frame."""

from __future__ import annotations

from typing import Optional

import comfy.utils
import latent_preview
import torch


class FrameProgress:
    def __init__(self, total: int, patcher):
        self.bar = comfy.utils.ProgressBar(total)
        self.previewer = latent_preview.get_previewer(patcher.load_device, patcher.model.latent_format)

    def update(self, done: int, frames: Optional[torch.Tensor] = None) -> None:
        """``done`` steps of the total, showing the last frame of ``frames`` (model space ``[B, C, F, H, W]``) if given."""
        self.bar.update_absolute(done, preview=self._preview(frames))

    def advance(self, frames: Optional[torch.Tensor] = None) -> None:
        """One step further."""
        self.update(self.bar.current + 1, frames)

    def _preview(self, frames):
        if frames is None or self.previewer is None:
            return None
        return self.previewer.decode_latent_to_preview_image("JPEG", frames[:1, :, -1:])

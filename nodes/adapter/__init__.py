"""The one seam between ComfyUI and ``samplers/``.

It turns a ComfyUI MODEL with its conditioning and CFG (or any GUIDER) into "predict x0 for these
frames at these per-frame levels" (denoiser.py), knows each model family's way in (families.py),
and owns the per-frame run from LATENT in to LATENT out (run.py). Every family's quirks live
here and nowhere else.
"""

from .denoiser import ExpertLoader, FramewiseDenoiser, PromptScheduleGuider, prompt_guider, run_with_framewise_denoiser, run_with_framewise_denoisers
from .families import SUPPORTED_FAMILIES, UnsupportedModelError, model_family
from .run import BATCHING_CHOICES, RUN_KEY, ClipInput, Guidance, sample_video

__all__ = [
    "BATCHING_CHOICES",
    "RUN_KEY",
    "ClipInput",
    "ExpertLoader",
    "FramewiseDenoiser",
    "Guidance",
    "PromptScheduleGuider",
    "SUPPORTED_FAMILIES",
    "UnsupportedModelError",
    "model_family",
    "prompt_guider",
    "run_with_framewise_denoiser",
    "run_with_framewise_denoisers",
    "sample_video",
]

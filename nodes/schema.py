"""Schema pieces the pack's nodes share: their category and the guidance inputs of both samplers."""

from __future__ import annotations

from comfy_api.latest import io

CATEGORY = "video/long"
EXPERTS = io.Custom("LONGVIDEO_EXPERTS")  # from Wan 2.2 Experts (nodes/experts.py)
ANCHOR = io.Custom("LONGVIDEO_ANCHOR")  # from Reference Anchor (nodes/reference_anchor.py)
CHECKPOINTS = io.Custom("LONGVIDEO_CHECKPOINTS")  # from Checkpoints (nodes/checkpoints.py)


def seed_input(tooltip: str) -> io.Int.Input:
    """The seed widget of a sampling node: any 64-bit seed, changed after each queued prompt as ComfyUI's samplers do."""
    return io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip=tooltip)


def guidance_inputs(prompt_schedule_hint: str) -> list:
    """model / positive / negative / cfg, or a guider in their place, or experts in place of model and cfg."""
    return [
        io.Model.Input(
            "model",
            optional=True,
            tooltip="The video model (Wan 2.1/2.2, LTX-Video, Cosmos Predict2, or an image model with a motion module). Leave empty when a guider is connected.",
        ),
        io.Conditioning.Input(
            "positive", optional=True, tooltip=f"Prompt. Several prompts with Prompt Frame Range make a prompt schedule: {prompt_schedule_hint}"
        ),
        io.Conditioning.Input("negative", optional=True, tooltip="Negative prompt for classifier-free guidance."),
        io.Float.Input(
            "cfg",
            default=5.0,
            min=0.0,
            max=100.0,
            step=0.1,
            round=0.01,
            tooltip="Classifier-free guidance scale (used with model + conditioning, ignored with a guider).",
        ),
        io.Guider.Input(
            "guider", optional=True, tooltip="Instead of model/positive/negative/cfg: any guider (CFGGuider, DualCFGGuider, ...). Single prompt only."
        ),
        EXPERTS.Input(
            "experts",
            optional=True,
            tooltip="Wan 2.2 A14B: the high- and low-noise experts from Wan 2.2 Experts, in place of model and cfg (each expert has its own CFG there). Every frame is denoised by the expert of its noise level.",
        ),
    ]


def run_inputs() -> list:
    """The options both samplers take for a long run: a reference anchor and checkpoints."""
    return [
        ANCHOR.Input(
            "anchor",
            optional=True,
            tooltip="From Reference Anchor: a clean reference (the video's first frame, or an image through the VAE) in front of every window, read-only, so identity and colours stay with it. Costs one latent frame per model call.",
        ),
        CHECKPOINTS.Input(
            "checkpoints",
            optional=True,
            tooltip="From Checkpoints: save the run's state as it goes, resume a stopped run, or re-roll from a frame on with a new seed or prompt.",
        ),
    ]

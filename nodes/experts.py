"""Wan 2.2 Experts: the high-noise and low-noise models of Wan 2.2 A14B, as one input of the samplers."""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_base as model_base
from comfy_api.latest import io

from .input_checks import check_finite_number
from .schema import CATEGORY, EXPERTS

# Wan 2.2 A14B's own switch levels (the sigma at which its low-noise expert takes over)
TEXT_TO_VIDEO_BOUNDARY = 0.875
IMAGE_TO_VIDEO_BOUNDARY = 0.9
AUTO_BOUNDARY = 0.0


@dataclass(frozen=True)
class ExpertModels:
    """The experts, noisiest band first, with each one's CFG, the boundaries between their bands and
    how many iterations one may run ahead of the other."""

    models: tuple
    cfgs: tuple[float, ...]
    boundaries: tuple[float, ...]
    switch_every: int


def _input_channels(patcher) -> int:
    return patcher.model.diffusion_model.patch_embedding.weight.shape[1]


def check_pair(high, low) -> None:
    """Two models that can be one Wan 2.2 A14B: both Wan 2.1-architecture, same latent, same task."""
    for name, patcher in (("high_noise_model", high), ("low_noise_model", low)):
        if type(patcher.model) is not model_base.WAN21:
            raise ValueError(
                f"{name} is {type(patcher.model).__name__}, but Wan 2.2 Experts takes the two Wan 2.2 A14B models (high noise and "
                f"low noise), which ComfyUI loads as Wan 2.1-architecture models. Load them with Load Diffusion Model."
            )
    if high.model.latent_format.latent_channels != low.model.latent_format.latent_channels:
        raise ValueError("The two experts work on latents with different channel counts: load the high- and low-noise models of one Wan 2.2 A14B.")
    if _input_channels(high) != _input_channels(low):
        kind = {True: "image-to-video", False: "text-to-video"}
        raise ValueError(
            f"The high-noise expert is {kind[_input_channels(high) > 16]} and the low-noise expert {kind[_input_channels(low) > 16]}: "
            f"load both experts of the same Wan 2.2 A14B (T2V or I2V)."
        )


def default_boundary(high) -> float:
    return IMAGE_TO_VIDEO_BOUNDARY if _input_channels(high) > high.model.latent_format.latent_channels else TEXT_TO_VIDEO_BOUNDARY


class WanExperts(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoWanExperts",
            display_name="Wan 2.2 Experts (A14B)",
            category=CATEGORY,
            description="Wan 2.2 A14B's two experts for the long-video samplers: the high-noise model denoises every frame whose "
            "noise level is at or above the boundary, the low-noise model the rest. In a diagonal queue or a progressive window "
            "the frames sit at many levels at once, so both work in every iteration; the samplers order the calls so the "
            "models change as rarely as they can.",
            inputs=[
                io.Model.Input(
                    "high_noise_model",
                    tooltip="The high-noise expert (e.g. wan2.2_t2v_high_noise_14B), with its own LoRAs and model patches (ModelSamplingSD3 shift).",
                ),
                io.Model.Input("low_noise_model", tooltip="The low-noise expert (e.g. wan2.2_t2v_low_noise_14B), with its own LoRAs and model patches."),
                io.Float.Input(
                    "boundary",
                    default=AUTO_BOUNDARY,
                    min=0.0,
                    max=1.0,
                    step=0.005,
                    round=0.001,
                    tooltip="The noise level (sigma) where the low-noise expert takes over. 0 = Wan 2.2's own: 0.875 for text-to-video, 0.9 for image-to-video. A higher shift puts more steps above it.",
                ),
                io.Float.Input(
                    "high_noise_cfg",
                    default=3.5,
                    min=0.0,
                    max=100.0,
                    step=0.1,
                    round=0.01,
                    tooltip="CFG scale of the high-noise expert (1 with a lightx2v distill LoRA).",
                ),
                io.Float.Input(
                    "low_noise_cfg",
                    default=3.5,
                    min=0.0,
                    max=100.0,
                    step=0.1,
                    round=0.01,
                    tooltip="CFG scale of the low-noise expert (1 with a lightx2v distill LoRA).",
                ),
                io.Int.Input(
                    "switch_every",
                    default=8,
                    min=1,
                    max=1024,
                    tooltip="Diagonal Queue with Latent Partition and no Lookahead: the high-noise expert runs this many iterations ahead before the low-noise one catches up, so the models change twice per that many frames instead of once per frame, with the same result. Where only one 14B model fits in memory every change is a model load. Costs a few latent frames of memory per iteration ahead.",
                ),
            ],
            outputs=[
                EXPERTS.Output(
                    display_name="experts",
                    tooltip="Connect to the experts input of the Diagonal Queue Sampler, the Progressive AR Sampler or k-Step Noise Search, in place of a model.",
                )
            ],
        )

    @classmethod
    def execute(cls, high_noise_model, low_noise_model, boundary, high_noise_cfg, low_noise_cfg, switch_every) -> io.NodeOutput:
        for name, value in (("boundary", boundary), ("high_noise_cfg", high_noise_cfg), ("low_noise_cfg", low_noise_cfg)):
            check_finite_number(name, value)
        check_pair(high_noise_model, low_noise_model)
        if boundary == AUTO_BOUNDARY:
            boundary = default_boundary(high_noise_model)
        return io.NodeOutput(ExpertModels((high_noise_model, low_noise_model), (high_noise_cfg, low_noise_cfg), (boundary,), switch_every))

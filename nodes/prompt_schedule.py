"""Prompt schedules: Prompt Frame Range tags a prompt with output frames; the samplers' guidance follows them."""

from __future__ import annotations

from comfy_api.latest import io

from ..samplers.prompt_schedule import schedule_prompts
from .adapter import Guidance, prompt_guider
from .input_checks import check_finite_number
from .schema import CATEGORY

FRAME_RANGE_KEY = "longvideo_frame_range"


class PromptFrameRange(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoPromptFrameRange",
            display_name="Prompt Frame Range",
            category=CATEGORY,
            description="Limits a prompt to a range of output latent frames. Combine several with Conditioning (Combine) "
            "for a prompt schedule for the Diagonal Queue and Progressive AR samplers.",
            inputs=[
                io.Conditioning.Input("conditioning", tooltip="The prompt to schedule."),
                io.Int.Input("start_frame", default=0, min=0, max=1_000_000, tooltip="First output latent frame made under this prompt."),
                io.Int.Input(
                    "end_frame", default=-1, min=-1, max=1_000_000, tooltip="One past the last latent frame under this prompt; -1 = to the end of the video."
                ),
            ],
            outputs=[io.Conditioning.Output(tooltip="The same conditioning, tagged with its frame range.")],
        )

    @classmethod
    def execute(cls, conditioning, start_frame, end_frame) -> io.NodeOutput:
        if end_frame != -1 and end_frame <= start_frame:
            raise ValueError(f"end_frame ({end_frame}) must be after start_frame ({start_frame}), or -1 for the end of the video.")
        frame_range = (start_frame, None if end_frame == -1 else end_frame)
        return io.NodeOutput([[tensor, {**extra, FRAME_RANGE_KEY: frame_range}] for tensor, extra in conditioning])


def guidance_from_inputs(model, positive, negative, cfg, guider, length, experts=None) -> Guidance:
    """The guiders to sample with (one per expert) and the prompt index of each output latent frame, from a sampler's inputs."""
    if experts is not None and (guider is not None or model is not None):
        raise ValueError(
            "Connect the experts with positive and negative prompts, and neither a model nor a guider: each expert gets its own "
            "CFG over the same prompts, which one GUIDER cannot carry."
        )
    if guider is not None:
        if model is not None or positive is not None:
            raise ValueError("Connect either a guider or model + positive (+ negative), not both.")
        if _carries_frame_ranges(guider):
            raise ValueError(
                "The guider's prompts come from Prompt Frame Range, but a GUIDER gives the sampler a single prompt, so the "
                "schedule would be ignored: connect model, positive and negative to the sampler instead of a guider."
            )
        return Guidance((guider,))
    if (model is None and experts is None) or positive is None or negative is None:
        raise ValueError("Connect a model (or Wan 2.2 Experts) with positive and negative prompts, or a guider.")
    check_finite_number("cfg", cfg)
    ranges = [extra.get(FRAME_RANGE_KEY) for _, extra in positive]
    entries_of_prompt, prompt_of_frame = schedule_prompts(ranges, length)
    positives = [[_without_range(positive[i]) for i in entries] for entries in entries_of_prompt]
    if experts is None:
        return Guidance((prompt_guider(model, positives, negative, cfg),), prompt_of_frame.__getitem__)
    guiders = tuple(prompt_guider(expert, positives, negative, expert_cfg) for expert, expert_cfg in zip(experts.models, experts.cfgs))
    return Guidance(guiders, prompt_of_frame.__getitem__, experts.boundaries, experts.switch_every)


def _carries_frame_ranges(guider) -> bool:
    # ComfyUI's guiders keep each conditioning entry's options, the frame range included, in original_conds
    conds = getattr(guider, "original_conds", {})
    return any(FRAME_RANGE_KEY in entry for entries in conds.values() for entry in entries)


def _without_range(entry):
    tensor, extra = entry
    return [tensor, {k: v for k, v in extra.items() if k != FRAME_RANGE_KEY}]

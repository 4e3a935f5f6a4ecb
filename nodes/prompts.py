"""What the long-video samplers share on the ComfyUI side: guidance inputs, prompt schedules, progress."""
from __future__ import annotations

import comfy.utils
import latent_preview
from comfy_api.latest import io

from ..samplers.prompt_schedule import schedule_prompts
from .adapter import prompt_guider

CATEGORY = "video/long"
FRAME_RANGE_KEY = "longvideo_frame_range"


def guidance_inputs(prompt_schedule_hint: str) -> list:
    """model / positive / negative / cfg, or a guider in their place."""
    return [
        io.Model.Input("model", optional=True, tooltip="The video model (Wan 2.1/2.2, LTX-Video, Cosmos Predict2, or an image model with a motion module). Leave empty when a guider is connected."),
        io.Conditioning.Input("positive", optional=True, tooltip=f"Prompt. Several prompts with Prompt Frame Range make a prompt schedule: {prompt_schedule_hint}"),
        io.Conditioning.Input("negative", optional=True, tooltip="Negative prompt for classifier-free guidance."),
        io.Float.Input("cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance scale (used with model + conditioning, ignored with a guider)."),
        io.Guider.Input("guider", optional=True, tooltip="Instead of model/positive/negative/cfg: any guider (CFGGuider, DualCFGGuider, ...). Single prompt only."),
    ]


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
                io.Int.Input("end_frame", default=-1, min=-1, max=1_000_000, tooltip="One past the last latent frame under this prompt; -1 = to the end of the video."),
            ],
            outputs=[io.Conditioning.Output(tooltip="The same conditioning, tagged with its frame range.")],
        )

    @classmethod
    def validate_inputs(cls, start_frame, end_frame):
        if end_frame != -1 and end_frame <= start_frame:
            return f"end_frame ({end_frame}) must be after start_frame ({start_frame}), or -1 for the end of the video."
        return True

    @classmethod
    def execute(cls, conditioning, start_frame, end_frame) -> io.NodeOutput:
        frame_range = (start_frame, None if end_frame == -1 else end_frame)
        return io.NodeOutput([[tensor, {**extra, FRAME_RANGE_KEY: frame_range}] for tensor, extra in conditioning])


def guider_and_schedule(model, positive, negative, cfg, guider, length):
    """The guider to sample with and the prompt index of each output latent frame."""
    if guider is not None:
        if model is not None or positive is not None:
            raise ValueError("Connect either a guider or model + positive (+ negative), not both.")
        return guider, lambda frame: 0
    if model is None or positive is None or negative is None:
        raise ValueError("Connect a model with positive and negative prompts, or a guider.")
    ranges = [extra.get(FRAME_RANGE_KEY) for _, extra in positive]
    entries_of_prompt, prompt_of_frame = schedule_prompts(ranges, length)
    positives = [[_without_range(positive[i]) for i in entries] for entries in entries_of_prompt]
    return prompt_guider(model, positives, negative, cfg), prompt_of_frame.__getitem__


def _without_range(entry):
    tensor, extra = entry
    return [tensor, {k: v for k, v in extra.items() if k != FRAME_RANGE_KEY}]


class FrameProgress:
    """ComfyUI's progress bar, with a preview of the latest finished latent frame."""

    def __init__(self, total: int, patcher):
        self.bar = comfy.utils.ProgressBar(total)
        self.previewer = latent_preview.get_previewer(patcher.load_device, patcher.model.latent_format)

    def advance(self, frame=None) -> None:
        """One step further, showing ``frame`` (a model-space latent ``[B, C, H, W]``) if given."""
        self.bar.update_absolute(self.bar.current + 1, preview=self._preview(frame))

    def show(self, frame) -> None:
        """Show ``frame`` without moving the bar."""
        self.bar.update_absolute(self.bar.current, preview=self._preview(frame))

    def _preview(self, frame):
        if frame is None or self.previewer is None:
            return None
        return self.previewer.decode_latent_to_preview_image("JPEG", frame[:1, :, None])

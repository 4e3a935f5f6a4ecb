"""Diagonal Queue Sampler (FIFO-Diffusion) and its option nodes: thin glue over samplers/."""
from __future__ import annotations

from dataclasses import dataclass, replace

import comfy.model_management
import comfy.sample
import torch
from comfy_api.latest import io

from ..samplers.diagonal_queue import QueueLayout, generate
from ..samplers.frame_levels import FRAME_DIM, fresh_noise, sample_clip
from .adapter import FRAMES_AS_BATCH, host_layout, model_family, noise_space, run_with_framewise_denoiser, to_host_space, to_model_space, video_layout
from .prompts import CATEGORY, FrameProgress, guidance_inputs, guider_and_schedule

BATCHING_CHOICES = ("auto", "batched", "one by one")
START_FROM_CLIP = "sample a first clip"
START_FROM_LATENT = "continue the input latent"

QueueOptions = io.Custom("LONGVIDEO_QUEUE_OPTIONS")


@dataclass(frozen=True)
class QueueSettings:
    partitions: int = 1
    lookahead: bool = False
    window_batching: str = "auto"


def _settings(options) -> QueueSettings:
    return options if isinstance(options, QueueSettings) else QueueSettings()


class LatentPartition(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoLatentPartition",
            display_name="Latent Partition (FIFO)",
            category=CATEGORY,
            description="Splits the diagonal queue into n blocks of `window` frames, so the queue spans n x window noise "
            "levels: finer steps and less train/inference mismatch, n model calls per output frame.",
            inputs=[
                io.Int.Input("partitions", default=4, min=1, max=64, tooltip="n: blocks of `window` latent frames in the queue. The scheduler's steps must equal window x n. The paper uses 4."),
                io.Combo.Input("window_batching", options=list(BATCHING_CHOICES), default="auto", tooltip="batched: all blocks of an iteration in one model call (faster, more memory). one by one: one block per call. auto: batched when the batch fits in free memory."),
                QueueOptions.Input("options", optional=True, tooltip="Options from another queue option node to extend."),
            ],
            outputs=[QueueOptions.Output(display_name="options", tooltip="Connect to the Diagonal Queue Sampler's options input.")],
        )

    @classmethod
    def execute(cls, partitions, window_batching, options=None) -> io.NodeOutput:
        return io.NodeOutput(replace(_settings(options), partitions=partitions, window_batching=window_batching))


class Lookahead(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoLookahead",
            display_name="Lookahead Denoising (FIFO)",
            category=CATEGORY,
            description="Shifts windows by half a window and writes back only the noisier half of each, so every frame is "
            "denoised with cleaner frames in front of it. Doubles the model calls.",
            inputs=[
                io.Boolean.Input("enabled", default=True, tooltip="Lookahead denoising on or off (the official code has it on)."),
                QueueOptions.Input("options", optional=True, tooltip="Options from another queue option node to extend."),
            ],
            outputs=[QueueOptions.Output(display_name="options", tooltip="Connect to the Diagonal Queue Sampler's options input.")],
        )

    @classmethod
    def execute(cls, enabled, options=None) -> io.NodeOutput:
        return io.NodeOutput(replace(_settings(options), lookahead=enabled))


class DiagonalQueueSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoDiagonalQueueSampler",
            display_name="Diagonal Queue Sampler (FIFO)",
            category=CATEGORY,
            description="FIFO-Diffusion: a queue of latent frames at rising noise levels; every iteration denoises each "
            "frame one level, emits the clean head frame and enqueues fresh noise. Any length with constant memory.",
            inputs=[
                *guidance_inputs("in the queue, each new prompt enters with the noise and travels to the head."),
                io.Sigmas.Input("sigmas", tooltip="The noise levels from any scheduler. It needs window x partitions steps (that many + 1 values): one queue slot per level."),
                io.Latent.Input("latent", tooltip="Sets size and batch (an empty video latent), or the clip to continue."),
                io.Combo.Input("start", options=[START_FROM_CLIP, START_FROM_LATENT], default=START_FROM_CLIP, tooltip="sample a first clip: sample `window` frames normally and re-noise them into the queue (the official start). continue the input latent: re-noise the input latent's last frames into the queue instead."),
                io.Int.Input("length", default=32, min=1, max=100_000, tooltip="Latent frames to output. Pixel frames after decoding: Wan 4 x (length - 1) + 1, LTX-Video 8 x (length - 1) + 1."),
                io.Int.Input("window", default=16, min=1, max=512, tooltip="Latent frames the model sees per call; use the model's native clip length in latent frames (Wan 81 frames = 21, LTX-Video 97 frames = 13)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of the queue noise; the same seed gives the same video."),
                io.Float.Input("eta", default=1.0, min=0.0, max=1.0, step=0.01, tooltip="0: deterministic (DDIM / Euler). 1: ancestral, fresh noise every step (the official code uses 1)."),
                QueueOptions.Input("options", optional=True, tooltip="Latent Partition and Lookahead options."),
            ],
            outputs=[io.Latent.Output(tooltip="Exactly `length` latent frames.")],
        )

    @classmethod
    def execute(cls, sigmas, latent, start, length, window, seed, eta, model=None, positive=None, negative=None, cfg=5.0, guider=None, options=None) -> io.NodeOutput:
        settings = _settings(options)
        layout = QueueLayout(window, settings.partitions, settings.lookahead)
        layout.check_sigmas(sigmas)
        guider, prompt_of_frame = guider_and_schedule(model, positive, negative, cfg, guider, length)
        patcher = guider.model_patcher
        family = model_family(patcher.model)
        frames_as_batch = family.mechanism == FRAMES_AS_BATCH
        video = video_layout(comfy.sample.fix_empty_latent_channels(patcher, latent["samples"]), family)
        if start == START_FROM_LATENT and torch.count_nonzero(video) == 0:
            raise ValueError("`start` is set to continue the input latent, but the latent is empty. Encode a clip, or choose 'sample a first clip'.")

        windows_per_call = len(layout.windows()) if _batch_windows(settings, patcher, layout, video, frames_as_batch) else 1
        batch, channels, _, height, width = video.shape
        rows = windows_per_call * batch
        call_shape = (rows * window, channels, height, width) if frames_as_batch else (rows, channels, window, height, width)
        output = torch.zeros(batch, channels, length, height, width)
        sampler = _QueueRun(patcher, layout, video, start, length, eta, seed, prompt_of_frame, windows_per_call > 1, output)
        run_with_framewise_denoiser(guider, call_shape, sigmas, seed, sampler.run, comfy.model_management.throw_exception_if_processing_interrupted)
        out = {key: value for key, value in latent.items() if key not in ("noise_mask", "batch_index")}
        out["samples"] = host_layout(output, family)
        return io.NodeOutput(out)


class _QueueRun:
    """The sampling body, run while ComfyUI holds the model: warm start, queue, streamed output."""

    def __init__(self, patcher, layout, video, start, length, eta, seed, prompt_of_frame, batch_windows, output):
        self.patcher, self.layout, self.video, self.start = patcher, layout, video, start
        self.length, self.eta, self.seed = length, eta, seed
        self.prompt_of_frame, self.batch_windows, self.output = prompt_of_frame, batch_windows, output

    def run(self, denoise, sigmas) -> None:
        model = self.patcher.model
        device = self.patcher.load_device
        space = noise_space(model)
        generator = torch.Generator().manual_seed(self.seed)
        from_clip = self.start == START_FROM_CLIP
        warmup = self.layout.warmup_frames(self.layout.window if from_clip else self.video.shape[FRAME_DIM])
        progress = FrameProgress((self.layout.levels if from_clip else 0) + warmup + self.length, self.patcher)

        if from_clip:
            shape = (*self.video.shape[:2], self.layout.window, *self.video.shape[3:])
            noise = fresh_noise(shape, generator, torch.zeros(1, device=device))
            clip = sample_clip(denoise, noise, sigmas, space, self.eta, generator, self.prompt_of_frame(0), on_step=lambda i, x0: progress.advance())
        else:
            clip = to_model_space(model, self.video.to(device))

        frames = generate(denoise, clip, sigmas, self.layout, self.length, space, self.eta, generator, self.batch_windows, self.prompt_of_frame)
        for index, frame in frames:
            if index >= 0:
                self.output[:, :, index] = to_host_space(model, frame[:, :, None])[:, :, 0].to(self.output)
            progress.advance(frame if index >= 0 else None)


def _batch_windows(settings, patcher, layout, video, frames_as_batch) -> bool:
    if settings.window_batching != "auto":
        return settings.window_batching == "batched"
    if frames_as_batch or len(layout.windows()) == 1:
        # a motion module sees the whole batch as one video, so its windows cannot share a call
        return False
    batch, channels, _, height, width = video.shape
    # cond + uncond rows for every window of an iteration
    shape = (2 * batch * len(layout.windows()), channels, layout.window, height, width)
    needed = patcher.model.memory_required(shape)
    return needed < 0.5 * comfy.model_management.get_free_memory(patcher.load_device)

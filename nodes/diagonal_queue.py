"""Diagonal Queue Sampler (FIFO-Diffusion) and its option nodes: thin glue over samplers/."""

from __future__ import annotations

from dataclasses import dataclass, replace

from comfy_api.latest import io

from ..samplers import diagonal_queue
from .adapter import BATCHING_CHOICES, ClipInput, sample_video
from .prompt_schedule import guidance_from_inputs
from .schema import CATEGORY, guidance_inputs, run_inputs, seed_input

START_FROM_CLIP = "sample a first clip"
START_FROM_LATENT = "continue the input latent"

QueueOptions = io.Custom("LONGVIDEO_QUEUE_OPTIONS")


@dataclass(frozen=True)
class QueueSettings:
    partitions: int = 1
    lookahead: bool = False
    window_batching: str = "auto"
    frames_per_level: int = 1


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
                io.Int.Input(
                    "partitions",
                    default=4,
                    min=1,
                    max=64,
                    tooltip="n: blocks of `window` latent frames in the queue. The scheduler's steps must equal window x n. The paper uses 4.",
                ),
                io.Combo.Input(
                    "window_batching",
                    options=list(BATCHING_CHOICES),
                    default="auto",
                    tooltip="batched: all blocks of an iteration in one model call (faster, more memory). one by one: one block per call. auto: batched when the batch fits in free memory.",
                ),
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
                io.Boolean.Input(
                    "enabled",
                    default=True,
                    tooltip="Lookahead denoising on or off (the official code has it on). Keep it on for models trained with one noise level per clip (Wan, LTX-Video, Cosmos as released): without it the video changes more from frame to frame.",
                ),
                QueueOptions.Input("options", optional=True, tooltip="Options from another queue option node to extend."),
            ],
            outputs=[QueueOptions.Output(display_name="options", tooltip="Connect to the Diagonal Queue Sampler's options input.")],
        )

    @classmethod
    def execute(cls, enabled, options=None) -> io.NodeOutput:
        return io.NodeOutput(replace(_settings(options), lookahead=enabled))


class FewStepQueue(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoFewStepQueue",
            display_name="Few-Step Queue (FIFO)",
            category=CATEGORY,
            description="For distilled few-step models (lightx2v and other 4-8 step LoRAs): g neighbouring frames of the queue share "
            "a noise level and leave it together, so a queue of window x partitions frames needs only window x partitions / g "
            "steps and the model still sees its whole window.",
            inputs=[
                io.Int.Input(
                    "frames_per_level",
                    default=5,
                    min=1,
                    max=512,
                    tooltip="g: frames that share a level. The scheduler's steps must equal window x partitions / g: a 4-step model with a window of 20 takes g = 5. g frames leave the queue per iteration, so the model calls per output frame drop g-fold.",
                ),
                QueueOptions.Input("options", optional=True, tooltip="Options from another queue option node to extend."),
            ],
            outputs=[QueueOptions.Output(display_name="options", tooltip="Connect to the Diagonal Queue Sampler's options input.")],
        )

    @classmethod
    def execute(cls, frames_per_level, options=None) -> io.NodeOutput:
        return io.NodeOutput(replace(_settings(options), frames_per_level=frames_per_level))


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
                io.Sigmas.Input(
                    "sigmas",
                    tooltip="The noise levels from any scheduler. It needs window x partitions steps (that many + 1 values): one queue slot per level.",
                ),
                io.Latent.Input(
                    "latent",
                    tooltip="Sets size and batch (an empty video latent), or the clip to continue. LTX-2: the video latent joined with its sound (LTXVConcatAVLatent of an empty latent and LTXVEmptyLatentAudio, or of a clip's VAE Encode and LTXV Audio VAE Encode); the output then carries the sound too. MiniMax H3: its AV latent (Empty MiniMax H3 AV Latent, or a clip's VAE Encode and VAE Encode Audio joined by LTXVConcatAVLatent).",
                ),
                io.Combo.Input(
                    "start",
                    options=[START_FROM_CLIP, START_FROM_LATENT],
                    default=START_FROM_CLIP,
                    tooltip="sample a first clip: sample `window` frames normally and re-noise them into the queue (the official start). continue the input latent: re-noise the input latent's last frames into the queue instead.",
                ),
                io.Int.Input(
                    "length",
                    default=32,
                    min=1,
                    max=100_000,
                    tooltip="Latent frames to output. Pixel frames after decoding: Wan 4 x (length - 1) + 1, LTX-Video 8 x (length - 1) + 1.",
                ),
                io.Int.Input(
                    "window",
                    default=16,
                    min=1,
                    max=512,
                    tooltip="Latent frames the model sees per call; use the model's native clip length in latent frames (Wan 81 frames = 21, LTX-Video 97 frames = 13).",
                ),
                seed_input("Seed of the queue noise; the same seed gives the same video."),
                io.Float.Input(
                    "eta",
                    default=1.0,
                    min=0.0,
                    max=1.0,
                    step=0.01,
                    tooltip="0: deterministic (DDIM / Euler). 1: ancestral, fresh noise every step (the official code uses 1).",
                ),
                QueueOptions.Input(
                    "options",
                    optional=True,
                    tooltip="Latent Partition, Lookahead and Few-Step Queue options. On models trained with one noise level per clip (Wan, LTX-Video, Cosmos as released) keep Lookahead on: without it the video changes more from frame to frame.",
                ),
                *run_inputs(),
            ],
            outputs=[io.Latent.Output(tooltip="Exactly `length` latent frames.")],
        )

    @classmethod
    def execute(
        cls,
        sigmas,
        latent,
        start,
        length,
        window,
        seed,
        eta,
        model=None,
        positive=None,
        negative=None,
        cfg=5.0,
        guider=None,
        options=None,
        experts=None,
        anchor=None,
        checkpoints=None,
    ) -> io.NodeOutput:
        settings = _settings(options)
        layout = diagonal_queue.QueueLayout(window, settings.partitions, settings.lookahead, settings.frames_per_level)
        guidance = guidance_from_inputs(model, positive, negative, cfg, guider, length, experts)
        clip = None
        if start == START_FROM_LATENT:
            # the queue re-denoises the clip's last `slots` frames as output frames 0, 1, ...
            clip = ClipInput(
                latent, "input", "encode a clip to continue, or set `start` to 'sample a first clip'.", lambda frames: min(0, layout.slots - frames)
            )
        out = sample_video(
            guidance,
            latent,
            sigmas,
            sampler=diagonal_queue.generate,
            layout=layout,
            length=length,
            seed=seed,
            eta=eta,
            clip=clip,
            window_batching=settings.window_batching,
            anchor=anchor,
            checkpoints=checkpoints,
        )
        return io.NodeOutput(out)

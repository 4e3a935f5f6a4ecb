"""Progressive AR Sampler (PA-VDM): thin glue over samplers/progressive_ar.py."""
from __future__ import annotations

import comfy.model_management
import comfy.sample
import torch
from comfy_api.latest import io

from ..samplers.frame_levels import FRAME_DIM
from ..samplers.progressive_ar import ChunkLayout, call_count, chunk_count, generate
from .adapter import FRAMES_AS_BATCH, host_layout, model_family, noise_space, run_with_framewise_denoiser, to_host_space, to_model_space, video_layout
from .prompts import CATEGORY, FrameProgress, guidance_inputs, guider_and_schedule


class ProgressiveARSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoProgressiveARSampler",
            display_name="Progressive AR Sampler (PA-VDM)",
            category=CATEGORY,
            description="PA-VDM: a window of noisy chunks at progressively rising noise levels behind one clean context "
            "chunk. Every (steps / window chunks) model calls the cleanest chunk is finished, becomes the context, and a "
            "fresh noise chunk enters. Any length with constant memory; one model call per output latent frame when "
            "steps = chunk size x window chunks.",
            inputs=[
                *guidance_inputs("frames under different prompts in one window get one model call per prompt."),
                io.Sigmas.Input("sigmas", tooltip="The noise levels from any scheduler. The steps must be a multiple of window_chunks; PA-VDM uses steps = chunk_size x window_chunks (one level per noisy latent frame)."),
                io.Latent.Input("latent", tooltip="An empty video latent: sets width, height and batch (its frame count is ignored; `length` sets it)."),
                io.Int.Input("length", default=32, min=1, max=100_000, tooltip="New latent frames to output. Pixel frames after decoding: Wan 4 x (length - 1) + 1, LTX-Video 8 x (length - 1) + 1."),
                io.Int.Input("chunk_size", default=4, min=1, max=128, tooltip="Latent frames per chunk: they share a noise level and leave the window together. The paper finds chunks work better than single frames."),
                io.Int.Input("window_chunks", default=4, min=1, max=64, tooltip="Noisy chunks in the window. The model sees (window_chunks + 1) x chunk_size latent frames; keep that near the model's native clip length (Wan 81 frames = 21 latent frames, LTX-Video 97 frames = 13)."),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True, tooltip="Seed of the chunk noise; the same seed gives the same video."),
                io.Float.Input("eta", default=0.0, min=0.0, max=1.0, step=0.01, tooltip="0: deterministic Euler steps (the official sampler). Above 0: ancestral steps with fresh noise."),
                io.Latent.Input("context", optional=True, tooltip="A clip to extend (for example a VAE-encoded video): its last chunk_size latent frames are the first clean context chunk. Without it the video starts from noise. The output holds only the new frames."),
            ],
            outputs=[io.Latent.Output(tooltip="Exactly `length` new latent frames.")],
        )

    @classmethod
    def execute(cls, sigmas, latent, length, chunk_size, window_chunks, seed, eta, model=None, positive=None, negative=None, cfg=5.0, guider=None, context=None) -> io.NodeOutput:
        layout = ChunkLayout(chunk_size, window_chunks)
        layout.check_sigmas(sigmas)
        guider, prompt_of_frame = guider_and_schedule(model, positive, negative, cfg, guider, length)
        patcher = guider.model_patcher
        family = model_family(patcher.model)
        video = video_layout(comfy.sample.fix_empty_latent_channels(patcher, latent["samples"]), family)
        batch, channels, _, height, width = video.shape
        context_video = None if context is None else _context_clip(context, family, video)

        frames = layout.window_frames
        call_shape = (batch * frames, channels, height, width) if family.mechanism == FRAMES_AS_BATCH else (batch, channels, frames, height, width)
        output = torch.zeros(batch, channels, length, height, width)
        sampler = _ProgressiveRun(patcher, layout, (batch, channels, height, width), length, eta, seed, prompt_of_frame, context_video, output)
        run_with_framewise_denoiser(guider, call_shape, sigmas, seed, sampler.run, comfy.model_management.throw_exception_if_processing_interrupted)
        out = {key: value for key, value in latent.items() if key not in ("noise_mask", "batch_index")}
        out["samples"] = host_layout(output, family)
        return io.NodeOutput(out)


def _context_clip(context, family, video):
    clip = video_layout(context["samples"], family)
    if clip.shape[1] != video.shape[1] or clip.shape[3:] != video.shape[3:]:
        raise ValueError(
            f"The context latent has {clip.shape[1]} channels at {clip.shape[4]}x{clip.shape[3]} latent pixels, but the "
            f"latent has {video.shape[1]} channels at {video.shape[4]}x{video.shape[3]}. Encode the context at the video's size "
            f"with the model's VAE."
        )
    if clip.shape[0] not in (1, video.shape[0]):
        raise ValueError(f"The context latent has a batch of {clip.shape[0]}, the latent {video.shape[0]}: use the same batch, or a context of batch 1.")
    if torch.count_nonzero(clip) == 0:
        raise ValueError("The context latent is empty (all zeros). Connect a VAE-encoded clip, or leave the context unconnected.")
    return clip.expand(video.shape[0], -1, -1, -1, -1)


class _ProgressiveRun:
    """The sampling body, run while ComfyUI holds the model: chunks streamed into the output."""

    def __init__(self, patcher, layout, shape, length, eta, seed, prompt_of_frame, context, output):
        self.patcher, self.layout, self.shape, self.length = patcher, layout, shape, length
        self.eta, self.seed, self.prompt_of_frame = eta, seed, prompt_of_frame
        self.context, self.output = context, output

    def run(self, denoise, sigmas) -> None:
        model = self.patcher.model
        device = self.patcher.load_device
        steps = len(sigmas) - 1
        calls = call_count(chunk_count(self.length, self.layout.chunk), self.layout.window_chunks, steps)
        progress = FrameProgress(calls, self.patcher)
        context = None if self.context is None else to_model_space(model, self.context.to(device))
        chunks = generate(
            denoise,
            self.shape,
            sigmas,
            self.layout,
            self.length,
            noise_space(model),
            context,
            self.eta,
            torch.Generator().manual_seed(self.seed),
            self.prompt_of_frame,
            device,
            on_step=lambda call: progress.advance(),
        )
        for first_frame, chunk in chunks:
            size = chunk.shape[FRAME_DIM]
            self.output[:, :, first_frame : first_frame + size] = to_host_space(model, chunk).to(self.output)
            progress.show(chunk[:, :, -1])

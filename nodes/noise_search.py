"""k-Step Noise Search: thin glue over samplers/noise_search.py, sampling with ComfyUI's own KSampler."""

from __future__ import annotations

import logging
from typing import NamedTuple

import comfy.model_management
import comfy.nested_tensor
import comfy.sample
import comfy.samplers
import torch
from comfy_api.latest import io, ui

from ..samplers.experts import Experts, expert_runs
from ..samplers.noise_search import GuideScorer, SearchCost, search_chunks
from .clip_scoring import OpenCLIP, clip_vision_embedder
from .experts import ExpertModels
from .image_to_video import image_to_video
from .input_checks import check_finite_number, check_images
from .progress import FrameProgress
from .schema import CATEGORY, EXPERTS, seed_input


class KStepNoiseSearch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoKStepNoiseSearch",
            display_name="k-Step Noise Search",
            category=CATEGORY,
            description="Image-to-video chunk by chunk, each chunk guided by the last frame of the one before. Before each "
            "chunk's full sample, m candidate seeds are each sampled with a short k-step schedule, decoded and scored "
            "against the guide image with CLIP (the lowest similarity over the frames); the best seed is then sampled with "
            "the full s steps. This keeps one bad initial noise from spoiling every later chunk. Cost: m*k + s steps per chunk.",
            inputs=[
                io.Model.Input(
                    "model",
                    optional=True,
                    tooltip="An image-to-video model: LTX-Video, Wan 2.2 TI2V-5B, Wan 2.1 I2V, Cosmos Predict2 video2world or MiniMax H3. For Wan 2.2 A14B I2V connect its two experts to `experts` instead.",
                ),
                io.Conditioning.Input("positive", tooltip="Prompt for every chunk (for LTX-Video through LTXV Conditioning, as in its I2V workflows)."),
                io.Conditioning.Input("negative", tooltip="Negative prompt for classifier-free guidance."),
                io.Vae.Input("vae", tooltip="The model's VAE: it encodes each chunk's guide frames and decodes the previews and the chunks."),
                io.Image.Input(
                    "guide_image",
                    tooltip="The image the first chunk starts from (its last guide_frames frames when it is a clip). Later chunks start from the end of the chunk before.",
                ),
                io.Int.Input(
                    "width",
                    default=832,
                    min=16,
                    max=8192,
                    step=16,
                    tooltip="Video width; a multiple of 32 for LTX-Video, Wan 2.2 TI2V-5B and MiniMax H3, 16 for Wan 2.1 / A14B. The guide is resized and center-cropped to it.",
                ),
                io.Int.Input("height", default=480, min=16, max=8192, step=16, tooltip="Video height; same multiples as width."),
                io.Int.Input(
                    "chunk_length",
                    default=81,
                    min=5,
                    max=4096,
                    step=4,
                    tooltip="Frames per chunk, the model's clip length: 1 + a multiple of 8 for LTX-Video (97), of 4 for Wan (81, 121); 5 + a multiple of 17 for MiniMax H3 (124).",
                ),
                io.Int.Input("chunks", default=5, min=1, max=1000, tooltip="Number of chunks (n); the paper uses 5."),
                io.Int.Input(
                    "candidates", default=5, min=1, max=100, tooltip="Candidate noises per chunk (m): seeds seed + chunk*m + j. The official code uses 5."
                ),
                io.Int.Input(
                    "preview_steps",
                    default=8,
                    min=1,
                    max=1000,
                    tooltip="Steps of each candidate's preview (k): a complete sample with its own k-step schedule. The paper uses 8, the official driver 3.",
                ),
                io.Int.Input("steps", default=30, min=1, max=10000, tooltip="Steps of the full sample of the chosen candidate (s); the paper uses 50."),
                io.Float.Input(
                    "cfg", default=5.0, min=0.0, max=100.0, step=0.1, round=0.01, tooltip="Classifier-free guidance scale for previews and full samples."
                ),
                io.Combo.Input(
                    "sampler_name",
                    options=comfy.samplers.KSampler.SAMPLERS,
                    default="euler",
                    tooltip="Any ComfyUI sampler; a seed repeats its per-step noise too, so a preview and its full sample share all randomness.",
                ),
                io.Combo.Input(
                    "scheduler",
                    options=comfy.samplers.KSampler.SCHEDULERS,
                    default="simple",
                    tooltip="Any ComfyUI scheduler; previews get its k-step schedule, full samples its s-step one.",
                ),
                seed_input("First candidate seed; the same seed gives the same video."),
                io.Int.Input(
                    "guide_frames",
                    default=1,
                    min=1,
                    max=4096,
                    tooltip="Frames at the end of each chunk that guide the next: 1 is the paper's last frame; more (1 + a multiple of 8 for LTX-Video, of 4 for Wan, 5 + a multiple of 17 for MiniMax H3; Cosmos Predict2 takes 1 only) carry motion across the border.",
                ),
                io.Boolean.Input(
                    "drop_repeated_frames",
                    default=True,
                    tooltip="Each chunk starts by repeating its guide frames. On: later chunks drop them, so no frame repeats at the borders. Off: every chunk is kept whole, as the official code does.",
                ),
                io.ClipVision.Input(
                    "clip_vision",
                    optional=True,
                    tooltip="ComfyUI CLIP vision model: scores the candidates when no open_clip is connected, and conditions Wan 2.1 I2V (clip_vision_h).",
                ),
                EXPERTS.Input(
                    "experts",
                    optional=True,
                    tooltip="Wan 2.2 A14B I2V: the high- and low-noise experts from Wan 2.2 Experts, in place of model and cfg. Previews and full samples switch expert at the boundary step, as two KSampler (Advanced) nodes split at that step do.",
                ),
                OpenCLIP.Input(
                    "open_clip",
                    optional=True,
                    tooltip="An open_clip model from Open CLIP Loader: scores the candidates when connected (the paper uses CLIP ViT-B/32).",
                ),
            ],
            outputs=[
                io.Image.Output(
                    display_name="images", tooltip="All chunks' frames in order (without the repeated guide frames when drop_repeated_frames is on)."
                ),
                io.Latent.Output(
                    display_name="latents", tooltip="One batch row per chunk, each the full chunk; VAE Decode gives every chunk's frames one after another."
                ),
                io.String.Output(display_name="report", tooltip="Per chunk: every candidate seed with its score and the chosen seed; and the step count."),
            ],
        )

    @classmethod
    def execute(
        cls,
        positive,
        negative,
        vae,
        guide_image,
        width,
        height,
        chunk_length,
        chunks,
        candidates,
        preview_steps,
        steps,
        cfg,
        sampler_name,
        scheduler,
        seed,
        guide_frames,
        drop_repeated_frames,
        model=None,
        clip_vision=None,
        open_clip=None,
        experts=None,
    ) -> io.NodeOutput:
        if open_clip is None and clip_vision is None:
            raise ValueError("Connect a scorer for the candidates: clip_vision (for example clip_vision_h) or open_clip (Open CLIP Loader).")
        check_finite_number("cfg", cfg)
        check_images(guide_image, "guide_image", min_channels=3)
        _check_guide_fits(guide_image, width, height)
        guide_image = guide_image.float()  # ComfyUI's IMAGE dtype: its resize has no half-precision kernel on CPU
        stages = _stages(model, cfg, experts)
        scorer_name = open_clip.name if open_clip is not None else "CLIP vision"
        conditioning = image_to_video(stages.models[0].model, clip_vision)
        conditioning.check(width, height, chunk_length, guide_frames)
        cost = SearchCost(candidates, preview_steps, steps)
        sampler = _ChunkSampler(
            stages,
            vae,
            positive,
            negative,
            conditioning,
            (width, height, chunk_length),
            clip_vision,
            (sampler_name, scheduler),
            cost,
            FrameProgress(cost.total_steps(chunks), stages.models[0]),
        )
        scorer = GuideScorer(open_clip if open_clip is not None else clip_vision_embedder(clip_vision))
        results = search_chunks(
            chunks,
            candidates,
            seed,
            guide_image[-guide_frames:],
            sampler.preview,
            sampler.sample,
            scorer,
            lambda chunk: chunk.images[-guide_frames:],
            _log_candidate,
        )

        images, latents = [], []
        lines = [f"k-Step Noise Search, {conditioning.family}, scored by {scorer_name} (min over frames of the cosine to the guide)"]
        for result in results:
            comfy.model_management.throw_exception_if_processing_interrupted()
            frames = result.frames.images
            images.append(frames[guide_frames:] if drop_repeated_frames and result.index > 0 else frames)
            latents.append(result.frames.latent)
            lines.append(result.describe())
            logging.info("k-Step Noise Search %s", lines[-1])
        lines.append(cost.describe(chunks))
        report = "\n".join(lines)
        # an audio-video latent (MiniMax H3) stacks each stream's chunks
        samples = comfy.nested_tensor.cat_nested(latents) if latents[0].is_nested else torch.cat(latents)
        return io.NodeOutput(torch.cat(images), {"samples": samples}, report, ui=ui.PreviewText(report))


def _video_of(latent):
    """The video of a latent; an audio-video latent (MiniMax H3) holds the video first, as VAE Decode takes it."""
    return latent.unbind()[0] if latent.is_nested else latent


def _check_guide_fits(guide_image: torch.Tensor, width: int, height: int) -> None:
    """The guide is center-cropped to the video's aspect ratio, then resized; the crop must keep pixels.

    ComfyUI's crop rounds each margin, so a crop of one pixel can round away: two are kept safe.
    """
    guide_height, guide_width = guide_image.shape[1:3]
    cropped = min(guide_width, guide_height * width / height), min(guide_height, guide_width * height / width)
    if min(cropped) < 2:
        raise ValueError(
            f"The guide image is {guide_width}x{guide_height}: cropped to the video's {width}x{height} shape, less than 2 pixels "
            f"would be left. Use a guide image of about the video's shape."
        )


def _log_candidate(j: int, seed: int, score: float) -> None:
    comfy.model_management.throw_exception_if_processing_interrupted()
    logging.info("k-Step Noise Search: candidate %d, seed %d, score %.4f", j + 1, seed, score)


class _Chunk(NamedTuple):
    latent: torch.Tensor
    images: torch.Tensor


def _stages(model, cfg, experts) -> ExpertModels:
    """The models that sample a chunk, noisiest band first: one model, or Wan 2.2 A14B's experts."""
    if (model is None) == (experts is None):
        raise ValueError("Connect either a model or Wan 2.2 Experts (for Wan 2.2 A14B I2V), not both and not neither.")
    return experts if experts is not None else ExpertModels((model,), (cfg,), (), 1)


class _ChunkSampler:
    """Previews and full samples of one chunk through ComfyUI's KSampler, conditioned once per guide.

    With experts, a sample is split at the step where the schedule crosses the boundary: the
    high-noise expert samples up to it and returns the latent with its noise left, the low-noise
    expert finishes it without adding noise (two KSampler (Advanced) nodes, as users wire them).
    """

    def __init__(self, stages, vae, positive, negative, conditioning, size, clip_vision, sampling, cost, progress):
        self.stages, self.vae, self.positive, self.negative = stages, vae, positive, negative
        self.conditioning, self.size, self.clip_vision = conditioning, size, clip_vision
        self.sampler_name, self.scheduler = sampling
        self.cost, self.progress = cost, progress
        self._guide = None
        self._conditioned = None

    def preview(self, guide: torch.Tensor, seed: int) -> torch.Tensor:
        return self._decode(self._sample(guide, seed, self.cost.preview_steps))

    def sample(self, guide: torch.Tensor, seed: int) -> _Chunk:
        latent = self._sample(guide, seed, self.cost.steps)
        return _Chunk(latent, self._decode(latent))

    def _condition(self, guide):
        # the m previews and the full sample of a chunk share one guide: encode it once
        if guide is not self._guide:
            width, height, length = self.size
            self._guide = guide
            self._conditioned = self.conditioning.condition(self.positive, self.negative, self.vae, guide, width, height, length, self.clip_vision)
        return self._conditioned

    def _sample(self, guide, seed, steps):
        positive, negative, latent = self._condition(guide)
        first = self.stages.models[0]
        latent_image = comfy.sample.fix_empty_latent_channels(
            first, latent["samples"], latent.get("downscale_ratio_spacial"), latent.get("downscale_ratio_temporal")
        )
        noise = comfy.sample.prepare_noise(latent_image, seed)
        if len(self.stages.models) == 1:
            return comfy.sample.sample(
                first,
                noise,
                steps,
                self.stages.cfgs[0],
                self.sampler_name,
                self.scheduler,
                positive,
                negative,
                latent_image,
                noise_mask=latent.get("noise_mask"),
                callback=self._step_done,
                disable_pbar=True,
                seed=seed,
            )
        runs = self._expert_runs(steps)
        for k, (expert, start, stop) in enumerate(runs):
            latent_image = comfy.sample.sample(
                self.stages.models[expert],
                noise if k == 0 else comfy.sample.prepare_empty_noise(latent_image),
                steps,
                self.stages.cfgs[expert],
                self.sampler_name,
                self.scheduler,
                positive,
                negative,
                latent_image,
                start_step=start,
                last_step=stop,
                force_full_denoise=k == len(runs) - 1,
                noise_mask=latent.get("noise_mask"),
                callback=self._step_done,
                disable_pbar=True,
                seed=seed,
            )
        return latent_image

    def _expert_runs(self, steps) -> list[tuple[int, int, int]]:
        """``(expert, first step, last step)`` of each expert that has steps in this schedule."""
        model_sampling = self.stages.models[0].get_model_object("model_sampling")
        levels = comfy.samplers.calculate_sigmas(model_sampling, self.scheduler, steps)[:-1]
        return expert_runs(Experts([None] * len(self.stages.models), self.stages.boundaries).expert_of(levels).tolist())

    def _step_done(self, step, x0, x, total_steps):
        comfy.model_management.throw_exception_if_processing_interrupted()
        self.progress.advance(_video_of(x0))

    def _decode(self, latent):
        images = self.vae.decode(_video_of(latent))
        return images.reshape(-1, *images.shape[-3:])

"""Predict x0 for video windows whose frames sit at their own noise levels, through a ComfyUI guider.

ComfyUI computes ``denoised`` with one sigma per batch row, so each family gets its per-frame
timestep in through its own door and the result is corrected frame by frame:

* the call uses the row's largest sigma ``s_b`` and per-frame timesteps ``timestep(s_f)``;
* each frame's input is rescaled so the network sees ``calculate_input(s_f, x_f)``;
* the network output is recovered from ``denoised`` at ``s_b`` and turned into ``x0`` at ``s_f``.

``calculate_input`` and ``calculate_denoised`` are linear in their tensor arguments for every
ComfyUI model-sampling type (EPS, V, EDM, CONST/flow, Cosmos RFlow), and CFG mixes predictions with
weights that sum to one, so the correction is exact for all of them.

Cosmos Predict2 video2world also reads a concatenated channel that marks given (clean) frames. ComfyUI
builds it once for the whole latent, so the denoiser builds it per call instead: 1 for the frames of a
window at sigma 0 (a context chunk), 0 for the frames being generated.

MiniMax H3 packs a video latent and an audio latent into one; its transformer takes one batch row and
reads per-row masks: a video row's label is ``1 - m * sigma``, an audio row's ``1 - m * sigma_a`` on the
audio stream's own shifted schedule. The sampler carries the audio scaled onto the video schedule and
the transformer converts it at the call's sigma on the way in and out; for rows at other levels the
denoiser redoes that conversion at the row's own level (``_h3_row_levels``), so each row gets what a call
at its level gives, and the per-frame correction above applies to both streams alike. The text tokens
share the sequence and are modulated at the call's sigma, the window's highest level (as they are when
ComfyUI itself masks H3 rows); given frames run at H3's fixed conditioning label (0.999).

LTX transformers place a call's tokens from its own first frame: with causal temporal positioning (LTX-2,
and LTX-Video checkpoints whose config sets it) the call's first latent frame is one pixel frame and its
first audio latent one mel frame, as the video's are. A window that starts later in the video is shown the
positions its frames and its sound have in a call on the whole video, up to a shift common to both streams
(RoPE sees only differences, also between the streams): every frame ``scale`` pixel frames (non-causal
positioning) and the audio latents numbered from where they sit in the whole sound (WindowPositions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import comfy.model_management
import comfy.nested_tensor
import comfy.patcher_extension as patcher_extension
import comfy.sampler_helpers
import comfy.samplers
import comfy.utils
import torch

from .families import DENOISE_MASK, FRAMES_AS_BATCH, PACKED_ROW_MASKS, PACKED_STREAM_MASKS, TIMESTEP_MATRIX, model_family

_WRAPPER_KEY = "comfyui-longvideo.frame_levels"
# ComfyUI's audio patchifier counts a call's audio latents with arange(shift, count + shift): a shift on a
# 2^-16 grid keeps that count exact (the rounding moves a latent by under 1e-6 s)
_AUDIO_SHIFT_GRID = 2**16


@dataclass(frozen=True)
class WindowPositions:
    """How an LTX call places a window that starts after the video's first frame: its video frames
    non-causally (each ``scale`` pixel frames, as in the middle of the video), and its audio latents
    (LTX-2) numbered from ``audio_shift`` by a non-causal audio patchifier, the shift putting them where
    they sit in the whole sound relative to the window's first video frame (sound.SoundTimeline)."""

    audio_shift: Optional[float] = None

    def __post_init__(self):
        # on the grid the patchifier counts exactly; windows with the same shift also compare equal and share a call
        if self.audio_shift is not None:
            object.__setattr__(self, "audio_shift", round(self.audio_shift * _AUDIO_SHIFT_GRID) / _AUDIO_SHIFT_GRID)


class PromptScheduleGuider(comfy.samplers.CFGGuider):
    """CFG with several positive prompts prepared together; ``active_prompt`` picks one per call."""

    active_prompt = 0

    def set_prompt_schedule(self, positives: list, negative) -> None:
        conds = {f"positive_{i}": positive for i, positive in enumerate(positives)}
        self.inner_set_conds({"negative": negative, **conds})

    def predict_noise(self, x, timestep, model_options=None, seed=None):  # ComfyUI always passes model_options
        return comfy.samplers.sampling_function(
            self.inner_model,
            x,
            timestep,
            self.conds.get("negative", None),
            self.conds.get(f"positive_{self.active_prompt}", None),
            self.cfg,
            model_options=model_options,
            seed=seed,
        )


def prompt_guider(model, positives: list, negative, cfg: float) -> PromptScheduleGuider:
    guider = PromptScheduleGuider(model)
    guider.set_prompt_schedule(positives, negative)
    guider.set_cfg(cfg)
    return guider


class FramewiseDenoiser:
    """Predict x0 for windows whose frames sit at their own sigmas. Built inside a guider's sampling."""

    def __init__(self, guider, model_options: dict, seed: Optional[int], before_call: Callable[[], None]):
        self.guider = guider
        self.model = guider.inner_model
        self.family = model_family(self.model)
        self.model_sampling = self.model.model_sampling
        self.seed = seed
        self.before_call = before_call
        self._frame_timestep_ratio: Optional[torch.Tensor] = None
        self.model_options = model_options
        self._stream_levels: Optional[list[torch.Tensor]] = None  # audio-video models: the levels of the video frames and audio units of the call
        self._stream_shapes: Optional[list] = None  # audio-video models: the video and audio shapes of the call
        # the output-frame index of the video's first frame (a given clip's frames are numbered before 0)
        self.video_start = 0
        self._positions: Optional[WindowPositions] = None  # LTX: None gives the call the model's own positions
        if self.family.mechanism == DENOISE_MASK:
            patcher_extension.add_wrapper_with_key(
                patcher_extension.WrappersMP.APPLY_MODEL, _WRAPPER_KEY, self._add_denoise_mask, model_options, is_model_options=True
            )
        elif self.family.mechanism == TIMESTEP_MATRIX:
            patcher_extension.add_wrapper_with_key(
                patcher_extension.WrappersMP.DIFFUSION_MODEL, _WRAPPER_KEY, self._use_timestep_matrix, model_options, is_model_options=True
            )
        elif self.family.mechanism == PACKED_ROW_MASKS:
            patcher_extension.add_wrapper_with_key(
                patcher_extension.WrappersMP.APPLY_MODEL, _WRAPPER_KEY, self._call_stream_shapes, model_options, is_model_options=True
            )
            patcher_extension.add_wrapper_with_key(
                patcher_extension.WrappersMP.DIFFUSION_MODEL, _WRAPPER_KEY, self._h3_row_levels, model_options, is_model_options=True
            )
        elif self.family.mechanism == PACKED_STREAM_MASKS:
            patcher_extension.add_wrapper_with_key(
                patcher_extension.WrappersMP.APPLY_MODEL, _WRAPPER_KEY, self._ltxav_stream_masks, model_options, is_model_options=True
            )
        if self.family.positions_from_call_start:
            patcher_extension.add_wrapper_with_key(
                patcher_extension.WrappersMP.DIFFUSION_MODEL, _WRAPPER_KEY, self._ltx_window_positions, model_options, is_model_options=True
            )

    def __call__(self, x: torch.Tensor, sigmas: torch.Tensor, prompt: int, frames: torch.Tensor) -> torch.Tensor:
        self.before_call()
        self._select_prompt(prompt)
        if self.family.mechanism == FRAMES_AS_BATCH:
            return self._denoise_frames_as_batch(x, sigmas)
        if self.family.positions_from_call_start and self.model.diffusion_model.causal_temporal_positioning:
            return self._denoise_by_window_start(x, sigmas, frames)
        return self._denoise_with_frame_levels(x, sigmas)

    def _denoise_by_window_start(self, x, sigmas, frames):
        """LTX-Video with causal positioning: windows that start the video and windows that start later in separate calls."""
        later = (frames[:, 0] > self.video_start).tolist()
        x0 = torch.empty_like(x)
        for positions in (None, WindowPositions()):
            rows = [n for n, is_later in enumerate(later) if is_later == (positions is not None)]
            if rows:
                self._positions = positions
                x0[rows] = self._denoise_with_frame_levels(x[rows], sigmas[rows]).to(x0)
        self._positions = None
        return x0

    def _select_prompt(self, prompt: int) -> None:
        if isinstance(self.guider, PromptScheduleGuider):
            self.guider.active_prompt = prompt
        elif prompt != 0:
            raise ValueError("A prompt schedule needs model + conditioning inputs; a GUIDER carries a single prompt.")

    def _guide(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.guider(x, sigma, model_options=self.model_options, seed=self.seed)

    def _denoise_frames_as_batch(self, x, sigmas):
        n, c, f, h, w = x.shape
        rows = x.movedim(2, 1).reshape(n * f, c, h, w)
        denoised = self._guide(rows, sigmas.reshape(-1).to(x))
        return denoised.reshape(n, f, c, h, w).movedim(1, 2)

    def _denoise_with_frame_levels(self, x, sigmas):
        sigmas = sigmas.to(x)
        batch_sigma = sigmas.amax(dim=1)
        if not bool((batch_sigma > 0).all()):
            raise ValueError("Every window must hold at least one frame that is not yet clean.")
        ms = self.model_sampling
        self._frame_timestep_ratio = ms.timestep(sigmas) / ms.timestep(batch_sigma)[:, None]
        frame_in, frame_x, frame_out = self._linear_coefficients(sigmas)
        batch_in, batch_x, batch_out = self._linear_coefficients(batch_sigma[:, None])
        scaled = x * frame_in / batch_in
        denoised = self._guide(scaled, batch_sigma)
        network_out = (denoised - batch_x * scaled) / batch_out
        return frame_x * x + frame_out * network_out

    def _linear_coefficients(self, sigmas: torch.Tensor):
        """Per-frame ``k_in, k_x, k_out`` with calculate_input = k_in*x and calculate_denoised = k_x*x + k_out*out."""
        flat = sigmas.reshape(-1)
        ones = torch.ones(flat.shape[0], 1, device=flat.device, dtype=flat.dtype)
        zeros = torch.zeros_like(ones)
        ms = self.model_sampling
        shape = (sigmas.shape[0], 1, sigmas.shape[1], 1, 1)
        k_in = ms.calculate_input(flat, ones).reshape(shape)
        k_x = ms.calculate_denoised(flat, zeros, ones).reshape(shape)
        k_out = ms.calculate_denoised(flat, ones, zeros).reshape(shape)
        return k_in, k_x, k_out

    def _ratio_rows(self, rows: int) -> torch.Tensor:
        ratio = self._frame_timestep_ratio
        if rows % ratio.shape[0]:
            raise RuntimeError(f"Model batch of {rows} rows does not split into {ratio.shape[0]} windows.")
        # ComfyUI stacks cond and uncond copies of the batch one after the other
        return ratio.repeat(rows // ratio.shape[0], 1)

    def _add_denoise_mask(self, executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
        ratio = self._ratio_rows(x.shape[0])[:, None, :, None, None]
        frame_shape = (x.shape[0], 1, x.shape[2], x.shape[3], x.shape[4])
        kwargs["denoise_mask"] = ratio.expand(frame_shape).to(x)
        if self.family.marks_clean_frames:
            c_concat = (ratio == 0).expand(frame_shape).to(x)
        return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)

    def _use_timestep_matrix(self, executor, x, timestep, *args, **kwargs):
        ratio = self._ratio_rows(x.shape[0]).to(timestep)
        return executor(x, timestep[:, None] * ratio, *args, **kwargs)

    def denoise_audio_video(
        self,
        video: torch.Tensor,
        video_sigmas: torch.Tensor,
        audio: torch.Tensor,
        audio_sigmas: torch.Tensor,
        prompt: int = 0,
        positions: Optional[WindowPositions] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x0 of audio-video windows (MiniMax H3, LTX-2), in model space, every frame and audio unit at its own level.

        ``video`` ``[N, C, F, H, W]`` with ``video_sigmas`` ``[N, F]``; ``audio`` in the family's layout
        with ``audio_sigmas`` ``[N, A]``, one level per audio unit along the family's audio time axis:
        MiniMax H3 ``[N, 32, 2, A]`` (channels, stereo, audio latent frames; the audio as the sampler
        carries it, scaled onto the video schedule), LTX-2 ``[N, 8, A, 16]`` (channels, audio latents,
        frequency bins). H3's transformer takes one row at a time, so its N windows are denoised one
        after the other; LTX-2 takes them in one call. ``positions``: LTX-2 windows that start after the
        video's first frame; None for windows that start it (and for H3, which places tokens by its own frames).
        """
        self.before_call()
        self._select_prompt(prompt)
        if self.family.one_row_per_call:
            rows = [self._denoise_packed(video[n : n + 1], video_sigmas[n : n + 1], audio[n : n + 1], audio_sigmas[n : n + 1]) for n in range(video.shape[0])]
            return torch.cat([v for v, _ in rows]), torch.cat([a for _, a in rows])
        self._positions = positions
        try:
            return self._denoise_packed(video, video_sigmas, audio, audio_sigmas)
        finally:
            self._positions = None

    def _denoise_packed(self, video, video_sigmas, audio, audio_sigmas):
        """The per-frame correction on both streams packed into one latent, as ComfyUI samples audio-video models."""
        video_sigmas, audio_sigmas = video_sigmas.to(video), audio_sigmas.to(audio)
        batch_sigma = torch.maximum(video_sigmas.amax(dim=1), audio_sigmas.amax(dim=1))
        if not bool((batch_sigma > 0).all()):
            raise ValueError("Every window must hold at least one frame that is not yet clean.")
        self._stream_levels = [video_sigmas, audio_sigmas]
        packed, shapes = comfy.utils.pack_latents([video, audio])
        self._stream_shapes = shapes
        audio_time = self.family.audio_time_dim
        audio_view = [audio.shape[0]] + [audio.shape[d] if d == audio_time else 1 for d in range(1, audio.ndim)]

        def per_element(video_values, audio_values):
            # per-frame values spread over each stream's elements, packed like the latent
            return comfy.utils.pack_latents([video_values.expand_as(video), audio_values.reshape(audio_view).expand_as(audio)])[0]

        frame_in, frame_x, frame_out = (per_element(v, a) for v, a in zip(self._linear_coefficients(video_sigmas), self._linear_coefficients(audio_sigmas)))
        batch_in, batch_x, batch_out = (k.reshape(-1, 1, 1) for k in self._linear_coefficients(batch_sigma[:, None]))
        scaled = packed * frame_in / batch_in
        denoised = self._guide(scaled, batch_sigma)
        network_out = (denoised - batch_x * scaled) / batch_out
        video_x0, audio_x0 = comfy.utils.unpack_latents(frame_x * packed + frame_out * network_out, shapes)
        return video_x0, audio_x0

    def _ltxav_stream_masks(self, executor, x, t, *args, **kwargs):
        """LTX-2's per-token levels: ``process_timestep`` scales the call's timestep by ``denoise_mask`` for the
        video tokens and by ``audio_denoise_mask`` for the audio tokens, so each mask is the level's timestep
        over the call's. The streams' shapes are the call's own (the conditioning holds the planned ones)."""
        ms = self.model_sampling
        video_levels, audio_levels = (levels.repeat(x.shape[0] // levels.shape[0], 1) for levels in self._stream_levels)
        call_timestep = ms.timestep(t.to(video_levels))[:, None]
        video_shape, audio_shape = self._call_latent_shapes(x.shape[0])
        video_ratio = ms.timestep(video_levels) / call_timestep
        audio_ratio = ms.timestep(audio_levels) / call_timestep
        kwargs["denoise_mask"] = video_ratio[:, None, :, None, None].expand(video_shape[0], 1, *video_shape[2:]).to(x)
        kwargs["audio_denoise_mask"] = audio_ratio[:, None, :, None].expand(audio_shape[0], 1, *audio_shape[2:]).to(x)
        kwargs["latent_shapes"] = [video_shape, audio_shape]
        return executor(x, t, *args, **kwargs)

    def _call_stream_shapes(self, executor, x, t, *args, **kwargs):
        """H3 unpacks its latent by the shapes the conditioning holds, the planned call's: give it this call's."""
        kwargs["latent_shapes"] = self._call_latent_shapes(x.shape[0])
        return executor(x, t, *args, **kwargs)

    def _call_latent_shapes(self, rows: int) -> list[torch.Size]:
        """The video and audio shapes of this call's packed latent, ``rows`` batch rows (cond and uncond copies included)."""
        return [torch.Size([rows, *shape[1:]]) for shape in self._stream_shapes]

    def _ltx_window_positions(self, executor, *args, **kwargs):
        """The call's positions (WindowPositions): the transformer reads them from its own settings while it runs."""
        positions = self._positions
        if positions is None:
            return executor(*args, **kwargs)
        transformer = self.model.diffusion_model
        causal = transformer.causal_temporal_positioning
        transformer.causal_temporal_positioning = False
        audio_patchifier = getattr(transformer, "a_patchifier", None)
        if positions.audio_shift is not None:
            from comfy.ldm.lightricks.symmetric_patchifier import AudioPatchifier

            transformer.a_patchifier = AudioPatchifier(
                audio_patchifier.patch_size[1],
                audio_patchifier.sample_rate,
                audio_patchifier.hop_length,
                audio_patchifier.audio_latent_downsample_factor,
                is_causal=False,
                start_end=audio_patchifier.start_end,
                shift=positions.audio_shift,
            )
        try:
            return executor(*args, **kwargs)
        finally:
            transformer.causal_temporal_positioning = causal
            if audio_patchifier is not None:
                transformer.a_patchifier = audio_patchifier

    def _h3_row_levels(self, executor, x, timestep, context, transformer_options, **kwargs):
        """Each H3 row at its own level: masks for its labels, and the audio carried at its own level."""
        from comfy.ldm.minimax.model import time_shift_sigma

        video, audio = x
        video_sigmas, audio_sigmas = (levels.to(device=video.device, dtype=torch.float32) for levels in self._stream_levels)
        transformer = self.model.diffusion_model
        shift_video = float(transformer_options.get("minimax_h3_sigma_shift_video", transformer.sigma_shift_video))
        shift_audio = float(transformer_options.get("minimax_h3_sigma_shift_audio", transformer.sigma_shift_audio))
        # the call's sigma as the transformer reads it (row 0, timestep = 1000 sigma)
        call_sigma = (timestep.flatten()[0] / 1000.0).float().clamp(min=1e-6)
        call_audio_sigma = time_shift_sigma(call_sigma, shift_video, shift_audio)
        audio_levels = time_shift_sigma(audio_sigmas, shift_video, shift_audio)
        kwargs["denoise_mask"] = (video_sigmas / call_sigma)[:, None, :, None, None].expand(1, 1, *video.shape[2:])
        kwargs["audio_denoise_mask"] = (audio_levels / call_audio_sigma)[:, None, None, :].expand(1, 1, *audio.shape[2:])
        scale = float((kwargs.get("minimax_payload") or {}).get("audio_scale", 1.0))
        if scale == 1.0:
            return executor(x, timestep, context, transformer_options, **kwargs)
        # the transformer turned the carried audio c into its own latent c * sigma_a / sigma at the call's
        # sigma; at a row's own level that factor is its own (shift_audio / shift_video at sigma 0)
        own_factor = torch.where(audio_sigmas > 0, audio_levels / audio_sigmas.clamp(min=1e-12), torch.full_like(audio_sigmas, shift_audio / shift_video))
        row_audio = audio * (own_factor / (call_audio_sigma / call_sigma))[:, None, None, :].to(audio)
        out = executor([video, row_audio], timestep, context, transformer_options, **kwargs)
        # after this wrapper the transformer makes the carried velocity (1 - scale) * audio + (1 + (scale - 1) sigma_a) * out
        # at the call's sigma_a; this output makes that the velocity at each row's own sigma_a
        row_gain = (1.0 + (scale - 1.0) * audio_levels)[:, None, None, :].to(out[1])
        out[1] = ((1.0 - scale) * (row_audio - audio) + row_gain * out[1]) / (1.0 + (scale - 1.0) * call_audio_sigma).to(out[1])
        return out


class _RunInsideSampling(comfy.samplers.Sampler):
    def __init__(self, body: Callable[[FramewiseDenoiser, torch.Tensor], None], before_call: Callable[[], None]):
        self.body = body
        self.before_call = before_call

    def sample(self, model_wrap, sigmas, extra_args, callback, noise, latent_image=None, denoise_mask=None, disable_pbar=False):
        self.body(FramewiseDenoiser(model_wrap, extra_args["model_options"], extra_args.get("seed"), self.before_call), sigmas)
        return latent_image


def run_with_framewise_denoiser(
    guider,
    call_shape: tuple[int, ...],
    sigmas: torch.Tensor,
    seed: int,
    body: Callable[[FramewiseDenoiser, torch.Tensor], None],
    before_call: Callable[[], None] = lambda: None,
    sound_shape: Optional[tuple[int, ...]] = None,
) -> None:
    """Run ``body(denoiser, sigmas)`` while ComfyUI has the model loaded and the conditioning prepared.

    ``call_shape`` is the largest latent one model call will see; ComfyUI sizes its memory
    planning and the conditioning (e.g. image-to-video concat latents) from it. ``sound_shape``,
    the largest sound latent of a call, makes it an audio-video latent, as ComfyUI samples LTX-2.
    """
    placeholder = torch.zeros(call_shape)
    if sound_shape is not None:
        placeholder = comfy.nested_tensor.NestedTensor((placeholder, torch.zeros(sound_shape)))
    guider.sample(placeholder, placeholder, _RunInsideSampling(body, before_call), sigmas, seed=seed, disable_pbar=True)


def run_with_framewise_denoisers(
    guiders: list,
    call_shape: tuple[int, ...],
    sigmas: torch.Tensor,
    seed: int,
    body: Callable[[list[FramewiseDenoiser]], None],
    before_call: Callable[[], None] = lambda: None,
    sound_shape: Optional[tuple[int, ...]] = None,
) -> None:
    """``body(denoisers)`` with one denoiser per guider, every guider's conditioning prepared.

    Each guider is entered as ComfyUI enters it for sampling, one inside the other; ComfyUI loads
    each model on entry, and where they do not all fit, loading one unloads the others
    (ExpertLoader loads the one that is called). ``sound_shape``: as for run_with_framewise_denoiser.
    """

    def enter(index: int, denoisers: list) -> None:
        if index == len(guiders):
            body(denoisers)
            return
        run_with_framewise_denoiser(
            guiders[index], call_shape, sigmas, seed, lambda denoiser, _sigmas: enter(index + 1, [*denoisers, denoiser]), before_call, sound_shape
        )

    enter(0, [])


class ExpertLoader:
    """Loads the expert about to be called when another one was called last.

    ComfyUI loads every expert when the run enters it; where they do not all fit in memory it
    unloads the others, so an expert whose turn comes is loaded again here, as ComfyUI's own
    sampling would load it.
    """

    def __init__(self, guiders: list, call_shape: tuple[int, ...]):
        self.guiders, self.call_shape = guiders, call_shape
        self.loaded = len(guiders) - 1  # the expert entered last was loaded last
        self.loads = 0

    def denoiser(self, index: int, denoiser: FramewiseDenoiser) -> Callable:
        def call(x, sigmas, prompt, frames):
            if index != self.loaded:
                self._load(index)
            return denoiser(x, sigmas, prompt, frames)

        return call

    def _load(self, index: int) -> None:
        guider = self.guiders[index]
        memory, minimum = comfy.sampler_helpers.estimate_memory(guider.model_patcher, self.call_shape, guider.conds)
        comfy.model_management.load_models_gpu([guider.model_patcher], memory_required=memory, minimum_memory_required=minimum)
        self.loaded = index
        self.loads += 1

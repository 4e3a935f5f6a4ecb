"""LTX-2's sound in the per-frame run: its audio latent carried with the video frames (samplers/streams.py).

An LTX-2 LATENT holds a NestedTensor of a video latent ``[B, C, F, H, W]`` and an audio latent
``[B, 8, T, 16]``. The samplers see packed frames, each video latent frame with the audio latents
that span its time; the timeline comes from ComfyUI's own numbers:

* pixel frames: ``F`` latent frames decode to ``scale x (F - 1) + 1`` pixel frames (the first latent
  frame is one pixel frame, the others ``scale``: the latent format's temporal downscale ratio, 8);
* audio latents: ``N`` pixel frames at the conditioning's frame rate last ``round(N / fps x rate)``
  audio latents (LTXVEmptyLatentAudio's count), ``rate`` the transformer's audio latents per second
  (its audio patchifier's sample rate / hop length / downsampling: 25).

The frame where the video starts (the first frame of the first clip or of a given clip) is its one
pixel frame; the frames after it own the audio latents the count gives the video up to them, the
frames before it (warm-up) ``scale`` pixel frames' worth each. The decoder turns a video's first
latent frame into the last of its pixel frames, so an output that starts later in the timeline
(the Diagonal Queue continuing a clip) keeps the last audio latents its frames own: as many as the
count gives its own video.
"""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

import comfy.nested_tensor
import comfy.utils
import torch

from ...samplers.streams import FramePacking, SecondStream
from .denoiser import FramewiseDenoiser, WindowPositions

# LTXAV.extra_conds: the frame rate the model is given when the conditioning sets none
DEFAULT_FRAME_RATE = 25.0


@dataclass(frozen=True)
class SoundTimeline:
    """How many pixel frames latent frames make and how many audio latents pixel frames last."""

    frame_rate: float
    audio_rate: float  # audio latents per second
    frame_scale: int  # pixel frames per latent frame after the first
    # the transformer's causal audio positions start audio latent u >= 1 at mel frame D u - (D - 1): this many latents early
    audio_lead: float

    @classmethod
    def of(cls, model, guiders) -> "SoundTimeline":
        patchifier = model.diffusion_model.a_patchifier
        mel_frames = patchifier.audio_latent_downsample_factor
        audio_rate = patchifier.sample_rate / patchifier.hop_length / mel_frames
        lead = (mel_frames - 1) / mel_frames if patchifier.is_causal else 0.0
        return cls(conditioning_frame_rate(guiders), audio_rate, model.latent_format.temporal_downscale_ratio, lead)

    def pixel_frames(self, latent_frames: int) -> int:
        return 0 if latent_frames <= 0 else self.frame_scale * (latent_frames - 1) + 1

    def audio_latents(self, pixel_frames: int) -> int:
        return round(pixel_frames / self.frame_rate * self.audio_rate)

    def sound_length(self, latent_frames: int) -> int:
        """Audio latents of a video of that many latent frames, as ComfyUI counts them."""
        return self.audio_latents(self.pixel_frames(latent_frames))

    def window_positions(self, frames_in: int) -> Optional[WindowPositions]:
        """Positions for a window whose first frame comes ``frames_in`` latent frames after the video's first:
        None (the model's own) for a window that starts the video or before it. A later window's video frame 0
        sits ``pixel_frames(frames_in)`` pixel frames into the video and its sound at audio latent
        ``sound_length(frames_in)``; numbering the window's audio latents from this shift puts them where
        they sit in the whole sound relative to that frame."""
        if frames_in <= 0:
            return None
        return WindowPositions(self.sound_length(frames_in) - self.audio_lead - self.pixel_frames(frames_in) / self.frame_rate * self.audio_rate)

    def stream(self, units_shape: tuple[int, ...], first_frame: int) -> SecondStream:
        """The audio stream of a run whose video starts at frame ``first_frame``."""

        def unit_bounds(frame: int) -> int:
            if frame >= first_frame:
                return self.sound_length(frame - first_frame)
            return -self.audio_latents(self.frame_scale * (first_frame - frame))

        # two roundings: a frame owns at most one audio latent more than scale pixel frames last
        most = math.floor(self.frame_scale / self.frame_rate * self.audio_rate) + 1
        return SecondStream(units_shape, 2, unit_bounds, most)


def conditioning_frame_rate(guiders) -> float:
    """The frame rate the conditioning gives the model (LTXVConditioning), one for every prompt."""
    rates = {float(entry["frame_rate"]) for guider in guiders for entries in getattr(guider, "original_conds", {}).values()
             for entry in entries if "frame_rate" in entry}
    if len(rates) > 1:
        raise ValueError(f"The conditioning sets different frame rates ({', '.join(f'{r:g}' for r in sorted(rates))} fps): "
                         f"give every prompt the video's frame rate with one LTXVConditioning node.")
    rate = rates.pop() if rates else DEFAULT_FRAME_RATE
    if not rate > 0:
        raise ValueError(f"The conditioning's frame rate is {rate:g} fps: set LTXVConditioning's frame_rate to the video's.")
    return rate


def audio_video_samples(latent, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The video and audio latents of an LTX-2 LATENT (LTXVConcatAVLatent's NestedTensor)."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not getattr(samples, "is_nested", False) or len(samples.unbind()) != 2:
        raise ValueError(
            f"The {name} input is a video latent without sound, but LTX-2 makes video and sound together: join the video latent "
            f"and an audio latent (LTXVEmptyLatentAudio, or LTXVAudioVAEEncode of the clip's sound) with LTXVConcatAVLatent."
        )
    video, audio = samples.unbind()
    if video.ndim != 5 or audio.ndim != 4 or 0 in video.shape or 0 in audio.shape:
        raise ValueError(f"The {name} input holds a video latent {tuple(video.shape)} and an audio latent {tuple(audio.shape)}; LTX-2's are "
                         f"[batch, channels, frames, height, width] and [batch, channels, audio latents, frequency bins].")
    return video, audio


# LTXVAudioVAEEncode's count of a clip's sound differs from LTXVEmptyLatentAudio's for the same frames by up
# to two audio latents (its causal downsampling keeps or drops a last partial latent); measured -2 .. +1
# over 24, 25 and 30 fps, clips of 9 to 121 frames and 16, 44.1 and 48 kHz sound
SOUND_LENGTH_SLACK = 2


def fitted_sound(audio: torch.Tensor, video: torch.Tensor, timeline: SoundTimeline, units_shape: tuple[int, ...], name: str) -> torch.Tensor:
    """The audio latent at the length its video lasts at the conditioning's frame rate (ComfyUI's count).

    An encoded clip's sound starts with its video, so a sound up to SOUND_LENGTH_SLACK audio latents
    off has its end cut, or its last latent repeated; a sound further off is refused.
    """
    unit = (audio.shape[1], audio.shape[3])
    if unit != units_shape:
        raise ValueError(f"The {name} input's audio latent has {unit[0]} channels x {unit[1]} frequency bins, but this LTX-2 model "
                         f"works on {units_shape[0]} x {units_shape[1]}: encode the sound with LTX-2's audio VAE (LTXVAudioVAELoader).")
    if audio.shape[0] != video.shape[0]:
        raise ValueError(f"The {name} input's audio latent has a batch of {audio.shape[0]}, its video latent {video.shape[0]}: give both the same batch.")
    frames = video.shape[2]
    expected = timeline.sound_length(frames)
    if abs(audio.shape[2] - expected) > SOUND_LENGTH_SLACK:
        raise ValueError(
            f"The {name} input's sound is {audio.shape[2]} audio latents long, but its {frames} latent frames ({timeline.pixel_frames(frames)} "
            f"frames) last {expected} audio latents at the conditioning's {timeline.frame_rate:g} fps ({timeline.audio_rate:g} audio latents "
            f"per second). Make the audio latent for the same frame count and frame rate (LTXVEmptyLatentAudio's frames_number and "
            f"frame_rate), or set LTXVConditioning's frame_rate to the one the sound was made for."
        )
    if audio.shape[2] >= expected:
        return audio[:, :, :expected]
    return torch.cat([audio, audio[:, :, -1:].expand(-1, -1, expected - audio.shape[2], -1)], dim=2)


def to_model_space(model, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``process_latent_in`` on both streams packed into one latent, as ComfyUI samples LTX-2."""
    packed, shapes = comfy.utils.pack_latents([video, audio])
    video, audio = comfy.utils.unpack_latents(model.process_latent_in(packed), shapes)
    return video, audio


def to_host_space(model, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    packed, shapes = comfy.utils.pack_latents([video, audio])
    video, audio = comfy.utils.unpack_latents(model.process_latent_out(packed), shapes)
    return video, audio


class PackedFramesDenoiser:
    """The run's denoiser on packed frames: unpacks the windows, denoises their video frames and audio
    latents together, and packs the x0 back (a slot's padding keeps its values, so a step leaves it alone).

    Windows at different places in the video can own different numbers of audio latents and are shown
    different positions (SoundTimeline.window_positions); windows that own the same number and are
    shown the same positions share a model call. ``video_start``: the output-frame index of the video's
    first frame.
    """

    def __init__(self, denoiser: FramewiseDenoiser, packing: FramePacking, timeline: SoundTimeline, video_start: int):
        self.denoiser, self.packing, self.timeline, self.video_start = denoiser, packing, timeline, video_start

    def __call__(self, x: torch.Tensor, sigmas: torch.Tensor, prompt: int, frames: torch.Tensor) -> torch.Tensor:
        video, audio = self.packing.unpack(x, frames)
        owned = self.packing.stream.units_of(frames)
        sigmas = sigmas.to(x)
        audio_levels = [sigmas[n].repeat_interleave(owned[n].to(sigmas.device)) for n in range(x.shape[0])]
        calls = defaultdict(list)
        for n, row_audio in enumerate(audio):
            calls[row_audio.shape[2], self.timeline.window_positions(int(frames[n, 0]) - self.video_start)].append(n)
        video_x0 = torch.empty_like(video)
        audio_x0: list[Optional[torch.Tensor]] = [None] * x.shape[0]
        for (_length, positions), rows in calls.items():
            got_video, got_audio = self.denoiser.denoise_audio_video(
                video[rows], sigmas[rows], torch.cat([audio[n] for n in rows]), torch.stack([audio_levels[n] for n in rows]), prompt, positions)
            video_x0[rows] = got_video.to(video_x0)
            for n, row_audio in zip(rows, got_audio.split(1)):
                audio_x0[n] = row_audio
        return self.packing.repack(video_x0, audio_x0, frames, x)


class SoundOutput:
    """The output LATENT's audio latent, filled as frames leave the sampler."""

    def __init__(self, packing: FramePacking, timeline: SoundTimeline, batch: int, length: int, device=None):
        self.packing, self.timeline = packing, timeline
        bounds = packing.stream.unit_bounds
        self.start = bounds(0)
        self.audio = torch.zeros(batch, *packing.stream.units_shape[:1], bounds(length) - self.start, *packing.stream.units_shape[1:])
        # the output's own video lasts this long; an output that starts later in the timeline keeps its last audio latents
        self.kept = timeline.sound_length(length)

    def write(self, model, index: int, block: torch.Tensor) -> torch.Tensor:
        """Store the sound of packed frames ``index ..`` and return their video in host space."""
        count = block.shape[2]
        frames = torch.arange(index, index + count).expand(block.shape[0], count)
        video, audio = self.packing.unpack(block, frames)
        video, audio = to_host_space(model, video, torch.cat(audio))
        first = self.packing.stream.unit_bounds(index) - self.start
        self.audio[:, :, first : first + audio.shape[2]] = audio.to(self.audio)
        return video

    def latent_samples(self, video: torch.Tensor) -> comfy.nested_tensor.NestedTensor:
        return comfy.nested_tensor.NestedTensor((video, self.audio[:, :, self.audio.shape[2] - self.kept :].clone()))


def packed_video(packing: FramePacking, packed: torch.Tensor) -> torch.Tensor:
    """The video latent frames ``[B, C, F, H, W]`` of packed frames (for previews): every slot starts with its video frame."""
    rows, length = packed.shape[0], packed.shape[2]
    slots = packed.reshape(rows, length, packing.frame_elements)
    return slots[..., : packing.video_elements].reshape(rows, length, *packing.video_frame).movedim(1, 2)

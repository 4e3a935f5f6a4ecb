"""Sound in the per-frame run: an audio latent carried with the video frames (samplers/streams.py).

LTX-2 and MiniMax H3 make video and sound together: their LATENT holds a NestedTensor of a video
latent ``[B, C, F, H, W]`` and an audio latent (LTX-2 ``[B, 8, T, 16]``, H3 ``[B, 32, 2, T]``, stereo,
time last). The samplers see packed frames, each video latent frame with the audio latents that span
its time; the timeline comes from ComfyUI's own numbers:

* pixel frames: a latent frame is ``scale`` pixel frames, except the first of the video, which is one
  (LTX-2: scale 8, the latent format's temporal downscale ratio). H3's transformer starts a new group
  of latent frames every 5 (``comfy.ldm.minimax.model.FRAME_PER_TOKEN`` = 1, 4, 4, 4, 4), each group's
  first frame one pixel frame;
* audio latents: ``N`` pixel frames last ``round(N / fps x rate)`` audio latents, ``rate`` the audio
  latents per second (LTXVEmptyLatentAudio's count at the conditioning's frame rate, the transformer's
  25 per second; H3's ``round(N x 5 / 3)``, 24 fps and 40 per second, as MiniMaxH3AV.fix_empty_latent
  and EmptyMiniMaxH3LatentAV count them).

Frame ``k`` owns the audio latents the count adds when the video grows from ``k`` to ``k + 1``
latent frames: with H3 an audio latent goes to the frame whose time covers most of it, which is
the frame its transformer places nearest (audio latent ``j`` at ``j``, a frame at 5 / 3 of its first
pixel frame). Frames before the video's first (warm-up) continue the pattern backwards. The decoder
turns a video's first latent frame into its first group's one pixel frame, so an output that starts
later in the timeline (the Diagonal Queue continuing a clip, the Progressive AR Sampler extending
one) keeps the last audio latents its frames own: as many as the count gives its own video.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Optional

import comfy.ldm.minimax.model
import comfy.nested_tensor
import comfy.utils
import torch
from comfy_extras import nodes_minimax_h3

from ...samplers.streams import FramePacking, SecondStream
from .denoiser import FramewiseDenoiser, WindowPositions
from .families import PACKED_ROW_MASKS, model_family

# LTXAV.extra_conds: the frame rate the model is given when the conditioning sets none
DEFAULT_FRAME_RATE = 25.0


@dataclass(frozen=True)
class SoundTimeline:
    """How many pixel frames latent frames make and how many audio latents pixel frames last."""

    frame_rate: float
    audio_rate: float  # audio latents per second
    frame_scale: int  # pixel frames of a latent frame that is not the first of the video (or of its group)
    group: Optional[int] = None  # latent frames per group whose first frame is one pixel frame (H3: 5); None: one group
    # LTX-2: its causal audio positions start audio latent u >= 1 at mel frame D u - (D - 1), this many latents early;
    # None where the transformer does not place a call's tokens from the call's start (H3)
    audio_lead: Optional[float] = None

    @classmethod
    def of(cls, model, guiders) -> "SoundTimeline":
        if model_family(model).mechanism == PACKED_ROW_MASKS:
            spans = comfy.ldm.minimax.model.FRAME_PER_TOKEN
            return cls(float(nodes_minimax_h3.FPS), float(nodes_minimax_h3.AUDIO_LATENT_FPS), max(spans), len(spans))
        patchifier = model.diffusion_model.a_patchifier
        mel_frames = patchifier.audio_latent_downsample_factor
        audio_rate = patchifier.sample_rate / patchifier.hop_length / mel_frames
        lead = (mel_frames - 1) / mel_frames if patchifier.is_causal else 0.0
        return cls(conditioning_frame_rate(guiders), audio_rate, model.latent_format.temporal_downscale_ratio, audio_lead=lead)

    def pixel_frames(self, latent_frames: int) -> int:
        """Pixel frames of the video's first ``latent_frames`` latent frames; a negative count, minus those of
        as many frames before the video (the pattern continued backwards)."""
        if self.group is None:
            return self.frame_scale * latent_frames if latent_frames <= 0 else self.frame_scale * (latent_frames - 1) + 1
        groups, within = divmod(latent_frames, self.group)
        group_frames = 1 + self.frame_scale * (self.group - 1)
        return groups * group_frames + (0 if within == 0 else 1 + self.frame_scale * (within - 1))

    def audio_latents(self, pixel_frames: int) -> int:
        return round(pixel_frames / self.frame_rate * self.audio_rate)

    def sound_length(self, latent_frames: int) -> int:
        """Audio latents of a video of that many latent frames, as ComfyUI counts them."""
        return self.audio_latents(self.pixel_frames(latent_frames))

    def window_positions(self, frames_in: int) -> Optional[WindowPositions]:
        """LTX-2's positions for a window whose first frame comes ``frames_in`` latent frames after the video's
        first: None (the model's own) for a window that starts the video or before it. A later window's video
        frame 0 sits ``pixel_frames(frames_in)`` pixel frames into the video and its sound at audio latent
        ``sound_length(frames_in)``; numbering the window's audio latents from this shift puts them where
        they sit in the whole sound relative to that frame."""
        if frames_in <= 0 or self.audio_lead is None:
            return None
        return WindowPositions(self.sound_length(frames_in) - self.audio_lead - self.pixel_frames(frames_in) / self.frame_rate * self.audio_rate)

    def stream(self, units_shape: tuple[int, ...], first_frame: int, time_dim: int = 2) -> SecondStream:
        """The audio stream of a run whose video starts at frame ``first_frame``, its time at ``time_dim``
        (LTX-2's ``[B, 8, T, 16]``: 2; H3's ``[B, 32, 2, T]``: 3)."""

        def unit_bounds(frame: int) -> int:
            return self.sound_length(frame - first_frame)

        # two roundings: a frame owns at most one audio latent more than scale pixel frames last
        most = math.floor(self.frame_scale / self.frame_rate * self.audio_rate) + 1
        return SecondStream(units_shape, time_dim, unit_bounds, most)


def conditioning_frame_rate(guiders) -> float:
    """The frame rate the conditioning gives the model (LTXVConditioning), one for every prompt."""
    rates = {
        float(entry["frame_rate"])
        for guider in guiders
        for entries in getattr(guider, "original_conds", {}).values()
        for entry in entries
        if "frame_rate" in entry
    }
    if len(rates) > 1:
        raise ValueError(
            f"The conditioning sets different frame rates ({', '.join(f'{r:g}' for r in sorted(rates))} fps): "
            f"give every prompt the video's frame rate with one LTXVConditioning node."
        )
    rate = rates.pop() if rates else DEFAULT_FRAME_RATE
    if not rate > 0:
        raise ValueError(f"The conditioning's frame rate is {rate:g} fps: set LTXVConditioning's frame_rate to the video's.")
    return rate


@dataclass(frozen=True)
class SoundHints:
    """What a family's messages tell the user about making its sound."""

    join: str  # how to make an audio-video latent
    encode: str  # which audio VAE encodes the sound
    rate: str  # where the frame rate comes from
    length: str  # how to make a sound of the right length


HINTS = {
    "LTX-2": SoundHints(
        "join the video latent and an audio latent (LTXVEmptyLatentAudio, or LTXVAudioVAEEncode of the clip's sound) with LTXVConcatAVLatent",
        "encode the sound with LTX-2's audio VAE (LTXVAudioVAELoader)",
        "the conditioning's ",
        "Make the audio latent for the same frame count and frame rate (LTXVEmptyLatentAudio's frames_number and frame_rate), or set "
        "LTXVConditioning's frame_rate to the one the sound was made for.",
    ),
    "MiniMax H3": SoundHints(
        "make it with EmptyMiniMaxH3LatentAV, or join a clip's VAEEncode and the VAEEncodeAudio of its sound (MiniMax H3's audio VAE) with LTXVConcatAVLatent",
        "encode the sound with MiniMax H3's audio VAE (VAELoader, VAEEncodeAudio)",
        "MiniMax H3's ",
        "Encode a clip of 5 + 17 n frames at 24 fps with its own sound, or make the latent with EmptyMiniMaxH3LatentAV.",
    ),
}


def audio_video_samples(latent, name: str, family) -> tuple[torch.Tensor, torch.Tensor]:
    """The video and audio latents of an audio-video LATENT (a NestedTensor of the two)."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not getattr(samples, "is_nested", False) or len(samples.unbind()) != 2:
        raise ValueError(f"The {name} input is a video latent without sound, but {family.name} makes video and sound together: {HINTS[family.name].join}.")
    video, audio = samples.unbind()
    if video.ndim != 5 or audio.ndim != 4 or 0 in video.shape or 0 in audio.shape:
        layout = "[batch, channels, audio latents, frequency bins]" if family.audio_time_dim == 2 else "[batch, channels, stereo channels, audio latents]"
        raise ValueError(
            f"The {name} input holds a video latent {tuple(video.shape)} and an audio latent {tuple(audio.shape)}; {family.name}'s are "
            f"[batch, channels, frames, height, width] and {layout}."
        )
    return video, audio


def sound_units(model) -> tuple[int, ...]:
    """The shape of one audio latent (its channels and the axis beside time) this model works on."""
    transformer = model.diffusion_model
    if model_family(model).mechanism == PACKED_ROW_MASKS:
        # comfy.ldm.minimax.model.pack_audio: two stereo channels of audio_latents_dim each
        return (transformer.audio_latents_dim, 2)
    return (transformer.num_audio_channels, transformer.audio_frequency_bins)


# LTXVAudioVAEEncode's count of a clip's sound differs from LTXVEmptyLatentAudio's for the same frames by up
# to two audio latents (its causal downsampling keeps or drops a last partial latent); measured -2 .. +1
# over 24, 25 and 30 fps, clips of 9 to 121 frames and 16, 44.1 and 48 kHz sound
SOUND_LENGTH_SLACK = 2


def fitted_sound(audio: torch.Tensor, video: torch.Tensor, timeline: SoundTimeline, units_shape: tuple[int, ...], name: str, family) -> torch.Tensor:
    """The audio latent at the length its video lasts at its frame rate (ComfyUI's count).

    An encoded clip's sound starts with its video, so a sound up to SOUND_LENGTH_SLACK audio latents
    off has its end cut, or its last latent repeated; a sound further off is refused.
    """
    hints, time = HINTS[family.name], family.audio_time_dim
    unit = tuple(size for dim, size in enumerate(audio.shape) if dim not in (0, time))
    if unit != units_shape:
        raise ValueError(
            f"The {name} input's audio latent is {' x '.join(map(str, unit))} per audio latent, but this {family.name} model "
            f"works on {' x '.join(map(str, units_shape))}: {hints.encode}."
        )
    if audio.shape[0] != video.shape[0]:
        raise ValueError(f"The {name} input's audio latent has a batch of {audio.shape[0]}, its video latent {video.shape[0]}: give both the same batch.")
    frames, length = video.shape[2], audio.shape[time]
    expected = timeline.sound_length(frames)
    if abs(length - expected) > SOUND_LENGTH_SLACK:
        raise ValueError(
            f"The {name} input's sound is {length} audio latents long, but its {frames} latent frames ({timeline.pixel_frames(frames)} "
            f"frames) last {expected} audio latents at {hints.rate}{timeline.frame_rate:g} fps ({timeline.audio_rate:g} audio latents "
            f"per second). {hints.length}"
        )
    if length >= expected:
        return audio.narrow(time, 0, expected)
    return torch.cat([audio, audio.narrow(time, length - 1, 1).repeat_interleave(expected - length, dim=time)], dim=time)


def to_model_space(model, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``process_latent_in`` on both streams packed into one latent, as ComfyUI samples audio-video models."""
    return _packed_latent(model, model.process_latent_in, video, audio)


def to_host_space(model, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _packed_latent(model, model.process_latent_out, video, audio)


def _packed_latent(model, process, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``process`` on the packed streams with the model told their shapes, as ComfyUI's sampling tells it
    (H3 scales the audio part of the pack, which it finds from the shapes)."""
    packed, shapes = comfy.utils.pack_latents([video, audio])
    planned = model.latent_shapes
    model.latent_shapes = shapes
    try:
        processed = process(packed)
    finally:
        model.latent_shapes = planned
    video, audio = comfy.utils.unpack_latents(processed, shapes)
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
            calls[row_audio.shape[self.packing.stream.time_dim], self.timeline.window_positions(int(frames[n, 0]) - self.video_start)].append(n)
        video_x0 = torch.empty_like(video)
        audio_x0: list[Optional[torch.Tensor]] = [None] * x.shape[0]
        for (_length, positions), rows in calls.items():
            got_video, got_audio = self.denoiser.denoise_audio_video(
                video[rows], sigmas[rows], torch.cat([audio[n] for n in rows]), torch.stack([audio_levels[n] for n in rows]), prompt, positions
            )
            video_x0[rows] = got_video.to(video_x0)
            for n, row_audio in zip(rows, got_audio.split(1)):
                audio_x0[n] = row_audio
        return self.packing.repack(video_x0, audio_x0, frames, x)


class SoundOutput:
    """The output LATENT's audio latent, filled as frames leave the sampler."""

    def __init__(self, packing: FramePacking, timeline: SoundTimeline, batch: int, length: int, clip_sound: Optional[torch.Tensor] = None):
        """``clip_sound``: the sound of the clip the video continues (host space), which starts the timeline."""
        self.packing, self.timeline = packing, timeline
        stream = packing.stream
        # the output's own video lasts this long; an output that starts later in the timeline keeps its last audio latents
        self.kept = timeline.sound_length(length)
        end = stream.unit_bounds(length)
        # H3's roundings can give an output that starts mid-group one audio latent fewer than its own video lasts:
        # the one before it is the clip's
        self.start = min(stream.unit_bounds(0), end - self.kept)
        shape = [batch, *stream.units_shape]
        shape.insert(stream.time_dim, end - self.start)
        self.audio = torch.zeros(shape)
        before = stream.unit_bounds(0) - self.start
        if before:
            self.audio.narrow(stream.time_dim, 0, before).copy_(clip_sound.narrow(stream.time_dim, self.start, before))

    def write(self, model, index: int, block: torch.Tensor) -> torch.Tensor:
        """Store the sound of packed frames ``index ..`` and return their video in host space."""
        count = block.shape[2]
        frames = torch.arange(index, index + count).expand(block.shape[0], count)
        video, audio = self.packing.unpack(block, frames)
        video, audio = to_host_space(model, video, torch.cat(audio))
        time = self.packing.stream.time_dim
        first = self.packing.stream.unit_bounds(index) - self.start
        self.audio.narrow(time, first, audio.shape[time]).copy_(audio)
        return video

    def latent_samples(self, video: torch.Tensor) -> comfy.nested_tensor.NestedTensor:
        time = self.packing.stream.time_dim
        return comfy.nested_tensor.NestedTensor((video, self.audio.narrow(time, self.audio.shape[time] - self.kept, self.kept).clone()))

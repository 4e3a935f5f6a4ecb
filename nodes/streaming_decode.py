"""Streaming Decode to Video File: latent -> overlapping temporal tiles -> host VAE -> video file.

Only one decoded tile is in memory at a time, so a video of any length is written with constant
RAM, where VAE Decode would first build the whole float32 IMAGE (10,000 frames at 480x832 are
about 47 GB).
"""

from __future__ import annotations

import logging
import math
import os
from typing import Iterator

import comfy.model_management
import comfy.utils
import folder_paths
import torch
from comfy.cli_args import args
from comfy.ldm.minimax.audio_vae import MiniMaxH3AudioVAE
from comfy.ldm.minimax.model import FRAME_PER_TOKEN
from comfy.ldm.minimax.vae import MiniMaxH3VideoVAE
from comfy.taesd.taehv import TAEHV, MemBlock, TGrow
from comfy_api.latest import InputImpl, io, ui

from ..samplers.chunk_stitching import decode_in_tiles, group_frames_decode, group_tiles_from, temporal_tiles, tiles_from
from .adapter import RUN_KEY
from .input_checks import check_filename_prefix, check_finite_number, check_finite_tensor, latent_samples
from .schema import CATEGORY
from .video_file import FORMATS, VideoFileWriter, append_video, count_frames, video_tags

H264_MAX_CRF = 51
VP9_MAX_CRF = 63
# the tag that says how a run's video was encoded: a try that stopped part-way is continued only with the same
ENCODING_TAG = "longvideo_encoding"


# MiniMax H3's video VAEs code time in groups of 5 latent frames, 17 frames (1, 4, 4, 4, 4), from the
# video's first; a decode gives a group's frames only with the next group's first 2 latent frames (the
# H3 VAE's chunks of 5 + 2 tokens; the tiny taeh3 drops the last 3 latent frames' frames), so videos are
# 5 n + 2 latent frames, 17 n + 5 frames (EmptyMiniMaxH3LatentAV's grid)
H3_GROUP = len(FRAME_PER_TOKEN)
H3_GROUP_FRAMES = sum(FRAME_PER_TOKEN)
H3_TAIL = 2


def _memblock_reach(decoder) -> float:
    """Latent frames before a frame that a TAEHV decoder looks at (an upper bound): each MemBlock sees its
    input's previous step, at the time rate where it runs; each TGrow maps a step to the start of its parent."""
    rate, reach = 1, 0.0
    for block in decoder:
        if isinstance(block, TGrow):
            reach += (block.stride - 1) / (rate * block.stride)
            rate *= block.stride
        elif isinstance(block, MemBlock):
            reach += 1 / rate
    return reach


def h3_context_groups(model) -> int | None:
    """Groups before a group that MiniMax H3's video VAE (``vae.first_stage_model``) looks at when it decodes it; None for other VAEs.

    The H3 VAE decodes chunks of a group and the next 2 latent frames, non-causally, and blends each
    chunk's first frames with the previous chunk's last; the taeh3 decoder is causal, with a
    receptive field of some latent frames (_memblock_reach).
    """
    if isinstance(model, MiniMaxH3VideoVAE):
        return 1 if model.token_overlap else 0
    if isinstance(model, TAEHV) and model.is_h3:
        # + 1: the frame the earliest step falls in
        return math.ceil((_memblock_reach(model.decoder) + 1) / H3_GROUP)
    return None


def decoded_frames(vae, samples: torch.Tensor, tile: int, overlap: int, first_frame: int = 0) -> Iterator[torch.Tensor]:
    """IMAGE frames ``[frames, height, width, channels]`` of the decoded latent, a block at a time, from ``first_frame`` on.

    Video latents ``[batch, channels, frames, height, width]`` are decoded in overlapping temporal
    tiles (decode_in_tiles); the videos of a batch follow one another, as VAE Decode lays them out.
    MiniMax H3's in tiles of ``tile // 5`` whole groups with the groups before them that its VAE
    looks at (group_frames_decode). Latents of image models (frames as batch rows) decode frame by
    frame, ``tile`` rows at a time. Tiles that only make frames before ``first_frame`` are not
    decoded. The latent must suit the VAE (check_latent_for_vae).
    """
    compression = vae.temporal_compression_decode()
    context = h3_context_groups(vae.first_stage_model)
    progress = comfy.utils.ProgressBar(_tile_count(samples, tile, overlap, vae, first_frame))

    def decode(latent):
        comfy.model_management.throw_exception_if_processing_interrupted()
        pixels = vae.decode(latent)
        progress.update(1)
        return pixels

    if samples.ndim == 4:
        for start, end in temporal_tiles(samples.shape[0] - first_frame, tile, 0):
            yield decode(samples[first_frame + start : first_frame + end])
        return
    frames_per_video = decoded_length(samples[:1], vae)
    for index, video in enumerate(samples):
        skip = first_frame - index * frames_per_video
        if skip >= frames_per_video:
            continue
        if context is None:
            yield from decode_in_tiles(lambda latent: decode(latent)[0], video, tile, overlap, compression, max(0, skip))
        else:
            yield from group_frames_decode(
                lambda latent: decode(latent)[0], video, H3_GROUP, H3_GROUP_FRAMES, H3_TAIL, context, _h3_tile_groups(tile), max(0, skip)
            )


def _h3_tile_groups(tile: int) -> int:
    return max(1, tile // H3_GROUP)


def check_latent_for_vae(samples: torch.Tensor, vae, tile_overlap: int) -> None:
    """The latent's layout and channels must be what the VAE decodes; video tiles must overlap."""
    compression = vae.temporal_compression_decode()
    if samples.ndim == 5 and compression is None:
        raise ValueError(
            "This VAE decodes single images, but the latent is a video latent [batch, channels, frames, height, width]. Use the VAE of the video model."
        )
    if samples.ndim == 4 and compression is not None:
        raise ValueError(
            f"The latent is an image latent [batch, channels, height, width], but this VAE decodes video ({compression}x in time): "
            f"connect a video latent [batch, channels, frames, height, width], or the VAE of the image model that made the latent."
        )
    channels = getattr(vae, "latent_channels", None)
    if channels is not None and samples.shape[1] != channels:
        raise ValueError(
            f"The latent has {samples.shape[1]} channels, but this VAE decodes {channels}-channel latents: connect the VAE of the model that made the latent."
        )
    if h3_context_groups(vae.first_stage_model) is not None:
        length = samples.shape[2]
        if length != 1 and (length - H3_TAIL) % H3_GROUP:
            shorter = max(H3_TAIL, length - (length - H3_TAIL) % H3_GROUP)
            raise ValueError(
                f"The latent has {length} latent frames, but MiniMax H3's video VAE decodes 1 or 5 n + 2 (17 n + 5 frames), the lengths "
                f"EmptyMiniMaxH3LatentAV makes: set the sampler's length to {shorter} or {shorter + H3_GROUP}."
            )
    elif compression is not None and compression > 1 and tile_overlap < 1:
        raise ValueError(
            f"tile_overlap is 0, but with {compression}x temporal compression tiles must share at least one latent frame: set tile_overlap to 1 or more."
        )


# LTX-2's audio latent frame is 4 mel frames (LATENT_DOWNSAMPLE_FACTOR in ComfyUI's audio_vae.py, not
# imported: that module pulls in torchaudio, which the pack needs only when there is sound)
MELS_PER_AUDIO_LATENT = 4


def video_and_sound(latent: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The video samples of a LATENT and, for LTX-2's audio-video LATENT (a NestedTensor of video and audio), its audio latent."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not getattr(samples, "is_nested", False):
        return latent_samples(latent, "samples"), None
    parts = samples.unbind()
    if len(parts) != 2:
        raise ValueError(
            f"The samples input holds {len(parts)} nested latents; an audio-video LATENT holds two, the video and its sound (LTXV Concat AV Latent)."
        )
    video = latent_samples({"samples": parts[0]}, "samples (its video)")
    return video, parts[1]


def check_sound_for_audio_vae(video: torch.Tensor, sound: torch.Tensor | None, audio_vae, fps: float, vae) -> None:
    """An audio-video LATENT needs its model's audio VAE (LTX-2's or MiniMax H3's), and the audio VAE a LATENT with sound of the video's length."""
    if sound is not None and audio_vae is None:
        raise ValueError(
            "The LATENT carries sound (LTX-2 or MiniMax H3 audio and video), but no audio_vae is connected: connect the "
            "Audio VAE (LTX-2: Load LTXV Audio VAE; MiniMax H3: Load VAE with its audio VAE) to audio_vae to write the sound "
            "track, or pass only the video (LTXV Separate AV Latent)."
        )
    if audio_vae is None:
        return
    if sound is None:
        raise ValueError(
            "audio_vae is connected, but the LATENT has no sound: connect an audio-video LATENT (from the sampler, "
            "or LTXV Concat AV Latent), or disconnect audio_vae to write the video alone."
        )
    model = getattr(audio_vae, "first_stage_model", None)
    h3_video = h3_context_groups(vae.first_stage_model) is not None
    if isinstance(model, MiniMaxH3AudioVAE) and not h3_video:
        raise ValueError(
            "The audio_vae is MiniMax H3's audio VAE, but the vae is not MiniMax H3's video VAE: connect the video VAE and "
            "the audio VAE of the model that made the LATENT."
        )
    if h3_video and not isinstance(model, MiniMaxH3AudioVAE):
        raise ValueError(
            "The vae is MiniMax H3's video VAE, but the audio_vae is not MiniMax H3's audio VAE: load "
            "minimax_h3_audio_vae_fp32.safetensors with Load VAE and connect it to audio_vae."
        )
    if h3_video:
        _check_h3_sound(video, sound, audio_vae, fps, vae)
        return
    if not hasattr(model, "vocoder") or not hasattr(model, "num_of_latents_from_frames"):
        raise ValueError("The audio_vae input is not LTX-2's audio VAE: load it with Load LTXV Audio VAE.")
    if not model.autoencoder.is_causal:
        raise ValueError("This audio VAE decodes without causal time convolutions, so its sound cannot be decoded a stretch at a time: use LTX-2's audio VAE.")
    expected = (video.shape[0], audio_vae.latent_channels, model.latent_frequency_bins)
    if sound.ndim != 4 or (sound.shape[0], sound.shape[1], sound.shape[3]) != expected or sound.shape[2] == 0:
        raise ValueError(
            f"The LATENT's sound has shape {tuple(sound.shape)}; with this audio VAE and {video.shape[0]} video(s) it must be "
            f"[{expected[0]}, {expected[1]}, audio frames, {expected[2]}]: connect the audio VAE of the model that made the LATENT."
        )
    check_finite_tensor(sound, "the LATENT's sound", "it would decode to noise; check the sampler or node that made it.")
    frames = decoded_length(video[:1], vae)
    paired = model.num_of_latents_from_frames(frames, fps)
    if sound.shape[2] != paired:
        rate = model.latents_per_second
        raise ValueError(
            f"The sound is {sound.shape[2]} audio latent frames ({sound.shape[2] / rate:.2f} s), but the video is {frames} frames, "
            f"{frames / fps:.2f} s at {fps:g} fps, which LTX-2 pairs with {paired} audio latent frames. Set fps to the frame rate the "
            f"LATENT was made for (LTXV Empty Latent Audio's frame_rate, here about {frames * rate / sound.shape[2]:.2f}), or give "
            f"a video and sound of the same length."
        )


def _check_h3_sound(video: torch.Tensor, sound: torch.Tensor, audio_vae, fps: float, vae) -> None:
    """MiniMax H3's sound: ``[videos, 32, 2 (stereo), audio latent frames]``, ``round(seconds x 40)`` audio latent frames for the video."""
    expected = (video.shape[0], audio_vae.latent_channels, audio_vae.output_channels)
    if sound.ndim != 4 or tuple(sound.shape[:3]) != expected or sound.shape[3] == 0:
        raise ValueError(
            f"The LATENT's sound has shape {tuple(sound.shape)}; with MiniMax H3's audio VAE and {video.shape[0]} video(s) it must be "
            f"[{expected[0]}, {expected[1]}, {expected[2]}, audio frames]: connect the audio VAE of the model that made the LATENT."
        )
    check_finite_tensor(sound, "the LATENT's sound", "it would decode to noise; check the sampler or node that made it.")
    frames = decoded_length(video[:1], vae)
    rate = audio_vae.first_stage_model.latents_per_second
    paired = round(frames / fps * rate)
    if sound.shape[3] != paired:
        raise ValueError(
            f"The sound is {sound.shape[3]} audio latent frames ({sound.shape[3] / rate:.2f} s), but the video is {frames} frames, "
            f"{frames / fps:.2f} s at {fps:g} fps, which MiniMax H3 pairs with {paired} audio latent frames. Set fps to 24, MiniMax "
            f"H3's frame rate, or give a video and sound of the same length (EmptyMiniMaxH3LatentAV makes them)."
        )


def _causal_decoder_reach(decoder) -> int:
    """Mel frames before a mel frame that LTX-2's causal audio decoder looks at (an upper bound).

    Each causal time convolution looks back its top padding, counted in mel frames at the level
    where it runs: the latent's level for conv_in and the middle blocks, level i in up.i, one level
    finer in up.i's upsampler, mel frames for conv_out.
    """
    top = decoder.num_resolutions - 1
    reach = 0
    for name, module in decoder.named_modules():
        padding = getattr(module, "padding", None)
        if not hasattr(module, "causality_axis") or not isinstance(padding, tuple):
            continue
        parts = name.split(".")
        if parts[0] == "up":
            level = int(parts[1]) - (parts[2] == "upsample")
        else:
            level = 0 if parts[0] == "conv_out" else top
        reach += padding[2] * 2**level
    # nearest upsampling and dropping its first frame shift a frame by at most one step of the finer level
    return reach + sum(2**level for level in range(top))


def _activation_reach(activation) -> int:
    """Samples either side that an anti-aliased activation (upsample, act, low-pass downsample) looks at."""
    up, down = activation.upsample, activation.downsample
    return math.ceil(up.filter.shape[-1] / up.ratio) + up.pad + math.ceil(down.lowpass.filter.shape[-1] / down.ratio)


def _block_reach(block) -> int:
    """Samples either side that a vocoder block looks at, its convolutions and activations taken one after another."""
    convs = sum(m.dilation[0] * (m.kernel_size[0] - 1) // 2 for m in block.modules() if isinstance(m, torch.nn.Conv1d))
    return convs + sum(_activation_reach(m) for m in block.modules() if hasattr(m, "upsample") and hasattr(m, "downsample"))


def _vocoder_reach(vocoder) -> tuple[float, int]:
    """(Input frames (mel frames, H3's audio latent frames) either side of a sample that a HiFi-GAN / BigVGAN vocoder
    looks at, an upper bound; samples per input frame). LTX-2's and MiniMax H3's vocoders name their parts differently."""
    rate, reach = 1, vocoder.conv_pre.padding[0]
    per_stage = len(vocoder.resblocks) // len(vocoder.ups)
    for index, up in enumerate(vocoder.ups):
        (up,) = up if isinstance(up, torch.nn.ModuleList) else (up,)
        reach += math.ceil(up.kernel_size[0] / up.stride[0]) / rate
        rate *= up.stride[0]
        reach += max(_block_reach(block) for block in vocoder.resblocks[index * per_stage : (index + 1) * per_stage]) / rate
    post = vocoder.act_post if hasattr(vocoder, "act_post") else vocoder.activation_post
    return reach + (_block_reach(post) + vocoder.conv_post.padding[0]) / rate, rate


def audio_decode_context(model) -> tuple[int, int, int, int]:
    """How to decode LTX-2's audio latent in pieces that join exactly: (audio latent frames of context
    before a piece, after it, the step piece starts must be multiples of, output samples per mel frame).

    The audio decoder is causal, so it needs context only before; the vocoder (and the bandwidth
    extension, which takes a causal STFT of the vocoder's waveform) looks both ways. A piece decoded
    with this context gives, outside the context, the samples of a decode of the whole latent.
    """
    vocoder = model.vocoder
    if hasattr(vocoder, "bwe_generator"):
        reach, low_rate = _vocoder_reach(vocoder.vocoder)
        generator, _ = _vocoder_reach(vocoder.bwe_generator)
        hop, resampler = vocoder.hop_length, vocoder.resampler
        low_samples = vocoder.mel_stft.stft_fn.win_length + hop * (generator + 1) + math.ceil(resampler.kernel_size / resampler.ratio) + resampler.pad
        reach += low_samples / low_rate
        per_mel = low_rate * resampler.ratio
        # the STFT frames of a piece must fall where those of the whole waveform fall
        step = hop // math.gcd(hop, MELS_PER_AUDIO_LATENT * low_rate)
    else:
        reach, per_mel = _vocoder_reach(vocoder)
        step = 1
    before = _causal_decoder_reach(model.autoencoder.decoder) + reach
    return math.ceil(before / MELS_PER_AUDIO_LATENT) + 1, math.ceil(reach / MELS_PER_AUDIO_LATENT) + 1, step, per_mel


class SoundTrack:
    """The sound of an LTX-2 audio-video LATENT as a waveform, decoded a piece at a time in step with the video.

    Every piece is decoded with enough audio latent frames of context on both sides
    (audio_decode_context) and only its own samples are kept, so the pieces join into the
    waveform a decode of the whole latent gives, with no seam. Each video of the batch gets its
    sound, cut or padded with silence at its end to the video's length (LTX-2 pairs a video with
    ComfyUI's rounded number of audio latent frames, and the causal decode gives 3 mel frames less
    than 4 per latent frame). Memory is that of one piece, whatever the length.
    """

    def __init__(self, audio_vae, sound: torch.Tensor, frames_per_video: int, fps: float):
        model = audio_vae.first_stage_model
        self.vae, self.sound = audio_vae, sound
        self.rate = int(audio_vae.audio_sample_rate_output)
        self.channels = audio_vae.first_stage_model.autoencoder.decoder.out_ch
        self.before, self.after, self.step, self.per_mel = audio_decode_context(model)
        # pieces of at least this many samples, so that decoding the context at most doubles the work
        self._follow_video(frames_per_video, fps, (self.before + self.after) * MELS_PER_AUDIO_LATENT * self.per_mel)

    def _follow_video(self, frames_per_video: int, fps: float, min_piece: int) -> None:
        self.frames_per_video, self.fps, self.min_piece = frames_per_video, fps, min_piece
        self.samples_per_video = round(frames_per_video * self.rate / fps)
        self.written = 0

    def _position(self, frames: int) -> int:
        """Sample of the track where video frame ``frames`` (counted over the batch's videos, one after another) starts."""
        video, frame = divmod(frames, self.frames_per_video)
        return video * self.samples_per_video + round(frame * self.rate / self.fps)

    def until(self, frames: int) -> Iterator[torch.Tensor]:
        """Waveform pieces ``[channels, samples]`` up to where video frame ``frames`` starts, less any short piece
        that can wait for more video; at a video's end everything up to it."""
        target = self._position(frames)
        while self.written < target:
            video, start = divmod(self.written, self.samples_per_video)
            end = min(self.samples_per_video, target - video * self.samples_per_video)
            if end - start < self.min_piece and end < self.samples_per_video:
                return
            yield self._piece(video, start, end)
            self.written += end - start

    def _piece(self, video: int, start: int, end: int) -> torch.Tensor:
        """Samples ``start`` to ``end`` of one video's sound, silence past the decoded waveform."""
        comfy.model_management.throw_exception_if_processing_interrupted()
        latent = self.sound[video : video + 1]
        frames = latent.shape[2]
        # audio latent frame k >= 1 decodes to mel frames 4k - 3 .. 4k, frame 0 to mel frame 0
        first = math.ceil(start // self.per_mel / MELS_PER_AUDIO_LATENT)
        last = math.ceil((-(-end // self.per_mel) - 1) / MELS_PER_AUDIO_LATENT)
        low = max(0, (first - self.before) // self.step * self.step)
        piece = torch.zeros(self.channels, end - start, dtype=self.sound.dtype)
        if low < frames:
            high = min(frames, last + 1 + self.after)
            waveform = self.vae.decode(latent[:, :, low:high])[0].movedim(-1, 0)
            # a decode from latent frame `low` starts at mel frame 4 x low of the whole decode
            offset = MELS_PER_AUDIO_LATENT * low * self.per_mel
            kept = waveform[:, start - offset : end - offset]
            piece[:, : kept.shape[1]] = kept
        return piece


class H3SoundTrack(SoundTrack):
    """The sound of a MiniMax H3 audio-video LATENT as a waveform, decoded a piece at a time in step with the video.

    H3's audio decoder (a 1x1 projection and a BigVGAN vocoder, 800 samples per audio latent frame)
    looks at a bounded number of audio latent frames on either side (_vocoder_reach), so a piece
    decoded with that context gives the samples of a decode of the whole latent. VAE Decode Audio
    then divides each waveform by 5 x its standard deviation where that is above 1, which needs the
    whole waveform: each video's sound is decoded twice, a piece at a time, once to sum its samples
    and their squares and once to write it. Each video's sound is cut or padded with silence to the
    video's length, as SoundTrack does. Memory is that of one piece, whatever the length.
    """

    def __init__(self, audio_vae, sound: torch.Tensor, frames_per_video: int, fps: float):
        self.vae, self.sound = audio_vae, sound
        self.rate, self.channels = int(audio_vae.audio_sample_rate), audio_vae.output_channels
        reach, self.per_latent = _vocoder_reach(audio_vae.first_stage_model.decoder)
        self.context = math.ceil(reach) + 1
        self._follow_video(frames_per_video, fps, 2 * self.context * self.per_latent)
        self.scales: dict[int, float] = {}

    def _decode(self, latent: torch.Tensor, first: int, last: int) -> torch.Tensor:
        """Samples ``[channels, samples]`` of audio latent frames ``first`` to ``last``, decoded with their context."""
        low, high = max(0, first - self.context), min(latent.shape[3], last + self.context)
        waveform = self.vae.decode(latent[..., low:high])[0].movedim(-1, 0)
        return waveform[:, (first - low) * self.per_latent : (last - low) * self.per_latent]

    def _scale(self, video: int) -> float:
        """What VAE Decode Audio divides this video's waveform by: 5 x its standard deviation, at least 1."""
        if video not in self.scales:
            latent = self.sound[video : video + 1]
            frames, step = latent.shape[3], 2 * self.context
            total = squares = torch.zeros((), dtype=torch.float64)
            for first in range(0, frames, step):
                comfy.model_management.throw_exception_if_processing_interrupted()
                samples = self._decode(latent, first, min(frames, first + step)).double()
                total, squares = total + samples.sum(), squares + samples.square().sum()
            count = frames * self.per_latent * self.channels
            deviation = math.sqrt(max(0.0, (squares - total * total / count).item() / (count - 1)))
            self.scales[video] = max(1.0, 5.0 * deviation)
        return self.scales[video]

    def _piece(self, video: int, start: int, end: int) -> torch.Tensor:
        """Samples ``start`` to ``end`` of one video's sound, silence past the decoded waveform."""
        comfy.model_management.throw_exception_if_processing_interrupted()
        latent = self.sound[video : video + 1]
        piece = torch.zeros(self.channels, end - start, dtype=self.sound.dtype)
        first = start // self.per_latent
        if first < latent.shape[3]:
            waveform = self._decode(latent, first, min(latent.shape[3], -(-end // self.per_latent)))
            kept = waveform[:, start - first * self.per_latent : end - first * self.per_latent]
            piece[:, : kept.shape[1]] = kept / self._scale(video)
        return piece


def decoded_length(samples: torch.Tensor, vae) -> int:
    """Frames the decode of the latent gives: every video of the batch, or every row of an image latent."""
    if samples.ndim == 4:
        return samples.shape[0]
    length = samples.shape[2]
    if h3_context_groups(vae.first_stage_model) is not None:
        # 5 n + 2 latent frames (check_latent_for_vae), or 1
        return samples.shape[0] * (1 if length == 1 else H3_GROUP_FRAMES * (length // H3_GROUP) + sum(FRAME_PER_TOKEN[:H3_TAIL]))
    return samples.shape[0] * (vae.temporal_compression_decode() * (length - 1) + 1)


def _tile_count(samples, tile, overlap, vae, first_frame) -> int:
    if samples.ndim == 4:
        return len(temporal_tiles(max(0, samples.shape[0] - first_frame), tile, 0)) if first_frame < samples.shape[0] else 0
    frames_per_video = decoded_length(samples[:1], vae)

    def tiles(skip):
        if h3_context_groups(vae.first_stage_model) is None:
            return tiles_from(samples.shape[2], tile, overlap, vae.temporal_compression_decode(), skip)
        return group_tiles_from(samples.shape[2], H3_GROUP, H3_GROUP_FRAMES, H3_TAIL, _h3_tile_groups(tile), skip)

    return sum(
        len(tiles(max(0, first_frame - index * frames_per_video)))
        for index in range(samples.shape[0])
        if first_frame - index * frames_per_video < frames_per_video
    )


class DecodeToVideoFile(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoDecodeToVideoFile",
            display_name="Streaming Decode to Video File",
            category=CATEGORY,
            description="Decodes a video latent in overlapping temporal tiles with the VAE and writes the frames to an mp4 or "
            "webm file in the output folder as they are decoded, so memory does not grow with the length. The tile seams "
            "are crossfaded; MiniMax H3's are cut at its 17-frame groups, each decoded with the groups before it that its VAE looks at, "
            "so the frames are VAE Decode's. With LTX-2's or MiniMax H3's audio VAE, an audio-video LATENT's sound is decoded piece by "
            "piece alongside and written as the file's sound track, seamlessly. If the run is cancelled or fails, the frames written so far stay a playable video.",
            inputs=[
                io.Latent.Input(
                    "samples", tooltip="The latent video to decode, e.g. from the Diagonal Queue Sampler, the Progressive AR Sampler or the Chunk Stitcher."
                ),
                io.Vae.Input("vae", tooltip="The VAE of the video model (Wan, LTX-Video, ...); its temporal compression sets how tiles line up."),
                io.Float.Input("fps", default=16.0, min=1.0, max=120.0, step=1.0, tooltip="Frames per second of the file (Wan 16, LTX-Video 24)."),
                io.String.Input(
                    "filename_prefix",
                    default="longvideo/LongVideo",
                    tooltip="Folder inside the output folder and the start of the file name; a counter and the extension are added. %width%, %height%, %year%, %month%, %day%, %hour%, %minute% and %second% are filled in when the file is written; %date:...% and %Node.widget% only by the editor when it queues the prompt.",
                ),
                io.Combo.Input("format", options=list(FORMATS), default="mp4", tooltip="mp4: H.264. webm: VP9. Both yuv420p, which browsers and players show."),
                io.Int.Input(
                    "crf",
                    default=19,
                    min=0,
                    max=VP9_MAX_CRF,
                    tooltip="Constant quality: lower is better and larger. H.264 takes 0-51 (19 is nearly lossless to the eye), VP9 0-63.",
                ),
                io.Int.Input(
                    "tile_frames",
                    default=16,
                    min=1,
                    max=4096,
                    tooltip="Latent frames decoded at a time (Wan: 16 latent frames = 61 frames; MiniMax H3: whole groups of 5 latent frames = 17 frames, each tile decoded with the groups before it that its VAE looks at). Lower it if the VAE runs out of memory.",
                ),
                io.Int.Input(
                    "tile_overlap",
                    default=2,
                    min=0,
                    max=2048,
                    tooltip="Latent frames that neighbouring tiles share and crossfade, so tile seams do not show. At least 1 for video VAEs; at most half of tile_frames. MiniMax H3 does not use it: its tiles share what its VAE needs and join without a crossfade.",
                ),
                io.Boolean.Input(
                    "continue_video",
                    default=True,
                    optional=True,
                    tooltip="For a latent from a sampler with Checkpoints: if this folder holds the video of the same run from a try that stopped part-way (same format, crf, fps and tiles), the frames it lacks are decoded and appended to it, not the whole video again; a finished one is output as it is. A part-way video with sound cannot be continued (the node says so): turn this off to write it anew. Off: always a new file.",
                ),
                io.Vae.Input(
                    "audio_vae",
                    optional=True,
                    tooltip="The audio VAE of an audio-video LATENT: LTX-2's (Load LTXV Audio VAE) or MiniMax H3's (Load VAE). Its sound is decoded piece by piece with the video and written as the file's sound track (AAC in mp4, Opus in webm), seamlessly, with memory that does not grow with the length; MiniMax H3's as VAE Decode Audio gives it, loudness normalisation included (its sound is decoded twice for that). Leave empty for a video-only LATENT.",
                ),
            ],
            outputs=[io.Video.Output(tooltip="The written file as a VIDEO: Save Video copies it elsewhere, Get Video Components reads it back.")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, samples, vae, fps, filename_prefix, format, crf, tile_frames, tile_overlap, continue_video=True, audio_vae=None) -> io.NodeOutput:
        if format == "mp4" and crf > H264_MAX_CRF:
            raise ValueError(f"crf {crf} is out of H.264's range 0-{H264_MAX_CRF}; use a lower crf or the webm format.")
        if tile_frames < 2 * tile_overlap:
            raise ValueError(f"tile_overlap ({tile_overlap}) can be at most half of tile_frames ({tile_frames}).")
        check_finite_number("fps", fps)
        check_filename_prefix(filename_prefix)
        latent, sound = video_and_sound(samples)
        check_latent_for_vae(latent, vae, tile_overlap)
        check_finite_tensor(latent, "the latent to decode", "its frames would decode to black; check the sampler or node that made it.")
        check_sound_for_audio_vae(latent, sound, audio_vae, fps, vae)
        compression = vae.spacial_compression_decode()
        full_output_folder, filename, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_output_directory(), latent.shape[-1] * compression, latent.shape[-2] * compression
        )
        encoding = f"{format} crf {crf} at {fps:g} fps, tiles of {tile_frames} sharing {tile_overlap}" + (", with sound" if sound is not None else "")
        run = samples.get(RUN_KEY)
        earlier = _video_of_run(full_output_folder, filename, format, run, encoding) if continue_video and run else None
        file = os.path.basename(earlier) if earlier else f"{filename}_{counter:05}_.{format}"
        path = os.path.join(full_output_folder, file)
        done = count_frames(path) if earlier else 0
        total = decoded_length(latent, vae)
        if done < total:
            if done and sound is not None:
                # the continuation's sound would start with its encoder's priming samples: an audible gap at the join
                raise ValueError(
                    f"{path} is this run's video with sound, stopped after {done} of {total} frames; a sound track cannot "
                    f"be continued without a gap. Turn continue_video off to write the whole video with its sound anew."
                )
            if done:
                logging.info("LongVideo: %s holds %d of the run's %d frames; decoding the rest onto it.", path, done, total)
            metadata = cls._metadata()
            if run is not None:
                metadata = {**(metadata or {}), RUN_KEY: run, ENCODING_TAG: encoding}
            written = f"{path}.continued.{format}" if done else path
            track = None
            if sound is not None:
                kind = H3SoundTrack if isinstance(audio_vae.first_stage_model, MiniMaxH3AudioVAE) else SoundTrack
                track = kind(audio_vae, sound, total // latent.shape[0], fps)
            writer = VideoFileWriter(written, fps, format, crf, metadata, *((track.rate, track.channels) if track else ()))
            try:
                with writer:
                    for frames in decoded_frames(vae, latent, tile_frames, tile_overlap, done):
                        writer.write(frames)
                        for piece in track.until(writer.frames_written) if track else ():
                            writer.write_audio(piece)
            except BaseException:
                if writer.frames_written:
                    logging.warning("LongVideo: decoding stopped; the %d frames written so far are kept in %s", done + writer.frames_written, path)
                raise
            finally:
                # the continuation joins the earlier frames, also when this decode stopped part-way
                if done and writer.frames_written:
                    append_video(path, written)
                if done and os.path.exists(written):
                    os.remove(written)
        return io.NodeOutput(InputImpl.VideoFromFile(path), ui=ui.PreviewVideo([ui.SavedResult(file, subfolder, io.FolderType.output)]))

    @classmethod
    def _metadata(cls) -> dict | None:
        """The prompt and workflow, as ComfyUI's own savers store them, unless metadata is disabled."""
        if args.disable_metadata:
            return None
        metadata = dict(cls.hidden.extra_pnginfo or {})
        if cls.hidden.prompt is not None:
            metadata["prompt"] = cls.hidden.prompt
        return metadata


def _video_of_run(folder: str, filename: str, format: str, run: str, encoding: str):
    """The newest video in ``folder`` named like this node's files that an earlier decode of ``run`` wrote with ``encoding``."""
    if not os.path.isdir(folder):
        return None
    candidates = [os.path.join(folder, name) for name in os.listdir(folder) if name.startswith(f"{filename}_") and name.endswith(f"_.{format}")]
    for path in sorted(candidates, key=os.path.getmtime, reverse=True):
        tags = video_tags(path)
        if tags.get(RUN_KEY) == run and tags.get(ENCODING_TAG) == encoding:
            return path
    return None

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
from comfy_api.latest import InputImpl, io, ui

from ..samplers.chunk_stitching import decode_in_tiles, temporal_tiles, tiles_from
from .adapter import RUN_KEY
from .input_checks import check_filename_prefix, check_finite_number, check_finite_tensor, latent_samples
from .schema import CATEGORY
from .video_file import FORMATS, VideoFileWriter, append_video, count_frames, video_tags

H264_MAX_CRF = 51
VP9_MAX_CRF = 63
# the tag that says how a run's video was encoded: a try that stopped part-way is continued only with the same
ENCODING_TAG = "longvideo_encoding"


def decoded_frames(vae, samples: torch.Tensor, tile: int, overlap: int, first_frame: int = 0) -> Iterator[torch.Tensor]:
    """IMAGE frames ``[frames, height, width, channels]`` of the decoded latent, a block at a time, from ``first_frame`` on.

    Video latents ``[batch, channels, frames, height, width]`` are decoded in overlapping temporal
    tiles (decode_in_tiles); the videos of a batch follow one another, as VAE Decode lays them out.
    Latents of image models (frames as batch rows) decode frame by frame, ``tile`` rows at a time.
    Tiles that only make frames before ``first_frame`` are not decoded. The latent must suit the
    VAE (check_latent_for_vae).
    """
    compression = vae.temporal_compression_decode()
    progress = comfy.utils.ProgressBar(_tile_count(samples, tile, overlap, compression, first_frame))

    def decode(latent):
        comfy.model_management.throw_exception_if_processing_interrupted()
        pixels = vae.decode(latent)
        progress.update(1)
        return pixels

    if samples.ndim == 4:
        for start, end in temporal_tiles(samples.shape[0] - first_frame, tile, 0):
            yield decode(samples[first_frame + start : first_frame + end])
        return
    frames_per_video = compression * (samples.shape[2] - 1) + 1
    for index, video in enumerate(samples):
        skip = first_frame - index * frames_per_video
        if skip < frames_per_video:
            yield from decode_in_tiles(lambda latent: decode(latent)[0], video, tile, overlap, compression, max(0, skip))


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
    if compression is not None and compression > 1 and tile_overlap < 1:
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


def check_sound_for_audio_vae(video: torch.Tensor, sound: torch.Tensor | None, audio_vae, fps: float, compression) -> None:
    """An audio-video LATENT needs the LTX-2 audio VAE, and the audio VAE a LATENT with sound of the video's length."""
    if sound is not None and audio_vae is None:
        raise ValueError(
            "The LATENT carries sound (LTX-2 audio and video), but no audio_vae is connected: connect the Audio VAE "
            "(Load LTXV Audio VAE) to audio_vae to write the sound track, or pass only the video (LTXV Separate AV Latent)."
        )
    if audio_vae is None:
        return
    if sound is None:
        raise ValueError(
            "audio_vae is connected, but the LATENT has no sound: connect LTX-2's audio-video LATENT (from the sampler, "
            "or LTXV Concat AV Latent), or disconnect audio_vae to write the video alone."
        )
    model = getattr(audio_vae, "first_stage_model", None)
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
    frames = decoded_length(video[:1], compression)
    paired = model.num_of_latents_from_frames(frames, fps)
    if sound.shape[2] != paired:
        rate = model.latents_per_second
        raise ValueError(
            f"The sound is {sound.shape[2]} audio latent frames ({sound.shape[2] / rate:.2f} s), but the video is {frames} frames, "
            f"{frames / fps:.2f} s at {fps:g} fps, which LTX-2 pairs with {paired} audio latent frames. Set fps to the frame rate the "
            f"LATENT was made for (LTXV Empty Latent Audio's frame_rate, here about {frames * rate / sound.shape[2]:.2f}), or give "
            f"a video and sound of the same length."
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
    return math.ceil(up.kernel_size / up.ratio) + up.pad + math.ceil(down.lowpass.kernel_size / down.ratio)


def _block_reach(block) -> int:
    """Samples either side that a vocoder block looks at, its convolutions and activations taken one after another."""
    convs = sum(m.dilation[0] * (m.kernel_size[0] - 1) // 2 for m in block.modules() if isinstance(m, torch.nn.Conv1d))
    return convs + sum(_activation_reach(m) for m in block.modules() if hasattr(m, "upsample") and hasattr(m, "downsample"))


def _vocoder_reach(vocoder) -> tuple[float, int]:
    """(Mel frames either side of a sample that a HiFi-GAN / BigVGAN vocoder looks at, an upper bound; samples per mel frame)."""
    rate, reach = 1, vocoder.conv_pre.padding[0]
    per_stage = len(vocoder.resblocks) // len(vocoder.ups)
    for index, up in enumerate(vocoder.ups):
        reach += math.ceil(up.kernel_size[0] / up.stride[0]) / rate
        rate *= up.stride[0]
        reach += max(_block_reach(block) for block in vocoder.resblocks[index * per_stage : (index + 1) * per_stage]) / rate
    return reach + (_block_reach(vocoder.act_post) + vocoder.conv_post.padding[0]) / rate, rate


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
        self.frames_per_video, self.fps = frames_per_video, fps
        self.samples_per_video = round(frames_per_video * self.rate / fps)
        # pieces of at least this many samples, so that decoding the context at most doubles the work
        self.min_piece = (self.before + self.after) * MELS_PER_AUDIO_LATENT * self.per_mel
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


def decoded_length(samples: torch.Tensor, compression) -> int:
    """Frames the decode of the latent gives: every video of the batch, or every row of an image latent."""
    if samples.ndim == 4:
        return samples.shape[0]
    return samples.shape[0] * (compression * (samples.shape[2] - 1) + 1)


def _tile_count(samples, tile, overlap, compression, first_frame) -> int:
    if samples.ndim == 4:
        return len(temporal_tiles(max(0, samples.shape[0] - first_frame), tile, 0)) if first_frame < samples.shape[0] else 0
    frames_per_video = compression * (samples.shape[2] - 1) + 1
    return sum(
        len(tiles_from(samples.shape[2], tile, overlap, compression, max(0, first_frame - index * frames_per_video)))
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
            "are crossfaded. With LTX-2's audio VAE, an audio-video LATENT's sound is decoded piece by piece alongside and written "
            "as the file's sound track, seamlessly. If the run is cancelled or fails, the frames written so far stay a playable video.",
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
                    tooltip="Latent frames decoded at a time (Wan: 16 latent frames = 61 frames). Lower it if the VAE runs out of memory.",
                ),
                io.Int.Input(
                    "tile_overlap",
                    default=2,
                    min=0,
                    max=2048,
                    tooltip="Latent frames that neighbouring tiles share and crossfade, so tile seams do not show. At least 1 for video VAEs; at most half of tile_frames.",
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
                    tooltip="LTX-2's audio VAE (Load LTXV Audio VAE), for an audio-video LATENT: its sound is decoded piece by piece with the video and written as the file's sound track (AAC in mp4, Opus in webm), seamlessly, with memory that does not grow with the length. Leave empty for a video-only LATENT.",
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
        check_sound_for_audio_vae(latent, sound, audio_vae, fps, vae.temporal_compression_decode())
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
        total = decoded_length(latent, vae.temporal_compression_decode())
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
            track = SoundTrack(audio_vae, sound, total // latent.shape[0], fps) if sound is not None else None
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

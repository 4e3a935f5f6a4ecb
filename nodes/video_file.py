"""Writing frames to a video file as they arrive, with PyAV (ComfyUI's own video dependency).

No ComfyUI import: the unit tests load this module on its own.
"""

from __future__ import annotations

import json
import os
from fractions import Fraction

import av
import torch

# container -> (PyAV format, video encoder, sound encoder); the video yuv420p, which every browser and
# player shows, the sound in the codec ComfyUI's own Save Video uses for the container
FORMATS = {"mp4": ("mp4", "libx264", "aac"), "webm": ("webm", "libvpx-vp9", "libopus")}
# Opus encodes at 48 kHz; PyAV's encoder resamples other rates to it
OPUS_RATE = 48000
AUDIO_LAYOUTS = {1: "mono", 2: "stereo"}


class VideoFileWriter:
    """An open video file; ``write`` encodes IMAGE frames ``[frames, height, width, channels]`` in 0..1.

    With ``audio_rate`` the file also gets a sound track of ``audio_channels`` channels, and
    ``write_audio`` encodes waveform pieces ``[channels, samples]`` that follow one another.
    Memory stays at one block of frames (and one piece of sound) whatever the length. Use it as a
    context manager: on any exit, an interrupt or error included, the encoders are flushed and the
    container closed, so the file is a valid video of everything written. A file that got no frame
    is removed.
    """

    def __init__(
        self, path: str, fps: float, container: str = "mp4", crf: int = 19, metadata: dict | None = None, audio_rate: int | None = None, audio_channels: int = 2
    ):
        if container not in FORMATS:
            raise ValueError(f"Unknown video format {container!r}; choose one of {', '.join(FORMATS)}.")
        if audio_rate is not None and audio_channels not in AUDIO_LAYOUTS:
            raise ValueError(f"A sound track of {audio_channels} channels cannot be written; mono and stereo can.")
        self.path, self.crf, self.frames_written = path, crf, 0
        self.rate = Fraction(round(fps * 1000), 1000)
        self.audio_rate, self.audio_layout, self.audio_samples_written = audio_rate, AUDIO_LAYOUTS.get(audio_channels), 0
        av_format, self._codec, self._audio_codec = FORMATS[container]
        # mp4 drops tags outside its fixed set unless told to keep them (ComfyUI's savers do the same)
        options = {"movflags": "use_metadata_tags"} if av_format == "mp4" else {}
        self._container = av.open(path, mode="w", format=av_format, options=options)
        for key, value in (metadata or {}).items():
            self._container.metadata[key] = value if isinstance(value, str) else json.dumps(value)
        self._stream = self._audio_stream = None

    def _open_stream(self, width: int, height: int) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"Video frames must have an even width and height for yuv420p; got {width}x{height}. Crop or resize the images first.")
        self._stream = self._container.add_stream(self._codec, rate=self.rate)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._stream.options = {"crf": str(self.crf)}
        if self._codec == "libvpx-vp9":
            # constant-quality mode: without a zero bit rate libvpx caps the quality at a default rate
            self._stream.bit_rate = 0
        if self.audio_rate is not None:
            # both streams must exist before the first packet is written
            rate = OPUS_RATE if self._audio_codec == "libopus" else self.audio_rate
            self._audio_stream = self._container.add_stream(self._audio_codec, rate=rate, layout=self.audio_layout)

    def write(self, frames: torch.Tensor) -> None:
        if self._stream is None:
            self._open_stream(frames.shape[2], frames.shape[1])
        elif (frames.shape[2], frames.shape[1]) != (self._stream.width, self._stream.height):
            raise ValueError(f"Frames of {frames.shape[2]}x{frames.shape[1]} cannot join a video of {self._stream.width}x{self._stream.height}.")
        pixels = (frames[..., :3].clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu()
        for image in pixels.numpy():
            self._container.mux(self._stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            self.frames_written += 1

    def write_audio(self, waveform: torch.Tensor) -> None:
        """Encode the next piece of the sound track, ``[channels, samples]`` floats in -1..1; after the first frames."""
        if self._audio_stream is None:
            raise ValueError("This video file has no sound track yet: write frames first, and open it with an audio_rate.")
        samples = waveform.detach().to("cpu", torch.float32).contiguous().numpy()
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout=self.audio_layout)
        frame.sample_rate, frame.time_base, frame.pts = self.audio_rate, Fraction(1, self.audio_rate), self.audio_samples_written
        self._container.mux(self._audio_stream.encode(frame))
        self.audio_samples_written += samples.shape[1]

    def close(self) -> None:
        try:
            if self._audio_stream is not None:
                self._container.mux(self._audio_stream.encode(None))
            if self._stream is not None:
                self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
            if self._stream is None and os.path.exists(self.path):
                os.remove(self.path)

    def __enter__(self) -> "VideoFileWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def video_tags(path: str) -> dict:
    """The container's metadata tags, keys lower-case; empty for a file that is not a readable video."""
    try:
        with av.open(path) as container:
            return {key.lower(): value for key, value in container.metadata.items()}
    except (av.error.FFmpegError, OSError):
        return {}


def count_frames(path: str) -> int:
    """Frames of the file's video stream, counted from its packets without decoding them."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        return sum(1 for packet in container.demux(stream) if packet.size)


def append_video(path: str, continuation: str) -> None:
    """Put the frames of the video file ``continuation`` after those of ``path``, without encoding them again.

    Both files must come from VideoFileWriter with the same format, size, rate and quality, so
    their streams share codec parameters; the packets of both, in order and with the second's
    timestamps moved behind the first's, go to a new file that replaces ``path``, keeping its tags.
    """
    joined = f"{path}.joining"
    with av.open(path) as first, av.open(continuation) as second:
        head, tail = first.streams.video[0], second.streams.video[0]
        if (head.codec_context.name, head.width, head.height, head.codec_context.extradata) != (
            tail.codec_context.name,
            tail.width,
            tail.height,
            tail.codec_context.extradata,
        ):
            raise ValueError(f"{continuation} was encoded with other settings than {path}, so it cannot continue it: use the same format, crf and size.")
        options = {"movflags": "use_metadata_tags"} if first.format.name.startswith("mov") else {}
        with av.open(joined, mode="w", format=first.format.name.split(",")[0], options=options) as out:
            for key, value in first.metadata.items():
                out.metadata[key] = value
            stream = out.add_stream_from_template(head)
            end = 0
            for packet in first.demux(head):
                if packet.dts is None:
                    continue
                end = max(end, packet.pts + packet.duration)
                packet.stream = stream
                out.mux(packet)
            shift = round(end * head.time_base / tail.time_base)
            for packet in second.demux(tail):
                if packet.dts is None:
                    continue
                packet.pts += shift
                packet.dts += shift
                packet.stream = stream
                out.mux(packet)
    os.replace(joined, path)

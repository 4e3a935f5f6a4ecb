"""Writing frames to a video file as they arrive, with PyAV (ComfyUI's own video dependency).

No ComfyUI import: the unit tests load this module on its own.
"""
from __future__ import annotations

import json
import os
from fractions import Fraction

import av
import torch

# container -> (PyAV format, encoder); both encode yuv420p, which every browser and player shows
FORMATS = {"mp4": ("mp4", "libx264"), "webm": ("webm", "libvpx-vp9")}


class VideoFileWriter:
    """An open video file; ``write`` encodes IMAGE frames ``[frames, height, width, channels]`` in 0..1.

    Memory stays at one block of frames whatever the length. Use it as a context manager: on any
    exit, an interrupt or error included, the encoder is flushed and the container closed, so the
    file is a valid video of every frame written. A file that got no frame is removed.
    """

    def __init__(self, path: str, fps: float, container: str = "mp4", crf: int = 19, metadata: dict | None = None):
        if container not in FORMATS:
            raise ValueError(f"Unknown video format {container!r}; choose one of {', '.join(FORMATS)}.")
        self.path, self.crf, self.frames_written = path, crf, 0
        self.rate = Fraction(round(fps * 1000), 1000)
        av_format, self._codec = FORMATS[container]
        # mp4 drops tags outside its fixed set unless told to keep them (ComfyUI's savers do the same)
        options = {"movflags": "use_metadata_tags"} if av_format == "mp4" else {}
        self._container = av.open(path, mode="w", format=av_format, options=options)
        for key, value in (metadata or {}).items():
            self._container.metadata[key] = value if isinstance(value, str) else json.dumps(value)
        self._stream = None

    def _open_stream(self, width: int, height: int) -> None:
        if width % 2 or height % 2:
            raise ValueError(f"Video frames must have an even width and height for yuv420p; got {width}x{height}. Crop or resize the images first.")
        self._stream = self._container.add_stream(self._codec, rate=self.rate)
        self._stream.width, self._stream.height, self._stream.pix_fmt = width, height, "yuv420p"
        self._stream.options = {"crf": str(self.crf)}
        if self._codec == "libvpx-vp9":
            # constant-quality mode: without a zero bit rate libvpx caps the quality at a default rate
            self._stream.bit_rate = 0

    def write(self, frames: torch.Tensor) -> None:
        if self._stream is None:
            self._open_stream(frames.shape[2], frames.shape[1])
        elif (frames.shape[2], frames.shape[1]) != (self._stream.width, self._stream.height):
            raise ValueError(f"Frames of {frames.shape[2]}x{frames.shape[1]} cannot join a video of {self._stream.width}x{self._stream.height}.")
        pixels = (frames[..., :3].clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).cpu()
        for image in pixels.numpy():
            self._container.mux(self._stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            self.frames_written += 1

    def close(self) -> None:
        try:
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

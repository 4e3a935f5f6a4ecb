"""Checks of node inputs that ComfyUI's own validation cannot make, run before a node starts work.

ComfyUI checks every widget against its min, max and options when a prompt is queued, but NaN
passes every comparison, tensors exist only at run time, and checks that relate two inputs would
switch its own checks off if they were a ``validate_inputs`` (ComfyUI skips its checks for every
input such a function names, or for all inputs when it takes ``**kwargs``). So the nodes call
these at the start of ``execute``; each raises ValueError with what to connect or change.
"""

from __future__ import annotations

import math
import os

import torch

# a name longer than this is refused by common file systems (NAME_MAX)
MAX_NAME_BYTES = 255
COUNTER_AND_EXTENSION = "_00001_.webm"
# torch.aminmax covers these; others (fp8) are widened first
_MIN_MAX_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_finite_number(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} is {value}: set it to a finite number.")


def check_finite_tensor(tensor: torch.Tensor, what: str, fix: str) -> None:
    """NaN or infinity anywhere in ``tensor`` is refused; two reductions, no copy of the tensor."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return
    low, high = torch.aminmax(tensor if tensor.dtype in _MIN_MAX_DTYPES else tensor.float())
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"There are NaN or infinite values in {what}: {fix}")


def latent_samples(latent, name: str) -> torch.Tensor:
    """The samples tensor of a LATENT input, which must have a size in every dimension."""
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not isinstance(samples, torch.Tensor):
        raise ValueError(f"The {name} input is not a LATENT with samples: connect the output of a latent node (an empty latent, VAE Encode, a sampler).")
    if not samples.is_floating_point():
        raise ValueError(f"The {name} input holds {samples.dtype} values; a latent holds floating-point numbers. Check the node that made it.")
    if samples.ndim not in (4, 5) or 0 in samples.shape:
        raise ValueError(
            f"The {name} input has shape {tuple(samples.shape)}; a latent is [batch, channels, height, width] or, for video, "
            f"[batch, channels, frames, height, width], with a size in every dimension."
        )
    return samples


def check_images(images, name: str, min_channels: int = 1) -> None:
    """An IMAGE input: [frames, height, width, channels], every dimension non-empty, finite values."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or 0 in images.shape:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"The {name} input must be an IMAGE [frames, height, width, channels] with a size in every dimension; got {shape}.")
    if not images.is_floating_point():
        raise ValueError(f"The {name} images hold {images.dtype} values; an IMAGE holds floating-point colours from 0 to 1. Check the node that made them.")
    if images.shape[-1] < min_channels:
        raise ValueError(f"The {name} images have {images.shape[-1]} colour channel(s); this needs RGB (3). Convert them to RGB first.")
    check_finite_tensor(images, f"the {name} images", "check the node that made them.")


def check_filename_prefix(prefix: str) -> None:
    """A prefix that names a file inside the output folder, without characters that make an odd file name."""
    if not prefix.strip():
        raise ValueError("filename_prefix is empty: give the file a name, e.g. longvideo/LongVideo.")
    control = next((character for character in prefix if ord(character) < 32 or ord(character) == 127), None)
    if control is not None:
        raise ValueError(f"filename_prefix contains the control character {control!r}: use letters, digits, '-', '_' and '/' for folders.")
    path = os.path.normpath(prefix)
    if os.path.isabs(prefix) or path == ".." or path.startswith(".." + os.sep):
        raise ValueError(f"filename_prefix {prefix!r} points outside the output folder: give a path inside it, e.g. longvideo/LongVideo.")
    if os.path.basename(path) in (".", ""):
        raise ValueError(f"filename_prefix {prefix!r} has no file name after its folder: end it with a name, e.g. longvideo/LongVideo.")
    try:
        *folders, name = [part.encode() for part in path.split(os.sep)]
    except UnicodeEncodeError as error:
        raise ValueError(f"filename_prefix holds {error.object[error.start : error.end]!r}, which no file name can hold: remove it.") from None
    # the saver appends a counter and the extension to the name
    longest = max([len(folder) for folder in folders] + [len(name) + len(COUNTER_AND_EXTENSION)])
    if longest > MAX_NAME_BYTES:
        raise ValueError(
            f"filename_prefix has a folder or file name of {longest} bytes with the counter and extension; file systems allow {MAX_NAME_BYTES}. Shorten it."
        )

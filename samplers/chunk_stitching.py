"""Joining video chunks that overlap in time, and anchoring their colours to the first chunk.

A chunk is any tensor with a frame dimension: an IMAGE batch ``[frames, height, width, channels]``
(frame_dim 0) or a video latent ``[batch, channels, frames, height, width]`` (frame_dim 2).
Consecutive chunks share ``overlap`` frames of time: the last ``overlap`` frames of one chunk show
the same moments as the first ``overlap`` frames of the next. Joining crossfades those frames, so
n chunks of lengths l_i give exactly sum(l_i) - overlap x (n - 1) frames.

The same joining puts temporal decode tiles back together: a tile of n latent frames decodes to
c x (n - 1) + 1 frames for a VAE with temporal compression c (Wan 4, LTX-Video 8), so tiles that
share k latent frames share c x (k - 1) + 1 decoded frames (decoded_overlap). VAEs that code time
in groups (MiniMax H3) are decoded in tiles of whole groups that are cut, not crossfaded
(group_frames_decode).
"""

from __future__ import annotations

import math
from typing import Iterable, Iterator

import kornia.color
import torch

TRANSITIONS = ("cut", "linear", "cosine")
ANCHOR_OFF = "off"
ANCHOR_MEAN_STD = "mean/std (Lab)"
ANCHOR_HISTOGRAM = "histogram (Lab)"
ANCHORS = (ANCHOR_OFF, ANCHOR_MEAN_STD, ANCHOR_HISTOGRAM)

HISTOGRAM_LEVELS = 256
# quantiles are estimated on an evenly strided subsample: sorting every pixel of a long chunk
# costs seconds and gigabytes and moves the quantiles by less than one Lab unit
HISTOGRAM_SAMPLES = 1 << 20


def crossfade_weights(overlap: int, transition: str) -> torch.Tensor:
    """Weight of the later chunk on each of the ``overlap`` shared frames; the earlier one gets 1 - w.

    The frames sit at t = (i + 1) / (overlap + 1), strictly between the two chunks' own frames, so
    no shared frame is taken from one chunk alone by a crossfade. ``cut`` switches at the middle;
    on a tie (odd overlap) the earlier chunk keeps the middle frame.
    """
    if transition not in TRANSITIONS:
        raise ValueError(f"Unknown transition {transition!r}; choose one of {', '.join(TRANSITIONS)}.")
    t = torch.arange(1, overlap + 1, dtype=torch.float64) / (overlap + 1)
    if transition == "cut":
        return (t > 0.5).to(torch.float32)
    if transition == "cosine":
        return ((1.0 - torch.cos(math.pi * t)) / 2.0).to(torch.float32)
    return t.to(torch.float32)


def stream_join(chunks: Iterable[torch.Tensor], overlap: int, transition: str, frame_dim: int = 0) -> Iterator[torch.Tensor]:
    """Join chunks that share ``overlap`` frames, yielding finished blocks of frames as early as possible.

    Holds back only the last ``overlap`` frames of the latest chunk, so joining any number of
    chunks needs the memory of one chunk. Every chunk needs more frames than the overlap; one that
    has chunks on both sides needs at least 2 x overlap, so that its two crossfades do not meet.
    """
    weights = crossfade_weights(overlap, transition)
    held, held_from_length = None, 0
    for index, chunk in enumerate(chunks):
        length = chunk.shape[frame_dim]
        if held is not None and held.shape[frame_dim] != overlap:
            raise ValueError(
                f"Chunk {index} has {held_from_length} frames, fewer than 2 x overlap ({2 * overlap}), "
                "but is followed by another: a chunk between two others needs frames of its own between the two crossfades."
            )
        if length <= overlap:
            raise ValueError(f"Chunk {index + 1} has {length} frames; every chunk needs more frames than the overlap ({overlap}).")
        start = 0
        if held is not None and overlap > 0:
            w = weights.to(chunk).view([-1 if d == frame_dim else 1 for d in range(chunk.ndim)])
            yield held * (1.0 - w) + chunk.narrow(frame_dim, 0, overlap) * w
            start = overlap
        end = length - overlap
        if end > start:
            yield chunk.narrow(frame_dim, start, end - start)
        keep_from = max(start, end)
        # a copy, so that the rest of the chunk (a whole decoded tile) can be freed before the next arrives
        held, held_from_length = chunk.narrow(frame_dim, keep_from, length - keep_from).clone(), length
    if held is not None and held.shape[frame_dim] > 0:
        yield held


def join(chunks: Iterable[torch.Tensor], overlap: int, transition: str, frame_dim: int = 0) -> torch.Tensor:
    """stream_join, concatenated."""
    return torch.cat(list(stream_join(chunks, overlap, transition, frame_dim)), dim=frame_dim)


def chunk_ranges(total: int, chunk_length: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) of each chunk in a batch that holds the chunks back to back.

    Chunk i is frames i x chunk_length up to (i + 1) x chunk_length of the batch, counting its
    overlap frames; the last chunk may be shorter but needs more frames than the overlap.
    """
    if chunk_length <= overlap:
        raise ValueError(f"chunk_length ({chunk_length}) must be larger than the overlap ({overlap}).")
    ranges = [(start, min(start + chunk_length, total)) for start in range(0, total, chunk_length)]
    last = ranges[-1][1] - ranges[-1][0] if ranges else 0
    if len(ranges) > 1 and last <= overlap:
        raise ValueError(
            f"The batch has {total} frames: after {len(ranges) - 1} chunks of {chunk_length} the last chunk has only "
            f"{last}, not more than the overlap ({overlap}). Check chunk_length and overlap against the chunks in the batch."
        )
    return ranges


def temporal_tiles(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) of overlapping tiles of at most ``tile`` frames covering ``length`` frames.

    Neighbours share ``overlap`` frames; the last tile is shorter but always longer than the overlap.
    """
    if tile < 2 * overlap or tile < 1:
        raise ValueError(f"A tile ({tile} frames) must hold at least twice the overlap ({overlap}).")
    if length <= tile:
        return [(0, length)]
    return [(start, min(start + tile, length)) for start in range(0, length - overlap, tile - overlap)]


def decoded_overlap(latent_overlap: int, temporal_compression: int) -> int:
    """Decoded frames shared by two tiles that share ``latent_overlap`` latent frames.

    A tile starting at latent frame s decodes to frames from c x s on: its first latent frame
    becomes one frame, every later one c frames, as ComfyUI's temporal tiling indexes them.
    """
    shared = temporal_compression * (latent_overlap - 1) + 1
    if shared < 0 or (temporal_compression > 1 and latent_overlap < 1):
        raise ValueError(f"With {temporal_compression}x temporal compression, tiles must share at least one latent frame.")
    return shared


def tiles_from(length: int, tile: int, overlap: int, temporal_compression: int, first_frame: int = 0) -> list[tuple[int, int]]:
    """The temporal tiles a decode from decoded frame ``first_frame`` on needs: from the last one whose
    frames from there on owe nothing to the tile before it (no crossfade with it)."""
    ranges = temporal_tiles(length, tile, overlap)
    shared = decoded_overlap(overlap, temporal_compression)
    first = max([0] + [k for k, (start, _) in enumerate(ranges) if k and temporal_compression * start + shared <= first_frame])
    return ranges[first:]


def decode_in_tiles(decode, latent: torch.Tensor, tile: int, overlap: int, temporal_compression: int, first_frame: int = 0) -> Iterator[torch.Tensor]:
    """Decoded frames of one latent video ``[channels, frames, height, width]``, a block at a time.

    ``decode`` maps a latent ``[1, channels, n, height, width]`` to ``c x (n - 1) + 1`` frames
    ``[frames, ...]``. Tiles of ``tile`` latent frames share ``overlap``; their shared decoded
    frames are crossfaded linearly, as ComfyUI's own tiled decode blends them, and only one tile
    is decoded at a time. From ``first_frame`` on only: the tiles before the one it needs are not
    decoded, and the frames are those of a decode from the start.
    """
    ranges = tiles_from(latent.shape[1], tile, overlap, temporal_compression, first_frame)
    skip = first_frame - temporal_compression * ranges[0][0]
    tiles = (decode(latent[None, :, start:end]) for start, end in ranges)
    # a lone tile shares no frames, so it may be as short as the overlap (a video of one latent frame)
    shared = decoded_overlap(overlap, temporal_compression) if len(ranges) > 1 else 0
    for block in stream_join(tiles, shared, "linear"):
        if skip < len(block):
            yield block[max(0, skip) :]
        skip -= len(block)


def group_tiles_from(length: int, group: int, group_frames: int, tail: int, tile_groups: int, first_frame: int = 0) -> list[tuple[int, int]]:
    """[start, end) in groups of the tiles of a latent video of ``length`` latent frames coded in groups
    (group_frames_decode), from the one that holds decoded frame ``first_frame`` on. The last tile also
    holds the latent frames after the last whole group."""
    groups = max(0, (length - tail) // group)
    tiles = [(start, min(start + tile_groups, groups)) for start in range(0, groups, tile_groups)] or [(0, 0)]
    return [(start, end) for index, (start, end) in enumerate(tiles) if index == len(tiles) - 1 or end * group_frames > first_frame]


def group_frames_decode(
    decode, latent: torch.Tensor, group: int, group_frames: int, tail: int, context: int, tile_groups: int, first_frame: int = 0
) -> Iterator[torch.Tensor]:
    """Decoded frames of one latent video ``[channels, frames, height, width]`` whose VAE codes time in groups, a block at a time.

    Every ``group`` latent frames, counted from the video's first, decode to ``group_frames`` frames of
    their own; a decode of groups needs ``tail`` latent frames after them to give their last frames
    (MiniMax H3: groups of 5 latent frames, 17 frames, and 2 latent frames after; 5 n + 2 latent frames
    are 17 n + 5 frames). ``decode`` maps a latent ``[1, channels, n, height, width]`` to frames
    ``[frames, ...]``. Tiles of ``tile_groups`` whole groups are decoded each with the ``context`` groups
    before it, and only the tile's own frames are kept, cut, not crossfaded: with the context the
    decoder looks at, they are the frames of a decode of the whole latent. The last tile also gives
    the frames after its groups, as the whole decode ends. From ``first_frame`` on only.
    """
    tiles = group_tiles_from(latent.shape[1], group, group_frames, tail, tile_groups, first_frame)
    for index, (start, end) in enumerate(tiles):
        last = index == len(tiles) - 1
        low = max(0, start - context)
        frames = decode(latent[None, :, low * group : latent.shape[1] if last else end * group + tail])
        frames = frames[(start - low) * group_frames : None if last else (end - low) * group_frames]
        skip = max(0, first_frame - start * group_frames)
        if skip < len(frames):
            yield frames[skip:]


def _lab(images: torch.Tensor) -> torch.Tensor:
    """IMAGE ``[frames, height, width, 3]`` in 0..1 to Lab ``[frames, 3, height, width]``."""
    return kornia.color.rgb_to_lab(images[..., :3].movedim(-1, 1).float().clamp(0.0, 1.0))


def _quantiles(values: torch.Tensor, levels: int) -> torch.Tensor:
    stride = max(1, values.numel() // HISTOGRAM_SAMPLES)
    return torch.quantile(values.reshape(-1)[::stride], torch.linspace(0.0, 1.0, levels, dtype=values.dtype))


def _interpolate(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear map through the points (xp, fp), xp non-decreasing; flat beyond the ends."""
    right = torch.searchsorted(xp, x.contiguous(), right=True).clamp(1, len(xp) - 1)
    x0, x1, y0, y1 = xp[right - 1], xp[right], fp[right - 1], fp[right]
    t = ((x - x0) / (x1 - x0).clamp_min(1e-6)).clamp(0.0, 1.0)
    return y0 + t * (y1 - y0)


class ColourAnchor:
    """The Lab colour statistics of a reference chunk, transferred onto other chunks.

    Every chunk is anchored to the same reference (the first chunk), never to its predecessor:
    matching to the previous chunk lets each chunk's residual error pass on to the next, so the
    drift would still grow with the number of chunks. The statistics cover a whole chunk, so all
    frames of a chunk get the same correction and no flicker appears inside a chunk.
    """

    def __init__(self, reference: torch.Tensor, method: str):
        if method not in (ANCHOR_MEAN_STD, ANCHOR_HISTOGRAM):
            raise ValueError(f"Unknown colour anchoring {method!r}; choose one of {', '.join(ANCHORS[1:])}.")
        self.method = method
        lab = _lab(reference)
        if method == ANCHOR_MEAN_STD:
            self.mean, self.std = lab.mean(dim=(0, 2, 3)), lab.std(dim=(0, 2, 3))
        else:
            self.quantiles = [_quantiles(lab[:, c], HISTOGRAM_LEVELS) for c in range(3)]

    def __call__(self, images: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
        """``images`` ``[frames, height, width, channels]`` in 0..1 with the reference's colours, by ``strength``."""
        lab = _lab(images)
        if self.method == ANCHOR_MEAN_STD:
            mean, std = lab.mean(dim=(0, 2, 3)), lab.std(dim=(0, 2, 3))
            shape = (1, 3, 1, 1)
            matched = (lab - mean.view(shape)) * (self.std / std.clamp_min(1e-6)).view(shape) + self.mean.view(shape)
        else:
            matched = torch.stack([_interpolate(lab[:, c], _quantiles(lab[:, c], HISTOGRAM_LEVELS), self.quantiles[c]) for c in range(3)], dim=1)
        rgb = kornia.color.lab_to_rgb(matched, clip=True).movedim(1, -1).to(images)
        anchored = images[..., :3].lerp(rgb, strength)
        return torch.cat([anchored, images[..., 3:]], dim=-1)

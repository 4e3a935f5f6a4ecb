import math

import kornia.color
import pytest
import torch

from samplers.chunk_stitching import (
    ANCHOR_HISTOGRAM,
    ANCHOR_MEAN_STD,
    TRANSITIONS,
    ColourAnchor,
    chunk_ranges,
    crossfade_weights,
    decode_in_tiles,
    decoded_overlap,
    group_frames_decode,
    join,
    stream_join,
    temporal_tiles,
)


def overlapping_chunks(video, lengths, overlap, frame_dim=0):
    """Cut ``video`` into chunks of the given lengths, each repeating the previous chunk's last frames."""
    chunks, start = [], 0
    for length in lengths:
        chunks.append(video.narrow(frame_dim, start, length))
        start += length - overlap
    assert start + overlap == video.shape[frame_dim], "lengths must cover the video exactly"
    return chunks


@pytest.mark.parametrize("transition", TRANSITIONS)
@pytest.mark.parametrize("overlap", [0, 1, 2, 5, 8])
def test_weights_rise_from_the_earlier_chunk_to_the_later_symmetrically(transition, overlap):
    w = crossfade_weights(overlap, transition)
    assert w.shape == (overlap,)
    assert ((w >= 0) & (w <= 1)).all()
    assert (w[1:] >= w[:-1]).all()
    if transition == "cut":
        assert w.sum() == overlap // 2
    else:
        # the earlier chunk's weights 1 - w are the later chunk's, mirrored
        torch.testing.assert_close(1 - w.flip(0), w)
        assert (0 < w).all() and (w < 1).all()


def test_joined_frames_are_convex_mixtures_whose_weights_sum_to_one():
    # chunks that agree on the shared frames give those frames back only if the weights sum to one
    for transition in TRANSITIONS:
        joined = join([torch.full((6, 2), 3.0), torch.full((7, 2), 3.0)], 4, transition)
        torch.testing.assert_close(joined, torch.full((9, 2), 3.0))


def test_linear_and_cosine_weights_have_their_shapes():
    torch.testing.assert_close(crossfade_weights(3, "linear"), torch.tensor([0.25, 0.5, 0.75]))
    torch.testing.assert_close(crossfade_weights(1, "cosine"), torch.tensor([0.5]))
    torch.testing.assert_close(crossfade_weights(3, "cosine"), torch.tensor([(1 - math.sqrt(0.5)) / 2, 0.5, (1 + math.sqrt(0.5)) / 2]))
    assert crossfade_weights(4, "cut").tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="Unknown transition"):
        crossfade_weights(2, "dissolve")


@pytest.mark.parametrize("transition", TRANSITIONS)
@pytest.mark.parametrize("lengths, overlap", [([10], 3), ([10, 10, 10], 3), ([7, 9, 6, 4], 2), ([5, 5], 4), ([4, 4, 4], 0), ([8, 8, 5], 1)])
def test_joining_chunks_cut_from_one_video_gives_back_that_video_frame_for_frame(transition, lengths, overlap):
    # frame f holds the value f: a lost, duplicated or shifted frame, or weights not summing to one, shows
    total = sum(lengths) - overlap * (len(lengths) - 1)
    video = torch.arange(total, dtype=torch.float32).view(total, 1, 1, 1).expand(total, 2, 3, 3)
    joined = join(overlapping_chunks(video, lengths, overlap), overlap, transition)
    assert joined.shape == video.shape
    torch.testing.assert_close(joined, video)


def test_latent_chunks_join_along_their_frame_dimension():
    video = torch.randn(2, 4, 23, 3, 5, generator=torch.Generator().manual_seed(0))
    chunks = overlapping_chunks(video, [9, 9, 9], 2, frame_dim=2)
    torch.testing.assert_close(join(chunks, 2, "cosine", frame_dim=2), video)


@pytest.mark.parametrize("transition", TRANSITIONS)
def test_the_crossfade_mixes_only_the_overlapping_frames(transition):
    a, b = torch.zeros(6, 1, 1, 3), torch.ones(5, 1, 1, 3)
    joined = join([a, b], 3, transition)
    assert joined.shape[0] == 6 + 5 - 3
    assert (joined[:3] == 0).all() and (joined[6:] == 1).all()
    torch.testing.assert_close(joined[3:6, 0, 0, 0], crossfade_weights(3, transition))


def test_stream_join_holds_back_only_the_overlap():
    chunks = [torch.full((10, 1), float(i)) for i in range(4)]
    seen = []

    def produced():
        for chunk in chunks:
            seen.append(len(seen))
            yield chunk

    blocks = stream_join(produced(), 3, "linear")
    # the first chunk's frames before its overlap come out before the second chunk is asked for
    first = next(blocks)
    assert first.shape[0] == 7 and seen == [0]
    rest = list(blocks)
    assert sum(block.shape[0] for block in [first, *rest]) == 4 * 10 - 3 * 3


def test_chunks_too_short_for_the_overlap_are_refused_with_their_number():
    with pytest.raises(ValueError, match="Chunk 2 has 3 frames; every chunk needs more frames than the overlap \\(3\\)"):
        join([torch.zeros(8, 1), torch.zeros(3, 1)], 3, "linear")
    # a chunk between two others needs 2 x overlap frames; as the last chunk fewer are fine
    assert join([torch.zeros(8, 1), torch.zeros(5, 1)], 3, "linear").shape[0] == 10
    with pytest.raises(ValueError, match="Chunk 2 has 5 frames, fewer than 2 x overlap \\(6\\)"):
        join([torch.zeros(8, 1), torch.zeros(5, 1), torch.zeros(8, 1)], 3, "linear")


def test_a_batch_splits_into_back_to_back_chunks_and_the_last_may_be_shorter():
    assert chunk_ranges(30, 10, 2) == [(0, 10), (10, 20), (20, 30)]
    assert chunk_ranges(25, 10, 2) == [(0, 10), (10, 20), (20, 25)]
    assert chunk_ranges(7, 10, 2) == [(0, 7)]
    with pytest.raises(ValueError, match="the last chunk has only 2, not more than the overlap \\(2\\)"):
        chunk_ranges(22, 10, 2)
    with pytest.raises(ValueError, match="must be larger than the overlap"):
        chunk_ranges(30, 4, 4)


@pytest.mark.parametrize("length, tile, overlap", [(5, 8, 2), (8, 8, 2), (9, 8, 2), (40, 16, 2), (41, 16, 4), (17, 4, 2), (12, 3, 0)])
def test_temporal_tiles_cover_every_frame_and_share_exactly_the_overlap(length, tile, overlap):
    tiles = temporal_tiles(length, tile, overlap)
    assert tiles[0][0] == 0 and tiles[-1][1] == length
    assert all(end - start <= tile for start, end in tiles)
    assert all(end - start > overlap for start, end in tiles)
    assert all(next_start == end - overlap for (_, end), (next_start, _) in zip(tiles, tiles[1:]))


def framewise_causal_decode(compression):
    """A stand-in video VAE without temporal context: latent frame 0 gives one frame, every later one c frames."""

    def decode(latent):
        frames = latent[0].movedim(1, 0)  # [n, channels, height, width]
        repeats = torch.tensor([1] + [compression] * (len(frames) - 1))
        return frames.repeat_interleave(repeats, dim=0).movedim(1, -1)

    return decode


@pytest.mark.parametrize("compression", [1, 4, 8])
@pytest.mark.parametrize("latent_frames, tile, overlap", [(21, 8, 2), (13, 4, 1), (30, 16, 3), (6, 16, 2), (1, 4, 1), (2, 16, 2)])
def test_tiles_of_a_decoder_without_temporal_context_join_to_its_full_decode(compression, latent_frames, tile, overlap):
    # with no context to miss, any misplaced or dropped tile frame shows as a difference
    decode = framewise_causal_decode(compression)
    latent = torch.randn(3, latent_frames, 2, 2, generator=torch.Generator().manual_seed(0))
    full = decode(latent[None])
    assert full.shape[0] == compression * (latent_frames - 1) + 1
    torch.testing.assert_close(torch.cat(list(decode_in_tiles(decode, latent, tile, overlap, compression))), full)


def test_tiles_are_decoded_one_at_a_time_as_frames_are_consumed():
    decoded = []

    def decode(latent):
        decoded.append(latent.shape[2])
        return framewise_causal_decode(4)(latent)

    blocks = decode_in_tiles(decode, torch.zeros(1, 40, 1, 1), 8, 2, 4)
    next(blocks)
    assert decoded == [8]
    assert sum(len(block) for block in blocks) + 24 == 4 * 39 + 1
    assert len(decoded) == len(temporal_tiles(40, 8, 2))


def test_tiles_of_a_compressing_vae_must_share_a_latent_frame():
    assert decoded_overlap(0, 1) == 0
    assert decoded_overlap(2, 4) == 5
    with pytest.raises(ValueError, match="share at least one latent frame"):
        decoded_overlap(0, 4)


# --- colour anchoring -------------------------------------------------------------------------


def drifting_chunks(count=5, frames=4, size=24):
    """A smooth textured scene whose colours drift a little more with every chunk, as chunked sampling does."""
    gen = torch.Generator().manual_seed(1)
    base = torch.nn.functional.interpolate(torch.rand(frames, 3, 6, 6, generator=gen), size=(size, size), mode="bilinear")
    base = (0.2 + 0.6 * base).movedim(1, -1)
    chunks = []
    for i in range(count):
        gain = torch.tensor([1 + 0.06 * i, 1.0, 1 - 0.05 * i])
        offset = torch.tensor([0.0, 0.03 * i, -0.02 * i])
        chunks.append((base * gain + offset).clamp(0, 1))
    return chunks


def drift(chunk, reference):
    """Mean distance in Lab between a chunk's mean colour and the reference's (Delta E of the means)."""
    lab = lambda images: kornia.color.rgb_to_lab(images.movedim(-1, 1)).mean(dim=(0, 2, 3))  # noqa: E731
    return (lab(chunk) - lab(reference)).norm().item()


@pytest.mark.parametrize("method", [ANCHOR_MEAN_STD, ANCHOR_HISTOGRAM])
def test_anchoring_to_the_first_chunk_removes_most_of_the_drift(method):
    chunks = drifting_chunks()
    anchor = ColourAnchor(chunks[0], method)
    before = [drift(chunk, chunks[0]) for chunk in chunks[1:]]
    after = [drift(anchor(chunk), chunks[0]) for chunk in chunks[1:]]
    assert before[-1] > 5.0, "the synthetic drift should be clearly visible"
    assert all(b > a for a, b in zip(after, before))
    assert max(after) < 0.2 * max(before)


@pytest.mark.parametrize("method", [ANCHOR_MEAN_STD, ANCHOR_HISTOGRAM])
def test_strength_scales_the_correction(method):
    chunks = drifting_chunks()
    anchor = ColourAnchor(chunks[0], method)
    torch.testing.assert_close(anchor(chunks[-1], 0.0), chunks[-1])
    full, half = anchor(chunks[-1], 1.0), anchor(chunks[-1], 0.5)
    torch.testing.assert_close(half, (chunks[-1] + full) / 2)
    assert drift(full, chunks[0]) < drift(half, chunks[0]) < drift(chunks[-1], chunks[0])


def test_histogram_matching_reproduces_the_reference_distribution_not_only_its_mean():
    gen = torch.Generator().manual_seed(2)
    reference = torch.rand(3, 16, 16, 3, generator=gen)
    # a chunk with the reference's mean but squeezed into a narrow band
    squeezed = 0.5 + (reference - 0.5) * 0.3
    anchored = ColourAnchor(reference, ANCHOR_HISTOGRAM)(squeezed)
    lab = lambda images: kornia.color.rgb_to_lab(images.movedim(-1, 1))[:, 0].flatten().sort().values  # noqa: E731
    assert (lab(anchored) - lab(reference)).abs().mean() < 0.2 * (lab(squeezed) - lab(reference)).abs().mean()


def test_anchoring_keeps_extra_channels_and_the_value_range():
    chunks = drifting_chunks(count=2)
    rgba = torch.cat([chunks[1], torch.full_like(chunks[1][..., :1], 0.7)], dim=-1)
    anchored = ColourAnchor(chunks[0], ANCHOR_MEAN_STD)(rgba)
    assert anchored.shape == rgba.shape
    assert (anchored[..., 3] == 0.7).all()
    assert anchored.min() >= 0 and anchored.max() <= 1


def grouped_decode(reach: int):
    """A decoder that codes time in groups of 5 latent frames (1, 4, 4, 4, 4 frames, from the decode's first
    frame), as MiniMax H3's VAEs do, and looks back ``reach`` latent frames (a causal sum); latent
    ``[1, channels, n, h, w]`` -> frames ``[frames, h, w, channels]``."""

    def decode(latent):
        frames = latent[0].movedim(1, 0)
        mixed = sum(torch.cat([torch.zeros_like(frames[:k]), frames[: max(0, len(frames) - k)]])[: len(frames)] * 0.5**k for k in range(reach + 1))
        groups = torch.tensor([1 if k % 5 == 0 else 4 for k in range(len(frames))])
        within = torch.cat([torch.arange(n) for n in groups.tolist()]).view(-1, 1, 1, 1)
        return (mixed.repeat_interleave(groups, dim=0) + within).movedim(1, -1)

    return decode


@pytest.mark.parametrize("latent_frames", [1, 2, 7, 12, 27])
@pytest.mark.parametrize("tile_groups", [1, 2, 4])
@pytest.mark.parametrize("first_frame", [0, 1, 17, 30])
def test_tiles_of_whole_groups_with_the_context_the_decoder_looks_at_give_its_whole_decode(latent_frames, tile_groups, first_frame):
    decode = grouped_decode(reach=7)
    latent = torch.randn(3, latent_frames, 2, 2, generator=torch.Generator().manual_seed(latent_frames))
    full = decode(latent[None])
    tiles = list(group_frames_decode(decode, latent, 5, 17, 2, 2, tile_groups, first_frame))
    ours = torch.cat(tiles) if tiles else full[:0]
    torch.testing.assert_close(ours, full[first_frame:], rtol=0, atol=1e-6)


def test_tiles_with_less_context_than_the_decoder_looks_at_differ_from_its_whole_decode():
    decode = grouped_decode(reach=7)
    latent = torch.randn(3, 27, 2, 2, generator=torch.Generator().manual_seed(0))
    ours = torch.cat(list(group_frames_decode(decode, latent, 5, 17, 2, 1, 1)))
    assert (ours - decode(latent[None])).abs().max() > 1e-3

"""Packing a second stream (sound) with the video frames (samplers/streams.py, docs/algorithms.md §6)."""

import pytest
import torch

from samplers.streams import FramePacking, SecondStream


def ltx2_bounds(k: int) -> int:
    # LTX-2's rates: latent frame 0 is 1 pixel frame, later ones 8; audio latents at 25/s, video at 24 fps
    return round(max(0, 8 * k - 7) * 25 / 24)


STREAMS = {
    # LTX-2's audio latent [B, 8, T, 16] in small: time at dim 2
    "uneven, time at dim 2": SecondStream((2, 3), 2, ltx2_bounds, 9),
    # MiniMax H3's [B, 32, 2, A]: time last; 2 units per frame, negative frames too
    "even, time last": SecondStream((3, 2), 3, lambda k: 2 * k, 2),
}
VIDEO_FRAME = (2, 1, 3)


def packing(name):
    return FramePacking(STREAMS[name], VIDEO_FRAME)


def stream_tensor(stream, batch, units, generator):
    shape = [batch, *stream.units_shape]
    shape.insert(stream.time_dim, units)
    return torch.randn(shape, generator=generator)


def test_ltx2_frames_own_8_or_9_audio_latents_after_the_first():
    counts = STREAMS["uneven, time at dim 2"].units_of(torch.arange(-2, 10)).tolist()
    assert counts[:3] == [0, 0, 1]  # warm-up frames own none, frame 0 one (its single pixel frame)
    assert set(counts[3:]) == {8, 9} and sum(counts) == ltx2_bounds(10)


@pytest.mark.parametrize("name", STREAMS)
@pytest.mark.parametrize("first_frame", [-3, 0, 5])
def test_pack_then_unpack_gives_back_the_video_and_the_stream(name, first_frame):
    p, gen = packing(name), torch.Generator().manual_seed(0)
    stream = p.stream
    video = torch.randn(2, *VIDEO_FRAME[:1], 4, *VIDEO_FRAME[1:], generator=gen)
    units = stream_tensor(stream, 2, stream.unit_bounds(first_frame + 4) - stream.unit_bounds(first_frame), gen)
    packed = p.pack(video, units, first_frame)
    assert packed.shape == (2, 1, 4, 1, p.frame_elements)
    frames = torch.arange(first_frame, first_frame + 4).expand(2, 4)
    got_video, got_units = p.unpack(packed, frames)
    assert torch.equal(got_video, video)
    assert torch.equal(torch.cat(got_units), units)
    assert torch.equal(p.repack(got_video, got_units, frames, packed), packed)


@pytest.mark.parametrize("name", STREAMS)
def test_rows_anywhere_in_the_video_unpack_to_their_own_frames_units(name):
    # a whole video packed once; rows made of its frames at different places (a reference frame in
    # front of a window included) each unpack to the units their frames own, in frame order
    p, gen = packing(name), torch.Generator().manual_seed(1)
    stream, first = p.stream, -4
    video = torch.randn(1, VIDEO_FRAME[0], 16, *VIDEO_FRAME[1:], generator=gen)
    units = stream_tensor(stream, 1, stream.unit_bounds(first + 16) - stream.unit_bounds(first), gen)
    whole = p.pack(video, units, first)
    rows = torch.tensor([[-4, -3, -2, -1], [0, 1, 2, 3], [0, 9, 10, 11], [6, 7, 8, 9]])
    picked = torch.cat([whole[:, :, row - first] for row in rows])
    got_video, got_units = p.unpack(picked, rows)
    lengths = set()
    for n, row in enumerate(rows.tolist()):
        own = [u - stream.unit_bounds(first) for k in row for u in range(stream.unit_bounds(k), stream.unit_bounds(k + 1))]
        expected = units.index_select(stream.time_dim, torch.tensor(own, dtype=torch.long))
        assert torch.equal(got_units[n], expected)
        assert torch.equal(got_video[n], video[0, :, [k - first for k in row]])
        lengths.add(len(own))
    assert len(lengths) > 1 or name.startswith("even")


@pytest.mark.parametrize("name", STREAMS)
def test_repack_writes_the_values_and_keeps_the_given_padding(name):
    p, gen = packing(name), torch.Generator().manual_seed(2)
    rows = torch.tensor([[1, 2, 3], [-1, 0, 1]])
    padding = torch.randn(2, 1, 3, 1, p.frame_elements, generator=gen)
    video, units = p.unpack(torch.randn(padding.shape, generator=gen), rows)
    packed = p.repack(video, units, rows, padding)
    again_video, again_units = p.unpack(packed, rows)
    assert torch.equal(again_video, video) and all(torch.equal(a, b) for a, b in zip(again_units, units))
    # every element no unit of the row's frames fills is the padding's
    written = p.repack(video + 1.0, [u + 1.0 for u in units], rows, padding) != padding
    counts = p.stream.units_of(rows)
    assert written.sum() == rows.numel() * p.video_elements + counts.sum() * p.stream.unit_elements


def test_a_stream_of_the_wrong_length_or_bounds_is_refused():
    p = packing("uneven, time at dim 2")
    video = torch.zeros(1, VIDEO_FRAME[0], 3, *VIDEO_FRAME[1:])
    with pytest.raises(ValueError, match=r"Frames 0\.\.2 span 18 units"):
        p.pack(video, torch.zeros(1, 2, 9, 3), 0)
    with pytest.raises(ValueError, match=r"Frame 2 owns units \[9, 18\)"):
        FramePacking(SecondStream((2, 3), 2, ltx2_bounds, 8), VIDEO_FRAME).unpack(torch.zeros(1, 1, 3, 1, 6 + 8 * 6), torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="must not decrease"):
        SecondStream((1,), 1, lambda k: -k, 1).units_of(torch.tensor([0]))

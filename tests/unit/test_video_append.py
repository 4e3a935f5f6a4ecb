"""Appending one video file to another without encoding again (video_file.append_video), read back with PyAV."""

import importlib.util
from pathlib import Path

import av
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("longvideo_video_file", ROOT / "nodes" / "video_file.py")
video_file = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(video_file)


def ramp_frames(count, first=0, size=32):
    """Ramps whose blue level moves frame by frame, so order and count show."""
    ramp = torch.linspace(0, 1, size)
    return torch.stack(
        [
            torch.stack([ramp[None].expand(size, size), ramp[:, None].expand(size, size), torch.full((size, size), (index * 0.05) % 1)], -1)
            for index in range(first, first + count)
        ]
    )


def write(path, frames, container, crf=0, tags=None):
    with video_file.VideoFileWriter(str(path), 16, container, crf, tags) as writer:
        writer.write(frames)


def decoded(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return torch.stack([torch.from_numpy(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]), stream.average_rate, container.duration


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_an_appended_video_is_the_video_written_in_one_go(tmp_path, container):
    whole, head, tail = (tmp_path / f"{name}.{container}" for name in ("whole", "head", "tail"))
    write(whole, ramp_frames(30), container)
    write(head, ramp_frames(17), container, tags={"longvideo_run": "run-1", "prompt": "{}"})
    write(tail, ramp_frames(13, first=17), container)
    video_file.append_video(str(head), str(tail))
    joined, rate, duration = decoded(head)
    expected, expected_rate, expected_duration = decoded(whole)
    assert video_file.count_frames(str(head)) == 30
    assert torch.equal(joined, expected)  # crf 0: the frames' pixels survive, so the join shows
    assert rate == expected_rate and abs(duration - expected_duration) <= 2_000  # microseconds: webm rounds to milliseconds
    assert video_file.video_tags(str(head))["longvideo_run"] == "run-1"


def test_a_video_encoded_otherwise_cannot_continue_another(tmp_path):
    head, tail = tmp_path / "head.mp4", tmp_path / "tail.mp4"
    write(head, ramp_frames(5), "mp4")
    write(tail, ramp_frames(5, size=16), "mp4")
    with pytest.raises(ValueError, match="was encoded with other settings"):
        video_file.append_video(str(head), str(tail))
    assert video_file.count_frames(str(head)) == 5

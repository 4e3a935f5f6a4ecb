"""The streaming video writer, read back with PyAV.

nodes/video_file.py imports no ComfyUI; it is loaded from its file so that the `nodes` package,
whose __init__ registers the ComfyUI nodes, is not imported.
"""

import importlib.util
import json
from fractions import Fraction
from pathlib import Path

import av
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("longvideo_video_file", ROOT / "nodes" / "video_file.py")
video_file = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(video_file)


def read_back(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        return frames, stream.width, stream.height, stream.average_rate, dict(container.metadata)


def coloured_frames(count, height, width, first=0):
    """Flat frames whose grey level encodes their index, so order and count survive compression."""
    levels = (torch.arange(first, first + count, dtype=torch.float32) * 16 % 256) / 255
    return levels.view(-1, 1, 1, 1).expand(count, height, width, 3).clone()


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_frames_written_in_blocks_read_back_with_their_count_size_fps_and_order(tmp_path, container):
    path = tmp_path / f"out.{container}"
    with video_file.VideoFileWriter(str(path), fps=16.0, container=container) as writer:
        for block in range(4):
            writer.write(coloured_frames(5, 48, 80, first=5 * block))
    frames, width, height, rate, _ = read_back(path)
    assert len(frames) == writer.frames_written == 20
    assert (width, height) == (80, 48)
    assert rate == Fraction(16)
    levels = [int(frame.mean().round()) for frame in frames]
    assert all(abs(level - i * 16 % 256) <= 3 for i, level in enumerate(levels)), levels


def test_a_fractional_fps_is_kept(tmp_path):
    path = tmp_path / "out.mp4"
    with video_file.VideoFileWriter(str(path), fps=23.976) as writer:
        writer.write(torch.zeros(3, 16, 16, 3))
    assert read_back(path)[3] == Fraction(23976, 1000)


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_prompt_and_workflow_go_into_the_metadata_as_json(tmp_path, container):
    path = tmp_path / f"out.{container}"
    metadata = {"prompt": {"3": {"class_type": "KSampler"}}, "workflow": {"nodes": [1, 2]}}
    with video_file.VideoFileWriter(str(path), fps=8.0, container=container, metadata=metadata) as writer:
        writer.write(torch.zeros(2, 16, 16, 3))
    tags = {key.lower(): value for key, value in read_back(path)[4].items()}
    assert json.loads(tags["prompt"]) == metadata["prompt"]
    assert json.loads(tags["workflow"]) == metadata["workflow"]


@pytest.mark.parametrize("container", ["mp4", "webm"])
def test_an_error_mid_run_leaves_a_valid_video_of_the_frames_written(tmp_path, container):
    path = tmp_path / f"partial.{container}"
    with pytest.raises(RuntimeError, match="decoder failed"):
        with video_file.VideoFileWriter(str(path), fps=8.0, container=container) as writer:
            writer.write(coloured_frames(6, 32, 32))
            writer.write(coloured_frames(6, 32, 32, first=6))
            raise RuntimeError("decoder failed")
    assert len(read_back(path)[0]) == 12


def test_a_run_that_wrote_nothing_leaves_no_file(tmp_path):
    path = tmp_path / "empty.mp4"
    with pytest.raises(RuntimeError):
        with video_file.VideoFileWriter(str(path), fps=8.0):
            raise RuntimeError("failed before the first frame")
    assert not path.exists()


def test_sizes_the_encoder_cannot_take_are_refused_clearly(tmp_path):
    with video_file.VideoFileWriter(str(tmp_path / "odd.mp4"), fps=8.0) as writer:
        with pytest.raises(ValueError, match="even width and height.*got 15x16"):
            writer.write(torch.zeros(1, 16, 15, 3))
    with video_file.VideoFileWriter(str(tmp_path / "mixed.mp4"), fps=8.0) as writer:
        writer.write(torch.zeros(1, 16, 16, 3))
        with pytest.raises(ValueError, match="32x16 cannot join a video of 16x16"):
            writer.write(torch.zeros(1, 16, 32, 3))
    with pytest.raises(ValueError, match="Unknown video format 'avi'"):
        video_file.VideoFileWriter(str(tmp_path / "x.avi"), fps=8.0, container="avi")

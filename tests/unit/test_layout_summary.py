"""The layouts the editor draws, against the specs' worked examples and the samplers' own runs."""
import pytest
import torch

from samplers.diagonal_queue import QueueLayout, generate
from samplers.frame_levels import NoiseSpace
from samplers.layout_summary import queue_summary, window_summary
from samplers.progressive_ar import ChunkLayout
from samplers.progressive_ar import generate as generate_chunks


def windows(summary):
    return [(w["start"], w["stop"], w["write_start"]) for w in summary["windows"]]


# ---------------------------------------------------------------- Diagonal Queue (docs/algorithms.md §1.1, §1.5)


def test_worked_example_queue_without_lookahead():
    summary = queue_summary(QueueLayout(4, 2))
    assert summary["context_slots"] == 0
    # slot 0 is the head: one step left; the tail holds fresh noise with all 8 steps left
    assert summary["steps_left"] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert summary["group"] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert windows(summary) == [(0, 4, 0), (4, 8, 4)]
    assert summary["calls_per_frame"] == 2  # 20 model windows over 10 iterations
    assert summary["frames_per_call"] == 4
    assert summary["steps_needed"] == "8"


def test_worked_example_queue_with_lookahead():
    summary = queue_summary(QueueLayout(4, 2, lookahead=True))
    # a pad of f/2 = 2 clean context slots in front of the head
    assert summary["context_slots"] == 2
    assert summary["steps_left"] == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert summary["group"] == [-1, -1, 0, 0, 0, 0, 1, 1, 1, 1]
    # each window writes back only its noisier half: 0..3 writes 2,3 / 2..5 writes 4,5 / ...
    assert windows(summary) == [(0, 4, 2), (2, 6, 4), (4, 8, 6), (6, 10, 8)]
    assert summary["calls_per_frame"] == 4  # 40 model windows over 10 iterations: lookahead doubles the cost


def test_official_defaults_cost_eight_windows_per_frame():
    # docs/algorithms.md §1.5: f=16, n=4 with lookahead, 16 UNet calls per frame = 2 CFG passes x 8 windows
    summary = queue_summary(QueueLayout(16, 4, lookahead=True))
    assert summary["calls_per_frame"] == 8
    assert summary["levels"] == 64
    assert len(summary["steps_left"]) == 8 + 64


@pytest.mark.parametrize("layout", [QueueLayout(4, 2), QueueLayout(4, 2, lookahead=True), QueueLayout(3, 3, lookahead=True),
                                    QueueLayout(5, 1), QueueLayout(1, 3), QueueLayout(5, 2, lookahead=True)])
@pytest.mark.parametrize("length", [1, 5, 20, 37])
def test_run_calls_count_what_the_sampler_runs(layout, length):
    sigmas = torch.cat([torch.linspace(1.0, 1.0 / layout.levels, layout.levels), torch.zeros(1)])
    calls = []

    def denoise(x, levels, prompt):
        calls.append(x.shape[0])
        return torch.zeros_like(x)

    clip = torch.zeros(1, 2, layout.window, 2, 2)
    list(generate(denoise, (1, 2, 2, 2), sigmas, layout=layout, num_frames=length, space=NoiseSpace.RECTIFIED_FLOW, clip=clip))
    # plus the first clip, sampled with the whole schedule: one call per level
    assert queue_summary(layout, length=length)["run_calls"] == layout.levels + len(calls)


def test_queue_steps_warning_is_the_samplers_error():
    layout = QueueLayout(13, 2, lookahead=True)
    assert queue_summary(layout, steps=26)["steps_warning"] is None
    warning = queue_summary(layout, steps=20)["steps_warning"]
    assert "13 x 2 = 26 noise levels" in warning and "Set the scheduler's steps to 26" in warning
    with pytest.raises(ValueError) as raised:
        layout.check_sigmas(torch.linspace(1.0, 0.0, 21))
    assert str(raised.value) == warning


def test_queue_without_known_steps_has_no_warning():
    assert queue_summary(QueueLayout(4, 2))["steps_warning"] is None


def test_invalid_widget_values_are_refused_with_the_samplers_message():
    with pytest.raises(ValueError, match="Lookahead splits each window"):
        queue_summary(QueueLayout(1, 2, lookahead=True))


# ---------------------------------------------------------------- Progressive AR (docs/algorithms.md §2.1, §2.4, §2.3)


def test_worked_example_window_two_chunks_of_two():
    # docs/algorithms.md §2.4: c=2, F=T=4; stage 0 = [500, 500, 1000, 1000] of 1000, behind one clean chunk
    summary = window_summary(ChunkLayout(2, 2), steps=4, length=10)
    assert summary["steps_left"] == [0, 0, 2, 2, 4, 4]
    assert summary["group"] == [-1, -1, 0, 0, 1, 1]
    assert summary["context_slots"] == 2
    assert windows(summary) == [(0, 6, 2)]
    assert summary["calls_per_frame"] == 1
    # L = 12 latents with the reference chunk: 5 generated chunks in 12 steps
    assert summary["run_calls"] == 12


def test_official_defaults_stage_zero_levels_and_step_count():
    # docs/algorithms.md §2.1: c=5, W'=6, T=30; stage 0 levels 166.7, 333.3, ..., 1000 of 1000
    summary = window_summary(ChunkLayout(5, 6), steps=30, length=84 * 5)
    levels = [1000 * left / summary["levels"] for left in summary["steps_left"][5::5]]
    assert levels == pytest.approx([166.7, 333.3, 500, 666.7, 833.3, 1000], abs=0.05)
    assert summary["frames_per_call"] == 35
    assert summary["calls_per_frame"] == 1  # docs/algorithms.md §2.3: one window call per output latent
    assert summary["run_calls"] == 445  # docs/algorithms.md §2.3


def test_run_calls_count_what_the_window_sampler_runs():
    layout, steps, length = ChunkLayout(3, 2), 8, 10
    calls = []

    def denoise(x, levels, prompt):
        calls.append(1)
        return torch.zeros_like(x)

    sigmas = torch.cat([torch.linspace(1.0, 1.0 / steps, steps), torch.zeros(1)])
    list(generate_chunks(denoise, (1, 2, 2, 2), sigmas, layout=layout, num_frames=length, space=NoiseSpace.RECTIFIED_FLOW))
    summary = window_summary(layout, steps=steps, length=length)
    assert summary["run_calls"] == len(calls)
    assert summary["calls_per_frame"] == pytest.approx(4 / 3)


def test_window_steps_warning_and_fallback_drawing():
    layout = ChunkLayout(3, 3)
    assert window_summary(layout, steps=18)["steps_warning"] is None
    summary = window_summary(layout, steps=10)
    assert "multiple of 3" in summary["steps_warning"]
    with pytest.raises(ValueError) as raised:
        layout.check_sigmas(torch.linspace(1.0, 0.0, 11))
    assert str(raised.value) == summary["steps_warning"]
    # drawn for PA-VDM's own setting, one step per noisy latent frame
    assert summary["levels"] == 9
    assert summary["steps_left"] == [0] * 3 + [3] * 3 + [6] * 3 + [9] * 3

"""The layouts the editor draws, against the specs' worked examples and the samplers' own runs."""

import pytest
import torch
from gaussian_video import GaussianVideo

from samplers.diagonal_queue import QueueLayout, generate
from samplers.experts import Experts, check_boundaries
from samplers.frame_levels import NoiseSpace
from samplers.layout_summary import ExpertSchedule, queue_summary, window_summary
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


@pytest.mark.parametrize(
    "layout",
    [
        QueueLayout(4, 2),
        QueueLayout(4, 2, lookahead=True),
        QueueLayout(3, 3, lookahead=True),
        QueueLayout(5, 1),
        QueueLayout(1, 3),
        QueueLayout(5, 2, lookahead=True),
    ],
)
@pytest.mark.parametrize("length", [1, 5, 20, 37])
def test_run_calls_count_what_the_sampler_runs(layout, length):
    sigmas = torch.cat([torch.linspace(1.0, 1.0 / layout.levels, layout.levels), torch.zeros(1)])
    calls = []

    def denoise(x, levels, prompt, frames):
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

    def denoise(x, levels, prompt, frames):
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


# ---------------------------------------------------------------- Two experts (Wan 2.2 A14B, docs/algorithms.md §1.7)

BOUNDARY = 0.6
FLOW = NoiseSpace.RECTIFIED_FLOW
FRAME = (1, 2, 3, 4)


def flow_sigmas(levels):
    return torch.cat([torch.linspace(1.0, 1.0 / levels, levels), torch.zeros(1)])


def recorded_experts(boundary=BOUNDARY):
    """Two Gaussian-process experts, and the log of their calls in order: (expert, per-frame levels)."""
    log = []
    high, low = GaussianVideo(FLOW, rho=0.9), GaussianVideo(FLOW, rho=0.3, prompt_means=(1.0,))

    def logged(expert, process):
        def denoise(x, levels, prompt, frames):
            log.append((expert, levels.clone()))
            return process.denoise(x, levels, prompt, frames)

        return denoise

    return Experts([logged(0, high), logged(1, low)], [boundary]), log


def routed_as_drawn(summary, sigmas):
    """One denoiser that runs both experts and gives every frame the prediction of the expert the
    drawing shows for the slot of its level."""
    high, low = GaussianVideo(FLOW, rho=0.9), GaussianVideo(FLOW, rho=0.3, prompt_means=(1.0,))
    steps = len(sigmas) - 1
    expert_of_level = {float(sigmas[steps - left]): e for left, e in zip(summary["steps_left"], summary["expert"]) if e >= 0}

    def denoise(x, levels, prompt, frames):
        drawn = torch.tensor([[expert_of_level.get(float(level), -1) for level in row] for row in levels])
        assert bool((drawn[levels > 0] >= 0).all()), "a noisy frame at a level the drawing does not show"
        return torch.where((drawn == 0)[:, None, :, None, None], high.denoise(x, levels, prompt, frames), low.denoise(x, levels, prompt, frames))

    return denoise


def queue_run(denoise, layout, sigmas, frames, clip_seed=5):
    clip = torch.randn(1, 2, layout.window, 3, 4, generator=torch.Generator().manual_seed(clip_seed))
    out = generate(denoise, FRAME, sigmas, layout=layout, num_frames=frames, space=FLOW, clip=clip, eta=1.0, generator=torch.Generator().manual_seed(3))
    return [(index, frame) for index, frame in out]


QUEUES_WITH_EXPERTS = [
    QueueLayout(4, 3),
    QueueLayout(4, 2),
    QueueLayout(5, 2),
    QueueLayout(3, 1),
    QueueLayout(4, 3, lookahead=True),
    QueueLayout(5, 2, lookahead=True),
]


@pytest.mark.parametrize("layout", QUEUES_WITH_EXPERTS, ids=str)
@pytest.mark.parametrize("boundary", [0.6, 0.34, 0.95])
def test_drawn_experts_and_windows_reproduce_the_queue_sampler_with_experts(layout, boundary):
    sigmas = flow_sigmas(layout.levels)
    summary = queue_summary(layout, length=9, experts=ExpertSchedule((boundary,), sigmas))
    assert summary["expert_warning"] is None
    drawn = summary["expert"]
    assert drawn[: layout.context_slots] == [-1] * layout.context_slots
    # the cleanest slots are the low-noise expert's, the noisiest the high-noise one's
    assert drawn[layout.context_slots :] == sorted(drawn[layout.context_slots :], reverse=True) and {0, 1} <= set(drawn)
    experts, _ = recorded_experts(boundary)
    # the drawn windows (without lookahead: split at the drawn boundary) and the drawn expert of
    # every slot make the sampler's frames bit for bit
    split = None if layout.lookahead else drawn.count(1)
    drawn_layout = QueueLayout(layout.window, layout.partitions, layout.lookahead, split=split)
    assert windows_with_writes(summary) == [(w.start, w.stop, w.write_start, w.write_end) for w in drawn_layout.windows()]
    ours = queue_run(experts, layout, sigmas, 9)
    reference = queue_run(routed_as_drawn(summary, sigmas), drawn_layout, sigmas, 9)
    assert [i for i, _ in ours] == [i for i, _ in reference]
    for (index, x), (_, y) in zip(ours, reference):
        assert torch.equal(x, y), f"frame {index} differs"


def windows_with_writes(summary):
    return [(w["start"], w["stop"], w["write_start"], w["write_stop"]) for w in summary["windows"]]


@pytest.mark.parametrize("layout", QUEUES_WITH_EXPERTS, ids=str)
@pytest.mark.parametrize("length", [1, 6, 23])
def test_queue_run_calls_with_experts_count_what_the_sampler_runs(layout, length):
    sigmas = flow_sigmas(layout.levels)
    experts, log = recorded_experts()
    queue_run(experts, layout, sigmas, length)
    # plus the first clip, sampled with the whole schedule: one call per level
    assert queue_summary(layout, length=length, experts=ExpertSchedule((BOUNDARY,), sigmas))["run_calls"] == layout.levels + len(log)


@pytest.mark.parametrize("layout", QUEUES_WITH_EXPERTS, ids=str)
def test_a_full_iteration_calls_each_drawn_window_once_per_expert_of_the_slots_it_writes(layout):
    sigmas = flow_sigmas(layout.levels)
    summary = queue_summary(layout, experts=ExpertSchedule((BOUNDARY,), sigmas))
    experts, log = recorded_experts()
    queue_run(experts, layout, sigmas, 2 * layout.levels)  # the first two iterations hold a full queue
    slot_of_level = {float(level): slot for slot, level in enumerate(layout.slot_sigmas(sigmas)[0]) if level > 0}

    def windows_called(calls):
        called = []
        for expert, levels in calls:
            stop = slot_of_level[float(levels[0, -1])] + 1
            called.append((stop - levels.shape[1], stop, expert))
        return sorted(called)

    drawn, per_iteration = summary["expert"], summary["calls_per_frame"]
    expected = [(w["start"], w["stop"], e) for w in summary["windows"] for e in set(drawn[w["write_start"] : w["write_stop"]])]
    assert windows_called(log[:per_iteration]) == windows_called(log[per_iteration : 2 * per_iteration]) == sorted(expected)


def test_the_experts_split_moves_the_partition_edges_onto_the_boundary():
    # docs/algorithms.md §1.7, as tests/unit/test_experts.py: 7 of the 12 levels are below 0.6
    summary = queue_summary(QueueLayout(4, 3), experts=ExpertSchedule((BOUNDARY,), flow_sigmas(12)))
    assert summary["expert"] == [1] * 7 + [0] * 5
    assert windows_with_writes(summary) == [(0, 4, 0, 3), (3, 7, 3, 7), (7, 11, 7, 11), (8, 12, 11, 12)]
    assert summary["group"] == [0] * 3 + [1] * 4 + [2] * 4 + [3]
    assert summary["calls_per_frame"] == 4
    # without experts, or with lookahead, the partitions stay as they are
    assert queue_summary(QueueLayout(4, 3))["group"] == [0] * 4 + [1] * 4 + [2] * 4
    with_lookahead = queue_summary(QueueLayout(4, 3, lookahead=True), experts=ExpertSchedule((BOUNDARY,), flow_sigmas(12)))
    assert with_lookahead["group"] == [-1] * 2 + [0] * 4 + [1] * 4 + [2] * 4
    # the half-window that writes slots on both sides of the boundary runs on both experts
    assert with_lookahead["calls_per_frame"] == len(with_lookahead["windows"]) + 1


@pytest.mark.parametrize("layout, steps", [(ChunkLayout(2, 4), 4), (ChunkLayout(1, 5), 5), (ChunkLayout(3, 4), 4)], ids=str)
@pytest.mark.parametrize("boundary", [0.6, 0.3, 0.9])
def test_drawn_experts_reproduce_the_window_sampler_with_experts(layout, steps, boundary):
    # one step per shift, so the drawn window holds every level of the schedule
    sigmas = flow_sigmas(steps)
    summary = window_summary(layout, length=11, experts=ExpertSchedule((boundary,), sigmas))
    assert summary["expert_warning"] is None and summary["expert"][: layout.chunk] == [-1] * layout.chunk
    experts, _ = recorded_experts(boundary)
    context = torch.randn(1, 2, layout.chunk, 3, 4, generator=torch.Generator().manual_seed(1))

    def run(denoise):
        return list(
            generate_chunks(denoise, FRAME, sigmas, layout=layout, num_frames=11, space=FLOW, clip=context, eta=0.5, generator=torch.Generator().manual_seed(4))
        )

    ours, reference = run(experts), run(routed_as_drawn(summary, sigmas))
    assert [i for i, _ in ours] == [i for i, _ in reference]
    for (index, x), (_, y) in zip(ours, reference):
        assert torch.equal(x, y), f"chunk at frame {index} differs"


@pytest.mark.parametrize("layout, steps", [(ChunkLayout(2, 3), 6), (ChunkLayout(3, 2), 8), (ChunkLayout(1, 4), 12), (ChunkLayout(2, 2), 4)], ids=str)
@pytest.mark.parametrize("boundary", [0.6, 0.3, 0.95])
def test_window_calls_with_experts_are_the_calls_the_sampler_makes(layout, steps, boundary):
    sigmas = flow_sigmas(steps)
    runs = {}
    for length in (1, 7, 12, 12 + layout.chunk):
        summary = window_summary(layout, length=length, experts=ExpertSchedule((boundary,), sigmas))
        assert summary["expert_warning"] is None
        experts, log = recorded_experts(boundary)
        list(generate_chunks(experts, FRAME, sigmas, layout=layout, num_frames=length, space=FLOW))
        assert summary["run_calls"] == len(log)
        runs[length] = log
    # one chunk more costs the drawn calls per frame
    assert summary["calls_per_frame"] * layout.chunk == len(runs[12 + layout.chunk]) - len(runs[12])
    # the drawn window is the sampler's window step right after a shift: each call is one window
    # step's, so consecutive calls on the same levels are one step
    shift = steps // layout.window_chunks
    window_steps = []
    for expert, levels in runs[12]:
        if window_steps and torch.equal(window_steps[-1][0], levels):
            window_steps[-1][1].add(expert)
        else:
            window_steps.append((levels, {expert}))
    levels, called = window_steps[(layout.window_chunks - 1) * shift]
    assert levels[0].tolist() == [float(sigmas[steps - left]) for left in summary["steps_left"][layout.chunk :]]
    assert called == set(summary["expert"]) - {-1}


def test_an_expert_the_schedule_never_reaches_is_the_samplers_error():
    sigmas = flow_sigmas(8)
    summary = queue_summary(QueueLayout(4, 2), experts=ExpertSchedule((1.5,), sigmas))
    with pytest.raises(ValueError) as raised:
        check_boundaries((1.5,), sigmas)
    assert summary["expert_warning"] == str(raised.value) and "high-noise expert would never run" in summary["expert_warning"]
    assert summary["expert"] is None
    # the layout is still drawn, unsplit
    assert len(summary["windows"]) == 2 and summary["steps_warning"] is None
    assert "low-noise expert would never run" in window_summary(ChunkLayout(2, 2), experts=ExpertSchedule((0.01,), flow_sigmas(4)))["expert_warning"]


def test_experts_wait_for_steps_that_fit():
    summary = queue_summary(QueueLayout(4, 2), experts=ExpertSchedule((BOUNDARY,), flow_sigmas(10)))
    assert "Set the scheduler's steps to 8" in summary["steps_warning"]
    assert summary["expert"] is None and "once the scheduler's steps fit" in summary["expert_warning"]
    summary = window_summary(ChunkLayout(2, 3), experts=ExpertSchedule((BOUNDARY,), flow_sigmas(7)))
    assert summary["expert"] is None and "once the scheduler's steps fit" in summary["expert_warning"]
    # a schedule the sampler refuses is refused in its words
    increasing = torch.cat([torch.linspace(0.2, 1.0, 8), torch.zeros(1)])
    assert "must not increase" in queue_summary(QueueLayout(4, 2), experts=ExpertSchedule((BOUNDARY,), increasing))["expert_warning"]


def test_without_experts_nothing_is_said_about_them():
    for summary in (queue_summary(QueueLayout(4, 2), steps=8), window_summary(ChunkLayout(2, 2), steps=4)):
        assert summary["expert"] is None and summary["expert_warning"] is None

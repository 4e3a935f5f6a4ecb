"""The Diagonal Queue for few-step models (docs/algorithms.md §1.8): g frames share a level, so a
queue of window x partitions frames needs window x partitions / g levels (4 for a 4-step distilled
model with a window of 20), checked against the Gaussian video process."""

import pytest
import torch
from gaussian_video import GaussianVideo
from test_diagonal_queue import plain_frame_sampling, reference_fifo

from samplers.diagonal_queue import QueueLayout, Window, generate, initial_queue
from samplers.frame_levels import NoiseSpace, fresh_noise, sample_clip
from samplers.layout_summary import queue_summary

FLOW = NoiseSpace.RECTIFIED_FLOW
LAYOUTS = {
    "window 20, 4 levels": QueueLayout(20, 1, frames_per_level=5),
    "window 20, 4 levels, lookahead": QueueLayout(20, 1, lookahead=True, frames_per_level=5),
    "window 4 x 2 partitions, 4 levels": QueueLayout(4, 2, frames_per_level=2),
    "window 6 x 2 partitions, 4 levels, lookahead": QueueLayout(6, 2, lookahead=True, frames_per_level=3),
}


def flow_sigmas(levels):
    return torch.cat([torch.linspace(1.0, 1.0 / levels, levels), torch.zeros(1)])


def test_a_window_of_20_frames_with_4_levels():
    layout = QueueLayout(20, 1, lookahead=True, frames_per_level=5)
    assert layout.levels == 4 and layout.steps_problem(4) is None
    assert "window x partitions / frames_per_level = 20 x 1 / 5 = 4 noise levels" in layout.steps_problem(8)
    # two half-shifted windows of 20 frames behind 10 clean ones, each writing 10 frames
    assert layout.windows() == [Window(0, 20, 10), Window(10, 30, 20)]
    summary = queue_summary(layout, steps=4)
    assert summary["steps_left"] == [0] * 10 + [1] * 5 + [2] * 5 + [3] * 5 + [4] * 5
    assert summary["calls_per_frame"] == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="frames_per_level must divide the 20 frames of the queue"):
        QueueLayout(20, 1, frames_per_level=3)


@pytest.mark.parametrize("name", LAYOUTS)
def test_frame_independent_model_gives_plain_few_step_sampling_of_every_new_frame(name):
    # docs/algorithms.md §1.6 with g frames per level: every frame meets each of the levels once, in order
    layout = LAYOUTS[name]
    process = GaussianVideo(FLOW, rho=0.0)
    sigmas = flow_sigmas(layout.levels)
    tail_states = []

    def recording_denoise(x, levels, prompt, frames):
        for row, row_levels in enumerate(levels):
            fresh = (row_levels == sigmas[0]).nonzero().flatten()
            tail_states.extend(x[row : row + 1, :, int(k) : int(k) + 1].clone() for k in fresh)
        return process.denoise(x, levels, prompt, frames)

    clip = process.sample(1, layout.window, torch.Generator().manual_seed(1))
    out = {}
    for first, block in generate(
        recording_denoise, (1, 2, 3, 4), sigmas, layout=layout, num_frames=24, space=FLOW, clip=clip, generator=torch.Generator().manual_seed(2)
    ):
        out.update((first + k, block[:, :, k]) for k in range(block.shape[2]))
    # the clip's last g frames sit at the noisiest level in the first iteration (pure noise at sigma 1)
    first_new = layout.window - layout.frames_per_level
    assert len(tail_states) == 24 - first_new
    for offset, state in enumerate(tail_states):
        torch.testing.assert_close(out[first_new + offset], plain_frame_sampling(process, state, sigmas)[:, :, 0], rtol=0, atol=2e-5)


@pytest.mark.parametrize("name", LAYOUTS)
def test_matches_the_official_loop_with_groups_of_frames_per_level(name):
    layout = LAYOUTS[name]
    g = layout.frames_per_level
    process = GaussianVideo(FLOW, rho=0.9)
    sigmas = flow_sigmas(layout.levels)
    clip = process.sample(1, layout.window, torch.Generator().manual_seed(1))
    total = 30
    ours = {}
    for first, block in generate(
        process.denoise, (1, 2, 3, 4), sigmas, layout=layout, num_frames=total, space=FLOW, clip=clip, generator=torch.Generator().manual_seed(7)
    ):
        ours.update((first + k, block[:, :, k]) for k in range(block.shape[2]))

    gen = torch.Generator().manual_seed(7)
    queue, warmup = initial_queue(clip, sigmas, layout, FLOW, gen)
    iterations = layout.queue_iterations(warmup + total)
    tails = [frame for _ in range(iterations) for frame in fresh_noise((1, 2, g, 3, 4), gen, queue).unbind(2)]
    reference = reference_fifo(process, queue, sigmas, layout.window, layout.partitions, layout.lookahead, iterations, tails, g=g)
    # the reference never drains its queue: frames match until ours starts flushing
    for position in range(warmup + total - layout.slots + g):
        torch.testing.assert_close(ours[position - warmup], reference[position], rtol=0, atol=1e-5)


def lag_correlations(video: torch.Tensor, lags=(1, 4, 8)) -> dict[int, float]:
    v = video.double()
    return {k: float((v[:, :, :-k] * v[:, :, k:]).mean() / (v[:, :, :-k].var() * v[:, :, k:].var()).sqrt()) for k in lags}


def middle_frames(layout, process, batch, frames=60):
    clip = process.sample(batch, layout.window, torch.Generator().manual_seed(1))
    blocks = generate(
        process.denoise,
        (batch, 1, 8, 8),
        flow_sigmas(layout.levels),
        layout=layout,
        num_frames=frames,
        space=FLOW,
        clip=clip,
        eta=1.0,
        generator=torch.Generator().manual_seed(2),
    )
    return torch.cat([block for first, block in blocks if first >= 0], dim=2)[:, :, 20:50]


def test_four_levels_over_a_full_window_keep_the_videos_frame_to_frame_correlations():
    # A 4-step model with g = 1 can only have a window of 4 frames; with g = 5 the window keeps 20.
    # Over many videos of the Gaussian process (rho 0.95) the correlations between frames k apart
    # stay at rho^k with the full window, and fall away with the short one.
    rho = 0.95
    process = GaussianVideo(FLOW, rho=rho, prompt_means=(0.0,), channels=1, height=8, width=8)
    full_window = lag_correlations(middle_frames(QueueLayout(20, 1, lookahead=True, frames_per_level=5), process, batch=32))
    short_window = lag_correlations(middle_frames(QueueLayout(4), process, batch=32))
    for k, correlation in full_window.items():
        assert correlation == pytest.approx(rho**k, abs=0.04), (k, full_window)
    assert rho**8 - short_window[8] > 0.15, short_window
    # as plain sampling of a whole clip does with the model's 20 steps
    noise = torch.randn(32, 1, 30, 8, 8, generator=torch.Generator().manual_seed(3))
    plain = lag_correlations(sample_clip(process.denoise, noise, flow_sigmas(20), space=FLOW))
    assert all(abs(full_window[k] - plain[k]) < 0.05 for k in plain), (full_window, plain)


@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("length", [1, 7, 23])
def test_the_layout_counts_the_calls_a_few_step_run_makes(name, length):
    layout = LAYOUTS[name]
    calls = []

    def denoise(x, levels, prompt, frames):
        calls.append(x.shape[0])
        return torch.zeros_like(x)

    blocks = list(generate(denoise, (1, 2, 2, 2), flow_sigmas(layout.levels), layout=layout, num_frames=length, space=FLOW))
    assert sum(block.shape[2] for first, block in blocks if first >= 0) == length
    assert queue_summary(layout, length=length)["run_calls"] == len(calls)

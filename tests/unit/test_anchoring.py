"""Reference anchoring (docs/algorithms.md §4): a clean reference in front of every window is exactly
a clean conditioning frame. With the Gaussian video process the samplers anchored to a reference
give the same video as the samplers without one, driven by the exact posterior given that frame."""

import pytest
import torch
from gaussian_video import GaussianVideo

from samplers import diagonal_queue, progressive_ar
from samplers.anchoring import FIRST_FRAME
from samplers.frame_levels import NoiseSpace

FLOW, VE = NoiseSpace.RECTIFIED_FLOW, NoiseSpace.VARIANCE_EXPLODING
FRAME = (2, 2, 3, 4)


def schedule(space, steps):
    if space is FLOW:
        return torch.cat([torch.linspace(1.0, 0.05, steps), torch.zeros(1)])
    return torch.cat([torch.logspace(1.2, -1.3, steps), torch.zeros(1)])


class GivenFrame:
    """The exact posterior of a window given ``reference`` as the clean frame just before it, computed
    independently of GaussianVideo.denoise: first the prior conditioned on the clean frame, then on
    the window's noisy frames."""

    def __init__(self, process: GaussianVideo, reference: torch.Tensor):
        self.process, self.reference = process, reference.double()

    def denoise(self, x, sigmas, prompt, frames):
        k = self.process.correlation(x.shape[2] + 1)
        mean = self.process.prompt_means[prompt]
        # condition on the clean frame 0: mean and covariance of the window frames 1..F
        gain_r = k[1:, :1] / k[0, 0]
        windows = x.shape[0] // self.reference.shape[0]
        reference = self.reference.repeat(windows, 1, 1, 1, 1)  # window-major rows, as the samplers stack them
        prior_mean = mean + torch.einsum("fr,ncrhw->ncfhw", gain_r, reference - mean)
        prior_cov = k[1:, 1:] - gain_r @ k[:1, 1:]
        a = self.process.signal_scale(sigmas.double())
        observed = a[:, :, None] * prior_cov * a[:, None, :] + torch.diag_embed(sigmas.double() ** 2)
        gain = torch.linalg.solve(observed, (prior_cov * a[:, None, :]).transpose(1, 2)).transpose(1, 2)
        residual = x.double() - a[:, None, :, None, None] * prior_mean
        return (prior_mean + torch.einsum("nfg,ncghw->ncfhw", gain, residual)).to(x.dtype)


def recorded(denoise, calls):
    def record(x, sigmas, prompt, frames):
        calls.append((x.clone(), sigmas.clone()))
        return denoise(x, sigmas, prompt, frames)

    return record


def fifo(denoise, layout, space, reference=None, clip=None, eta=0.5):
    sigmas = schedule(space, layout.levels)
    return list(
        diagonal_queue.generate(
            denoise,
            FRAME,
            sigmas,
            layout=layout,
            num_frames=9,
            space=space,
            clip=clip,
            eta=eta,
            generator=torch.Generator().manual_seed(3),
            reference=reference,
        )
    )


def progressive(denoise, layout, space, reference=None, clip=None, eta=0.5):
    sigmas = schedule(space, layout.noisy_frames)
    return list(
        progressive_ar.generate(
            denoise,
            FRAME,
            sigmas,
            layout=layout,
            num_frames=9,
            space=space,
            clip=clip,
            eta=eta,
            generator=torch.Generator().manual_seed(3),
            reference=reference,
        )
    )


def assert_same_video(a, b, atol=1e-5):
    assert [index for index, _ in a] == [index for index, _ in b]
    for (_, x), (_, y) in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=atol)


@pytest.mark.parametrize("space", [FLOW, VE])
@pytest.mark.parametrize(
    "layout",
    [diagonal_queue.QueueLayout(3, 2), diagonal_queue.QueueLayout(4, 2, lookahead=True), diagonal_queue.QueueLayout(4, 1, frames_per_level=2)],
    ids=["DD+LP", "DD+LP+LD", "few-step"],
)
def test_an_anchored_queue_is_the_queue_under_the_exact_posterior_given_the_reference(space, layout):
    process = GaussianVideo(space, rho=0.8)
    reference = process.sample(2, 1, torch.Generator().manual_seed(7))
    clip = process.sample(2, 3, torch.Generator().manual_seed(8))
    calls = []
    anchored = fifo(recorded(process.denoise, calls), layout, space, reference=reference, clip=clip)
    exact = fifo(GivenFrame(process, reference).denoise, layout, space, clip=clip)
    assert_same_video(anchored, exact)
    # every call shows the reference, unchanged, at level 0 in front of the window
    for x, sigmas in calls:
        assert x.shape[2] == layout.window + 1
        assert torch.equal(x[:, :, :1], reference.repeat(x.shape[0] // 2, 1, 1, 1, 1))
        assert bool((sigmas[:, 0] == 0).all())
    # and it is never emitted: the same frames as a run without it
    assert [index for index, _ in anchored] == [index for index, _ in fifo(process.denoise, layout, space, clip=clip)]


@pytest.mark.parametrize("space", [FLOW, VE])
@pytest.mark.parametrize("with_context", [True, False])
def test_an_anchored_progressive_window_is_the_window_under_the_exact_posterior_given_the_reference(space, with_context):
    process = GaussianVideo(space, rho=0.8)
    reference = process.sample(2, 1, torch.Generator().manual_seed(7))
    context = process.sample(2, 2, torch.Generator().manual_seed(8)) if with_context else None
    layout = progressive_ar.ChunkLayout(2, 2)
    assert_same_video(
        progressive(process.denoise, layout, space, reference=reference, clip=context),
        progressive(GivenFrame(process, reference).denoise, layout, space, clip=context),
    )


def test_the_first_frame_of_the_clip_anchors_the_queue():
    process = GaussianVideo(FLOW)
    clip = process.sample(2, 5, torch.Generator().manual_seed(8))
    calls = []
    fifo(recorded(process.denoise, calls), diagonal_queue.QueueLayout(3, 2), FLOW, reference=FIRST_FRAME, clip=clip)
    assert calls and all(torch.equal(x[:, :, :1], clip[:, :, :1].repeat(x.shape[0] // 2, 1, 1, 1, 1)) for x, _ in calls)


def test_a_queue_from_noise_is_anchored_to_its_first_clips_first_frame_from_the_first_iteration():
    process = GaussianVideo(FLOW)
    layout = diagonal_queue.QueueLayout(3, 2)
    calls = []
    out = fifo(recorded(process.denoise, calls), layout, FLOW, reference=FIRST_FRAME)
    first_clip, queue_calls = calls[: layout.levels], calls[layout.levels :]
    assert all(x.shape[2] == layout.window for x, _ in first_clip)
    # the first clip's own last step gives its frame 0
    first_frame = queue_calls[0][0][:2, :, :1]
    assert all(torch.equal(x[:, :, :1], first_frame.repeat(x.shape[0] // 2, 1, 1, 1, 1)) for x, _ in queue_calls)
    assert len(out) == layout.slots - layout.window + 9


def test_a_progressive_window_from_noise_is_anchored_to_its_first_finished_frame_once_there_is_one():
    process = GaussianVideo(FLOW)
    layout = progressive_ar.ChunkLayout(2, 2)
    calls, plain_calls = [], []
    out = progressive(recorded(process.denoise, calls), layout, FLOW, reference=FIRST_FRAME)
    progressive(recorded(process.denoise, plain_calls), layout, FLOW)
    first_frame = out[0][1][:, :, :1]
    steps_to_first_chunk = layout.noisy_frames  # the first chunk takes every step of the schedule
    shown = [x.shape[2] - plain[0].shape[2] for (x, _), plain in zip(calls, plain_calls)]
    assert shown == [0] * steps_to_first_chunk + [1] * (len(calls) - steps_to_first_chunk)
    assert all(torch.equal(x[:, :, :1], first_frame) for x, _ in calls[steps_to_first_chunk:])


def test_a_reference_that_is_not_a_clip_of_the_frames_is_refused():
    process = GaussianVideo(FLOW)
    with pytest.raises(ValueError, match=r"The reference \(2, 2, 1, 3, 3\) is not a clip of frames \(2, 2, 3, 4\)"):
        fifo(process.denoise, diagonal_queue.QueueLayout(3, 2), FLOW, reference=torch.zeros(2, 2, 1, 3, 3))


def test_the_layout_shows_what_the_reference_costs():
    from samplers.layout_summary import queue_summary, window_summary

    queue = queue_summary(diagonal_queue.QueueLayout(20, 2, lookahead=True), reference_frames=1)
    assert (queue["frames_per_call"], queue["reference_frames"], queue["calls_per_frame"]) == (21, 1, 4)
    window = window_summary(progressive_ar.ChunkLayout(3, 6), reference_frames=1)
    assert (window["frames_per_call"], window["reference_frames"]) == (22, 1)

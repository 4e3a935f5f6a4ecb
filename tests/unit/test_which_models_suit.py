"""Which models each sampler suits (README, "Which sampler for which model"), shown with the Gaussian video process.

Most released video models (Wan, LTX-Video, Cosmos) are trained with one noise level per clip. PA-VDM
fine-tunes its model with progressive levels; the pack's samplers give such a model different
levels in one window without training. A one-level model is emulated here: at each frame it reads
the window as if every frame sat at that frame's own level, which is what it has seen in training.

- The progressive window on it shows seams at its chunk boundaries (the frame-to-frame change
  jumps there), more the larger the chunks; on a model that knows per-frame levels (the exact
  posterior) it does not.
- The Diagonal Queue without Lookahead changes more from frame to frame than with it.
"""

import torch
from gaussian_video import GaussianVideo

from samplers import diagonal_queue, progressive_ar
from samplers.frame_levels import NoiseSpace

FLOW = NoiseSpace.RECTIFIED_FLOW
RHO = 0.98  # a smooth video: consecutive frames nearly alike
BATCH = 32


class OneLevelModel:
    """A model trained with one noise level per clip: frame i's prediction reads the window as if every frame were at i's level."""

    def __init__(self, process: GaussianVideo):
        self.process = process

    def denoise(self, x, sigmas, prompt, frames):
        out = torch.empty_like(x)
        for i in range(x.shape[2]):
            out[:, :, i] = self.process.denoise(x, sigmas[:, i : i + 1].expand_as(sigmas), prompt, frames)[:, :, i]
        return out


def process():
    return GaussianVideo(FLOW, rho=RHO, prompt_means=(0.0,), channels=1, height=8, width=8)


def sigmas(steps):
    return torch.cat([torch.linspace(1.0, 1.0 / steps, steps), torch.zeros(1)])


def frame_to_frame_change(video: torch.Tensor) -> torch.Tensor:
    """Mean squared change from frame t - 1 to t, for t = 1.., as a multiple of the process's own at the video's variance."""
    v = video.double()
    change = ((v[:, :, 1:] - v[:, :, :-1]) ** 2).mean(dim=(0, 1, 3, 4))
    return change / (2 * v.var() * (1 - RHO))


def progressive_video(denoise, chunk, window_chunks, frames=48):
    context = process().sample(BATCH, chunk, torch.Generator().manual_seed(1))
    blocks = progressive_ar.generate(
        denoise,
        (BATCH, 1, 8, 8),
        sigmas(chunk * window_chunks),
        layout=progressive_ar.ChunkLayout(chunk, window_chunks),
        num_frames=frames,
        space=FLOW,
        clip=context,
        generator=torch.Generator().manual_seed(2),
    )
    return torch.cat([block for _, block in blocks], dim=2)


def seam_ratio(video, chunk, start=8, stop=40):
    """The frame-to-frame change into the first frame of a chunk over the change inside chunks."""
    change = frame_to_frame_change(video)
    boundaries = [change[t - 1] for t in range(start, stop) if t % chunk == 0]
    inside = [change[t - 1] for t in range(start, stop) if t % chunk]
    return float(torch.stack(boundaries).mean() / torch.stack(inside).mean())


def test_a_progressive_window_shows_seams_at_chunk_boundaries_on_a_one_level_model_only():
    one_level, exact = OneLevelModel(process()).denoise, process().denoise
    # measured: 2.19 on the one-level model, about 1 on the exact one (chunks of 4, 4 in the window, 16 steps)
    assert seam_ratio(progressive_video(one_level, 4, 4), 4) > 1.5
    assert seam_ratio(progressive_video(exact, 4, 4), 4) < 1.15


def test_smaller_chunks_lessen_the_seams_on_a_one_level_model():
    one_level = OneLevelModel(process()).denoise
    # measured: 1.03 with chunks of 2, 9.6 with chunks of 8 (the same 16-frame window and 16 steps)
    assert seam_ratio(progressive_video(one_level, 2, 8), 2) < 1.15
    assert seam_ratio(progressive_video(one_level, 8, 2), 8) > 3


def queue_video(denoise, lookahead, frames=48):
    layout = diagonal_queue.QueueLayout(4, 4, lookahead)
    clip = process().sample(BATCH, 4, torch.Generator().manual_seed(1))
    blocks = diagonal_queue.generate(
        denoise,
        (BATCH, 1, 8, 8),
        sigmas(layout.levels),
        layout=layout,
        num_frames=frames,
        space=FLOW,
        clip=clip,
        eta=1.0,
        generator=torch.Generator().manual_seed(2),
    )
    return torch.cat([block for first, block in blocks if first >= 0], dim=2)[:, :, 8:40]


def test_the_diagonal_queue_without_lookahead_changes_more_from_frame_to_frame():
    one_level = OneLevelModel(process()).denoise
    without, with_lookahead = (float(frame_to_frame_change(queue_video(one_level, lookahead)).mean()) for lookahead in (False, True))
    # measured: 3.96 and 2.78 times the process's own change
    assert without > 1.25 * with_lookahead

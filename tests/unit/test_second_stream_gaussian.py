"""Video and sound sampled together, on a Gaussian audio-video process whose exact denoiser is known
(tests/gaussian_audio_video.py, docs/algorithms.md §6).

The samplers move packed frames; the denoiser unpacks each window by the frames it is told. Over
many videos the frames a Diagonal Queue or a Progressive window makes must keep the statistics of
both streams as the video-only checks demand of the video (test_few_step.py): near the process's
own values (the means, the video's frame-to-frame correlation, each unit's correlation with its own
frame, beta, and with the frame before, beta * rho) and near plain sampling of the whole video with
the same steps (which also shrinks the variances a little). A denoiser that unpacks a window one
frame off (each frame read as its successor) gives the sound to the wrong frames, and the check fails.
"""

import pytest
import torch
from gaussian_audio_video import GaussianAudioVideo, unit_correlation
from gaussian_video import GaussianVideo

from samplers import diagonal_queue, progressive_ar
from samplers.frame_levels import NoiseSpace, sample_clip
from samplers.streams import FramePacking, SecondStream

FLOW = NoiseSpace.RECTIFIED_FLOW
RHO, BETA, VIDEO_MEAN, UNIT_MEAN = 0.9, 0.8, 0.5, -0.3
# 5 units per 3 frames: frames own 1 or 2 (as LTX-2's own 8 or 9), time at dim 2 as LTX-2's audio latent
PACKING = FramePacking(SecondStream((2, 3), 2, lambda k: (5 * k) // 3, 2), (2, 1, 3))
VIDEOS = 256
FRAMES, MIDDLE = 30, slice(12, 28)
TOLERANCE = 0.06


def flow_sigmas(steps):
    return torch.cat([torch.linspace(1.0, 1.0 / steps, steps), torch.zeros(1)])


def process(beta=BETA):
    return GaussianAudioVideo(FLOW, PACKING, RHO, beta, VIDEO_MEAN, UNIT_MEAN)


def one_frame_off(denoise):
    def shifted(x, levels, prompt, frames):
        return denoise(x, levels, prompt, frames + 1)

    return shifted


def statistics(blocks) -> dict[str, float]:
    """The middle output frames' statistics in both streams, unpacked by their true frames."""
    packed = torch.cat([block for first, block in blocks if first >= 0], dim=2)[:, :, MIDDLE]
    first = MIDDLE.start
    frames = torch.arange(first, first + packed.shape[2]).expand(packed.shape[0], -1)
    video, units = PACKING.unpack(packed, frames)
    units = torch.cat(units)  # [videos, 2, T, 3]: every row spans the same frames
    owners = torch.tensor(process().owners(frames[0].tolist())) - first
    own = video[:, :, owners].movedim(2, 1).reshape(units.shape[0], len(owners), -1)  # each unit's frame, element for element
    before = video[:, :, (owners - 1).clamp(min=0)].movedim(2, 1).reshape(own.shape)
    flat_units = units.movedim(2, 1).reshape(own.shape)
    later = owners >= 1
    return {
        "video mean": float(video.mean()),
        "video variance": float(video.var()),
        "video lag-1 correlation": unit_correlation(video[:, :, 1:], video[:, :, :-1]),
        "unit mean": float(units.mean()),
        "unit variance": float(units.var()),
        "unit and its frame": unit_correlation(flat_units, own),
        "unit and the frame before": unit_correlation(flat_units[:, later], before[:, later]),
    }


TRUE = {  # the process's own values of the statistics the schedule's few steps do not shrink
    "video mean": VIDEO_MEAN,
    "video lag-1 correlation": RHO,
    "unit mean": UNIT_MEAN,
    "unit and its frame": BETA,
    "unit and the frame before": BETA * RHO,
}


def plain_sampling(steps):
    """Every frame at one level, the whole video in one window: the statistics a schedule of ``steps`` gives."""
    noise = torch.randn(VIDEOS, 1, FRAMES, 1, PACKING.frame_elements, generator=torch.Generator().manual_seed(5))
    return statistics([(0, sample_clip(process().denoise, noise, flow_sigmas(steps), space=FLOW))])


def queue_videos(denoise):
    layout = diagonal_queue.QueueLayout(12, 1, lookahead=True)
    clip = process().sample(VIDEOS, 0, layout.window, torch.Generator().manual_seed(1))
    return diagonal_queue.generate(
        denoise,
        (VIDEOS, 1, 1, PACKING.frame_elements),
        flow_sigmas(layout.levels),
        layout=layout,
        num_frames=FRAMES,
        space=FLOW,
        clip=clip,
        generator=torch.Generator().manual_seed(2),
        windows_per_call=2,
    )


def window_videos(denoise):
    layout = progressive_ar.ChunkLayout(2, 3)
    context = process().sample(VIDEOS, -2, 2, torch.Generator().manual_seed(3))
    return progressive_ar.generate(
        denoise,
        (VIDEOS, 1, 1, PACKING.frame_elements),
        flow_sigmas(18),
        layout=layout,
        num_frames=FRAMES,
        space=FLOW,
        clip=context,
        generator=torch.Generator().manual_seed(4),
    )


SAMPLERS = {"diagonal queue": (queue_videos, 12), "progressive window": (window_videos, 18)}


def off(stats, expected) -> dict[str, float]:
    return {name: round(abs(stats[name] - value), 3) for name, value in expected.items()}


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_both_streams_keep_the_processs_statistics(sampler):
    videos, steps = SAMPLERS[sampler]
    plain = plain_sampling(steps)
    right = statistics(videos(process().denoise))
    assert max(off(right, TRUE).values()) < TOLERANCE, (right, plain)
    assert max(off(right, plain).values()) < TOLERANCE, (right, plain)
    wrong = statistics(videos(one_frame_off(process().denoise)))
    assert off(wrong, plain)["unit and its frame"] > 2 * TOLERANCE, (wrong, plain)


def test_without_coupling_the_video_is_denoised_as_the_video_only_process_and_each_unit_on_its_own():
    # beta = 0: the exact posterior of the packed window splits into GaussianVideo's and one per unit
    uncoupled = process(beta=0.0)
    frames = torch.tensor([[3, 4, 5, 6], [0, 1, 2, 3]])
    levels = torch.tensor([[0.0, 0.3, 0.6, 0.9], [0.2, 0.2, 0.5, 0.5]])
    x = torch.randn(2, 1, 4, 1, PACKING.frame_elements, generator=torch.Generator().manual_seed(5))
    video_x0, units_x0 = PACKING.unpack(uncoupled.denoise(x, levels, 0, frames), frames)
    video, units = PACKING.unpack(x, frames)
    video_only = GaussianVideo(FLOW, RHO, (VIDEO_MEAN,), *PACKING.video_frame)
    torch.testing.assert_close(video_x0, video_only.denoise(video, levels, 0, frames), rtol=0, atol=1e-5)
    for n in range(2):
        unit_levels = levels[n].repeat_interleave(PACKING.stream.units_of(frames[n]))[None, None, :, None]
        scale = 1.0 - unit_levels
        expected = UNIT_MEAN + scale / (scale**2 + unit_levels**2) * (units[n] - scale * UNIT_MEAN)
        torch.testing.assert_close(units_x0[n], expected, rtol=0, atol=1e-5)
    # the padding comes back as it went in
    assert torch.equal(uncoupled.denoise(x, levels, 0, frames)[..., -PACKING.stream.unit_elements :][0, 0, 0], x[0, 0, 0, ..., -PACKING.stream.unit_elements :])

"""The pure samplers' output for fixed seeds on the Gaussian video process, pinned bit for bit.

Recorded before the samplers' calling convention was unified; a change of convention that keeps
the algorithms leaves every bit as it was (``LONGVIDEO_PRINT_PINS=1`` prints the digests).
Re-recorded once since: ``fifo_dd_eta0`` and ``fifo_lp_schedule`` when the draining queue kept its
windows at full size (their last ``window - 1`` frames changed, every earlier frame kept its bits).
"""
import hashlib
import os

import pytest
import torch

from gaussian_video import GaussianVideo
from samplers import diagonal_queue, progressive_ar
from samplers.frame_levels import NoiseSpace, sample_clip

FLOW, VE = NoiseSpace.RECTIFIED_FLOW, NoiseSpace.VARIANCE_EXPLODING


def digest(frames) -> str:
    hasher = hashlib.sha256()
    for index, tensor in frames:
        data = tensor.detach().contiguous()
        hasher.update(f"{index}{data.dtype}{tuple(data.shape)}".encode() + data.numpy().tobytes())
    return hasher.hexdigest()[:32]


def schedule(space, steps):
    if space is FLOW:
        return torch.cat([torch.linspace(1.0, 0.05, steps), torch.zeros(1)])
    return torch.cat([torch.logspace(1.2, -1.3, steps), torch.zeros(1)])


def fifo(space, window, partitions, lookahead, eta, batch_windows, clip_frames, switch=None):
    process = GaussianVideo(space, prompt_means=(0.0, 2.0))
    layout = diagonal_queue.QueueLayout(window, partitions, lookahead)
    generator = torch.Generator().manual_seed(21)
    clip = process.sample(1, clip_frames, torch.Generator().manual_seed(22))
    prompt_of_frame = (lambda frame: 0) if switch is None else (lambda frame: int(frame >= switch))
    windows_per_call = layout.windows_per_iteration if batch_windows else 1
    frames = diagonal_queue.generate(process.denoise, (1, 2, 3, 4), schedule(space, layout.levels), layout=layout, num_frames=14, space=space, clip=clip,
                                     eta=eta, generator=generator, prompt_of_frame=prompt_of_frame, windows_per_call=windows_per_call)
    return ((index, frame[:, :, 0]) for index, frame in frames)


def first_clip(space, eta):
    process = GaussianVideo(space)
    generator = torch.Generator().manual_seed(23)
    noise = torch.randn(1, 2, 4, 3, 4, generator=generator)
    return [(0, sample_clip(process.denoise, noise, schedule(space, 6), space=space, eta=eta, generator=generator))]


def progressive(space, chunk, window_chunks, steps, eta, with_context, switch=None):
    process = GaussianVideo(space, prompt_means=(0.0, 2.0))
    context = process.sample(1, 5, torch.Generator().manual_seed(24)) if with_context else None
    prompt_of_frame = (lambda frame: 0) if switch is None else (lambda frame: int(frame >= switch))
    layout = progressive_ar.ChunkLayout(chunk, window_chunks)
    return progressive_ar.generate(process.denoise, (1, 2, 3, 4), schedule(space, steps), layout=layout, num_frames=11, space=space, clip=context,
                                   eta=eta, generator=torch.Generator().manual_seed(25), prompt_of_frame=prompt_of_frame)


CASES = {
    "fifo_dd_eta0": lambda: fifo(FLOW, 4, 1, False, 0.0, False, 4),
    "fifo_lp_ld_eta1": lambda: fifo(FLOW, 4, 2, True, 1.0, False, 4),
    "fifo_lp_ld_eta1_batched": lambda: fifo(FLOW, 4, 2, True, 1.0, True, 4),
    "fifo_lp_odd_window_ve": lambda: fifo(VE, 3, 3, True, 0.5, False, 7),
    "fifo_lp_schedule": lambda: fifo(FLOW, 3, 2, False, 1.0, True, 2, switch=5),
    "first_clip_eta1": lambda: first_clip(FLOW, 1.0),
    "first_clip_ve": lambda: first_clip(VE, 0.0),
    "pa_from_noise": lambda: progressive(FLOW, 2, 3, 6, 0.0, False),
    "pa_context_eta": lambda: progressive(FLOW, 3, 2, 8, 0.5, True),
    "pa_context_ve_schedule": lambda: progressive(VE, 2, 2, 4, 0.0, True, switch=4),
}

PINS = {
    "fifo_dd_eta0": "144526a2c683ef820e50fb56f0962922",
    "fifo_lp_ld_eta1": "6deab0619ca9979bb824d709448b89a6",
    "fifo_lp_ld_eta1_batched": "6deab0619ca9979bb824d709448b89a6",
    "fifo_lp_odd_window_ve": "7d69e327984d58b9633588e7fd068016",
    "fifo_lp_schedule": "e271b02ed9edfc8ac11748b92731bc77",
    "first_clip_eta1": "8f23289278c11125d91325e8c2aabeaa",
    "first_clip_ve": "beb45bb6513d8ec713a4e9c274bf2d65",
    "pa_from_noise": "fdefdd6e95c6a7d77f5cba82b1f886ee",
    "pa_context_eta": "3a2800dee9a93847fa121040ad66c010",
    "pa_context_ve_schedule": "a7279a39a0eb4ae731dda4511423f191",
}


@pytest.mark.parametrize("case", CASES)
def test_sampler_output_is_pinned(case):
    got = digest(CASES[case]())
    if os.environ.get("LONGVIDEO_PRINT_PINS"):
        print(f'PIN "{case}": "{got}",')
    assert got == PINS[case], f"{case}: the output's bits changed (digest {got}, pinned {PINS[case]})"

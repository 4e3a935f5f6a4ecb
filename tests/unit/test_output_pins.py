"""The pure samplers' output for fixed seeds on the Gaussian video process, pinned.

The pins held bit for bit (as digests) while the samplers' calling convention was unified, and
again when the draining queue kept its windows at full size (``fifo_dd_eta0`` and
``fifo_lp_schedule`` were re-recorded then: their last ``window - 1`` frames changed). Bits do not
carry over between CPUs: the same code gives other last bits with other float kernels (up to 8e-7
here between torch's vector and scalar kernels, ``ATEN_CPU_CAPABILITY=default``). So the pins are
the recorded frames, compared within ``TOLERANCE``; moving one level of a schedule by 1e-4 moves
them by 2e-4 to 4e-4. They were recorded from the code whose digests the previous pins held.
``LONGVIDEO_RECORD_PINS=1`` records them again: do that only for a change meant to change the numbers.
"""

import os
from pathlib import Path

import pytest
import torch
from gaussian_video import GaussianVideo
from safetensors.torch import load_file, save_file

from samplers import diagonal_queue, progressive_ar
from samplers.frame_levels import NoiseSpace, sample_clip

FLOW, VE = NoiseSpace.RECTIFIED_FLOW, NoiseSpace.VARIANCE_EXPLODING


PINS_FILE = Path(__file__).with_name("output_pins.safetensors")
TOLERANCE = 1e-4


def recorded(frames) -> dict[str, torch.Tensor]:
    """The frames as one tensor, and the index and frame count of each yield."""
    frames = list(frames)
    return {
        "values": torch.cat([tensor.detach().float().reshape(-1) for _, tensor in frames]),
        "yields": torch.tensor([(index, tensor.shape[2] if tensor.ndim == 5 else 1) for index, tensor in frames]),
    }


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
    frames = diagonal_queue.generate(
        process.denoise,
        (1, 2, 3, 4),
        schedule(space, layout.levels),
        layout=layout,
        num_frames=14,
        space=space,
        clip=clip,
        eta=eta,
        generator=generator,
        prompt_of_frame=prompt_of_frame,
        windows_per_call=windows_per_call,
    )
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
    return progressive_ar.generate(
        process.denoise,
        (1, 2, 3, 4),
        schedule(space, steps),
        layout=layout,
        num_frames=11,
        space=space,
        clip=context,
        eta=eta,
        generator=torch.Generator().manual_seed(25),
        prompt_of_frame=prompt_of_frame,
    )


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


@pytest.fixture(scope="module")
def pins():
    if os.environ.get("LONGVIDEO_RECORD_PINS"):
        save_file({f"{case}.{key}": value for case, make in CASES.items() for key, value in recorded(make()).items()}, PINS_FILE)
    return load_file(PINS_FILE)


@pytest.mark.parametrize("case", CASES)
def test_sampler_output_is_pinned(case, pins):
    got = recorded(CASES[case]())
    assert torch.equal(got["yields"], pins[f"{case}.yields"]), f"{case}: the frames came in other yields"
    torch.testing.assert_close(got["values"], pins[f"{case}.values"], atol=TOLERANCE, rtol=0, msg=lambda m: f"{case}: the output changed. {m}")

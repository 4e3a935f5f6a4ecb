"""Two experts serving bands of noise levels (Wan 2.2 A14B), with a Gaussian video process per expert.

The reference is a single denoiser that evaluates both experts on every window and gives each frame
the prediction of its own level's expert: the samplers with Experts must give exactly its frames,
while calling each expert only where it is needed and switching experts as rarely as they can.
"""

import pytest
import torch
from gaussian_video import GaussianVideo

from samplers import diagonal_queue, progressive_ar
from samplers.experts import Experts
from samplers.frame_levels import NoiseSpace, sample_clip

FLOW = NoiseSpace.RECTIFIED_FLOW
BOUNDARY = 0.6
FRAME = (1, 2, 3, 4)


def processes():
    # different processes, so that the experts' predictions differ
    return GaussianVideo(FLOW, rho=0.9, prompt_means=(0.0, 1.5)), GaussianVideo(FLOW, rho=0.3, prompt_means=(1.0, -1.0))


def flow_sigmas(levels):
    return torch.cat([torch.linspace(1.0, 1.0 / levels, levels), torch.zeros(1)])


def routed(high, low, boundary=BOUNDARY):
    """Both experts on the whole window, each frame taking its own level's prediction."""

    def denoise(x, levels, prompt, frames):
        frame_is_high = (levels >= boundary)[:, None, :, None, None]
        return torch.where(frame_is_high, high.denoise(x, levels, prompt, frames), low.denoise(x, levels, prompt, frames))

    return denoise


def experts(switch_every=1, boundary=BOUNDARY):
    high, low = processes()
    return Experts([high.denoise, low.denoise], [boundary], switch_every=switch_every), high, low


def fifo(denoise, layout, frames=14, eta=1.0, clip=None, prompt_of_frame=lambda frame: 0, windows_per_call=1):
    out = diagonal_queue.generate(
        denoise,
        FRAME,
        flow_sigmas(layout.levels),
        layout=layout,
        num_frames=frames,
        space=FLOW,
        clip=clip,
        eta=eta,
        generator=torch.Generator().manual_seed(3),
        prompt_of_frame=prompt_of_frame,
        windows_per_call=windows_per_call,
    )
    return [(index, frame) for index, frame in out if index >= 0]


def assert_same_bits(a, b):
    assert [i for i, _ in a] == [i for i, _ in b]
    for (index, x), (_, y) in zip(a, b):
        assert torch.equal(x, y), f"frame {index} differs by {(x - y).abs().max():.3g}"


def test_expert_bands_and_calling_order():
    e = Experts([lambda *a: None] * 3, [0.8, 0.3])
    assert e.expert_of(torch.tensor([1.0, 0.8, 0.79, 0.3, 0.29, 0.0])).tolist() == [0, 0, 1, 1, 2, 2]
    assert e.needed(torch.tensor([0.0, 0.5, 0.2])) == {1, 2}  # a clean frame needs no expert
    assert e.order({2, 0}) == [0, 2]
    e.current = 2
    assert e.order({0, 2}) == [2, 0]  # the loaded expert goes first
    with pytest.raises(ValueError, match="3 experts need 2 boundaries"):
        Experts([None] * 3, [0.5])
    with pytest.raises(ValueError, match="must descend"):
        Experts([None] * 3, [0.3, 0.8])
    with pytest.raises(ValueError, match="switch_every must be at least 1"):
        Experts([None], [], switch_every=0)


def test_a_first_clip_switches_expert_once_at_the_boundary():
    e, high, low = experts()
    noise = torch.randn(1, 2, 4, 3, 4, generator=torch.Generator().manual_seed(0))
    sigmas = flow_sigmas(8)
    ours = sample_clip(e, noise, sigmas, space=FLOW)
    torch.testing.assert_close(ours, sample_clip(routed(*processes()), noise, sigmas, space=FLOW), rtol=0, atol=0)
    assert e.switches == 1
    assert [float(levels.max()) >= BOUNDARY for _, levels, _ in high.calls] == [True] * len(high.calls)
    assert [float(levels.max()) < BOUNDARY for _, levels, _ in low.calls] == [True] * len(low.calls)
    assert len(high.calls) + len(low.calls) == 8


@pytest.mark.parametrize("partitions,lookahead", [(1, False), (3, False), (3, True), (2, True)])
def test_every_frame_is_denoised_by_the_expert_of_its_level(partitions, lookahead):
    e, high, low = experts()
    layout = diagonal_queue.QueueLayout(4, partitions, lookahead)
    ours = fifo(e, layout)
    # the experts move the partition edges onto their boundary (no effect with lookahead)
    split = None if lookahead else sum(1 for s in flow_sigmas(layout.levels)[:-1] if s < BOUNDARY)
    reference_high, reference_low = processes()
    reference = fifo(routed(reference_high, reference_low), diagonal_queue.QueueLayout(4, partitions, lookahead, split=split))
    assert_same_bits(ours, reference)
    # each expert was asked only for windows that hold frames of its band
    assert all(float(levels.max()) >= BOUNDARY for _, levels, _ in high.calls)
    assert all(bool((levels[levels > 0] < BOUNDARY).any()) for _, levels, _ in low.calls)


@pytest.mark.parametrize("in_flight", [12, 11, 9, 6, 3])
def test_without_lookahead_no_window_reads_or_writes_frames_of_two_experts(in_flight):
    e, _, _ = experts()
    layout = diagonal_queue.QueueLayout(4, 3)
    sigmas = flow_sigmas(12)
    split = diagonal_queue.split_at_expert_boundary(layout, e, sigmas)
    slot_experts = e.expert_of(split.slot_sigmas(sigmas)[0]).tolist()
    assert split.split == 7  # 7 of the 12 levels are below 0.6
    windows = split.windows(in_flight)
    written = [slot for w in windows for slot in range(w.write_start, w.write_end)]
    assert written == list(range(in_flight))
    for w in windows:
        assert len(set(slot_experts[w.start : w.stop])) == 1
        assert 1 <= w.stop - w.start <= 4
    if in_flight == 12:
        # one more window than partitions, as the split is not a multiple of 4: the cleaner expert
        # writes slots 0-2 (reading 0-3) and 3-6, the noisier one 7-10 and slot 11 (reading 8-11)
        assert [(w.start, w.stop, w.write_start, w.write_end) for w in windows] == [(0, 4, 0, 3), (3, 7, 3, 7), (7, 11, 7, 11), (8, 12, 11, 12)]


@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("windows_per_call", [1, 4])
def test_running_the_noisy_expert_ahead_gives_the_same_bits_with_fewer_switches(eta, windows_per_call):
    layout = diagonal_queue.QueueLayout(4, 4)
    schedule = lambda frame: int(frame >= 9)  # noqa: E731  (a prompt change inside the run)
    in_step, _, _ = experts(switch_every=1)
    ahead, _, _ = experts(switch_every=6)
    a = fifo(in_step, layout, frames=30, eta=eta, prompt_of_frame=schedule, windows_per_call=windows_per_call)
    b = fifo(ahead, layout, frames=30, eta=eta, prompt_of_frame=schedule, windows_per_call=windows_per_call)
    assert_same_bits(a, b)
    # 9 of the 16 levels are below the boundary: an iteration needs both experts while more than
    # 9 frames are in flight. The first clip switches once; in step, every such iteration switches
    # once (each starts with the expert the last one ended with) and the first iteration with the
    # low-noise expert alone once more. Ahead, the 27 iterations of a full queue go in blocks of
    # 6, 6, 6, 6, 3 with two switches each; the draining queue's 6 mixed iterations stay in step.
    in_flight = list(layout.in_flight_counts(30 + layout.levels - layout.window))
    mixed, full = sum(1 for n in in_flight if n > 9), in_flight.count(layout.levels)
    assert (mixed, full) == (33, 27)
    assert in_step.switches == 1 + mixed + 1
    assert ahead.switches == 1 + 2 * 5 + (mixed - full)


def test_running_ahead_needs_windows_that_keep_to_their_expert():
    # with lookahead the windows read cleaner frames, so the experts must stay in step
    e, _, _ = experts(switch_every=8)
    layout = diagonal_queue.QueueLayout(4, 3, lookahead=True)
    assert diagonal_queue.split_at_expert_boundary(layout, e, flow_sigmas(12)).split is None
    in_step, _, _ = experts(switch_every=1)
    assert_same_bits(fifo(e, layout), fifo(in_step, layout))


def test_a_progressive_window_gives_each_frame_its_experts_prediction():
    e, high, low = experts()
    layout = progressive_ar.ChunkLayout(2, 3)
    sigmas = flow_sigmas(6)
    context = GaussianVideo(FLOW).sample(1, 2, torch.Generator().manual_seed(1))

    def run(denoise):
        return list(
            progressive_ar.generate(
                denoise,
                FRAME,
                sigmas,
                layout=layout,
                num_frames=11,
                space=FLOW,
                clip=context,
                eta=0.5,
                generator=torch.Generator().manual_seed(4),
                prompt_of_frame=lambda frame: int(frame >= 5),
            )
        )

    reference_high, reference_low = processes()
    assert_same_bits(run(e), run(routed(reference_high, reference_low)))
    # every window holds both bands, so both experts serve every window; the order alternates,
    # so the model changes once per window step
    assert e.switches <= layout.iterations(11, 6) + 1


def test_a_single_denoiser_is_one_expert_for_every_level():
    process = GaussianVideo(FLOW)
    layout = diagonal_queue.QueueLayout(4, 2)
    assert_same_bits(fifo(process.denoise, layout), fifo(Experts([GaussianVideo(FLOW).denoise]), layout))

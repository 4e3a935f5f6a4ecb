"""Resuming a run from the state its sampler reported, and re-rolling it from a frame on (docs/algorithms.md §5).

A run stopped at any iteration and resumed from the last state it reported gives the same bits as
one that never stopped; a re-roll from frame N keeps every frame before N.
"""

import pytest
import torch
from gaussian_video import GaussianVideo

from samplers import diagonal_queue, progressive_ar
from samplers.anchoring import FIRST_FRAME
from samplers.experts import Experts
from samplers.frame_levels import NoiseSpace
from samplers.run_state import Reroll

FLOW = NoiseSpace.RECTIFIED_FLOW
FRAME = (1, 2, 3, 4)


def flow_sigmas(steps):
    return torch.cat([torch.linspace(1.0, 0.05, steps), torch.zeros(1)])


class Stop(Exception):
    """What a cancel looks like to the sampler: the callback raises."""


def fifo(layout, frames=13, eta=1.0, seed=0, denoise=None, **kw):
    process = GaussianVideo(FLOW, prompt_means=(0.0, 2.0))
    clip = process.sample(1, 3, torch.Generator().manual_seed(1))
    return diagonal_queue.generate(
        denoise or process.denoise,
        FRAME,
        flow_sigmas(layout.levels),
        layout=layout,
        num_frames=frames,
        space=FLOW,
        clip=kw.pop("clip", clip),
        eta=eta,
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )


def progressive(layout, frames=13, eta=0.5, seed=0, steps=None, with_context=True, **kw):
    process = GaussianVideo(FLOW, prompt_means=(0.0, 2.0))
    context = process.sample(1, 3, torch.Generator().manual_seed(1)) if with_context else None
    steps = steps or layout.noisy_frames
    return progressive_ar.generate(
        process.denoise,
        FRAME,
        flow_sigmas(steps),
        layout=layout,
        num_frames=frames,
        space=FLOW,
        clip=context,
        eta=eta,
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )


def frames_of(blocks) -> dict[int, torch.Tensor]:
    """Output frame index -> latent [B, C, H, W]; warm-up frames left out."""
    out = {}
    for first, block in blocks:
        for k in range(block.shape[2]):
            if first + k >= 0:
                out[first + k] = block[:, :, k]
    return out


def interrupted(run, stop_after=None):
    """Frames and states of a run cancelled after ``stop_after`` iterations (None: a whole run); the
    states went through a file's record."""
    states = []

    def callback(progress):
        if progress.state is not None:
            tensors, numbers = progress.state.to_record()
            states.append(type(progress.state).from_record({k: v.clone() for k, v in tensors.items()}, dict(numbers)))
        if progress.iteration == stop_after:
            raise Stop

    frames = {}
    try:
        for first, block in run(callback):
            frames.update(frames_of([(first, block)]))
    except Stop:
        return frames, states
    assert stop_after is None, "the run ended before it was cancelled"
    return frames, states


def assert_same_bits(a: dict, b: dict):
    assert sorted(a) == sorted(b)
    for index in a:
        assert torch.equal(a[index], b[index]), f"frame {index} differs"


QUEUES = {
    "DD": diagonal_queue.QueueLayout(4),
    "DD+LP": diagonal_queue.QueueLayout(3, 2),
    "DD+LP+LD": diagonal_queue.QueueLayout(4, 2, lookahead=True),
    "few-step": diagonal_queue.QueueLayout(6, 1, lookahead=True, frames_per_level=2),
}


@pytest.mark.parametrize("name", QUEUES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
@pytest.mark.parametrize("reference", [None, FIRST_FRAME])
def test_a_queue_resumed_from_any_iteration_gives_the_same_bits(name, eta, reference):
    layout = QUEUES[name]
    whole = frames_of(fifo(layout, eta=eta, reference=reference))
    iterations = layout.queue_iterations(layout.warmup_frames(3) + 13)
    for stop_after in (1, 2, iterations // 2, iterations - 2, iterations):
        before, states = interrupted(lambda callback: fifo(layout, eta=eta, reference=reference, callback=callback), stop_after)
        state = states[-1]
        assert state.position == stop_after and state.next_frame <= len(before)
        after = frames_of(fifo(layout, eta=eta, reference=reference, resume=state))
        assert min(after, default=state.next_frame) == state.next_frame
        assert_same_bits({**{k: v for k, v in before.items() if k < state.next_frame}, **after}, whole)


def test_a_queue_started_from_noise_resumes_after_its_first_clip():
    layout = QUEUES["DD+LP"]
    whole = frames_of(fifo(layout, clip=None))
    before, states = interrupted(lambda callback: fifo(layout, clip=None, callback=callback), layout.levels + 5)
    # the first clip's steps report no state: there is no queue to go on from before it is filled
    assert states[0].iteration == layout.levels + 1
    after = frames_of(fifo(layout, clip=None, resume=states[-1]))
    assert_same_bits({**{k: v for k, v in before.items() if k < states[-1].next_frame}, **after}, whole)


def test_experts_running_ahead_report_states_between_blocks_and_resume_with_the_same_bits():
    boundary = 0.6
    process = GaussianVideo(FLOW, prompt_means=(0.0, 2.0))

    def experts():
        return Experts([process.denoise, process.denoise], [boundary], switch_every=4)

    layout = diagonal_queue.QueueLayout(4, 3)
    whole = frames_of(fifo(layout, frames=20, denoise=experts()))
    before, states = interrupted(lambda callback: fifo(layout, frames=20, denoise=experts(), callback=callback), 14)
    # blocks of 4 iterations run ahead: a state only where a block ends
    assert [s.position for s in states] == [4, 8, 12]
    after = frames_of(fifo(layout, frames=20, denoise=experts(), resume=states[-1]))
    assert_same_bits({**{k: v for k, v in before.items() if k < states[-1].next_frame}, **after}, whole)


WINDOWS = {"chunks of 2": progressive_ar.ChunkLayout(2, 3), "single frames": progressive_ar.ChunkLayout(1, 4), "chunks of 3": progressive_ar.ChunkLayout(3, 2)}


@pytest.mark.parametrize("name", WINDOWS)
@pytest.mark.parametrize("with_context", [True, False])
@pytest.mark.parametrize("reference", [None, FIRST_FRAME])
def test_a_progressive_window_resumed_from_any_call_gives_the_same_bits(name, with_context, reference):
    layout = WINDOWS[name]
    whole = frames_of(progressive(layout, with_context=with_context, reference=reference))
    calls = layout.iterations(13, layout.noisy_frames)
    for stop_after in (1, 3, calls // 2, calls - 1, calls):
        before, states = interrupted(lambda callback: progressive(layout, with_context=with_context, reference=reference, callback=callback), stop_after)
        state = states[-1]
        after = frames_of(progressive(layout, with_context=with_context, reference=reference, resume=state))
        assert_same_bits({**{k: v for k, v in before.items() if k < state.next_frame}, **after}, whole)


def test_the_length_can_grow_before_the_end_and_not_after():
    layout = QUEUES["DD+LP"]
    _, states = interrupted(lambda callback: fifo(layout, frames=13, callback=callback))
    early, late = states[2], states[-2]
    longer = frames_of(fifo(layout, frames=20, resume=early))
    assert sorted(longer) == list(range(early.next_frame, 20))
    with pytest.raises(ValueError, match="the length can change only while the queue has not begun to drain"):
        fifo(layout, frames=20, resume=late)
    window = WINDOWS["chunks of 2"]
    _, chunk_states = interrupted(lambda callback: progressive(window, frames=13, callback=callback))
    assert sorted(frames_of(progressive(window, frames=20, resume=chunk_states[2]))) == list(range(chunk_states[2].next_frame, 20))
    with pytest.raises(ValueError, match="the length can change only while no chunk of the end has entered"):
        progressive(window, frames=20, resume=chunk_states[-2])


def test_a_state_from_another_layout_is_refused():
    _, states = interrupted(lambda callback: fifo(QUEUES["DD+LP"], callback=callback), 4)
    with pytest.raises(ValueError, match=r"The state's queue has shape \(1, 2, 6, 3, 4\), but this run needs \(1, 2, 5, 3, 4\)"):
        fifo(diagonal_queue.QueueLayout(5), resume=states[-1])


# ---------------------------------------------------------------- re-roll from frame N


def latest_state_at_or_before(states, frame):
    return max((s for s in states if s.next_frame <= frame), key=lambda s: s.next_frame)


def changed_frames(a: dict, b: dict) -> list[int]:
    return [k for k in sorted(a) if not torch.equal(a[k], b[k])]


REROLLS = {
    "seed": lambda n: Reroll(n, generator=torch.Generator().manual_seed(5)),
    "prompt": lambda n: Reroll(n, prompt_of_frame=lambda frame: int(frame >= n)),
}


@pytest.mark.parametrize("name", QUEUES)
@pytest.mark.parametrize("change", REROLLS)
def test_a_queue_rerolled_from_frame_n_keeps_every_frame_before_it(name, change):
    layout = QUEUES[name]
    whole = frames_of(fifo(layout, frames=16))
    _, states = interrupted(lambda callback: fifo(layout, frames=16, callback=callback))
    n = 7
    state = latest_state_at_or_before(states, n)
    rerolled = frames_of(fifo(layout, frames=16, resume=state, reroll=REROLLS[change](n)))
    assert sorted(rerolled) == list(range(state.next_frame, 16))
    changed = changed_frames(rerolled, whole)
    # the first group that leaves the queue at or after frame n is the first that may change
    first_group = layout.reroll_position(n, state.warmup) * layout.frames_per_level - state.warmup
    assert changed and min(changed) >= first_group >= n


@pytest.mark.parametrize("name", QUEUES)
def test_a_reroll_that_changes_nothing_gives_the_run_back(name):
    layout = QUEUES[name]
    whole = frames_of(fifo(layout, frames=16))
    _, states = interrupted(lambda callback: fifo(layout, frames=16, callback=callback))
    state = states[2]
    same = frames_of(fifo(layout, frames=16, resume=state, reroll=Reroll(9)))
    assert_same_bits(same, {k: v for k, v in whole.items() if k >= state.next_frame})


@pytest.mark.parametrize("change", REROLLS)
def test_a_progressive_window_rerolled_from_frame_n_keeps_every_frame_before_it(change):
    layout = WINDOWS["chunks of 2"]
    whole = frames_of(progressive(layout, frames=16))
    _, states = interrupted(lambda callback: progressive(layout, frames=16, callback=callback))
    n = 7  # inside chunk 3 (frames 6 and 7): the re-roll starts with chunk 4
    state = latest_state_at_or_before(states, n)
    rerolled = frames_of(progressive(layout, frames=16, resume=state, reroll=REROLLS[change](n)))
    assert sorted(rerolled) == list(range(state.next_frame, 16))
    assert min(changed_frames(rerolled, whole)) == 8


def test_a_reroll_from_a_frame_the_state_has_passed_is_refused():
    layout = QUEUES["DD+LP"]
    _, states = interrupted(lambda callback: fifo(layout, frames=16, callback=callback))
    with pytest.raises(ValueError, match="The state is at frame 10, past the re-roll's frame 4"):
        fifo(layout, frames=16, resume=states[-7], reroll=Reroll(4))
    window = WINDOWS["chunks of 2"]
    _, chunk_states = interrupted(lambda callback: progressive(window, frames=16, callback=callback))
    with pytest.raises(ValueError, match="past the re-roll's frame 3"):
        progressive(window, frames=16, resume=chunk_states[-2], reroll=Reroll(3))

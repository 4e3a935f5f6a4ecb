"""Every sampler path tells the denoiser which output frame each frame it sees is (frame_levels.Denoiser).

The denoiser here predicts x0 = x, so a deterministic step leaves every frame as it entered: a
frame keeps one value from the moment it enters a queue or window until it leaves, and the value a
frame leaves with is the one the sampler yields at its index. Every frame the denoiser is shown must
then hold the value of the frame its index names, the reference frames in front of a window included.
"""

import pytest
import torch

from samplers import diagonal_queue, progressive_ar
from samplers.anchoring import FIRST_FRAME
from samplers.diagonal_queue import QueueLayout, QueueState
from samplers.experts import Experts
from samplers.frame_levels import NoiseSpace
from samplers.progressive_ar import ChunkLayout, WindowState
from samplers.run_state import Reroll

FLOW = NoiseSpace.RECTIFIED_FLOW
BATCH = 2
FRAME = (BATCH, 1, 2, 1)


def flow_sigmas(steps):
    return torch.cat([torch.linspace(1.0, 0.05, steps), torch.zeros(1)])


class Recorder:
    """The x0 = x denoiser, noting what every call shows and the frames it is told."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, levels, prompt, frames):
        assert frames.dtype == torch.long and frames.shape == levels.shape
        self.calls.append((x.clone(), frames.clone()))
        return x


def clip_of(frames, seed=1):
    return torch.randn(BATCH, 1, frames, 2, 1, generator=torch.Generator().manual_seed(seed))


def yielded(blocks) -> dict[int, torch.Tensor]:
    return {first + k: block[:, :, k] for first, block in blocks for k in range(block.shape[2])}


def check_frames(calls, truth, reference=None, reference_frame=0):
    """Every frame of every call holds the value of the frame its index names (``truth``: index ->
    [B, C, H, W]); ``reference`` rows come first, told ``reference_frame ..``. Frames of no known
    value are the copies in front of the warm-up; returns the indices the calls showed."""
    shown, unknown = set(), {}
    count = 0 if reference is None else reference.shape[2]
    for x, frames in calls:
        for n in range(x.shape[0]):
            b = n % BATCH  # windows x batch rows, window-major
            if count:
                assert frames[n, :count].tolist() == list(range(reference_frame, reference_frame + count))
                assert torch.equal(x[n, :, :count], reference[b])
            for f in range(count, x.shape[2]):
                k = int(frames[n, f])
                shown.add(k)
                if k in truth:
                    assert torch.equal(x[n, :, f], truth[k][b]), (k, n, f, frames[n].tolist())
                else:
                    assert torch.equal(unknown.setdefault((k, b), x[n, :, f]), x[n, :, f]), k
    assert all(k < min(truth) for k, _ in unknown), sorted(unknown)
    return shown


def queue(denoise, layout, frames, clip=None, **kw):
    return diagonal_queue.generate(
        denoise,
        FRAME,
        flow_sigmas(layout.levels),
        layout=layout,
        num_frames=frames,
        space=FLOW,
        clip=clip,
        generator=torch.Generator().manual_seed(kw.pop("seed", 0)),
        **kw,
    )


QUEUES = {
    "plain from the first clip": (QueueLayout(3), None, 1),
    "partitions, warm-up, windows batched": (QueueLayout(3, 2), 2, 2),
    "lookahead": (QueueLayout(4, 2, lookahead=True), 5, 1),
    "few-step": (QueueLayout(4, 2, lookahead=True, frames_per_level=2), 3, 4),
}


@pytest.mark.parametrize("name", QUEUES)
def test_diagonal_queue_tells_each_windows_frames(name):
    layout, clip_frames, windows_per_call = QUEUES[name]
    recorder = Recorder()
    out = yielded(queue(recorder, layout, 11, None if clip_frames is None else clip_of(clip_frames), windows_per_call=windows_per_call))
    first_clip = [] if clip_frames is not None else recorder.calls[: layout.levels]
    for _, frames in first_clip:  # the first clip is output frames 0 .. window - 1, sampled whole
        assert torch.equal(frames, torch.arange(layout.window).expand(BATCH, -1))
    shown = check_frames(recorder.calls[len(first_clip) :], out)
    assert set(range(11)) <= shown and min(out) == -layout.warmup_frames(clip_frames or layout.window)


def test_the_first_frame_reference_is_told_its_frame_even_before_frame_0():
    # a clip longer than the queue: its last 6 frames become frames 0..5, its first is frame -4
    layout, clip = QueueLayout(3, 2), clip_of(10)
    recorder = Recorder()
    out = yielded(queue(recorder, layout, 8, clip, reference=FIRST_FRAME))
    check_frames(recorder.calls, out, clip[:, :, :1], -4)


def test_a_given_reference_is_told_frames_from_0():
    recorder, reference = Recorder(), clip_of(2, seed=7)
    layout = QueueLayout(3, 2)
    first_clip = layout.levels
    out = yielded(queue(recorder, layout, 8, reference=reference))
    for _, frames in recorder.calls[:first_clip]:
        assert torch.equal(frames, torch.tensor([0, 1, 0, 1, 2]).expand(BATCH, -1))
    check_frames(recorder.calls[first_clip:], out, reference, 0)


def test_experts_running_ahead_tell_each_windows_frames():
    recorder = Recorder()
    experts = Experts([recorder, recorder], [0.5], switch_every=3)
    layout = QueueLayout(2, 4)
    out = yielded(queue(experts, layout, 16, clip_of(3)))
    shown = check_frames(recorder.calls, out)
    assert set(range(16)) <= shown
    in_step = Experts([Recorder(), Recorder()], [0.5])
    list(queue(in_step, layout, 16, clip_of(3)))
    assert experts.switches < in_step.switches  # it did run ahead


def test_a_resumed_and_a_rerolled_queue_tell_each_windows_frames():
    layout, clip = QueueLayout(3, 2, lookahead=True), clip_of(2)
    states = []
    whole = yielded(queue(Recorder(), layout, 12, clip, callback=lambda progress: states.append(progress.state)))
    saved = QueueState.from_record(*states[5].to_record())
    resumed = Recorder()
    rest = yielded(queue(resumed, layout, 12, resume=saved))
    assert all(torch.equal(rest[k], whole[k]) for k in rest)
    assert set(range(saved.next_frame, 12)) <= check_frames(resumed.calls, whole)
    rerolled = Recorder()
    changed = yielded(queue(rerolled, layout, 12, clip, reroll=Reroll(2, torch.Generator().manual_seed(9))))
    assert not torch.equal(changed[11], whole[11])  # entered the queue after the switch
    check_frames(rerolled.calls, changed)


def window(denoise, layout, frames, clip=None, steps=4, **kw):
    return progressive_ar.generate(
        denoise,
        FRAME,
        flow_sigmas(steps),
        layout=layout,
        num_frames=frames,
        space=FLOW,
        clip=clip,
        generator=torch.Generator().manual_seed(kw.pop("seed", 0)),
        **kw,
    )


def test_progressive_window_tells_its_frames_and_the_first_finished_frame_as_reference():
    recorder, steps = Recorder(), 4
    out = yielded(window(recorder, ChunkLayout(2, 2), 9, steps=steps, reference=FIRST_FRAME))
    # chunk 0 takes the first `steps` calls, without a reference; then frame 0 is in front of every window
    assert check_frames(recorder.calls[:steps], out) == {0, 1, 2, 3}
    assert check_frames(recorder.calls[steps:], out, out[0][:, :, None], 0) == set(range(9))


def test_progressive_window_with_a_clip_tells_the_context_before_frame_0():
    clip = clip_of(5)
    recorder = Recorder()
    experts = Experts([recorder, recorder], [0.5])
    out = yielded(window(experts, ChunkLayout(2, 2), 9, clip, prompt_of_frame=lambda frame: frame // 3, reference=FIRST_FRAME))
    truth = {**{k - 5: clip[:, :, k] for k in range(5)}, **out}
    shown = check_frames(recorder.calls, truth, clip[:, :, :1], -5)
    assert set(range(-2, 9)) == shown


def test_a_resumed_and_a_rerolled_window_tell_their_frames():
    clip, layout = clip_of(5), ChunkLayout(2, 2)
    states = []
    whole = yielded(window(Recorder(), layout, 9, clip, reference=FIRST_FRAME, callback=lambda progress: states.append(progress.state)))
    truth = {**{k - 5: clip[:, :, k] for k in range(5)}, **whole}
    saved = WindowState.from_record(*states[6].to_record())
    assert saved.reference_frame == -5
    tensors, numbers = states[6].to_record()
    numbers.pop("reference_frame")  # a record saved before the frame was kept: its denoisers did not read it
    assert WindowState.from_record(tensors, numbers).reference_frame == 0
    resumed = Recorder()
    rest = yielded(window(resumed, layout, 9, reference=FIRST_FRAME, resume=saved))
    assert all(torch.equal(rest[k], whole[k]) for k in rest)
    check_frames(resumed.calls, truth, clip[:, :, :1], -5)
    rerolled = Recorder()
    changed = yielded(window(rerolled, layout, 9, clip, reference=FIRST_FRAME, reroll=Reroll(4, torch.Generator().manual_seed(9))))
    assert not torch.equal(changed[8], whole[8])
    check_frames(rerolled.calls, {**truth, **changed}, clip[:, :, :1], -5)

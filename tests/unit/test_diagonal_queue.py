import math

import pytest
import torch
from gaussian_video import GaussianVideo, frames_from_zero

from samplers.diagonal_queue import QueueLayout, Window, generate, initial_queue
from samplers.frame_levels import NoiseSpace, fresh_noise

FLOW = NoiseSpace.RECTIFIED_FLOW
LAYOUTS = {
    "DD": QueueLayout(window=4, partitions=1),
    "DD+LP": QueueLayout(window=4, partitions=3),
    "DD+LP+LD": QueueLayout(window=4, partitions=3, lookahead=True),
}


def flow_sigmas(levels):
    return torch.cat([torch.linspace(1.0, 1.0 / levels, levels), torch.zeros(1)])


def continue_clip(denoise, clip, sigmas, layout, num_frames, generator, eta=0.0, batch_windows=False, **kw):
    """The queue continuing ``clip``, each frame as ``(index, latent [B, C, H, W])``."""
    frame_shape = (clip.shape[0], clip.shape[1], *clip.shape[3:])
    windows_per_call = layout.windows_per_iteration if batch_windows else 1
    frames = generate(
        denoise,
        frame_shape,
        sigmas,
        layout=layout,
        num_frames=num_frames,
        space=FLOW,
        clip=clip,
        eta=eta,
        generator=generator,
        windows_per_call=windows_per_call,
        **kw,
    )
    return ((index, frame[:, :, 0]) for index, frame in frames)


def queue_run(process, layout, num_frames, seed=0, eta=0.0, batch_windows=False, clip_frames=None, **kw):
    clip_frames = clip_frames or layout.window
    gen = torch.Generator().manual_seed(seed)
    clip = process.sample(1, clip_frames, torch.Generator().manual_seed(99))
    return list(continue_clip(process.denoise, clip, flow_sigmas(layout.levels), layout, num_frames, gen, eta, batch_windows, **kw))


# ---------------------------------------------------------------- layout (docs/algorithms.md §1.1, §1.5, §1.6)


def test_worked_example_windows_without_lookahead():
    assert QueueLayout(4, 2).windows() == [Window(0, 4, 0), Window(4, 8, 4)]


def test_worked_example_windows_with_lookahead():
    # docs/algorithms.md §1.5: pad of 2; windows 0..3 writes 2,3 / 2..5 writes 4,5 / 4..7 writes 6,7 / 6..9 writes 8,9
    assert QueueLayout(4, 2, lookahead=True).windows() == [Window(0, 4, 2), Window(2, 6, 4), Window(4, 8, 6), Window(6, 10, 8)]


@pytest.mark.parametrize("window", [2, 3, 4, 5, 16, 17])
@pytest.mark.parametrize("partitions", [1, 2, 4])
@pytest.mark.parametrize("lookahead", [False, True])
def test_written_regions_tile_the_in_flight_slots_exactly_once(window, partitions, lookahead):
    layout = QueueLayout(window, partitions, lookahead)
    for in_flight in range(1, layout.levels + 1):
        written = []
        for w in layout.windows(in_flight):
            assert 0 <= w.start <= w.write_start < w.stop
            assert w.stop - w.start == min(window, w.stop)
            written += range(w.write_start, w.stop)
        assert written == list(range(layout.context_slots, layout.context_slots + in_flight))


def test_lookahead_writes_only_the_noisier_half():
    for w in QueueLayout(6, 3, lookahead=True).windows():
        assert w.stop - w.write_start == 3 and w.write_start - w.start == 3


def test_odd_window_lookahead_follows_the_open_sora_plan_indexing():
    # docs/algorithms.md §1.4: start = floor(r/2)*f + (r mod 2)*floor(f/2); written half starts floor(f/2) + (r mod 2) later
    f = 17
    for r, w in enumerate(QueueLayout(f, 2, lookahead=True).windows()):
        start = (r // 2) * f + (r % 2) * (f // 2)
        assert (w.start, w.stop, w.write_start) == (start, start + f, start + f // 2 + r % 2)


def test_sigmas_must_fit_the_queue():
    with pytest.raises(ValueError, match=r"4 x 3 = 12 noise levels, so SIGMAS must have 13 values .* has 9"):
        QueueLayout(4, 3).check_sigmas(flow_sigmas(8))
    with pytest.raises(ValueError, match="must not increase"):
        QueueLayout(2, 1).check_sigmas(torch.tensor([0.5, 1.0, 0.0]))


# ---------------------------------------------------------------- initialisation (docs/algorithms.md §1.3)


def test_initial_queue_renoises_the_clip_to_the_diagonal_levels():
    layout = QueueLayout(3, 2, lookahead=True)
    clip = torch.arange(3.0).view(1, 1, 3, 1, 1).expand(1, 1, 3, 2, 2).contiguous()
    sigmas = flow_sigmas(6)
    queue, warmup = initial_queue(clip, sigmas, layout, FLOW, torch.Generator().manual_seed(5))
    noise = torch.randn(queue.shape, generator=torch.Generator().manual_seed(5))
    assert warmup == 3
    # context slot, then 3 copies of frame 0 at the cleanest levels, then frames 0, 1, 2 at the noisiest
    source = [0, 0, 0, 0, 0, 1, 2]
    levels = [0.0] + sigmas[:-1].flip(0).tolist()
    for slot, (frame, level) in enumerate(zip(source, levels)):
        expected = (1 - level) * frame + level * noise[:, :, slot]
        torch.testing.assert_close(queue[:, :, slot], expected)


# ---------------------------------------------------------------- correctness against the exact model


def plain_frame_sampling(process, x, sigmas):
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        denoised = process.denoise(x, s.expand(x.shape[0], x.shape[2]), 0, frames_from_zero(x))
        x = x + (s_next - s) * (x - denoised) / s
    return x


@pytest.mark.parametrize("name", LAYOUTS)
def test_frame_independent_model_gives_plain_sampling_of_every_new_frame(name):
    # docs/algorithms.md §1.6: with no temporal coupling every frame that entered as tail noise must equal plain
    # S-step sampling from that noise, the frames finished while the queue drains included
    layout = LAYOUTS[name]
    process = GaussianVideo(FLOW, rho=0.0)
    sigmas = flow_sigmas(layout.levels)
    tail_states = []

    def recording_denoise(x, levels, prompt, frames):
        for row, row_levels in enumerate(levels):
            if row_levels[-1] == sigmas[0]:
                tail_states.append(x[row : row + 1, :, -1:].clone())
        return process.denoise(x, levels, prompt, frames)

    clip = process.sample(1, layout.window, torch.Generator().manual_seed(1))
    frames = dict(continue_clip(recording_denoise, clip, sigmas, layout, 20, torch.Generator().manual_seed(2)))
    first_new = layout.window - 1  # the clip's last frame sits in the tail slot at the first iteration
    assert len(tail_states) == 20 - first_new
    for offset, state in enumerate(tail_states):
        expected = plain_frame_sampling(process, state, sigmas)[:, :, 0]
        torch.testing.assert_close(frames[first_new + offset], expected, rtol=0, atol=2e-5)


def reference_fifo(process, queue, sigmas, f, n, lookahead, iterations, tails, g=1):
    """The official FIFO loop (funcs.py fifo_ddim_sampling) restated in this pack's level convention;
    with ``g`` frames per level (docs/algorithms.md §1.8) slot j is at level j // g and g frames leave per iteration."""
    S = f * n
    pad = f // 2 if lookahead else 0
    frames = [queue[:, :, q] for q in range(queue.shape[2])]
    level = [0.0] * pad + [float(sigmas[S // g - 1 - j // g]) for j in range(S)]
    level_next = [0.0] * pad + [float(sigmas[S // g - j // g]) for j in range(S)]
    out = []
    for it in range(iterations):
        snapshot = list(frames)
        ranks = 2 * n if lookahead else n
        for r in reversed(range(ranks)):
            start = r * f // 2 if lookahead else r * f
            window = torch.stack(snapshot[start : start + f], dim=2)
            lv = torch.tensor(level[start : start + f]).unsqueeze(0)
            denoised = process.denoise(window, lv, 0, frames_from_zero(window))
            first_written = start + f // 2 if lookahead else start
            for q in range(first_written, start + f):
                s, s_next = level[q], level_next[q]
                frames[q] = snapshot[q] + (s_next - s) * (snapshot[q] - denoised[:, :, q - start]) / s
        out += frames[pad : pad + g]
        frames = frames[g:] + [tail * sigmas[0] for tail in tails[it * g : (it + 1) * g]]
    return out


@pytest.mark.parametrize("name", LAYOUTS)
def test_matches_an_independent_reference_loop(name):
    layout = LAYOUTS[name]
    process = GaussianVideo(FLOW, rho=0.9)
    sigmas = flow_sigmas(layout.levels)
    clip = process.sample(1, layout.window, torch.Generator().manual_seed(1))
    total = 30
    ours = dict(continue_clip(process.denoise, clip, sigmas, layout, total, torch.Generator().manual_seed(7)))

    # replay the draws: the initial queue, then one tail frame per iteration
    gen = torch.Generator().manual_seed(7)
    queue, warmup = initial_queue(clip, sigmas, layout, FLOW, gen)
    tails = [fresh_noise((1, 2, 1, 3, 4), gen, queue)[:, :, 0] for _ in range(warmup + total)]
    reference = reference_fifo(process, queue, sigmas, layout.window, layout.partitions, layout.lookahead, warmup + total, tails)

    # the reference never drains its queue: frames match until ours starts flushing
    unaffected_by_flush = warmup + total - layout.levels + 1
    assert unaffected_by_flush > layout.levels
    for position in range(unaffected_by_flush):
        torch.testing.assert_close(ours[position - warmup], reference[position], rtol=0, atol=1e-5)


def test_flushed_frames_are_finished():
    # the last frames leave the queue at the clean end of the schedule, like every other frame
    layout = LAYOUTS["DD+LP+LD"]
    process = GaussianVideo(FLOW, rho=0.9)
    out = queue_run(process, layout, 15)
    levels_seen = [levels for _, levels, _ in process.calls]
    assert min(float(lv.min()) for lv in levels_seen) == 0.0  # only the lookahead context is clean
    assert len(out) == layout.levels - layout.window + 15
    assert [i for i, _ in out][-15:] == list(range(15))


# ---------------------------------------------------------------- counts (docs/algorithms.md §1.5)


@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("num_frames", [1, 5, 40])
def test_model_calls_and_frames_per_call_follow_the_spec(name, num_frames):
    layout = LAYOUTS[name]
    process = GaussianVideo(FLOW, rho=0.5)
    out = queue_run(process, layout, num_frames)
    f, n, S = layout.window, layout.partitions, layout.levels
    windows_per_iteration = 2 * n if layout.lookahead else n
    iterations = num_frames + S - f  # docs/algorithms.md §1.5: N + S - f
    assert len(out) == iterations
    assert sum(1 for index, _ in out if index >= 0) == num_frames

    # the official loop makes every iteration a full set of windows; draining the queue skips the
    # windows whose written slots are already gone
    official = iterations * windows_per_iteration
    in_flight = [min(S, iterations - i) for i in range(iterations)]
    region = f // 2 if layout.lookahead else f
    skipped = sum(windows_per_iteration - math.ceil(live / region) for live in in_flight)
    assert len(process.calls) == official - skipped
    # f frames per call to the end: while the queue drains, its finished frames stay in front as clean
    # context (docs/algorithms.md §1.5); only a run shorter than the queue has fewer frames to show
    queue_frames = layout.context_slots + min(S, iterations)
    expected_lengths = [min(f, queue_frames) for live in in_flight for _ in range(math.ceil(live / region))]
    assert [shape[2] for shape, _, _ in process.calls] == expected_lengths


# ---------------------------------------------------------------- batching, determinism, prompts


@pytest.mark.parametrize("name", LAYOUTS)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_batched_windows_give_the_same_frames_in_fewer_calls(name, eta):
    layout = LAYOUTS[name]
    one_by_one, batched = GaussianVideo(FLOW), GaussianVideo(FLOW)
    a = queue_run(one_by_one, layout, 12, eta=eta)
    b = queue_run(batched, layout, 12, eta=eta, batch_windows=True)
    for (i, x), (j, y) in zip(a, b):
        assert i == j
        torch.testing.assert_close(x, y, rtol=0, atol=1e-5)
    if len(layout.windows()) > 1:
        assert len(batched.calls) < len(one_by_one.calls)
    assert sum(s[0] for s, _, _ in batched.calls) == sum(s[0] for s, _, _ in one_by_one.calls)


def test_same_seed_same_bits_other_seed_other_video():
    layout = LAYOUTS["DD+LP+LD"]
    a = queue_run(GaussianVideo(FLOW), layout, 10, seed=3, eta=1.0)
    b = queue_run(GaussianVideo(FLOW), layout, 10, seed=3, eta=1.0)
    c = queue_run(GaussianVideo(FLOW), layout, 10, seed=4, eta=1.0)
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a, b))
    assert not torch.equal(a[-1][1], c[-1][1])


def test_prompt_changes_travel_down_the_queue():
    layout = QueueLayout(4, 2)
    process = GaussianVideo(FLOW, prompt_means=(0.0, 3.0))
    boundary = 10
    seen = []

    def denoise(x, levels, prompt, frames):
        seen.append((levels.clone(), prompt))
        return process.denoise(x, levels, prompt, frames)

    gen = torch.Generator().manual_seed(0)
    clip = process.sample(1, 4, gen)
    out = dict(continue_clip(denoise, clip, flow_sigmas(8), layout, 24, gen, prompt_of_frame=lambda k: int(k >= boundary)))
    # the new prompt enters at the tail: the first call with it works on the noisiest window
    first_new = next(i for i, (_, p) in enumerate(seen) if p == 1)
    assert float(seen[first_new][0].max()) == 1.0
    # a frame well before the boundary is made under the old prompt, one well after under the new
    assert out[boundary - layout.window].mean() < 1.0 < out[boundary + layout.window].mean()


def test_streaming_computes_frames_only_as_they_are_consumed():
    layout = LAYOUTS["DD+LP"]
    process = GaussianVideo(FLOW)
    gen = torch.Generator().manual_seed(0)
    clip = process.sample(1, 4, gen)
    frames = continue_clip(process.denoise, clip, flow_sigmas(12), layout, 1000, gen)
    next(frames)
    assert len(process.calls) == layout.partitions


def test_continuing_a_longer_clip_uses_its_last_frames_in_order():
    layout = QueueLayout(2, 2)
    clip = torch.arange(6.0).view(1, 1, 6, 1, 1).expand(1, 1, 6, 1, 1).contiguous()
    sigmas = flow_sigmas(4)
    queue, warmup = initial_queue(clip, sigmas, layout, FLOW, torch.Generator().manual_seed(0))
    noise = torch.randn(queue.shape, generator=torch.Generator().manual_seed(0))
    assert warmup == 0
    for slot, frame in enumerate([2.0, 3.0, 4.0, 5.0]):
        level = float(sigmas[3 - slot])
        torch.testing.assert_close(queue[:, :, slot], (1 - level) * frame + level * noise[:, :, slot])

import math

import pytest
import torch
from gaussian_video import GaussianVideo

from samplers.frame_levels import NoiseSpace, fresh_noise, sample_clip
from samplers.progressive_ar import ChunkLayout, call_count, chunk_schedule, chunks_in_window, generate

FLOW = NoiseSpace.RECTIFIED_FLOW
SPACES = [NoiseSpace.RECTIFIED_FLOW, NoiseSpace.VARIANCE_EXPLODING]


def linear_sigmas(steps):
    """The reference's untransformed levels tau_k = 1000 k / F, as sigmas in [0, 1]."""
    return torch.linspace(1.0, 0.0, steps + 1)


def schedule(space, steps):
    if space is NoiseSpace.RECTIFIED_FLOW:
        return torch.cat([torch.linspace(1.0, 0.05, steps), torch.zeros(1)])
    return torch.cat([torch.logspace(math.log10(40.0), -1.3, steps), torch.zeros(1)])


def run(process, layout, sigmas, num_frames, seed=0, **kw):
    shape = (kw.pop("batch", 1), process.shape[0], *process.shape[1:])
    clip = kw.pop("context", None)
    return list(
        generate(
            process.denoise,
            shape,
            sigmas,
            layout=layout,
            num_frames=num_frames,
            space=process.space,
            clip=clip,
            generator=torch.Generator().manual_seed(seed),
            **kw,
        )
    )


def video(chunks):
    return torch.cat([latent for _, latent in chunks], dim=2)


# ---------------------------------------------------------------- level table (docs/algorithms.md §2.1, §2.4)


def test_worked_example_two_latent_chunks_four_steps():
    # docs/algorithms.md §2.4: c=2, F=T=4 -> stage 0 [500,500,1000,1000], stage 1 [250,250,750,750]; L=12 latents take 12 steps
    process = GaussianVideo(FLOW)
    context = process.sample(1, 2, torch.Generator().manual_seed(1))
    chunks = run(process, ChunkLayout(chunk=2, window_chunks=2), linear_sigmas(4), num_frames=10, context=context)
    levels = [sigmas[0].tolist() for _, sigmas, _ in process.calls]
    assert len(levels) == 12
    steady = levels[2:-2]
    assert steady[0::2] == [[0, 0, 0.5, 0.5, 1, 1]] * 4
    assert all(torch.allclose(torch.tensor(row), torch.tensor([0, 0, 0.25, 0.25, 0.75, 0.75])) for row in steady[1::2])
    assert [index for index, _ in chunks] == [0, 2, 4, 6, 8]


def test_default_table_untransformed_and_with_the_reference_time_shift():
    # docs/algorithms.md §2.1: c=5, F=T=30, six noisy chunks; tau(j, s) = 1000 (c (j + 1) - s) / F
    layout, steps = ChunkLayout(chunk=5, window_chunks=6), 30
    steady_calls = [in_window for in_window in chunk_schedule(20, 6, steps) if len(in_window) == 6]
    for s in range(5):
        table = [steps - left for _, left in steady_calls[s]]
        assert [1000 * (1 - k / steps) for k in table] == pytest.approx([1000 * (5 * (j + 1) - s) / 30 for j in range(6)])

    # Open-Sora's transform for 240x426 and a 35-latent window: g(u) = r u / (1 + (r - 1) u)
    r = math.sqrt(240 * 426 / 512**2) * math.sqrt((119 // 17) * 5)
    base = linear_sigmas(steps)
    shifted = r * base / (1 + (r - 1) * base)
    layout.check_sigmas(shifted)
    stage0 = [1000 * float(shifted[steps - left]) for _, left in steady_calls[0]]
    stage4 = [1000 * float(shifted[steps - left]) for _, left in steady_calls[4]]
    assert stage0 == pytest.approx([424.9, 648.8, 787.0, 880.8, 948.6, 1000], abs=0.06)
    assert stage4 == pytest.approx([113.0, 480.2, 681.4, 808.5, 896.1, 960.0], abs=0.06)


@pytest.mark.parametrize("chunk,window_chunks,steps,latents", [(5, 6, 30, 425), (2, 2, 4, 12), (1, 4, 4, 9), (3, 2, 8, 15)])
def test_call_count_and_every_chunk_gets_all_steps_in_order(chunk, window_chunks, steps, latents):
    # docs/algorithms.md §2.3, §2.5: m (L/c + W' - 2) calls for L latents including the context chunk (445 for the defaults)
    generated = latents // chunk - 1
    shift = steps // window_chunks
    calls = list(chunk_schedule(generated, window_chunks, steps))
    assert len(calls) == shift * (latents // chunk + window_chunks - 2)
    seen = {}
    for call, in_window in enumerate(calls):
        assert [j for j, _ in in_window] == sorted(j for j, _ in in_window)
        assert len(in_window) <= window_chunks
        for j, left in in_window:
            seen.setdefault(j, []).append((call, left))
    assert sorted(seen) == list(range(generated))
    for j, history in seen.items():
        assert [left for _, left in history] == list(range(steps, 0, -1))
        assert [call for call, _ in history] == list(range(j * shift, j * shift + steps))


def test_the_defaults_take_445_steps():
    assert sum(1 for _ in chunk_schedule(84, 6, 30)) == 445


def test_steps_must_be_a_multiple_of_the_window_chunks():
    with pytest.raises(ValueError, match=r"10 steps, but the window holds 4 noisy chunks.*multiple of 4.*3 x 4 = 12 steps"):
        ChunkLayout(chunk=3, window_chunks=4).check_sigmas(linear_sigmas(10))
    with pytest.raises(ValueError, match="must not increase"):
        ChunkLayout(1, 2).check_sigmas(torch.tensor([0.5, 1.0, 0.0]))
    with pytest.raises(ValueError, match="at least 1 latent frame"):
        ChunkLayout(0, 2)


# ---------------------------------------------------------------- exactness with the Gaussian denoiser (docs/algorithms.md §2.5)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("with_context", [False, True])
@pytest.mark.parametrize("chunk,window_chunks,steps,num_frames", [(2, 3, 6, 11), (3, 2, 8, 9), (1, 4, 4, 6)])
def test_frame_independent_model_gives_plain_sampling_of_every_chunk(space, with_context, chunk, window_chunks, steps, num_frames):
    process = GaussianVideo(space, rho=0.0)
    sigmas = schedule(space, steps)
    context = process.sample(2, 4, torch.Generator().manual_seed(7)) if with_context else None
    chunks = run(process, ChunkLayout(chunk, window_chunks), sigmas, num_frames, seed=5, batch=2, context=context)

    draws = torch.Generator().manual_seed(5)
    assert [index for index, _ in chunks] == list(range(0, num_frames, chunk))
    for index, latent in chunks:
        noise = fresh_noise((2, *process.shape[:1], min(chunk, num_frames - index), *process.shape[1:]), draws, latent)
        torch.testing.assert_close(latent, sample_clip(process.denoise, noise, sigmas, space=space), rtol=0, atol=2e-5)


def test_exactly_the_requested_frames_with_a_partial_last_chunk():
    process = GaussianVideo(FLOW)
    chunks = run(process, ChunkLayout(4, 2), schedule(FLOW, 8), num_frames=10)
    assert [(index, latent.shape[2]) for index, latent in chunks] == [(0, 4), (4, 4), (8, 2)]
    assert video(chunks).isfinite().all()


def test_the_model_sees_the_clean_context_chunk_in_front():
    process = GaussianVideo(FLOW)
    context = process.sample(1, 7, torch.Generator().manual_seed(2))
    run(process, ChunkLayout(3, 2), schedule(FLOW, 4), num_frames=9, context=context)
    shapes = [shape[2] for shape, _, _ in process.calls]
    # the window grows 3+3 -> 3+6, stays full, then shrinks; every call has the 3 context frames
    assert shapes == [6, 6, 9, 9, 9, 9, 6, 6]
    assert all(bool((sigmas[0, :3] == 0).all()) and bool((sigmas[0, 3:] > 0).all()) for _, sigmas, _ in process.calls)


def test_the_context_steers_the_first_chunk():
    # strongly correlated frames: the first new frame must follow the context's last frame
    process = GaussianVideo(FLOW, rho=0.97, prompt_means=(0.0,), height=16, width=16)
    context = process.sample(4, 3, torch.Generator().manual_seed(3))
    first = video(run(process, ChunkLayout(2, 2), schedule(FLOW, 20), num_frames=2, seed=1, batch=4, context=context))[:, :, 0]
    alone = video(run(process, ChunkLayout(2, 2), schedule(FLOW, 20), num_frames=2, seed=1, batch=4))[:, :, 0]
    last = context[:, :, -1]
    correlation = torch.corrcoef(torch.stack([first.flatten(), last.flatten()]))[0, 1]
    assert correlation > 0.8
    assert torch.corrcoef(torch.stack([alone.flatten(), last.flatten()]))[0, 1].abs() < 0.2


# ---------------------------------------------------------------- prompts, determinism, streaming


def test_each_frame_is_made_under_its_own_prompt():
    process = GaussianVideo(FLOW, rho=0.0, prompt_means=(0.5, -2.0))
    sigmas = schedule(FLOW, 6)
    prompt_of_frame = lambda frame: 1 if 5 <= frame < 9 else 0  # noqa: E731 - switches inside a chunk
    chunks = run(process, ChunkLayout(2, 3), sigmas, 12, seed=4, prompt_of_frame=prompt_of_frame)
    sampler_calls = len(process.calls)

    draws = torch.Generator().manual_seed(4)
    for index, latent in chunks:
        noise = fresh_noise((1, *process.shape[:1], 2, *process.shape[1:]), draws, latent)
        for k in range(2):
            expected = sample_clip(process.denoise, noise[:, :, k : k + 1], sigmas, space=FLOW, prompt=prompt_of_frame(index + k))
            torch.testing.assert_close(latent[:, :, k : k + 1], expected, rtol=0, atol=2e-5)
    # one call per prompt present in the window
    expected_calls = sum(len({prompt_of_frame(2 * j + k) for j, _ in in_window for k in range(2)}) for in_window in chunk_schedule(6, 3, 6))
    assert sampler_calls == expected_calls > sum(1 for _ in chunk_schedule(6, 3, 6))


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_same_seed_same_bits_other_seed_other_video(eta):
    process = GaussianVideo(FLOW)
    one, two, other = (video(run(process, ChunkLayout(2, 2), schedule(FLOW, 4), 7, seed=seed, eta=eta)) for seed in (3, 3, 4))
    assert torch.equal(one, two)
    assert not torch.allclose(one, other)


def test_streaming_computes_chunks_only_as_they_are_consumed():
    process = GaussianVideo(FLOW)
    chunks = generate(process.denoise, (1, 2, 3, 4), schedule(FLOW, 6), layout=ChunkLayout(2, 3), num_frames=1000, space=FLOW)
    next(chunks)
    # the first chunk is out after its 6 steps; nothing beyond the window was computed
    assert len(process.calls) == 6
    assert max(shape[2] for shape, _, _ in process.calls) == 6


@pytest.mark.parametrize("num_chunks, window_chunks, steps", [(1, 1, 1), (5, 2, 4), (7, 3, 6), (20, 6, 30), (3, 4, 8)])
def test_the_window_at_any_call_follows_the_one_rule(num_chunks, window_chunks, steps):
    # docs/algorithms.md §2.2: chunk j enters before call j * m and takes the next T calls
    shift = steps // window_chunks
    for call in range(call_count(num_chunks, window_chunks, steps)):
        expected = [(j, steps - (call - j * shift)) for j in range(num_chunks) if j * shift <= call < j * shift + steps]
        assert chunks_in_window(call, num_chunks, window_chunks, steps) == expected

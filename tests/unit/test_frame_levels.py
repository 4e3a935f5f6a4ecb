import pytest
import torch
from gaussian_video import GaussianVideo, frames_from_zero

from samplers.frame_levels import NoiseSpace, add_noise, fresh_noise, sample_clip, step

SPACES = [NoiseSpace.RECTIFIED_FLOW, NoiseSpace.VARIANCE_EXPLODING]


def schedule(space, steps):
    top = 1.0 if space is NoiseSpace.RECTIFIED_FLOW else 80.0
    if space is NoiseSpace.RECTIFIED_FLOW:
        return torch.cat([torch.linspace(top, 0.02, steps), torch.zeros(1)])
    return torch.cat([torch.logspace(torch.log10(torch.tensor(top)), -1.5, steps), torch.zeros(1)])


@pytest.mark.parametrize("space", SPACES)
def test_equal_levels_reduce_to_plain_euler_sampling_of_a_clip(space):
    process = GaussianVideo(space, rho=0.8)
    sigmas = schedule(space, 8)
    noise = torch.randn(2, 2, 5, 3, 4, generator=torch.Generator().manual_seed(3))

    ours = sample_clip(process.denoise, noise, sigmas, space=space)

    x = noise * sigmas[0]
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        denoised = process.denoise(x, s.expand(2, 5), 0, frames_from_zero(x))
        x = x + (s_next - s) * (x - denoised) / s
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-5)


@pytest.mark.parametrize("space", SPACES)
def test_per_frame_step_equals_a_separate_step_per_frame(space):
    gen = torch.Generator().manual_seed(0)
    x, denoised, noise = (torch.randn(1, 2, 3, 2, 2, generator=gen) for _ in range(3))
    levels, levels_next = torch.tensor([[0.9, 0.5, 0.2]]), torch.tensor([[0.7, 0.3, 0.0]])
    for eta in (0.0, 1.0):
        together = step(x, denoised, levels, levels_next, space, eta, noise)
        for f in range(3):
            alone = step(x[:, :, f : f + 1], denoised[:, :, f : f + 1], levels[:, f : f + 1], levels_next[:, f : f + 1], space, eta, noise[:, :, f : f + 1])
            torch.testing.assert_close(together[:, :, f : f + 1], alone)


def test_finished_frames_are_left_alone():
    x = torch.randn(1, 1, 2, 2, 2)
    out = step(x, torch.zeros_like(x), torch.tensor([0.0, 0.5]), torch.tensor([0.0, 0.2]), NoiseSpace.RECTIFIED_FLOW, 1.0, torch.randn_like(x))
    assert torch.equal(out[:, :, 0], x[:, :, 0])
    assert not torch.equal(out[:, :, 1], x[:, :, 1])


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_sampling_with_the_exact_denoiser_reaches_the_data_distribution(space, eta):
    # frame-independent unit-variance data with mean 0.5: the sampler must land on those moments
    # (first-order samplers are biased by O(1/steps), hence the many steps)
    process = GaussianVideo(space, rho=0.0, height=32, width=32)
    gen = torch.Generator().manual_seed(1)
    noise = fresh_noise((4, 2, 2, 32, 32), gen, torch.zeros(1))
    out = sample_clip(process.denoise, noise, schedule(space, 400), space=space, eta=eta, generator=gen)
    assert abs(out.mean().item() - 0.5) < 0.03
    assert abs(out.var().item() - 1.0) < 0.06


@pytest.mark.parametrize("space", SPACES)
def test_add_noise_puts_each_frame_at_its_own_level(space):
    clean = torch.full((1, 1, 2, 1, 1), 2.0)
    noise = torch.ones_like(clean)
    noisy = add_noise(clean, noise, torch.tensor([0.0, 0.5]), space)
    assert noisy[0, 0, 0].item() == 2.0
    expected = 0.5 * 2.0 + 0.5 if space is NoiseSpace.RECTIFIED_FLOW else 2.5
    assert noisy[0, 0, 1].item() == pytest.approx(expected)

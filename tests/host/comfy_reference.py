"""ComfyUI's own sampling nodes as the reference for the numbers of the long-video samplers.

In settings where a long-video sampler does what plain sampling does (a window of one frame, or one
noisy chunk behind a clean one), its output must be what ComfyUI's SamplerCustomAdvanced with the
euler sampler makes from the same noise, model, prompts and sigmas.
"""

import torch
from pack_access import call_node


class GivenNoise:
    """A NOISE input (what RandomNoise outputs) that hands SamplerCustomAdvanced a given tensor."""

    seed = 0

    def __init__(self, noise: torch.Tensor):
        self.noise = noise

    def generate_noise(self, latent: dict) -> torch.Tensor:
        return self.noise


def guider_of_sampler_inputs(host, sampler_inputs: dict):
    """ComfyUI's CFGGuider for the model, prompts and cfg wired into a sampler node of the last prompt."""
    model, positive, negative = (host.node_output(*sampler_inputs[name]) for name in ("model", "positive", "negative"))
    return call_node(host, "CFGGuider", model=model, positive=positive, negative=negative, cfg=sampler_inputs["cfg"])[0]


def empty_latent(guider, shape) -> torch.Tensor:
    """A LATENT's samples that are zero where the model samples (after the latent format's scaling and shift)."""
    return guider.model_patcher.model.process_latent_out(torch.zeros(shape))


def comfy_euler(host, guider, sigmas, noise, latent_image, noise_mask=None) -> torch.Tensor:
    """SamplerCustomAdvanced with euler on ``latent_image`` from ``noise``; a noise mask of 0 keeps frames as given."""
    latent = {"samples": latent_image}
    if noise_mask is not None:
        latent["noise_mask"] = noise_mask
    sampler = call_node(host, "KSamplerSelect", sampler_name="euler")[0]
    with torch.inference_mode():  # as ComfyUI runs every node
        output = call_node(host, "SamplerCustomAdvanced", noise=GivenNoise(noise), guider=guider, sampler=sampler, sigmas=sigmas, latent_image=latent)[0]
    return output["samples"]


def seeded_frames(seed: int, shape):
    """Draw unit noise of ``frames`` latent frames at a time, as the samplers draw it from their seed."""
    generator = torch.Generator().manual_seed(seed)
    batch, channels, _, height, width = shape
    return lambda frames: torch.randn((batch, channels, frames, height, width), generator=generator)


def assert_matches_reference(ours: torch.Tensor, reference: torch.Tensor) -> None:
    # batched per-frame calls against one plain call per frame differ by float32 round-off (up to
    # 5e-6 of the values here), far below what a wrong level, noise or frame order makes
    assert ours.shape == reference.shape
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-4 * reference.abs().max().item())

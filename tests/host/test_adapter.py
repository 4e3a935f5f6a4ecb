"""The per-frame adapter on tiny real models loaded through ComfyUI's own loaders."""

import pytest
import torch
from pack_access import call_node, fake_conditioning, load_family, pack_module, random_latent, text_width

FAMILIES = ["ltxv", "wan21", "wan22_5b", "cosmos_predict2"]
# Cosmos Predict2 modulates every token with its frame's timestep embedding after an RMSNorm, so even
# at random weights a frame feels the other frames' levels through attention (about 1e-3): no plain
# call reproduces a mixed window there. test_the_network_sees_each_frame_at_its_own_level covers it.
PLAIN_REFERENCE_FAMILIES = ["ltxv", "wan21", "wan22_5b"]
# measured on the tiny random-weight models: the uniform-level correction is exact to float error;
# with mixed levels a frame also feels the other frames' timesteps through attention, which the
# tiny random models keep below this bound
EXACT = 2e-5
MIXED = 5e-5


def mixed_and_plain(host, names, family, levels):
    adapter = pack_module("nodes.adapter")
    model, shape = load_family(host, names, family)
    width = text_width(family)
    guider = adapter.prompt_guider(model, [fake_conditioning(host, 1, width)], fake_conditioning(host, 2, width), 3.0)
    x = random_latent(shape)
    got = {}

    def body(denoise, sigmas):
        got["family"] = denoise.family.name
        got["mixed"] = denoise(x, levels[None], 0, torch.arange(x.shape[2])[None]).cpu()
        # a plain ComfyUI call (no per-frame machinery) on the whole clip at each frame's level
        plain = guider.model_options
        got["plain"] = [guider(x, level.reshape(1), model_options=plain, seed=0).cpu() for level in levels]

    adapter.run_with_framewise_denoiser(guider, shape, torch.tensor([1.0, 0.0]), 0, body)
    return got


@pytest.mark.parametrize("family", FAMILIES)
def test_uniform_levels_equal_a_plain_call(comfy_inprocess, tiny_model_names, family):
    levels = torch.full((5,), 0.4)
    got = mixed_and_plain(comfy_inprocess, tiny_model_names, family, levels)
    torch.testing.assert_close(got["mixed"], got["plain"][0], rtol=0, atol=EXACT)


@pytest.mark.parametrize("family", PLAIN_REFERENCE_FAMILIES)
def test_mixed_levels_equal_plain_calls_frame_by_frame(comfy_inprocess, tiny_model_names, family):
    levels = torch.tensor([0.95, 0.7, 0.45, 0.2, 0.05])
    got = mixed_and_plain(comfy_inprocess, tiny_model_names, family, levels)
    worst = 0.0
    for f, plain in enumerate(got["plain"]):
        error = (got["mixed"][:, :, f] - plain[:, :, f]).abs().max().item()
        worst = max(worst, error)
        assert error < MIXED, f"{got['family']} frame {f} at sigma {levels[f]:.2f}: max abs error {error:.2e}"
    # the check has teeth: the frame at the lowest level is far from what the window's top level gives
    naive = (got["plain"][0][:, :, 4] - got["plain"][4][:, :, 4]).abs().max().item()
    assert naive > 100 * max(worst, 1e-6)
    print(f"{got['family']}: worst per-frame error {worst:.2e} (levels far apart differ by {naive:.2e})")


def network_view(host, names, family, levels):
    """A mixed-level call's x0, with the input, timestep and output its network saw and gave."""
    import comfy.patcher_extension as patcher_extension

    adapter = pack_module("nodes.adapter")
    model, shape = load_family(host, names, family)
    width = text_width(family)
    # cfg 1: ComfyUI makes a single conditional call, so the network output is the whole prediction
    guider = adapter.prompt_guider(model, [fake_conditioning(host, 1, width)], fake_conditioning(host, 2, width), 1.0)
    x = random_latent(shape)
    seen = {}

    def capture(executor, network_input, timestep, *args, **kwargs):
        output = executor(network_input, timestep, *args, **kwargs)
        seen.update(input=network_input.float().cpu(), timestep=timestep.float().cpu(), output=output.float().cpu())
        return output

    def body(denoise, sigmas):
        # added after the adapter's own wrapper, so it runs inside it and sees the final timestep
        patcher_extension.add_wrapper_with_key(
            patcher_extension.WrappersMP.DIFFUSION_MODEL, "test.capture", capture, denoise.model_options, is_model_options=True
        )
        seen["x0"] = denoise(x, levels[None], 0, torch.arange(x.shape[2])[None]).cpu()
        seen["model_sampling"] = denoise.model_sampling

    adapter.run_with_framewise_denoiser(guider, shape, torch.tensor([1.0, 0.0]), 0, body)
    return x, seen


@pytest.mark.parametrize("family", FAMILIES)
def test_the_network_sees_each_frame_at_its_own_level(comfy_inprocess, tiny_model_names, family):
    levels = torch.tensor([0.95, 0.7, 0.45, 0.2, 0.05])
    x, seen = network_view(comfy_inprocess, tiny_model_names, family, levels)
    ms = seen["model_sampling"]
    frames = x.movedim(2, 0)  # frames first: ComfyUI's formulas take one sigma per leading row
    # extra input channels after the latent's are the family's concat conditioning
    input_error = (seen["input"][:, : x.shape[1]] - ms.calculate_input(levels, frames).movedim(0, 2)).abs().max().item()
    timestep = seen["timestep"].reshape(x.shape[0], len(levels), -1)
    timestep_error = (timestep - ms.timestep(levels)[None, :, None]).abs().max().item()
    x0 = ms.calculate_denoised(levels, seen["output"].movedim(2, 0), frames).movedim(0, 2)
    x0_error = (seen["x0"] - x0).abs().max().item()
    print(f"{family}: input {input_error:.1e}, timestep {timestep_error:.1e} (of {timestep.max():.3g}), x0 {x0_error:.1e}")
    assert input_error < 1e-6
    assert timestep_error < 1e-6 * max(1.0, timestep.max().item())
    assert x0_error < EXACT


def test_cosmos_predict2_marks_the_clean_frames_of_a_window_as_given(comfy_inprocess, tiny_model_names):
    levels = torch.tensor([0.0, 0.0, 0.9, 0.5, 0.2])
    x, seen = network_view(comfy_inprocess, tiny_model_names, "cosmos_predict2", levels)
    marks = seen["input"][:, x.shape[1] :]
    assert marks.shape[1] == 1
    torch.testing.assert_close(marks, (levels == 0).float().view(1, 1, -1, 1, 1).expand_as(marks), rtol=0, atol=0)
    assert (seen["timestep"][:, :2] == 0).all() and (seen["timestep"][:, 2:] > 0).all()
    torch.testing.assert_close(seen["x0"][:, :, :2], x[:, :, :2], rtol=0, atol=1e-6)


def test_families_are_named(comfy_inprocess, tiny_model_names):
    adapter = pack_module("nodes.adapter")
    names = {family: adapter.model_family(load_family(comfy_inprocess, tiny_model_names, family)[0].model).name for family in FAMILIES}
    assert names == {"ltxv": "LTX-Video", "wan21": "Wan 2.1 / Wan 2.2 A14B", "wan22_5b": "Wan 2.2 TI2V-5B", "cosmos_predict2": "Cosmos Predict2"}


def test_an_unsupported_model_gets_a_clear_error(comfy_inprocess, tiny_model_names):
    adapter = pack_module("nodes.adapter")
    model = call_node(comfy_inprocess, "UNETLoader", unet_name=tiny_model_names["unsupported_video"], weight_dtype="default")[0]
    with pytest.raises(adapter.UnsupportedModelError) as error:
        adapter.model_family(model.model)
    message = str(error.value)
    assert type(model.model).__name__ in message
    assert "noise level per frame" in message and "Wan 2.1" in message and "LTX-Video" in message


@pytest.mark.parametrize("causal", [True, False], ids=["causal positions", "tiny LTXV's own"])
def test_ltxv_windows_after_the_videos_first_frame_are_placed_as_in_the_middle_of_the_video(comfy_inprocess, tiny_model_names, monkeypatch, causal):
    """LTX-Video checkpoints whose config sets causal temporal positioning (ComfyUI reads it from the file) make a
    call's first latent frame one pixel frame: a window that starts later is placed non-causally, every frame 8
    pixel frames, as in a call on the whole video; the tiny LTXV's config leaves it off, so both are one call."""
    from comfy.ldm.lightricks.model import LTXVModel

    adapter = pack_module("nodes.adapter")
    model, shape = load_family(comfy_inprocess, tiny_model_names, "ltxv")
    if causal:
        model = model.clone()
        model.add_object_patch("diffusion_model.causal_temporal_positioning", True)
    prepare = LTXVModel._prepare_positional_embeddings
    calls = []

    def recording(self, pixel_coords, frame_rate, x_dtype):
        calls.append([row[0, :: shape[3] * shape[4]].tolist() for row in pixel_coords])  # each row's frames' [start, end] pixel frames
        return prepare(self, pixel_coords, frame_rate, x_dtype)

    monkeypatch.setattr(LTXVModel, "_prepare_positional_embeddings", recording)
    width = text_width("ltxv")
    guider = adapter.prompt_guider(model, [fake_conditioning(comfy_inprocess, 1, width)], fake_conditioning(comfy_inprocess, 2, width), 1.0)
    x = torch.cat([random_latent(shape, 0), random_latent(shape, 1)])
    frames = torch.stack([torch.arange(5), torch.arange(3, 8)])
    adapter.run_with_framewise_denoiser(
        guider, (2, *shape[1:]), torch.tensor([1.0, 0.0]), 0, lambda denoise, sigmas: denoise(x, torch.full((2, 5), 0.5), 0, frames)
    )
    later = [[8 * f, 8 * f + 8] for f in range(5)]
    if causal:
        assert calls == [[[[0, 1], [1, 9], [9, 17], [17, 25], [25, 33]]], [later]]
    else:
        assert calls == [[later, later]]

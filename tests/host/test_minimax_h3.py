"""MiniMax H3 on tiny real models: ComfyUI's loaders, per-row noise levels for video and sound, one row per call.

H3 packs a video latent [1, 24, F, H, W] and an audio latent [1, 32, 2, A] (stereo, 40 audio latent
frames per second) into one; its transformer labels every row from masks and takes a batch of one.
"""

import logging

import pytest
import torch
from pack_access import call_node, fake_conditioning, pack_module, random_latent

H3_TEXT_WIDTH = 5120  # Qwen3-VL-32B, the width of the tiny H3's text projection
# 22 frames at 24 fps (H3's 17k + 5 grid): 7 latent frames spanning 1, 4, 4, 4, 4, 1, 4 frames, and 37 audio frames
VIDEO = (1, 24, 7, 4, 4)
AUDIO = (1, 32, 2, 37)
PIXEL_FRAMES_OF_LATENT = (1, 4, 4, 4, 4)  # comfy.ldm.minimax.model.FRAME_PER_TOKEN, repeating
AUDIO_FRAMES_PER_PIXEL_FRAME = 40 / 24
MIXED = torch.tensor([0.95, 0.85, 0.7, 0.55, 0.4, 0.2, 0.05])
# measured on the tiny H3 (its time embedding and output modulation strong, its blocks' modulation weak,
# see tiny_models.H3_STDS): uniform levels agree to float error; in a mixed window a row feels the other
# rows' labels and the text tokens' (modulated at the window's top level) through attention: at most
# 1.8e-5 (video) and 1.3e-4 (audio), while a row given a wrong label is off by 1e-2 and more
EXACT = 1e-6
MIXED_VIDEO = 5e-5
MIXED_AUDIO = 5e-4


def sounding_frame(video_frames: int, audio_frames: int) -> torch.Tensor:
    """For each audio latent frame, the video latent frame it sounds with, on H3's timeline: video frame
    k starts at 40/24 x (its first pixel frame) audio frames, as the transformer places them, and audio
    latent frame j spans [j, j + 1): the frame that covers most of it (the samplers' packing does the same)."""
    starts, position = [], 0.0
    for k in range(video_frames):
        starts.append(position)
        position += PIXEL_FRAMES_OF_LATENT[k % 5] * AUDIO_FRAMES_PER_PIXEL_FRAME
    return torch.tensor([max(k for k, start in enumerate(starts) if start <= j + 0.5) for j in range(audio_frames)])


def h3_guider(host, names, cfg=3.0):
    adapter = pack_module("nodes.adapter")
    model = call_node(host, "UNETLoader", unet_name=names["minimax_h3"], weight_dtype="default")[0]
    positive, negative = (fake_conditioning(host, seed, H3_TEXT_WIDTH) for seed in (1, 2))
    return adapter.prompt_guider(model, [positive], negative, cfg)


def inside_sampling(guider, body, rows=1):
    adapter = pack_module("nodes.adapter")
    adapter.run_with_framewise_denoiser(guider, (rows, *VIDEO[1:]), torch.tensor([1.0, 0.0]), 0, body, sound_shape=(rows, *AUDIO[1:]))


def plain_call(guider, video, audio, level: float):
    """x0 of both streams from an ordinary ComfyUI call on the packed latent at one sigma."""
    import comfy.utils

    packed, shapes = comfy.utils.pack_latents([video, audio])
    denoised = guider(packed, torch.tensor([level]), model_options=guider.model_options, seed=0)
    return [stream.cpu() for stream in comfy.utils.unpack_latents(denoised, shapes)]


def mixed_and_plain(host, names, video_levels):
    guider = h3_guider(host, names)
    video, audio = random_latent(VIDEO, 0), random_latent(AUDIO, 1)
    audio_levels = video_levels[sounding_frame(VIDEO[2], AUDIO[3])]
    got = {}

    def body(denoise, _sigmas):
        got["family"] = denoise.family
        got["mixed"] = [stream.cpu() for stream in denoise.denoise_audio_video(video, video_levels[None], audio, audio_levels[None])]
        got["plain"] = {level: plain_call(guider, video, audio, level) for level in sorted(set(video_levels.tolist()))}

    inside_sampling(guider, body)
    return video, audio, audio_levels, got


def test_tiny_h3_files_load_through_comfyuis_loaders(comfy_inprocess, tiny_model_names):
    import comfy.ldm.minimax.audio_vae
    import comfy.model_base
    import comfy.taesd.taehv

    host = comfy_inprocess
    model = call_node(host, "UNETLoader", unet_name=tiny_model_names["minimax_h3"], weight_dtype="default")[0]
    assert type(model.model) is comfy.model_base.MiniMaxH3
    sampling = model.get_model_object("model_sampling")
    assert (sampling.shift, sampling.audio_shift, sampling.audio_scale) == (12.0, 3.0, 4.0)

    vae = call_node(host, "VAELoader", vae_name=tiny_model_names["taeh3"])[0]
    assert isinstance(vae.first_stage_model, comfy.taesd.taehv.TAEHV) and vae.first_stage_model.is_h3
    frames = torch.rand(22, 64, 64, 3, generator=torch.Generator().manual_seed(0))
    latent = call_node(host, "VAEEncode", pixels=frames, vae=vae)[0]
    assert latent["samples"].shape == VIDEO
    assert call_node(host, "VAEDecode", samples=latent, vae=vae)[0].shape == (22, 64, 64, 3)

    audio_vae = call_node(host, "VAELoader", vae_name=tiny_model_names["minimax_h3_audio_vae"])[0]
    assert isinstance(audio_vae.first_stage_model, comfy.ldm.minimax.audio_vae.MiniMaxH3AudioVAE)
    tone = torch.sin(torch.arange(3200) / 32000 * 2 * torch.pi * 440).expand(1, 2, -1).contiguous()
    audio_latent = call_node(host, "VAEEncodeAudio", audio={"waveform": tone, "sample_rate": 32000}, vae=audio_vae)[0]
    assert audio_latent["samples"].shape == (1, 32, 2, 4)  # 800 samples per audio latent frame
    sound = call_node(host, "VAEDecodeAudio", samples=audio_latent, vae=audio_vae)[0]
    assert sound["sample_rate"] == 32000 and sound["waveform"].shape == (1, 2, 3200)


def test_h3_is_a_family_that_takes_one_row_per_call(comfy_inprocess, tiny_model_names):
    adapter = pack_module("nodes.adapter")
    model = call_node(comfy_inprocess, "UNETLoader", unet_name=tiny_model_names["minimax_h3"], weight_dtype="default")[0]
    family = adapter.model_family(model.model)
    assert (family.name, family.one_row_per_call) == ("MiniMax H3", True)


def test_uniform_levels_equal_a_plain_call(comfy_inprocess, tiny_model_names):
    levels = torch.full((VIDEO[2],), 0.4)
    _, _, _, got = mixed_and_plain(comfy_inprocess, tiny_model_names, levels)
    for stream, plain in zip(got["mixed"], got["plain"][levels[0].item()]):
        torch.testing.assert_close(stream, plain, rtol=0, atol=EXACT)


def test_mixed_levels_equal_plain_calls_frame_by_frame_for_video_and_sound(comfy_inprocess, tiny_model_names):
    video, audio, audio_levels, got = mixed_and_plain(comfy_inprocess, tiny_model_names, MIXED)
    (video_x0, audio_x0), plain = got["mixed"], got["plain"]
    top = MIXED.max().item()
    worst_video = worst_audio = 0.0
    wrong_label = []  # how far a row is from its plain call when the network labels it at the window's top level
    for f, level in enumerate(MIXED.tolist()):
        error = (video_x0[:, :, f] - plain[level][0][:, :, f]).abs().max().item()
        worst_video = max(worst_video, error)
        assert error < MIXED_VIDEO, f"video frame {f} at sigma {level:.2f}: max abs error {error:.2e}"
        if level < top:
            output_at_top, output_at_own = ((video - plain[s][0]) / s for s in (top, level))
            wrong_label.append(level * (output_at_top - output_at_own)[:, :, f].abs().max().item())
    for j, level in enumerate(audio_levels.tolist()):
        error = (audio_x0[..., j] - plain[level][1][..., j]).abs().max().item()
        worst_audio = max(worst_audio, error)
        assert error < MIXED_AUDIO, f"audio frame {j} at sigma {level:.2f}: max abs error {error:.2e}"
    # the check has teeth: every row's own label matters far more than the coupling the bounds allow
    assert min(wrong_label) > 20 * MIXED_VIDEO
    print(
        f"H3 mixed window: worst video error {worst_video:.2e}, worst audio error {worst_audio:.2e}; a wrong label costs {min(wrong_label):.2e} to {max(wrong_label):.2e}"
    )


def test_the_transformer_labels_each_row_at_its_own_level_and_sees_its_own_audio(comfy_inprocess, tiny_model_names):
    """What reaches the transformer, as ComfyUI's H3 reads it: row labels 1 - m sigma (video) and 1 - m sigma_a (audio), and
    the audio latent carried at the row's own level; clean rows (context) keep their values."""
    import comfy.patcher_extension as patcher_extension
    from comfy.ldm.minimax.model import time_shift_sigma

    guider = h3_guider(comfy_inprocess, tiny_model_names, cfg=1.0)
    video_levels = torch.tensor([0.0, 0.0, 0.9, 0.7, 0.5, 0.3, 0.1])
    audio_levels = video_levels[sounding_frame(VIDEO[2], AUDIO[3])]
    video, audio = random_latent(VIDEO, 0), random_latent(AUDIO, 1)
    seen = {}

    def capture(executor, x, timestep, context, *args, **kwargs):
        seen.update(
            audio=x[1].cpu(), sigma=float(timestep.flatten()[0]) / 1000, video_mask=kwargs["denoise_mask"].cpu(), audio_mask=kwargs["audio_denoise_mask"].cpu()
        )
        return executor(x, timestep, context, *args, **kwargs)

    def body(denoise, _sigmas):
        # added after the adapter's wrapper, so it runs inside it and sees what the transformer gets
        patcher_extension.add_wrapper_with_key(
            patcher_extension.WrappersMP.DIFFUSION_MODEL, "test.capture", capture, denoise.model_options, is_model_options=True
        )
        seen["x0"] = [stream.cpu() for stream in denoise.denoise_audio_video(video, video_levels[None], audio, audio_levels[None])]

    inside_sampling(guider, body)
    top = video_levels.max().item()
    assert seen["sigma"] == pytest.approx(top)
    video_labels = 1 - seen["video_mask"][0, 0, :, 0, 0] * top
    torch.testing.assert_close(video_labels, 1 - video_levels, rtol=0, atol=1e-6)
    own_audio_sigma = time_shift_sigma(audio_levels, 12.0, 3.0)
    audio_labels = 1 - seen["audio_mask"][0, 0, 0] * time_shift_sigma(torch.tensor(top), 12.0, 3.0)
    torch.testing.assert_close(audio_labels, 1 - own_audio_sigma, rtol=0, atol=1e-6)
    # the sampler carries the audio as c = sigma / sigma_a x audio; the row's own latent is c x sigma_a / sigma at its level
    own_factor = torch.where(audio_levels > 0, own_audio_sigma / audio_levels.clamp(min=1e-12), torch.tensor(3.0 / 12.0))
    torch.testing.assert_close(seen["audio"], audio * own_factor, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(seen["x0"][0][:, :, :2], video[:, :, :2], rtol=0, atol=0)
    clean_audio = audio_levels == 0
    torch.testing.assert_close(seen["x0"][1][..., clean_audio], audio[..., clean_audio], rtol=0, atol=0)


def test_comfyuis_h3_refuses_a_batch_so_windows_are_denoised_one_by_one(comfy_inprocess, tiny_model_names):
    guider = h3_guider(comfy_inprocess, tiny_model_names)
    video = torch.cat([random_latent(VIDEO, 0), random_latent(VIDEO, 2)])
    audio = torch.cat([random_latent(AUDIO, 1), random_latent(AUDIO, 3)])
    levels = torch.stack([MIXED, MIXED.flip(0)])
    audio_levels = levels[:, sounding_frame(VIDEO[2], AUDIO[3])]
    got = {}

    def body(denoise, _sigmas):
        with pytest.raises(ValueError, match="MiniMax H3 supports batch size 1"):
            plain_call(guider, video, audio, 0.5)
        got["both"] = denoise.denoise_audio_video(video, levels, audio, audio_levels)
        got["each"] = [denoise.denoise_audio_video(video[n : n + 1], levels[n : n + 1], audio[n : n + 1], audio_levels[n : n + 1]) for n in range(2)]

    inside_sampling(guider, body, rows=2)
    for stream in range(2):
        torch.testing.assert_close(got["both"][stream], torch.cat([each[stream] for each in got["each"]]), rtol=0, atol=0)


def test_the_samplers_run_h3_windows_one_per_call_and_say_so_when_batched(comfy_inprocess, tiny_model_names, caplog):
    run = pack_module("nodes.adapter.run")
    adapter = pack_module("nodes.adapter")
    model = call_node(comfy_inprocess, "UNETLoader", unet_name=tiny_model_names["minimax_h3"], weight_dtype="default")[0]
    family = adapter.model_family(model.model)
    layout = type("Layout", (), {"windows_per_iteration": 4, "frames_per_call": VIDEO[2]})()
    video = torch.zeros(VIDEO)
    with caplog.at_level(logging.WARNING):
        assert not run._batch_windows("auto", model, layout, video, family, VIDEO[2])
        assert not caplog.records
        assert not run._batch_windows("batched", model, layout, video, family, VIDEO[2])
    assert "MiniMax H3 takes one window per model call" in caplog.text

"""LTX-2 (ComfyUI's LTXAV) in the per-frame adapter, on the tiny LTX-2 checkpoint loaded by ComfyUI's own loaders.

LTX-2's LATENT packs a video latent [B, 128, F, H, W] and an audio latent [B, 8, A, 16] (25 audio latents
per second); ``process_timestep`` turns ``denoise_mask`` into per-token video timesteps and
``audio_denoise_mask`` into per-token audio timesteps.
"""

import pytest
import torch
from pack_access import call_node, pack_module, random_latent
from tiny_models import LTX2_TRANSFORMER, TINY_MODEL_FILES, ltx2_audio_vae

FRAME_RATE = 24
VIDEO = (1, 128, 5, 2, 2)  # 33 pixel frames: the first latent frame is 1 pixel frame, the others 8
PIXEL_FRAMES = 8 * (VIDEO[2] - 1) + 1
AUDIO = (1, 8, round(PIXEL_FRAMES / FRAME_RATE * 25), 16)  # ComfyUI's LTXVEmptyLatentAudio count: 34
# the width of what LTX-2's connectors give the transformer: video and audio context side by side
CONTEXT_WIDTH = 2 * LTX2_TRANSFORMER["caption_channels"]
MIXED = torch.tensor([0.95, 0.7, 0.45, 0.2, 0.05])
# measured on the tiny LTX-2: uniform levels agree to float error; in a mixed window a token feels the
# other tokens' levels through attention, and the audio-video cross-attention gates read the call's
# highest level (ComfyUI takes the max over the whole call): at most 1.9e-6 (video) and 2.0e-6 (audio),
# while far-apart levels differ by 0.4 (video) and 0.24 (audio)
EXACT = 2e-6
MIXED_VIDEO = 2e-5
MIXED_AUDIO = 2e-5


def first_unit(frame: int) -> int:
    """The first audio latent of a video latent frame: frame k >= 1 starts at pixel frame 8k - 7, and an audio
    latent lasts 1/25 s (LTXVEmptyLatentAudio's count for the frames before it)."""
    return 0 if frame <= 0 else round((8 * frame - 7) / FRAME_RATE * 25)


def owning_frame(audio_units: int, video_frames: int) -> torch.Tensor:
    return torch.tensor([max(k for k in range(video_frames) if first_unit(k) <= u) for u in range(audio_units)])


def ltx2_guider(host, cfg=3.0):
    adapter = pack_module("nodes.adapter")
    model = call_node(host, "CheckpointLoaderSimple", ckpt_name=TINY_MODEL_FILES["ltx2_ckpt"])[0]
    positive, negative = (call_node(host, "LongVideoTestConditioning", width=CONTEXT_WIDTH, tokens=8, seed=seed, scale=1.0)[0] for seed in (1, 2))
    positive, negative = call_node(host, "LTXVConditioning", positive=positive, negative=negative, frame_rate=float(FRAME_RATE))
    return adapter.prompt_guider(model, [positive], negative, cfg)


def inside_sampling(guider, body, rows=1):
    adapter = pack_module("nodes.adapter")
    adapter.run_with_framewise_denoiser(guider, (rows, *VIDEO[1:]), torch.tensor([1.0, 0.0]), 0, body, sound_shape=(rows, *AUDIO[1:]))


def plain_call(guider, video, audio, level: float):
    """x0 of both streams from an ordinary ComfyUI call on the packed latent at one sigma."""
    import comfy.utils

    packed, shapes = comfy.utils.pack_latents([video, audio])
    denoised = guider(packed, torch.tensor([level] * video.shape[0]), model_options=guider.model_options, seed=0)
    return [stream.cpu() for stream in comfy.utils.unpack_latents(denoised, shapes)]


def mixed_and_plain(host, video_levels):
    guider = ltx2_guider(host)
    video, audio = random_latent(VIDEO, 0), random_latent(AUDIO, 1)
    audio_levels = video_levels[owning_frame(AUDIO[2], VIDEO[2])]
    got = {}

    def body(denoise, _sigmas):
        got["family"] = denoise.family
        got["mixed"] = [stream.cpu() for stream in denoise.denoise_audio_video(video, video_levels[None], audio, audio_levels[None])]
        got["plain"] = {level: plain_call(guider, video, audio, level) for level in sorted(set(video_levels.tolist()))}

    inside_sampling(guider, body)
    return video, audio, audio_levels, got


def test_tiny_ltx2_loads_through_comfyuis_loaders_and_decodes_video_and_sound(comfy_inprocess):
    import comfy.ldm.lightricks.vae.audio_vae
    import comfy.model_base

    host = comfy_inprocess
    model, clip, vae = call_node(host, "CheckpointLoaderSimple", ckpt_name=TINY_MODEL_FILES["ltx2_ckpt"])
    assert type(model.model) is comfy.model_base.LTXAV and clip is None  # the text encoder is Gemma 3 12B, loaded apart
    audio_vae = ltx2_audio_vae(host)
    assert isinstance(audio_vae.first_stage_model, comfy.ldm.lightricks.vae.audio_vae.AudioVAE)
    assert audio_vae.first_stage_model.latents_per_second == 25
    video = call_node(host, "EmptyLTXVLatentVideo", width=64, height=64, length=PIXEL_FRAMES, batch_size=1)[0]
    audio = call_node(host, "LTXVEmptyLatentAudio", frames_number=PIXEL_FRAMES, frame_rate=FRAME_RATE, batch_size=1, audio_vae=audio_vae)[0]
    assert tuple(video["samples"].shape) == VIDEO and tuple(audio["samples"].shape) == AUDIO
    both = call_node(host, "LTXVConcatAVLatent", video_latent=video, audio_latent=audio)[0]
    video_part, audio_part = call_node(host, "LTXVSeparateAVLatent", av_latent=both)
    assert call_node(host, "VAEDecode", samples=video_part, vae=vae)[0].shape == (PIXEL_FRAMES, 64, 64, 3)
    sound = call_node(host, "LTXVAudioVAEDecode", samples=audio_part, audio_vae=audio_vae)[0]
    assert sound["sample_rate"] == 16000 and sound["waveform"].shape[:2] == (1, 2)


def test_ltx2_is_a_family_with_a_mask_for_each_stream(comfy_inprocess):
    adapter = pack_module("nodes.adapter")
    model = call_node(comfy_inprocess, "CheckpointLoaderSimple", ckpt_name=TINY_MODEL_FILES["ltx2_ckpt"])[0]
    family = adapter.model_family(model.model)
    assert (family.name, family.one_row_per_call, family.audio_time_dim) == ("LTX-2", False, 2)


def test_uniform_levels_equal_a_plain_call(comfy_inprocess):
    levels = torch.full((VIDEO[2],), 0.4)
    _, _, _, got = mixed_and_plain(comfy_inprocess, levels)
    for stream, plain in zip(got["mixed"], got["plain"][levels[0].item()]):
        torch.testing.assert_close(stream, plain, rtol=0, atol=EXACT)


def test_mixed_levels_equal_plain_calls_frame_by_frame_and_unit_by_unit(comfy_inprocess):
    video, audio, audio_levels, got = mixed_and_plain(comfy_inprocess, MIXED)
    (video_x0, audio_x0), plain = got["mixed"], got["plain"]
    worst_video = worst_audio = 0.0
    for f, level in enumerate(MIXED.tolist()):
        error = (video_x0[:, :, f] - plain[level][0][:, :, f]).abs().max().item()
        worst_video = max(worst_video, error)
        assert error < MIXED_VIDEO, f"video frame {f} at sigma {level:.2f}: max abs error {error:.2e}"
    for u, level in enumerate(audio_levels.tolist()):
        error = (audio_x0[:, :, u] - plain[level][1][:, :, u]).abs().max().item()
        worst_audio = max(worst_audio, error)
        assert error < MIXED_AUDIO, f"audio latent {u} at sigma {level:.2f}: max abs error {error:.2e}"
    # the check has teeth: the last frame and its sound at the window's top level are far from their own level's x0
    top, low = MIXED.max().item(), MIXED.min().item()
    naive_video = (plain[top][0][:, :, -1] - plain[low][0][:, :, -1]).abs().max().item()
    naive_audio = (plain[top][1][:, :, -1] - plain[low][1][:, :, -1]).abs().max().item()
    assert min(naive_video, naive_audio) > 100 * max(worst_video, worst_audio, 1e-7)
    print(
        f"LTX-2 mixed window: worst video error {worst_video:.2e}, worst audio error {worst_audio:.2e}; "
        f"levels far apart differ by {naive_video:.2e} (video), {naive_audio:.2e} (audio)"
    )


def test_the_transformer_gets_each_frames_and_each_audio_latents_own_timestep(comfy_inprocess):
    import comfy.patcher_extension as patcher_extension

    guider = ltx2_guider(comfy_inprocess, cfg=1.0)
    video_levels = torch.tensor([0.0, 0.9, 0.6, 0.3, 0.1])
    audio_levels = video_levels[owning_frame(AUDIO[2], VIDEO[2])]
    video, audio = random_latent(VIDEO, 0), random_latent(AUDIO, 1)
    seen = {}

    def capture(executor, x, timestep, *args, **kwargs):
        # LTXAV's forward hands the audio timestep on as a keyword
        seen["video_timestep"], seen["audio_timestep"] = timestep.float().cpu(), kwargs["a_timestep"].float().cpu()
        return executor(x, timestep, *args, **kwargs)

    def body(denoise, _sigmas):
        patcher_extension.add_wrapper_with_key(
            patcher_extension.WrappersMP.DIFFUSION_MODEL, "test.capture", capture, denoise.model_options, is_model_options=True
        )
        seen["x0"] = [stream.cpu() for stream in denoise.denoise_audio_video(video, video_levels[None], audio, audio_levels[None])]
        seen["model_sampling"] = denoise.model_sampling

    inside_sampling(guider, body)
    ms = seen["model_sampling"]
    tokens_per_frame = VIDEO[3] * VIDEO[4]
    video_timestep = seen["video_timestep"].reshape(VIDEO[2], tokens_per_frame)
    torch.testing.assert_close(video_timestep, ms.timestep(video_levels)[:, None].expand_as(video_timestep), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(seen["audio_timestep"].reshape(-1), ms.timestep(audio_levels), rtol=1e-6, atol=1e-6)
    # the clean frame and its sound come back as they went in
    torch.testing.assert_close(seen["x0"][0][:, :, :1], video[:, :, :1], rtol=0, atol=1e-6)
    clean = audio_levels == 0
    torch.testing.assert_close(seen["x0"][1][:, :, clean], audio[:, :, clean], rtol=0, atol=1e-6)


@pytest.mark.parametrize("rows", [2])
def test_windows_in_one_call_equal_windows_one_by_one(comfy_inprocess, rows):
    guider = ltx2_guider(comfy_inprocess)
    video = torch.cat([random_latent(VIDEO, 2 * n) for n in range(rows)])
    audio = torch.cat([random_latent(AUDIO, 2 * n + 1) for n in range(rows)])
    levels = torch.stack([MIXED, MIXED * 0.5])
    audio_levels = levels[:, owning_frame(AUDIO[2], VIDEO[2])]
    got = {}

    def body(denoise, _sigmas):
        got["both"] = denoise.denoise_audio_video(video, levels, audio, audio_levels)
        got["each"] = [denoise.denoise_audio_video(video[n : n + 1], levels[n : n + 1], audio[n : n + 1], audio_levels[n : n + 1]) for n in range(rows)]

    inside_sampling(guider, body, rows=rows)
    for stream in range(2):
        error = (got["both"][stream] - torch.cat([each[stream] for each in got["each"]])).abs().max().item()
        print(f"stream {stream}: windows batched vs one by one {error:.2e}")
        assert error < MIXED_VIDEO


# A window of the video's last frames, its sound from the first audio latent its first frame owns
WINDOW_START = 2
# RoPE sees only differences of positions, but in float32: its angles reach 10^4 rad, rounded to ~1e-3 rad, so
# shifting every position by the same 0.375 s moves x0 by up to 1.1e-4 (measured on the tiny LTX-2), while the
# positions a window had before (placed as the video's start) move it by {OLD}
SHIFTED_ROPE = 3e-4
SHARPEN = 30.0


class PositionRecorder:
    """What ComfyUI's LTXAV transformer turns into its positional embeddings, call by call: the time of every
    video token (its pixel frames over the frame rate) and every audio token, each [start, end] in seconds."""

    def __init__(self, transformer):
        self.transformer, self.calls = transformer, []
        self.prepare = transformer._prepare_positional_embeddings

    def __enter__(self):
        def recording(pixel_coords, frame_rate, x_dtype):
            video, audio = pixel_coords
            self.calls.append({"video_seconds": video[0, 0].cpu() / frame_rate, "audio_seconds": audio[0, 0].cpu()})
            return self.prepare(pixel_coords, frame_rate, x_dtype)

        self.transformer._prepare_positional_embeddings = recording
        return self

    def __exit__(self, *exc):
        del self.transformer._prepare_positional_embeddings


def whole_and_window_positions(host, positions_of_window):
    """The positions a call on the whole video and one on its frames from WINDOW_START (with their sound) are shown."""
    sound = pack_module("nodes.adapter.sound")
    guider = ltx2_guider(host, cfg=1.0)
    video, audio = random_latent(VIDEO, 0), random_latent(AUDIO, 1)
    levels, audio_levels = torch.full((1, VIDEO[2]), 0.6), torch.full((1, AUDIO[2]), 0.6)
    first = first_unit(WINDOW_START)

    def body(denoise, _sigmas):
        positions = positions_of_window(sound.SoundTimeline.of(denoise.model, [guider]))
        denoise.denoise_audio_video(video, levels, audio, audio_levels)
        denoise.denoise_audio_video(video[:, :, WINDOW_START:], levels[:, WINDOW_START:], audio[:, :, first:], audio_levels[:, first:], positions=positions)

    with PositionRecorder(guider.model_patcher.model.diffusion_model) as recorder:
        inside_sampling(guider, body)
    return recorder.calls


def shift_of(window: torch.Tensor, whole: torch.Tensor) -> torch.Tensor:
    """How far each token of the whole call sits from the same token in the window call, for its start and end."""
    return (whole - window).reshape(-1)


def test_a_window_later_in_the_video_gets_the_positions_of_its_frames_and_sound_in_the_whole_video(comfy_inprocess):
    whole, window = whole_and_window_positions(comfy_inprocess, lambda timeline: timeline.window_positions(WINDOW_START))
    first, tokens_per_frame = first_unit(WINDOW_START), VIDEO[3] * VIDEO[4]
    video_shift = shift_of(window["video_seconds"], whole["video_seconds"][WINDOW_START * tokens_per_frame :])
    audio_shift = shift_of(window["audio_seconds"], whole["audio_seconds"][first:])
    # one shift for every video token and every audio token, start and end: the 9 pixel frames before frame 2
    common = (8 * WINDOW_START - 7) / FRAME_RATE
    print(
        f"window from frame {WINDOW_START}: video shifted {video_shift.min():.6f}..{video_shift.max():.6f} s, "
        f"audio {audio_shift.min():.6f}..{audio_shift.max():.6f} s (the {8 * WINDOW_START - 7} pixel frames before it: {common:.6f} s)"
    )
    torch.testing.assert_close(video_shift, torch.full_like(video_shift, common), rtol=0, atol=1e-6)
    torch.testing.assert_close(audio_shift, torch.full_like(audio_shift, common), rtol=0, atol=1e-5)


def test_a_window_that_starts_the_video_keeps_the_models_own_positions(comfy_inprocess):
    sound = pack_module("nodes.adapter.sound")
    guider = ltx2_guider(comfy_inprocess)
    timeline = sound.SoundTimeline.of(guider.model_patcher.model, [guider])
    assert timeline.window_positions(0) is None and timeline.window_positions(-3) is None
    assert timeline.window_positions(1) is not None


def test_a_window_shown_as_if_it_started_the_video_is_not_at_its_whole_video_positions(comfy_inprocess):
    """The behaviour this replaces (every call placed as the video's start) moves the sound against the picture."""
    whole, window = whole_and_window_positions(comfy_inprocess, lambda timeline: None)
    first, tokens_per_frame = first_unit(WINDOW_START), VIDEO[3] * VIDEO[4]
    video_shift = shift_of(window["video_seconds"], whole["video_seconds"][WINDOW_START * tokens_per_frame :])
    audio_shift = shift_of(window["audio_seconds"], whole["audio_seconds"][first:])
    # from the window's second frame and second audio latent on, the picture is placed 7 pixel frames (0.29 s)
    # further back than its sound, within the rounding of the window's first audio latent (half a latent: 0.02 s)
    lag = (video_shift[2 * tokens_per_frame :].mean() - audio_shift[2:].mean()).item()
    print(f"window placed as the video's start: the sound trails the picture by {lag:.3f} s")
    assert abs(lag - 7 / FRAME_RATE) < 0.02

"""MiniMax H3 (video and its sound) through both samplers inside real ComfyUI, on the tiny H3.

The prompts are what an H3 workflow wires: the transformer, the video VAE and the audio VAE, an
EmptyMiniMaxH3LatentAV (or a clip with sound: LoadVideo, VAEEncode, VAEEncodeAudio joined by
LTXVConcatAVLatent), the sampler, and the output taken apart by LTXVSeparateAVLatent and decoded by
VAEDecode and VAEDecodeAudio. The text encoder (Qwen3-VL-32B) has no tiny form, so a seeded random
CONDITIONING of its width stands in.
"""

import pytest
import torch
from comfy_reference import GivenNoise, assert_matches_reference, guider_of_sampler_inputs
from input_media import write_sound_clip
from pack_access import call_node, pack_module
from test_minimax_h3 import H3_TEXT_WIDTH, PIXEL_FRAMES_OF_LATENT
from tiny_models import TINY_MODEL_FILES
from tiny_workflows import add_prompt_schedule

PROGRESSIVE, QUEUE = "LongVideoProgressiveARSampler", "LongVideoDiagonalQueueSampler"
SAMPLERS = (PROGRESSIVE, QUEUE)
LENGTH = 7  # 22 frames: 1 + 4 + 4 + 4 + 4, 1 + 4
CLIP_FRAMES = 22  # H3's 5 + 17 n grid: 7 latent frames
CLIP_FILE = "h3_clip_with_sound.mp4"
IDS = {"model": "1", "vae": "2", "audio_vae": "3", "latent": "8", "sigmas": "9", "sampler": "10", "separate": "11", "images": "12", "sound": "13"}


def pixel_frames(latent_frames: int) -> int:
    """ComfyUI's count (MiniMaxH3AddGuide, MiniMaxH3AV.fix_empty_latent): FRAME_PER_TOKEN repeating."""
    return sum(PIXEL_FRAMES_OF_LATENT[k % 5] for k in range(latent_frames))


def sound_length(latent_frames: int) -> int:
    """ComfyUI's audio latents of an H3 video (MiniMaxH3AV.fix_empty_latent, EmptyMiniMaxH3LatentAV)."""
    return round(pixel_frames(latent_frames) * 5 / 3)


def h3_prompt(sampler: str, start: str = "noise", length: int = LENGTH, steps: int = 4, **sampler_inputs) -> dict:
    """An H3 prompt around ``sampler``; ``start`` "noise" or "clip" (a clip with sound to extend or continue)."""
    prompt = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": TINY_MODEL_FILES["minimax_h3"], "weight_dtype": "default"}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": TINY_MODEL_FILES["taeh3"]}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": TINY_MODEL_FILES["minimax_h3_audio_vae"]}},
        "4": {"class_type": "LongVideoTestConditioning", "inputs": {"width": H3_TEXT_WIDTH, "tokens": 8, "seed": 1, "scale": 1.0}},
        "5": {"class_type": "LongVideoTestConditioning", "inputs": {"width": H3_TEXT_WIDTH, "tokens": 8, "seed": 2, "scale": 1.0}},
        "8": {"class_type": "EmptyMiniMaxH3LatentAV", "inputs": {"width": 64, "height": 64, "length": pixel_frames(LENGTH)}},
        "9": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": steps, "denoise": 1.0}},
        "11": {"class_type": "LTXVSeparateAVLatent", "inputs": {"av_latent": ["10", 0]}},
        "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["2", 0]}},
        "13": {"class_type": "VAEDecodeAudio", "inputs": {"samples": ["11", 1], "vae": ["3", 0]}},
        "14": {"class_type": "CreateVideo", "inputs": {"images": ["12", 0], "audio": ["13", 0], "fps": 24.0}},
        "15": {"class_type": "SaveVideo", "inputs": {"video": ["14", 0], "filename_prefix": "h3/test", "format": "mp4", "codec": "h264"}},
    }
    common = {"model": ["1", 0], "positive": ["4", 0], "negative": ["5", 0], "cfg": 3.0, "sigmas": ["9", 0], "latent": ["8", 0], "length": length, "seed": 0}
    if sampler == PROGRESSIVE:
        inputs = {**common, "chunk_size": 2, "window_chunks": 2, "eta": 0.0}
    else:
        inputs = {**common, "start": "sample a first clip", "window": 4, "eta": 1.0}
    prompt["10"] = {"class_type": sampler, "inputs": {**inputs, **sampler_inputs}}
    if start == "clip":
        prompt["20"] = {"class_type": "LoadVideo", "inputs": {"file": CLIP_FILE}}
        prompt["21"] = {"class_type": "GetVideoComponents", "inputs": {"video": ["20", 0]}}
        prompt["22"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["21", 0], "vae": ["2", 0]}}
        prompt["23"] = {"class_type": "VAEEncodeAudio", "inputs": {"audio": ["21", 1], "vae": ["3", 0]}}
        prompt["24"] = {"class_type": "LTXVConcatAVLatent", "inputs": {"video_latent": ["22", 0], "audio_latent": ["23", 0]}}
        if sampler == PROGRESSIVE:
            prompt["10"]["inputs"]["context"] = ["24", 0]
        else:
            prompt["10"]["inputs"].update(latent=["24", 0], start="continue the input latent")
    return prompt


def run(host, prompt: dict) -> dict:
    """Run the prompt; the sampler's LATENT, its streams, the decoded images and sound."""
    write_sound_clip(host.base_dir / "input" / CLIP_FILE, 24, CLIP_FRAMES)
    host.clear_cache()
    host.run_prompt(prompt)
    latent = host.node_output(IDS["sampler"])
    video, audio = latent["samples"].unbind()
    return {
        "latent": latent,
        "video": video,
        "audio": audio,
        "images": host.node_output(IDS["images"]),
        "sound": host.node_output(IDS["sound"]),
        "separated": [host.node_output(IDS["separate"], index)["samples"] for index in range(2)],
    }


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_from_noise_and_extending_a_clip_with_its_sound(comfy_inprocess, sampler):
    host = comfy_inprocess
    from_noise = run(host, h3_prompt(sampler))
    extended = run(host, h3_prompt(sampler, "clip"))
    for got in (from_noise, extended):
        assert got["video"].shape == (1, 24, LENGTH, 4, 4)
        assert got["audio"].shape == (1, 32, 2, sound_length(LENGTH)) == (1, 32, 2, 37)
        assert got["video"].isfinite().all() and got["audio"].isfinite().all()
        # ComfyUI's own H3 nodes take the LATENT: separated, and decoded to 22 frames and 22 / 24 s of sound
        torch.testing.assert_close(got["separated"][0], got["video"], rtol=0, atol=0)
        torch.testing.assert_close(got["separated"][1], got["audio"], rtol=0, atol=0)
        assert got["images"].shape == (pixel_frames(LENGTH), 64, 64, 3) and got["images"].isfinite().all()
        assert got["sound"]["sample_rate"] == 32000 and got["sound"]["waveform"].shape == (1, 2, 37 * 800)
        assert got["sound"]["waveform"].isfinite().all()
    # the clip and its sound are what differs between the runs (the same seed)
    assert (extended["video"] - from_noise["video"]).abs().max() > 1e-4
    assert (extended["audio"] - from_noise["audio"]).abs().max() > 1e-4


def test_with_one_noisy_chunk_the_first_chunk_is_comfyuis_own_sampling_of_video_and_sound(comfy_inprocess):
    """Progressive AR with one noisy chunk of 2 in the window: the first chunk is plain sampling of a 2-frame H3
    latent (5 frames: 8 audio latents), so the frames' audio latents are the ones ComfyUI gives that video,
    at the place H3's timeline gives them (a packing one frame off gives the chunk the wrong audio latents)."""
    import comfy.nested_tensor

    host = comfy_inprocess
    chunk = 2
    prompt = h3_prompt(PROGRESSIVE, length=chunk, steps=3, chunk_size=chunk, window_chunks=1)
    ours = run(host, prompt)
    sampler = prompt[IDS["sampler"]]["inputs"]
    guider = guider_of_sampler_inputs(host, sampler)
    sigmas = host.node_output(*sampler["sigmas"])
    packing = stream_packing(host)
    units = sound_length(chunk)
    assert units == 8 and packing.stream.unit_bounds(chunk) == units
    draw = torch.Generator().manual_seed(sampler["seed"])
    packed = torch.randn((1, 1, chunk, 1, packing.frame_elements), generator=draw)  # the chunk's noise as it enters the window
    video_noise, audio_noise = packing.unpack(packed, torch.arange(chunk)[None])
    given = {"samples": comfy.nested_tensor.NestedTensor([torch.zeros(1, 24, chunk, 4, 4), torch.zeros(1, 32, 2, units)])}
    chooser = call_node(host, "KSamplerSelect", sampler_name="euler")[0]
    with torch.inference_mode():
        out = call_node(
            host,
            "SamplerCustomAdvanced",
            noise=GivenNoise(comfy.nested_tensor.NestedTensor([video_noise, audio_noise[0]])),
            guider=guider,
            sampler=chooser,
            sigmas=sigmas,
            latent_image=given,
        )[0]
    video, audio = out["samples"].unbind()
    print(f"first chunk against SamplerCustomAdvanced: video {(ours['video'] - video).abs().max():.1e}, sound {(ours['audio'] - audio).abs().max():.1e}")
    assert_matches_reference(ours["video"], video)
    assert_matches_reference(ours["audio"], audio)


def stream_packing(host):
    """The packing of a run from noise (its video starts at frame 0), as the adapter builds it."""
    sound = pack_module("nodes.adapter.sound")
    streams = pack_module("samplers.streams")
    model = host.node_output(IDS["model"]).model
    timeline = sound.SoundTimeline.of(model, [])
    assert timeline == sound.SoundTimeline(24.0, 40.0, 4, 5)
    return streams.FramePacking(timeline.stream((32, 2), 0, 3), (24, 4, 4))


def test_the_timeline_gives_each_frame_the_audio_latents_comfyui_counts_for_it(comfy_inprocess):
    """Frame k owns the audio latents ComfyUI's count adds from a video of k to one of k + 1 latent frames:
    each the one H3's transformer places nearest the frame (audio latent j at j, the frame at 5 / 3 of its
    first pixel frame); frames before the video continue the groups of 5 backwards."""
    host = comfy_inprocess
    run_model = call_node(host, "UNETLoader", unet_name=TINY_MODEL_FILES["minimax_h3"], weight_dtype="default")[0]
    sound = pack_module("nodes.adapter.sound")
    timeline = sound.SoundTimeline.of(run_model.model, [])
    stream = timeline.stream((32, 2), 0, 3)
    for frames in range(1, 23):
        assert stream.unit_bounds(frames) == sound_length(frames)
        empty = call_node(host, "EmptyMiniMaxH3LatentAV", width=64, height=64, length=pixel_frames(frames))[0] if frames % 5 == 2 else None
        if empty is not None:  # the frame counts H3's empty latent makes
            assert empty["samples"].unbind()[1].shape[3] == stream.unit_bounds(frames)
    starts = [5 / 3 * pixel_frames(k) for k in range(24)]
    for k in range(22):
        for j in range(stream.unit_bounds(k), stream.unit_bounds(k + 1)):
            nearest_start = max(i for i, start in enumerate(starts) if start <= j + 0.5)
            assert nearest_start == k, f"audio latent {j} is owned by frame {k}, but sounds with frame {nearest_start}"
    assert [stream.unit_bounds(k) for k in range(-6, 1)] == [-35, -28, -27, -20, -13, -7, 0]
    assert stream.max_units == 7


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_prompt_schedule_changes_the_frames_and_the_sound_under_the_new_prompt(comfy_inprocess, sampler):
    host = comfy_inprocess
    plain = run(host, h3_prompt(sampler))
    prompt = h3_prompt(sampler)
    add_prompt_schedule(prompt, IDS["sampler"], switch_frame=5)
    scheduled = run(host, prompt)
    last_frame_sound = sound_length(LENGTH - 1)
    video_change = (scheduled["video"][:, :, -1] - plain["video"][:, :, -1]).abs().max().item()
    sound_change = (scheduled["audio"][..., last_frame_sound:] - plain["audio"][..., last_frame_sound:]).abs().max().item()
    print(f"{sampler}: the second prompt moves the last frame by {video_change:.1e} and its sound by {sound_change:.1e}")
    assert video_change > 1e-4 and sound_change > 1e-4


def test_a_clear_message_for_a_latent_without_sound(comfy_inprocess):
    host = comfy_inprocess
    prompt = h3_prompt(PROGRESSIVE)
    prompt["30"] = {"class_type": "LTXVSeparateAVLatent", "inputs": {"av_latent": ["8", 0]}}
    prompt[IDS["sampler"]]["inputs"]["latent"] = ["30", 0]
    with pytest.raises(AssertionError, match="video latent without sound, but MiniMax H3 makes video and sound together.*EmptyMiniMaxH3LatentAV"):
        run(host, prompt)


def test_the_queue_continuing_a_clip_longer_than_the_queue_gives_its_output_sound_of_the_output_length(comfy_inprocess):
    """With a queue of 2 frames the clip's last 2 frames are output frames 0 and 1: the output starts 5 frames
    into the clip's timeline, in the middle of a group, and keeps the sound of its own 7 latent frames."""
    host = comfy_inprocess
    got = run(host, h3_prompt(QUEUE, "clip", steps=2, window=2))
    assert got["video"].shape[2] == LENGTH
    assert got["audio"].shape[3] == sound_length(LENGTH)
    assert got["audio"].isfinite().all()


def test_an_extension_that_starts_mid_group_takes_its_first_audio_latent_from_the_clip(comfy_inprocess):
    """Extending the 7-frame clip by 4 frames: the output's frames are 4 + 4 + 1 + 4 = 13 frames long, as many as a video of 4
    latent frames (1 + 4 + 4 + 4), but they own 21 audio latents of the timeline (58 - 37) where ComfyUI counts 22 for the
    output's own video: the one before them, the clip's last, starts its sound."""
    host = comfy_inprocess
    length = 4
    got = run(host, h3_prompt(PROGRESSIVE, "clip", length=length))
    assert sound_length(length) == 22 and sound_length(7 + length) - sound_length(7) == 58 - 37
    assert got["audio"].shape == (1, 32, 2, 22)
    clip_sound = host.node_output("23")["samples"]
    last = clip_sound[..., min(clip_sound.shape[3], sound_length(7)) - 1]
    torch.testing.assert_close(got["audio"][..., 0], last, rtol=0, atol=0)
    assert got["audio"][..., 1:].abs().amax(dim=(0, 1, 2)).min() > 0


def test_a_clip_whose_sound_outlasts_its_encoded_frames_is_refused_with_what_to_do(comfy_inprocess):
    """H3's VAE encodes 25 frames as 7 latent frames (22 frames), but the clip's sound lasts 25 / 24 s: 42 audio latents against 37."""
    host = comfy_inprocess
    write_sound_clip(host.base_dir / "input" / "h3_clip_of_25_frames.mp4", 24, 25)
    prompt = h3_prompt(PROGRESSIVE, "clip")
    prompt["20"]["inputs"]["file"] = "h3_clip_of_25_frames.mp4"
    with pytest.raises(
        AssertionError,
        match=r"The context input's sound is 42 audio latents long, but its 7 latent frames \(22 frames\) last 37 audio "
        r"latents at MiniMax H3's 24 fps .* Encode a clip of 5 \+ 17 n frames at 24 fps with its own sound",
    ):
        run(host, prompt)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_reference_anchor_on_the_videos_first_frame_shows_it_with_its_sound(comfy_inprocess, sampler):
    host = comfy_inprocess
    plain = run(host, h3_prompt(sampler))
    prompt = h3_prompt(sampler, anchor=["40", 0])
    prompt["40"] = {"class_type": "LongVideoReferenceAnchor", "inputs": {}}
    anchored = run(host, prompt)
    assert anchored["audio"].shape == plain["audio"].shape and anchored["audio"].isfinite().all()
    # the first frame in front of every window moves the later frames
    assert (anchored["video"][:, :, -1] - plain["video"][:, :, -1]).abs().max() > 1e-5


def test_checkpoints_stop_with_h3s_sound_until_they_carry_it(comfy_inprocess):
    checkpoints = pack_module("nodes.checkpoints")
    prompt = h3_prompt(PROGRESSIVE, checkpoints=["41", 0])
    prompt["41"] = {
        "class_type": "LongVideoCheckpoints",
        "inputs": {"every_frames": 2, "keep": 1, "resume_from": checkpoints.NO_STATE, "reroll_from_frame": checkpoints.NO_REROLL},
    }
    with pytest.raises(AssertionError, match="MiniMax H3 makes video and sound together, and Checkpoints do not save the sound yet"):
        run(comfy_inprocess, prompt)

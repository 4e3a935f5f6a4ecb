"""LTX-2 (video and its sound) through both samplers inside real ComfyUI, on the tiny LTX-2 checkpoint.

The prompts are what an LTX-2 workflow wires: the checkpoint, the audio VAE from it, LTXVConditioning
with the frame rate, an empty video latent and LTXVEmptyLatentAudio joined by LTXVConcatAVLatent (or a
clip with sound: LoadVideo, VAEEncode, LTXVAudioVAEEncode), the sampler, and the output taken apart by
LTXVSeparateAVLatent and decoded by VAEDecode and LTXVAudioVAEDecode. The text encoder (Gemma 3 12B)
has no tiny form, so a seeded random CONDITIONING of the width LTX-2's connectors give stands in.
"""

import pytest
import torch
from comfy_reference import GivenNoise, assert_matches_reference, guider_of_sampler_inputs
from input_media import write_sound_clip
from pack_access import call_node, pack_module, record_progress
from tiny_models import LTX2_TRANSFORMER, TINY_MODEL_FILES
from tiny_workflows import add_prompt_schedule

PROGRESSIVE, QUEUE = "LongVideoProgressiveARSampler", "LongVideoDiagonalQueueSampler"
SAMPLERS = (PROGRESSIVE, QUEUE)
# an uneven rate (frames own 8 or 9 of the 25 audio latents per second) and an even one (8 each)
FRAME_RATES = (24, 25)
LENGTH = 7
CLIP_FRAMES = 25  # 4 latent frames
CLIP_FILE = "ltx2_clip_with_sound_{fps}.mp4"
CONTEXT_WIDTH = 2 * LTX2_TRANSFORMER["caption_channels"]  # what LTX-2's connectors give the transformer
IDS = {"model": "1", "audio_vae": "2", "conditioning": "5", "latent": "8", "sigmas": "9", "sampler": "10", "separate": "11", "images": "12", "sound": "13"}


def pixel_frames(latent_frames: int) -> int:
    return 8 * (latent_frames - 1) + 1


def ltx2_prompt(sampler: str, fps: int, start: str = "noise", length: int = LENGTH, steps: int = 4, **sampler_inputs) -> dict:
    """An LTX-2 prompt around ``sampler``; ``start`` "noise" or "clip" (a clip with sound to extend or continue)."""
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": TINY_MODEL_FILES["ltx2_ckpt"]}},
        "2": {"class_type": "LTXVAudioVAELoader", "inputs": {"ckpt_name": TINY_MODEL_FILES["ltx2_ckpt"]}},
        "3": {"class_type": "LongVideoTestConditioning", "inputs": {"width": CONTEXT_WIDTH, "tokens": 8, "seed": 1, "scale": 1.0}},
        "4": {"class_type": "LongVideoTestConditioning", "inputs": {"width": CONTEXT_WIDTH, "tokens": 8, "seed": 2, "scale": 1.0}},
        "5": {"class_type": "LTXVConditioning", "inputs": {"positive": ["3", 0], "negative": ["4", 0], "frame_rate": float(fps)}},
        "6": {"class_type": "EmptyLTXVLatentVideo", "inputs": {"width": 64, "height": 64, "length": pixel_frames(LENGTH), "batch_size": 1}},
        "7": {
            "class_type": "LTXVEmptyLatentAudio",
            "inputs": {"frames_number": pixel_frames(LENGTH), "frame_rate": fps, "batch_size": 1, "audio_vae": ["2", 0]},
        },
        "8": {"class_type": "LTXVConcatAVLatent", "inputs": {"video_latent": ["6", 0], "audio_latent": ["7", 0]}},
        "9": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "simple", "steps": steps, "denoise": 1.0}},
        "11": {"class_type": "LTXVSeparateAVLatent", "inputs": {"av_latent": ["10", 0]}},
        "12": {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["1", 2]}},
        "13": {"class_type": "LTXVAudioVAEDecode", "inputs": {"samples": ["11", 1], "audio_vae": ["2", 0]}},
        "14": {"class_type": "CreateVideo", "inputs": {"images": ["12", 0], "audio": ["13", 0], "fps": float(fps)}},
        "15": {"class_type": "SaveVideo", "inputs": {"video": ["14", 0], "filename_prefix": "ltx2/test", "format": "mp4", "codec": "h264"}},
    }
    common = {"model": ["1", 0], "positive": ["5", 0], "negative": ["5", 1], "cfg": 3.0, "sigmas": ["9", 0], "latent": ["8", 0], "length": length, "seed": 0}
    if sampler == PROGRESSIVE:
        inputs = {**common, "chunk_size": 2, "window_chunks": 2, "eta": 0.0}
    else:
        inputs = {**common, "start": "sample a first clip", "window": 4, "eta": 1.0}
    prompt["10"] = {"class_type": sampler, "inputs": {**inputs, **sampler_inputs}}
    if start == "clip":
        prompt["20"] = {"class_type": "LoadVideo", "inputs": {"file": CLIP_FILE.format(fps=fps)}}
        prompt["21"] = {"class_type": "GetVideoComponents", "inputs": {"video": ["20", 0]}}
        prompt["22"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["21", 0], "vae": ["1", 2]}}
        prompt["23"] = {"class_type": "LTXVAudioVAEEncode", "inputs": {"audio": ["21", 1], "audio_vae": ["2", 0]}}
        prompt["24"] = {"class_type": "LTXVConcatAVLatent", "inputs": {"video_latent": ["22", 0], "audio_latent": ["23", 0]}}
        if sampler == PROGRESSIVE:
            prompt["10"]["inputs"]["context"] = ["24", 0]
        else:
            prompt["10"]["inputs"].update(latent=["24", 0], start="continue the input latent")
    return prompt


def write_clip_with_sound(host, fps: int) -> None:
    write_sound_clip(host.base_dir / "input" / CLIP_FILE.format(fps=fps), fps, CLIP_FRAMES)


def run(host, prompt: dict) -> dict:
    """Run the prompt; the sampler's LATENT, its streams, the decoded images and sound."""
    host.clear_cache()
    host.run_prompt(prompt)
    latent = host.node_output(IDS["sampler"])
    video, audio = latent["samples"].unbind()
    return {"latent": latent, "video": video, "audio": audio, "images": host.node_output(IDS["images"]), "sound": host.node_output(IDS["sound"])}


def sound_length(host, frames: int, fps: int) -> int:
    """ComfyUI's count of the audio latents of a video (what LTXVEmptyLatentAudio makes)."""
    audio_vae = host.node_output(IDS["audio_vae"])
    return audio_vae.first_stage_model.num_of_latents_from_frames(pixel_frames(frames), fps)


@pytest.mark.parametrize("fps", FRAME_RATES)
@pytest.mark.parametrize("sampler", SAMPLERS)
def test_from_noise_and_extending_a_clip_with_its_sound(comfy_inprocess, sampler, fps):
    host = comfy_inprocess
    write_clip_with_sound(host, fps)
    from_noise = run(host, ltx2_prompt(sampler, fps))
    extended = run(host, ltx2_prompt(sampler, fps, "clip"))
    for got in (from_noise, extended):
        assert got["video"].shape == (1, 128, LENGTH, 2, 2)
        assert got["audio"].shape == (1, 8, sound_length(host, LENGTH, fps), 16)
        assert got["video"].isfinite().all() and got["audio"].isfinite().all()
        assert got["images"].shape == (pixel_frames(LENGTH), 64, 64, 3)
        assert got["sound"]["sample_rate"] == 16000 and got["sound"]["waveform"].isfinite().all()
    # the clip and its sound are what differs between the runs (the same seed)
    assert (extended["video"] - from_noise["video"]).abs().max() > 1e-4
    assert (extended["audio"] - from_noise["audio"]).abs().max() > 1e-4


@pytest.mark.parametrize("fps", FRAME_RATES)
def test_with_one_noisy_chunk_the_first_chunks_are_comfyuis_own_sampling_of_video_and_sound(comfy_inprocess, fps):
    """Progressive AR with one noisy chunk of 2 in the window: the first chunk is plain sampling of a 2-frame
    LTX-2 latent (video and sound), the second is sampled behind the first, which stays clean, as ComfyUI
    samples a latent whose noise mask marks given frames and sound. Later chunks sit further on in the
    timeline than a plain latent's frames, so nothing in ComfyUI samples them alone."""
    import comfy.nested_tensor

    host = comfy_inprocess
    chunk = 2
    prompt = ltx2_prompt(PROGRESSIVE, fps, length=2 * chunk, steps=3, chunk_size=chunk, window_chunks=1)
    ours = run(host, prompt)
    sampler = prompt[IDS["sampler"]]["inputs"]
    guider = guider_of_sampler_inputs(host, sampler)
    sigmas = host.node_output(*sampler["sigmas"])
    packing = stream_packing(host, fps)
    draw = torch.Generator().manual_seed(sampler["seed"])
    units = [sound_length(host, frames, fps) for frames in (chunk, 2 * chunk)]

    def noise(first_frame):
        packed = torch.randn((1, 1, chunk, 1, packing.frame_elements), generator=draw)  # each chunk's noise as it enters the window
        video, audio = packing.unpack(packed, torch.arange(first_frame, first_frame + chunk)[None])
        return video, audio[0]

    def euler(latent, noise, mask=None):
        given = {"samples": comfy.nested_tensor.NestedTensor(latent)}
        if mask is not None:
            given["noise_mask"] = comfy.nested_tensor.NestedTensor(mask)
        chooser = call_node(host, "KSamplerSelect", sampler_name="euler")[0]
        with torch.inference_mode():
            out = call_node(
                host,
                "SamplerCustomAdvanced",
                noise=GivenNoise(comfy.nested_tensor.NestedTensor(noise)),
                guider=guider,
                sampler=chooser,
                sigmas=sigmas,
                latent_image=given,
            )[0]
        return out["samples"].unbind()

    first_video, first_audio = euler([torch.zeros(1, 128, chunk, 2, 2), torch.zeros(1, 8, units[0], 16)], noise(0))
    second_noise = noise(chunk)
    behind = [torch.cat([first_video, torch.zeros_like(first_video)], dim=2), torch.cat([first_audio, torch.zeros(1, 8, units[1] - units[0], 16)], dim=2)]
    video_mask, audio_mask = torch.ones(1, 1, 2 * chunk, 2, 2), torch.ones(1, 1, units[1], 16)
    video_mask[:, :, :chunk], audio_mask[:, :, : units[0]] = 0.0, 0.0
    both_noise = [torch.cat([torch.zeros_like(first_video), second_noise[0]], dim=2), torch.cat([torch.zeros_like(first_audio), second_noise[1]], dim=2)]
    second_video, second_audio = euler(behind, both_noise, [video_mask, audio_mask])
    assert_matches_reference(ours["video"], torch.cat([first_video, second_video[:, :, chunk:]], dim=2))
    assert_matches_reference(ours["audio"], torch.cat([first_audio, second_audio[:, :, units[0] :]], dim=2))


def stream_packing(host, fps: int):
    """The packing of a run from noise at ``fps`` (its video starts at frame 0), as the adapter builds it."""
    sound = pack_module("nodes.adapter.sound")
    streams = pack_module("samplers.streams")
    model = host.node_output(IDS["model"]).model
    guider = call_node(
        host,
        "CFGGuider",
        model=host.node_output(IDS["model"]),
        positive=host.node_output(IDS["conditioning"], 0),
        negative=host.node_output(IDS["conditioning"], 1),
        cfg=1.0,
    )[0]
    timeline = sound.SoundTimeline.of(model, [guider])
    assert timeline == sound.SoundTimeline(float(fps), 25.0, 8, audio_lead=0.75)
    return streams.FramePacking(timeline.stream((8, 16), 0), (128, 2, 2))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_prompt_schedule_changes_the_frames_and_the_sound_under_the_new_prompt(comfy_inprocess, sampler):
    host = comfy_inprocess
    plain = run(host, ltx2_prompt(sampler, 24))
    prompt = ltx2_prompt(sampler, 24)
    # the second prompt through LTXVConditioning too, so it carries the frame rate
    add_prompt_schedule(prompt, IDS["sampler"], switch_frame=4)
    prompt["85"] = {"class_type": "LTXVConditioning", "inputs": {"positive": ["84", 0], "negative": ["4", 0], "frame_rate": 24.0}}
    prompt[IDS["sampler"]]["inputs"]["positive"] = ["85", 0]
    scheduled = run(host, prompt)
    last_frame_sound = sound_length(host, LENGTH - 1, 24)
    video_change = (scheduled["video"][:, :, -1] - plain["video"][:, :, -1]).abs().max().item()
    sound_change = (scheduled["audio"][:, :, last_frame_sound:] - plain["audio"][:, :, last_frame_sound:]).abs().max().item()
    print(f"{sampler}: the second prompt moves the last frame by {video_change:.1e} and its sound by {sound_change:.1e}")
    # the tiny model's text cross-attention is weak (random weights of 0.02), against round-off of about 1e-6
    assert video_change > 1e-4 and sound_change > 1e-4


def test_clear_messages_for_a_latent_without_sound_and_sound_of_another_frame_rate(comfy_inprocess):
    host = comfy_inprocess
    prompt = ltx2_prompt(PROGRESSIVE, 24)
    prompt[IDS["sampler"]]["inputs"]["latent"] = ["6", 0]
    with pytest.raises(AssertionError, match="video latent without sound, but LTX-2 makes video and sound together.*LTXVConcatAVLatent"):
        run(host, prompt)
    prompt = ltx2_prompt(PROGRESSIVE, 24)
    # 97 frames last 97 audio latents at 25 fps, 101 at the conditioning's 24
    prompt["6"]["inputs"]["length"] = prompt["7"]["inputs"]["frames_number"] = 97
    prompt["7"]["inputs"]["frame_rate"] = 25
    with pytest.raises(
        AssertionError, match=r"sound is 97 audio latents long, but its 13 latent frames \(97 frames\) last 101 audio latents at the conditioning's 24 fps"
    ):
        run(host, prompt)
    prompt = ltx2_prompt(PROGRESSIVE, 24)
    prompt["30"] = {"class_type": "LTXVConditioning", "inputs": {"positive": ["4", 0], "negative": ["4", 0], "frame_rate": 30.0}}
    prompt[IDS["sampler"]]["inputs"]["negative"] = ["30", 1]
    with pytest.raises(AssertionError, match=r"different frame rates \(24, 30 fps\)"):
        run(host, prompt)


def test_queue_windows_that_own_different_numbers_of_audio_latents_batched_equal_one_by_one(comfy_inprocess):
    """At 24 fps frames own 8 or 9 audio latents, so the windows of one queue iteration (two partitions,
    lookahead) hold sound of different lengths; batched, they are split into calls by length."""
    host = comfy_inprocess
    runs = {}
    for batching in ("batched", "one by one"):
        prompt = ltx2_prompt(QUEUE, 24, length=9, steps=8, options=["31", 0])
        prompt["30"] = {"class_type": "LongVideoLookahead", "inputs": {"enabled": True}}
        prompt["31"] = {"class_type": "LongVideoLatentPartition", "inputs": {"partitions": 2, "window_batching": batching, "options": ["30", 0]}}
        runs[batching] = run(host, prompt)
    for stream in ("video", "audio"):
        error = (runs["batched"][stream] - runs["one by one"][stream]).abs().max().item()
        print(f"{stream}: batched windows against one by one {error:.1e}")
        # the audio-video cross-attention gates read the highest level of the whole call, so windows in one call feel each other slightly
        assert error < 1e-4
    assert runs["batched"]["audio"].shape[2] == sound_length(host, 9, 24)


def test_the_queue_continuing_a_clip_longer_than_the_queue_gives_its_output_sound_of_the_output_length(comfy_inprocess):
    """With a queue of 2 frames the clip's last 2 frames are output frames 0 and 1: the output starts 2 frames
    into the clip's timeline, where every frame is 8 pixel frames long, and keeps the sound of its last
    8 (n - 1) + 1 frames, as the decoder makes its first latent frame one (its last) pixel frame."""
    host = comfy_inprocess
    write_clip_with_sound(host, 24)
    got = run(host, ltx2_prompt(QUEUE, 24, "clip", steps=2, window=2))
    assert got["video"].shape[2] == LENGTH
    assert got["audio"].shape[2] == sound_length(host, LENGTH, 24)
    assert got["audio"].isfinite().all()


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_reference_anchor_on_the_videos_first_frame_shows_it_with_its_sound(comfy_inprocess, sampler):
    host = comfy_inprocess
    plain = run(host, ltx2_prompt(sampler, 24))
    prompt = ltx2_prompt(sampler, 24, anchor=["40", 0])
    prompt["40"] = {"class_type": "LongVideoReferenceAnchor", "inputs": {}}
    anchored = run(host, prompt)
    assert anchored["audio"].shape == plain["audio"].shape and anchored["audio"].isfinite().all()
    # the first frame in front of every window moves the later frames
    assert (anchored["video"][:, :, -1] - plain["video"][:, :, -1]).abs().max() > 1e-5


def test_checkpoints_and_a_reference_latent_stop_with_sound_until_they_carry_it(comfy_inprocess):
    host = comfy_inprocess
    checkpoints = pack_module("nodes.checkpoints")
    prompt = ltx2_prompt(PROGRESSIVE, 24, checkpoints=["41", 0])
    prompt["41"] = {
        "class_type": "LongVideoCheckpoints",
        "inputs": {"every_frames": 2, "keep": 1, "resume_from": checkpoints.NO_STATE, "reroll_from_frame": checkpoints.NO_REROLL},
    }
    with pytest.raises(AssertionError, match="LTX-2 makes video and sound together, and Checkpoints do not save the sound yet"):
        run(host, prompt)
    prompt = ltx2_prompt(PROGRESSIVE, 24, anchor=["40", 0])
    prompt["40"] = {"class_type": "LongVideoReferenceAnchor", "inputs": {"reference": ["6", 0]}}
    with pytest.raises(AssertionError, match="a reference latent has no sound: leave the Reference Anchor's reference unconnected"):
        run(host, prompt)


def test_previews_show_the_video_of_the_finished_frames(comfy_inprocess, monkeypatch):
    import comfy.model_management
    import latent_preview
    import numpy

    host = comfy_inprocess
    updates = record_progress(monkeypatch)
    got = run(host, ltx2_prompt(PROGRESSIVE, 24))
    # 7 frames in chunks of 2 with 2 noisy chunks and 4 steps: 2 x (4 + 2 - 1) calls, a chunk finished every 2 from the 4th
    mine = [(value, preview) for value, total, preview in updates if total == 10]
    assert [value for value, preview in mine if preview is not None] == [4, 6, 8, 10]
    model = host.node_output(IDS["model"]).model
    previewer = latent_preview.get_previewer(comfy.model_management.get_torch_device(), model.latent_format)
    # the last preview is the last output frame's video, as Latent2RGB shows a video latent (LTX-2's latent is stored unscaled)
    expected = previewer.decode_latent_to_preview_image("JPEG", model.process_latent_in(got["video"])[:1, :, -1:])
    assert numpy.array_equal(numpy.asarray(mine[-1][1][1]), numpy.asarray(expected[1]))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_windows_after_the_videos_first_frame_are_shown_where_they_sit_in_the_video(comfy_inprocess, sampler, monkeypatch):
    """Every call the sampler makes: a window that starts the video keeps LTX-2's causal positions (its first
    latent frame one pixel frame, its first audio latent one mel frame); a later window is placed as in the
    middle of the video (every frame 8 pixel frames, every audio latent 4 mel frames: 0.04 s), its sound
    starting where the whole video's does relative to its first frame: 0.03 s before it (LTX-2's causal audio
    positions) less the rounding of the window's first audio latent (at most half a latent, 0.02 s)."""
    from comfy.ldm.lightricks.av_model import LTXAVModel

    prepare = LTXAVModel._prepare_positional_embeddings
    calls = []

    def recording(self, pixel_coords, frame_rate, x_dtype):
        video, audio = pixel_coords
        calls.append((video[0, 0, 0].cpu() / frame_rate, audio[0, 0, 0].cpu()))  # the first token's [start, end] in seconds
        return prepare(self, pixel_coords, frame_rate, x_dtype)

    monkeypatch.setattr(LTXAVModel, "_prepare_positional_embeddings", recording)
    fps = 24
    run(comfy_inprocess, ltx2_prompt(sampler, fps))
    starts_video = later = 0
    for video, audio in calls:
        video_span, audio_span = (video[1] - video[0]).item() * fps, (audio[1] - audio[0]).item()
        if abs(video_span - 1) < 1e-4:
            starts_video += 1
            assert abs(audio_span - 0.01) < 1e-6 and video[0].item() == audio[0].item() == 0.0
        else:
            later += 1
            assert abs(video_span - 8) < 1e-4 and abs(audio_span - 0.04) < 1e-6
            assert -0.05 - 1e-6 <= (audio[0] - video[0]).item() <= -0.01 + 1e-6
    print(f"{sampler}: {starts_video} calls on windows that start the video, {later} on later windows")
    assert starts_video > 0 and later > 0

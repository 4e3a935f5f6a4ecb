"""Streaming Decode to Video File with LTX-2's sound: the audio latent decoded piece by piece with the
video, joined without seams, and muxed into the same file; inside real ComfyUI with the tiny LTX-2 audio VAE."""

import wave

import av
import numpy as np
import pytest
import torch
from pack_access import call_node, pack_module
from saved_videos import read_video, saved_file
from test_checkpoints import checkpointed
from tiny_models import LTX2_AUDIO_VAE, LTX2_VOCODER, ltx2_audio_vae
from tiny_workflows import stream_to_file, tiny_workflow

FPS = 25.0
TONE_HZ = 440.0
# float32 decodes of different lengths round differently: they differ by this share of the peak
FLOAT32_ROUNDING = 1e-5


def streaming():
    return pack_module("nodes.streaming_decode")


LOUD_CHECKPOINT = "tiny_ltx2_loud_audio.safetensors"


@pytest.fixture(scope="module")
def loud_checkpoint(comfy_inprocess, tiny_model_names, tmp_path_factory):
    """The tiny LTX-2 checkpoint's audio VAE with its vocoder's last convolution scaled so the sound peaks
    near 0.5: the random weights leave it near 1e-8, which AAC would encode as silence and float32
    comparisons could not tell from it. Stored in a checkpoints folder of its own, as LTXV Audio VAE
    Loader reads it."""
    import comfy.utils
    import folder_paths
    from safetensors.torch import save_file

    quiet = ltx2_audio_vae(comfy_inprocess)
    peak = quiet.decode(torch.randn(1, 8, 50, 16, generator=torch.Generator().manual_seed(0))).abs().max().item()
    source = folder_paths.get_full_path_or_raise("checkpoints", tiny_model_names["ltx2_ckpt"])
    tensors, metadata = comfy.utils.load_torch_file(source, return_metadata=True)
    tensors = {name: value for name, value in tensors.items() if name.startswith(("audio_vae.", "vocoder."))}
    for name in ("vocoder.conv_post.weight", "vocoder.conv_post.bias"):
        tensors[name] = tensors[name] * (0.5 / peak)
    folder = tmp_path_factory.mktemp("loud_checkpoints")
    save_file(tensors, str(folder / LOUD_CHECKPOINT), metadata=metadata)
    folder_paths.add_model_folder_path("checkpoints", str(folder))
    return LOUD_CHECKPOINT


@pytest.fixture(scope="module")
def audio_vae(comfy_inprocess, loud_checkpoint):
    return call_node(comfy_inprocess, "LTXVAudioVAELoader", ckpt_name=loud_checkpoint)[0]


def random_sound(audio_vae, frames: int, fps: float, seed: int = 0) -> torch.Tensor:
    """An audio latent of the length LTX-2 pairs with ``frames`` video frames at ``fps`` (ComfyUI's own formula)."""
    model = audio_vae.first_stage_model
    length = model.num_of_latents_from_frames(frames, fps)
    return torch.randn(1, audio_vae.latent_channels, length, model.latent_frequency_bins, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()  # as ComfyUI runs nodes
def streamed_track(audio_vae, sound, frames, fps, blocks):
    """(The waveform SoundTrack gives when the video arrives in blocks of ``blocks`` frames, the samples where its pieces join)."""
    track = streaming().SoundTrack(audio_vae, sound, frames, fps)
    pieces, written = [], 0
    for block in blocks:
        written += block
        pieces.extend(track.until(written))
    return torch.cat(pieces, dim=1), np.cumsum([piece.shape[1] for piece in pieces])[:-1]


@torch.inference_mode()
def one_shot(host, audio_vae, sound) -> torch.Tensor:
    """ComfyUI's own decode of the whole audio latent (LTXV Audio VAE Decode), ``[channels, samples]``."""
    audio = call_node(host, "LTXVAudioVAEDecode", samples={"samples": sound}, audio_vae=audio_vae)[0]
    return audio["waveform"][0]


@pytest.mark.parametrize(
    "frames, fps, blocks",
    [
        (401, 25.0, [41] + [72] * 5),  # blocks as LTX-2's 8x video tiles come
        (321, 24.0, [1] * 321),  # a frame at a time: pieces wait until they are long enough
        (97, 30.0, [97]),  # one block
    ],
)
def test_the_pieces_join_into_the_decode_of_the_whole_latent(comfy_inprocess, audio_vae, frames, fps, blocks):
    sound = random_sound(audio_vae, frames, fps)
    streamed, seams = streamed_track(audio_vae, sound, frames, fps, blocks)
    whole = one_shot(comfy_inprocess, audio_vae, sound)
    rate = audio_vae.audio_sample_rate_output
    assert streamed.shape[1] == round(frames * rate / fps)
    common = min(whole.shape[1], streamed.shape[1])
    difference = (streamed[:, :common] - whole[:, :common]).abs().max().item()
    print(f"float32: pieces vs whole decode max difference {difference:.3g}, peak {whole.abs().max().item():.3g}")
    assert difference <= FLOAT32_ROUNDING * whole.abs().max().item()
    # the track has the video's length: the end of the decode is cut, or padded with silence
    assert not streamed[:, common:].any()
    if len(blocks) > 1:
        assert len(seams) >= 2, "the track came in one piece: nothing was joined"


def test_each_video_of_a_batch_gets_its_own_sound(comfy_inprocess, audio_vae):
    frames = 161
    sound = torch.cat([random_sound(audio_vae, frames, FPS, seed=seed) for seed in (6, 7)])
    streamed, _ = streamed_track(audio_vae, sound, frames, FPS, [41] + [60] * 4 + [41])  # the two videos one after the other
    per_video = round(frames * audio_vae.audio_sample_rate_output / FPS)
    assert streamed.shape[1] == 2 * per_video
    for index in range(2):
        whole = one_shot(comfy_inprocess, audio_vae, sound[index : index + 1])
        common = min(whole.shape[1], per_video)
        ours = streamed[:, index * per_video : (index + 1) * per_video]
        assert (ours[:, :common] - whole[:, :common]).abs().max() <= FLOAT32_ROUNDING * whole.abs().max()
        assert not ours[:, common:].any()


def test_in_float64_the_pieces_are_the_whole_decode_to_its_rounding(audio_vae, monkeypatch):
    # the float32 differences above are rounding: the same decodes in float64 agree to float64's rounding
    monkeypatch.setattr(audio_vae, "vae_dtype", torch.float64)
    monkeypatch.setattr(audio_vae, "vae_output_dtype", lambda: torch.float64)
    audio_vae.first_stage_model.double()
    try:
        sound = random_sound(audio_vae, 401, FPS, seed=3).double()
        streamed, seams = streamed_track(audio_vae, sound, 401, FPS, [41] + [72] * 5)
        with torch.inference_mode():
            whole = audio_vae.decode(sound)[0].movedim(-1, 0)
    finally:
        audio_vae.first_stage_model.float()
    common = min(whole.shape[1], streamed.shape[1])
    assert streamed.dtype == torch.float64 and len(seams) >= 2
    difference = (streamed[:, :common] - whole[:, :common]).abs().max().item()
    print(f"float64: pieces vs whole decode max difference {difference:.3g}, peak {whole.abs().max().item():.3g}")
    assert difference <= 1e-13 * whole.abs().max().item()


# LTX-2.3's vocoder adds a bandwidth extension: a second vocoder on the causal STFT of the first one's
# waveform, and a 3x resampler (16 to 48 kHz). Here at the tiny size, with an STFT hop of 256 samples:
# an audio latent frame is 640 samples at 16 kHz, so only pieces from every second latent frame keep
# the STFT's frames where the whole decode has them
BANDWIDTH_EXTENSION = {
    **LTX2_VOCODER,
    "upsample_rates": [8, 6, 4, 4],
    "upsample_kernel_sizes": [16, 12, 8, 8],
    "resblock": "AMP1",
    "activation": "snakebeta",
    "input_sampling_rate": 16000,
    "output_sampling_rate": 48000,
    "hop_length": 256,
    "n_fft": 512,
    "num_mels": 64,
}


def audio_vae_with_bandwidth_extension():
    """The tiny LTX-2 audio VAE with an LTX-2.3 vocoder (bandwidth extension), random weights, as ComfyUI's VAE builds it."""
    import json

    import comfy.sd
    import torchaudio
    from comfy.ldm.lightricks.vae.audio_vae import AudioVAE

    metadata = {"config": json.dumps({"audio_vae": LTX2_AUDIO_VAE, "vocoder": {"vocoder": {**LTX2_VOCODER, "resblock": "AMP1"}, "bwe": BANDWIDTH_EXTENSION}})}
    generator = torch.Generator().manual_seed(5)
    n_fft, n_freqs = BANDWIDTH_EXTENSION["n_fft"], BANDWIDTH_EXTENSION["n_fft"] // 2 + 1
    # the STFT and mel bases the checkpoint carries: a Hann-windowed DFT, Slaney mel filters
    angle = 2 * torch.pi * torch.arange(n_freqs)[:, None] * torch.arange(n_fft)[None] / n_fft
    dft = torch.cat([torch.cos(angle), -torch.sin(angle)]) * torch.hann_window(n_fft)
    mel = torchaudio.functional.melscale_fbanks(n_freqs, 0.0, 8000.0, BANDWIDTH_EXTENSION["num_mels"], 16000, norm="slaney", mel_scale="slaney").T
    tensors = {}
    for name, template in AudioVAE(metadata).state_dict().items():
        if name.endswith("forward_basis"):
            value = dft[:, None]
        elif name.endswith("mel_basis"):
            value = mel
        elif name.endswith("filter") or name.endswith("inverse_basis"):
            value = template
        elif name.endswith("std-of-means"):
            value = torch.ones(template.shape)
        elif name.endswith("mean-of-means"):
            value = torch.zeros(template.shape)
        else:
            # small enough that the waveform does not sit at the vocoder's clamp to -1..1
            value = 0.05 * torch.randn(template.shape, generator=generator)
        tensors[name] = value
    return comfy.sd.VAE(sd=tensors, metadata=metadata)


def test_with_a_bandwidth_extension_the_pieces_are_the_whole_decode(comfy_inprocess):
    vae = audio_vae_with_bandwidth_extension()
    assert type(vae.first_stage_model.vocoder).__name__ == "VocoderWithBWE" and vae.audio_sample_rate_output == 48000
    sound = random_sound(vae, 321, FPS, seed=4)
    streamed, seams = streamed_track(vae, sound, 321, FPS, [41] + [70] * 4)
    whole = one_shot(comfy_inprocess, vae, sound)
    common = min(whole.shape[1], streamed.shape[1])
    difference = (streamed[:, :common] - whole[:, :common]).abs().max().item()
    print(f"bandwidth extension: pieces vs whole decode max difference {difference:.3g}, peak {whole.abs().max().item():.3g}")
    assert len(seams) >= 2 and streaming().SoundTrack(vae, sound, 321, FPS).step == 2
    assert difference <= FLOAT32_ROUNDING * whole.abs().max().item()


def test_a_tone_written_in_the_nodes_pieces_has_no_jump_at_the_seams(audio_vae, tmp_path):
    # random weights make the tiny VAE's sound meaningless, so the waveform path after the decode gets
    # a 440 Hz tone, cut into the pieces the node writes, and the file's track is compared to the tone
    video_frames = 401
    _, seams = streamed_track(audio_vae, random_sound(audio_vae, video_frames, FPS), video_frames, FPS, [41] + [72] * 5)
    rate = audio_vae.audio_sample_rate_output
    tone = 0.5 * torch.sin(2 * torch.pi * TONE_HZ * torch.arange(round(video_frames * rate / FPS)) / rate).expand(2, -1)
    writer_module = pack_module("nodes.video_file")
    path = tmp_path / "tone.mp4"
    bounds = [0, *seams.tolist(), tone.shape[1]]
    with writer_module.VideoFileWriter(str(path), FPS, "mp4", 19, None, rate, 2) as writer:
        for start, end in zip(bounds, bounds[1:]):
            frames = round(end * FPS / rate) - writer.frames_written
            writer.write(torch.full((frames, 16, 16, 3), 0.5))
            writer.write_audio(tone[:, start:end])
    track, audio_seconds, video_seconds = read_track(path)
    assert abs(audio_seconds - video_seconds) <= 1024 / rate  # one AAC frame
    track = track[:, : tone.shape[1]]
    error = (track - tone[:, : track.shape[1]]).abs().numpy()
    steps = np.abs(np.diff(track[0].numpy()))
    steepest_tone_step = 0.5 * 2 * np.pi * TONE_HZ / rate
    at_seams = np.concatenate([steps[seam - 2 : seam + 2] for seam in seams])
    print(
        f"tone vs track: max error {error.max():.4f}; sample-to-sample steps at the seams max {at_seams.max():.4f}, "
        f"elsewhere max {steps.max():.4f}, the tone's steepest {steepest_tone_step:.4f}"
    )
    # AAC at its default bit rate keeps a pure tone of amplitude 0.5 within a few hundredths
    assert error.max() < 0.05
    assert at_seams.max() < 1.1 * steepest_tone_step


def read_track(path):
    """(The sound track's samples [channels, samples], its duration in seconds, the video's).

    The durations are the streams' own where the container keeps them (mp4's edit list hides AAC's
    priming and padding), else the decoded samples and frames (webm)."""
    with av.open(str(path)) as container:
        audio, video = container.streams.audio[0], container.streams.video[0]
        samples = np.concatenate([frame.to_ndarray() for frame in container.decode(audio=0)], axis=1)
        audio_seconds = float(audio.duration * audio.time_base) if audio.duration is not None else samples.shape[1] / audio.sample_rate
        video_seconds = float(video.duration * video.time_base) if video.duration is not None else None
    if video_seconds is None:
        frames, _, fps, _ = read_video(path)
        video_seconds = frames / float(fps)
    return torch.from_numpy(samples), audio_seconds, video_seconds


def write_tone(path, seconds: float, rate: int) -> None:
    t = np.arange(round(seconds * rate)) / rate
    samples = (0.5 * np.sin(2 * np.pi * TONE_HZ * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as file:
        file.setnchannels(2)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(np.repeat(samples, 2).tobytes())


def with_sound(prompt, decode, names, frames, fps=FPS, sound_frames=None, sound_fps=None, tone=True):
    """Give the decode node of a tiny workflow the LTX-2 audio-video LATENT of its video and a sound,
    made by ComfyUI's own nodes: an empty audio latent for ``sound_frames`` at ``sound_fps`` (by default
    the video's), with the LTX-2 audio VAE's encode of a tone in place of its silence (fitted to it by
    LTXV Concat AV Latent), and the audio VAE on audio_vae; returns the id of a decode of the same sound by LTXV Audio VAE Decode."""
    prompt["80"] = {"class_type": "LTXVAudioVAELoader", "inputs": {"ckpt_name": LOUD_CHECKPOINT}}
    prompt["81"] = {
        "class_type": "LTXVEmptyLatentAudio",
        "inputs": {"frames_number": sound_frames or frames, "frame_rate": sound_fps or fps, "batch_size": 1, "audio_vae": ["80", 0]},
    }
    prompt["82"] = {"class_type": "LTXVConcatAVLatent", "inputs": {"video_latent": prompt[decode]["inputs"]["samples"], "audio_latent": ["81", 0]}}
    av_latent = ["82", 0]
    if tone:
        prompt["83"] = {"class_type": "LoadAudio", "inputs": {"audio": "tone.wav"}}
        prompt["84"] = {"class_type": "LTXVAudioVAEEncode", "inputs": {"audio": ["83", 0], "audio_vae": ["80", 0]}}
        prompt["85"] = {"class_type": "LTXVConcatAVLatent", "inputs": {"video_latent": ["82", 0], "audio_latent": ["84", 0]}}
        av_latent = ["85", 0]
    prompt[decode]["inputs"].update(samples=av_latent, audio_vae=["80", 0], fps=fps)
    prompt["86"] = {"class_type": "LTXVSeparateAVLatent", "inputs": {"av_latent": av_latent}}
    prompt["87"] = {"class_type": "LTXVAudioVAEDecode", "inputs": {"samples": ["86", 1], "audio_vae": ["80", 0]}}
    prompt["88"] = {"class_type": "PreviewAudio", "inputs": {"audio": ["87", 0]}}
    return "87"


@pytest.fixture(scope="module")
def tone_file(comfy_inprocess, loud_checkpoint):
    write_tone(comfy_inprocess.base_dir / "input" / "tone.wav", 12.0, 16000)


@pytest.mark.parametrize("video_format", ["mp4", "webm"])
def test_the_node_writes_the_sound_of_an_audio_video_latent(comfy_inprocess, tiny_model_names, tone_file, monkeypatch, video_format):
    length = 40  # latent frames of the tiny Wan 2.2 5B run: 157 frames, 6.28 s at 25 fps
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=length, wan22_5b=True)
    decode = stream_to_file(prompt, filename_prefix=f"longvideo/sound_{video_format}", format=video_format)
    frames = 4 * (length - 1) + 1
    one_shot_node = with_sound(prompt, decode, tiny_model_names, frames)
    pieces = []
    original = streaming().SoundTrack._piece
    monkeypatch.setattr(streaming().SoundTrack, "_piece", lambda self, video, start, end: pieces.append(end) or original(self, video, start, end))
    comfy_inprocess.clear_cache()
    entry = comfy_inprocess.run_prompt(prompt)
    path = saved_file(comfy_inprocess.output_dir, entry, decode)
    assert read_video(path)[0] == frames
    track, audio_seconds, video_seconds = read_track(path)
    rate = 16000
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.name, stream.channels) == ({"mp4": "aac", "webm": "opus"}[video_format], 2)
        file_rate = stream.sample_rate
    assert abs(audio_seconds - video_seconds) <= 1024 / file_rate, (audio_seconds, video_seconds)
    assert len(pieces) >= 2, "the sound came in one piece"
    print(f"{video_format}: {file_rate} Hz, {audio_seconds:.4f} s of sound, {video_seconds:.4f} s of video, {len(pieces)} pieces")
    if video_format == "webm":  # Opus resampled it to 48 kHz; the samples are compared in the mp4
        assert file_rate == 48000
        return
    whole = comfy_inprocess.node_output(one_shot_node)["waveform"][0]
    count = min(track.shape[1], whole.shape[1], round(frames * rate / FPS))
    error = (track[:, :count] - whole[:, :count]).abs()
    scale = whole[:, :count].abs().max()
    seams = np.array(pieces[:-1])
    near_seams = error[:, np.concatenate([np.arange(seam - 64, seam + 64) for seam in seams])]
    steps = (track[:, 1:count] - track[:, : count - 1]).abs()
    whole_steps = (whole[:, 1:count] - whole[:, : count - 1]).abs()
    jump = (steps[:, seams - 1] - whole_steps[:, seams - 1]).abs()
    print(
        f"{video_format}: track vs one-shot decode: "
        f"max error {error.max():.4f} of peak {scale:.4f}, near the seams {near_seams.max():.4f}; "
        f"step at the seams minus the one-shot's there: max {jump.max():.4f}"
    )
    # AAC is lossy, the more so on the random VAE's noise-like sound: the file's track follows ComfyUI's
    # own one-shot decode within a fifth of its peak, and no worse around the seams than anywhere else
    assert error.max() < 0.2 * scale
    assert near_seams.max() <= error.max()
    assert jump.max() < 0.05 * scale


def test_sound_needs_the_audio_vae_and_the_audio_vae_needs_sound(comfy_inprocess, tiny_model_names, tone_file):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=5, wan22_5b=True)
    decode = stream_to_file(prompt, filename_prefix="longvideo/refused")
    video = prompt[decode]["inputs"]["samples"]
    with_sound(prompt, decode, tiny_model_names, 17, tone=False)
    del prompt[decode]["inputs"]["audio_vae"]
    comfy_inprocess.clear_cache()
    with pytest.raises(AssertionError, match=r"carries sound .* but no audio_vae is connected: connect the Audio VAE"):
        comfy_inprocess.run_prompt(prompt)
    prompt[decode]["inputs"].update(samples=video, audio_vae=["80", 0])
    with pytest.raises(AssertionError, match="audio_vae is connected, but the LATENT has no sound"):
        comfy_inprocess.run_prompt(prompt)
    # the video's VAE on audio_vae
    prompt[decode]["inputs"].update(samples=["82", 0], audio_vae=prompt[decode]["inputs"]["vae"])
    with pytest.raises(AssertionError, match="The audio_vae input is not LTX-2's audio VAE: load it with Load LTXV Audio VAE"):
        comfy_inprocess.run_prompt(prompt)
    assert not list((comfy_inprocess.output_dir / "longvideo").glob("refused_*"))


@pytest.mark.parametrize(
    "sound_frames, sound_fps, message",
    [
        (
            17,
            24.0,
            r"The sound is 18 audio latent frames \(0.72 s\), but the video is 17 frames, 0.68 s at 25 fps, which LTX-2 pairs with 17 "
            r"audio latent frames. Set fps to the frame rate the LATENT was made for \(LTXV Empty Latent Audio's frame_rate, here about 23.61\)",
        ),
        (40, 25.0, r"The sound is 40 audio latent frames \(1.60 s\), but the video is 17 frames"),
    ],
)
def test_sound_of_another_length_than_the_video_is_refused(comfy_inprocess, tiny_model_names, loud_checkpoint, sound_frames, sound_fps, message):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=5, wan22_5b=True)
    decode = stream_to_file(prompt, filename_prefix="longvideo/mismatch")
    with_sound(prompt, decode, tiny_model_names, 17, sound_frames=sound_frames, sound_fps=sound_fps, tone=False)
    comfy_inprocess.clear_cache()
    with pytest.raises(AssertionError, match=message):
        comfy_inprocess.run_prompt(prompt)


def test_a_part_way_video_with_sound_is_not_continued(comfy_inprocess, tiny_model_names, loud_checkpoint):
    prompt, _ = checkpointed(tiny_model_names, "diagonal_queue", every_frames=4)
    decode = stream_to_file(prompt, filename_prefix="longvideo/sound_continued", tile_frames=4, tile_overlap=1)
    frames = 4 * (10 - 1) + 1
    with_sound(prompt, decode, tiny_model_names, frames, tone=False)
    vae = prompt[decode]["inputs"]["vae"]
    prompt["91"] = {"class_type": "LongVideoTestFailingVAE", "inputs": {"vae": vae, "decodes": 2}}
    prompt[decode]["inputs"]["vae"] = ["91", 0]
    comfy_inprocess.clear_cache()
    with pytest.raises(AssertionError, match="test VAE failure"):
        comfy_inprocess.run_prompt(prompt)
    [partial] = (comfy_inprocess.output_dir / "longvideo").glob("sound_continued_*.mp4")
    stopped_at = read_video(partial)[0]
    assert 0 < stopped_at < frames
    prompt[decode]["inputs"]["vae"] = vae
    with pytest.raises(AssertionError, match=rf"is this run's video with sound, stopped after {stopped_at} of {frames} frames; .* Turn continue_video off"):
        comfy_inprocess.run_prompt(prompt)
    prompt[decode]["inputs"]["continue_video"] = False
    entry = comfy_inprocess.run_prompt(prompt)
    path = saved_file(comfy_inprocess.output_dir, entry, decode)
    assert path != partial and read_video(path)[0] == frames
    _, audio_seconds, video_seconds = read_track(path)
    assert abs(audio_seconds - video_seconds) <= 1024 / 16000

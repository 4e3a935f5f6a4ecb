"""Streaming Decode to Video File with MiniMax H3: its video VAE decoded in tiles of whole 5-latent-frame
groups with the groups before them that it looks at, and its sound written piece by piece; inside real
ComfyUI with the tiny taeh3 and H3's audio VAE (random weights)."""

import av
import pytest
import torch
from pack_access import call_node, pack_module
from saved_videos import saved_file
from tiny_workflows import tiny_workflow

FPS = 24.0  # MiniMax H3's frame rate
# taeh3 decodes frame by frame, so a tile decoded with its context repeats the whole decode's arithmetic
EXACT = 1e-6


def streaming():
    return pack_module("nodes.streaming_decode")


def taeh3(host, names):
    return call_node(host, "VAELoader", vae_name=names["taeh3"])[0]


def h3_audio_vae(host, names):
    return call_node(host, "VAELoader", vae_name=names["minimax_h3_audio_vae"])[0]


def random_latent(frames, seed=0, videos=1):
    return torch.randn(videos, 24, frames, 2, 2, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()  # as ComfyUI runs nodes
def streamed(vae, latent, tile, first_frame=0):
    return torch.cat(list(streaming().decoded_frames(vae, latent, tile, 2, first_frame)))


@torch.inference_mode()
def vae_decode(host, vae, latent):
    """ComfyUI's own VAE Decode of the whole latent."""
    return call_node(host, "VAEDecode", samples={"samples": latent}, vae=vae)[0]


@pytest.mark.parametrize("frames", [1, 2, 7, 12, 22, 27])
@pytest.mark.parametrize("tile", [5, 10, 16])
def test_tiles_of_whole_groups_give_the_frames_of_vae_decode(comfy_inprocess, tiny_model_names, frames, tile):
    vae = taeh3(comfy_inprocess, tiny_model_names)
    latent = random_latent(frames, seed=frames)
    own = vae_decode(comfy_inprocess, vae, latent)
    ours = streamed(vae, latent, tile)
    assert ours.shape == own.shape and len(own) == streaming().decoded_length(latent, vae)
    difference = (ours - own).abs().max().item()
    print(f"{frames} latent frames, tiles of {tile}: {len(own)} frames, max difference {difference:.3g}")
    assert difference <= EXACT


@pytest.mark.parametrize("first_frame", [1, 17, 20, 38])
def test_a_continued_decode_gives_the_frames_from_where_it_stopped(comfy_inprocess, tiny_model_names, monkeypatch, first_frame):
    """A decode continued after first_frame frames (Checkpoints) starts at the tile that holds that frame."""
    vae = taeh3(comfy_inprocess, tiny_model_names)
    latent = random_latent(12, seed=5)
    own = vae_decode(comfy_inprocess, vae, latent)
    decoded = []
    original = vae.decode
    monkeypatch.setattr(vae, "decode", lambda samples: decoded.append(samples.shape[2]) or original(samples))
    ours = streamed(vae, latent, 5, first_frame)
    assert (ours - own[first_frame:]).abs().max().item() <= EXACT
    # tiles of one group, each with the 2 groups before it: groups 0, 1 (and the last 2 latent frames) are frames 0-16, 17-38
    assert decoded == ([2 + 5, 12] if first_frame < 17 else [12])


def small_h3_video_vae():
    """ComfyUI's MiniMax H3 video VAE with its 2.4 B-parameter decoder transformer swapped for one of two
    small layers (random weights): its own chunked temporal decode, at a size a test can run."""
    import comfy.ops
    from comfy.ldm.minimax import vae

    generator = torch.Generator().manual_seed(3)
    with torch.device("meta"):
        model = vae.MiniMaxH3VideoVAE()
    model.decoder = vae.ViT3DDecoder(
        patch_size=model.vae_ratio, patch_size_t=model.vae_ratio_t, num_layers=2, heads=2, dim_head=32, operations=comfy.ops.manual_cast
    )
    model.post_quant_conv = comfy.ops.manual_cast.Conv3d(24, 24, 1)
    for part in (model.decoder, model.post_quant_conv):
        for parameter in part.parameters():
            parameter.data = torch.randn(parameter.shape, generator=generator) * 0.1
    model.latents_mean, model.latents_std = torch.tensor(vae.LATENTS_MEAN), torch.tensor(vae.LATENTS_STD)
    model.pixel_mean = torch.tensor(vae.IMAGENET_MEAN).view(1, 3, 1, 1, 1)
    model.pixel_std = torch.tensor(vae.IMAGENET_STD).view(1, 3, 1, 1, 1)
    return model


@pytest.mark.parametrize("frames", [7, 12, 22])
@pytest.mark.parametrize("tile_groups", [1, 2])
def test_the_h3_vaes_chunks_decoded_with_one_group_before_give_its_whole_decode(comfy_inprocess, frames, tile_groups):
    """The real H3 VAE decodes chunks of a group and 2 latent frames more and blends each chunk's first frames with
    the chunk before: a tile needs one group before it. (Too large for the test machine at full size: its decode
    code with a small decoder.)"""
    model = small_h3_video_vae()
    context = streaming().h3_context_groups(model)
    assert context == 1

    def decode(latent):
        # as VAE.decode calls it: into a buffer of the shape the model gives
        return model.decode(latent, output_buffer=torch.empty(model.decode_output_shape(latent.shape)))[0].movedim(0, 1)

    latent = random_latent(frames, seed=frames)
    with torch.inference_mode():
        whole = decode(latent)
        ours = torch.cat(
            list(
                pack_module("samplers.chunk_stitching").group_frames_decode(
                    decode, latent[0], streaming().H3_GROUP, streaming().H3_GROUP_FRAMES, streaming().H3_TAIL, context, tile_groups
                )
            )
        )
    assert ours.shape == whole.shape
    difference = (ours - whole).abs().max().item()
    print(f"H3 VAE, {frames} latent frames, tiles of {tile_groups} groups: {len(whole)} frames, max difference {difference:.3g}")
    assert difference <= EXACT


def random_sound(audio_vae, frames, seed=0, videos=1):
    """An audio latent as long as ``frames`` video frames at 24 fps, as EmptyMiniMaxH3LatentAV counts it."""
    length = round(frames / FPS * audio_vae.first_stage_model.latents_per_second)
    return torch.randn(videos, 32, 2, length, generator=torch.Generator().manual_seed(seed))


@torch.inference_mode()
def streamed_track(track, blocks):
    """(The waveform the track gives when the video arrives in blocks of ``blocks`` frames, the samples where its pieces join)."""
    pieces, written = [], 0
    for block in blocks:
        written += block
        pieces.extend(track.until(written))
    return torch.cat(pieces, dim=1), [sum(piece.shape[1] for piece in pieces[:k]) for k in range(1, len(pieces))]


@torch.inference_mode()
def decode_audio(host, audio_vae, sound):
    """ComfyUI's own VAE Decode Audio of the whole audio latent, ``[channels, samples]``."""
    return call_node(host, "VAEDecodeAudio", samples={"samples": sound}, vae=audio_vae)[0]["waveform"][0]


LOUD_AUDIO_VAE = "minimax_h3_audio_vae_loud.safetensors"


@pytest.fixture(scope="module")
def loud_audio_vae(comfy_inprocess, tiny_model_names, tmp_path_factory):
    """H3's audio VAE with its vocoder's last convolution scaled so the sound's standard deviation is 0.4: the random
    weights leave it near 3e-4, where VAE Decode Audio's loudness normalisation (by 5 x the standard deviation, when
    that is above 1) does nothing. Stored in a vae folder of its own."""
    import comfy.utils
    import folder_paths
    from safetensors.torch import save_file

    quiet = h3_audio_vae(comfy_inprocess, tiny_model_names)
    with torch.inference_mode():
        deviation = quiet.decode(random_sound(quiet, 22)).std().item()
    tensors = comfy.utils.load_torch_file(folder_paths.get_full_path_or_raise("vae", tiny_model_names["minimax_h3_audio_vae"]))
    tensors["decoder.conv_post.weight"] = tensors["decoder.conv_post.weight"] * (0.4 / deviation)
    folder = tmp_path_factory.mktemp("loud_vae")
    save_file(tensors, str(folder / LOUD_AUDIO_VAE))
    folder_paths.add_model_folder_path("vae", str(folder))
    return call_node(comfy_inprocess, "VAELoader", vae_name=LOUD_AUDIO_VAE)[0]


@pytest.mark.parametrize("loud", [False, True])
def test_the_sound_decoded_in_pieces_is_vae_decode_audios_waveform(comfy_inprocess, tiny_model_names, request, loud):
    audio_vae = request.getfixturevalue("loud_audio_vae") if loud else h3_audio_vae(comfy_inprocess, tiny_model_names)
    frames = 22  # 7 latent frames: ComfyUI's CPU decode of H3's audio takes some 100 MB per audio latent frame
    sound = random_sound(audio_vae, frames)
    own = decode_audio(comfy_inprocess, audio_vae, sound)
    track = streaming().H3SoundTrack(audio_vae, sound, frames, FPS)
    # pieces as short as the video's blocks (the node waits for pieces of 2 x the context, 104 audio latent frames),
    # each decoded with the whole context
    track.min_piece = 0
    ours, seams = streamed_track(track, [5, 5, 5, 7])
    difference = (ours - own[:, : ours.shape[1]]).abs().max().item()
    print(
        f"context {track.context} audio latent frames, pieces joined at {seams}, scale {track._scale(0):.3g}, "
        f"peak {own.abs().max().item():.3g}, max difference {difference:.3g}"
    )
    assert track._scale(0) > 1.5 if loud else track._scale(0) == 1.0
    assert ours.shape == (2, round(frames / FPS * 32000)) and len(seams) == 3
    # the waveform outlasts the video by a part of an audio latent frame (round(22 x 40 / 24) latents of 800 samples)
    assert own.shape[1] - ours.shape[1] < 800
    assert difference <= EXACT * own.abs().max().item()


def decode_to_file(host, samples, vae, audio_vae=None, **changes):
    inputs = dict(
        samples=samples,
        vae=vae,
        fps=FPS,
        filename_prefix="longvideo/h3",
        format="mp4",
        crf=19,
        tile_frames=5,
        tile_overlap=2,
        continue_video=False,
        audio_vae=audio_vae,
    )
    return call_node(host, "LongVideoDecodeToVideoFile", **{**inputs, **changes})[0]


def av_latent(video, sound):
    import comfy.nested_tensor

    return {"samples": comfy.nested_tensor.NestedTensor((video, sound))}


def test_the_streamed_h3_example_writes_its_sound_as_long_as_the_video(comfy_inprocess, tiny_model_names, loud_audio_vae):
    """fifo_minimax_h3_to_file on the tiny models: the Diagonal Queue's H3 latent of 12 latent frames, tiles of one group."""
    prompt = tiny_workflow("fifo_minimax_h3_to_file", tiny_model_names, length=12)
    decode = next(node_id for node_id, node in prompt.items() if node["class_type"] == "LongVideoDecodeToVideoFile")
    prompt[decode]["inputs"]["tile_frames"] = 5
    prompt[prompt[decode]["inputs"]["audio_vae"][0]]["inputs"]["vae_name"] = LOUD_AUDIO_VAE
    comfy_inprocess.clear_cache()
    path = saved_file(comfy_inprocess.output_dir, comfy_inprocess.run_prompt(prompt), decode)
    with av.open(str(path)) as container:
        [picture], [track] = container.streams.video, container.streams.audio
        frames = sum(1 for _ in container.decode(video=0))
        container.seek(0)
        samples = sum(frame.samples for frame in container.decode(audio=0))
        assert (picture.average_rate, track.sample_rate, track.channels) == (FPS, 32000, 2)
    assert frames == 39  # 12 latent frames: 17 + 17 + 5
    # the sound lasts as long as the picture, to within an AAC frame (1024 samples)
    assert abs(samples / 32000 - frames / FPS) <= 1024 / 32000, (samples, frames)


@pytest.mark.parametrize(
    "case, message",
    [
        ("no audio_vae", "no audio_vae is connected"),
        ("no sound", "the LATENT has no sound"),
        ("other video vae", "the vae is not MiniMax H3's video VAE"),
        ("other audio vae", "the audio_vae is not MiniMax H3's audio VAE"),
        ("short sound", "which MiniMax H3 pairs with 37 audio latent frames"),
        ("other fps", "Set fps to 24"),
        ("off the grid", "set the sampler's length to 7 or 12"),
    ],
)
def test_what_cannot_be_written_is_refused_with_what_to_do(comfy_inprocess, tiny_model_names, case, message):
    host, names = comfy_inprocess, tiny_model_names
    vae, audio_vae = taeh3(host, names), h3_audio_vae(host, names)
    video, sound = random_latent(7), random_sound(audio_vae, 22)
    inputs = {"samples": av_latent(video, sound), "vae": vae, "audio_vae": audio_vae}
    if case == "no audio_vae":
        inputs["audio_vae"] = None
    elif case == "no sound":
        inputs["samples"] = {"samples": video}
    elif case == "other video vae":
        inputs.update(vae=call_node(host, "VAELoader", vae_name=names["taew22"])[0], samples=av_latent(torch.randn(1, 48, 2, 2, 2), sound))
    elif case == "other audio vae":
        inputs["audio_vae"] = call_node(host, "LTXVAudioVAELoader", ckpt_name=names["ltx2_ckpt"])[0]
    elif case == "short sound":
        inputs["samples"] = av_latent(video, sound[..., :-1])
    elif case == "other fps":
        inputs["fps"] = 25.0
    else:
        inputs["samples"] = av_latent(random_latent(9), sound)
    with pytest.raises(ValueError, match=message):
        decode_to_file(host, **inputs)

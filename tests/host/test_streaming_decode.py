"""Streaming Decode to Video File inside real ComfyUI, with the tiny VAEs and the shipped FIFO workflow."""

import json

import pytest
import torch
from pack_access import call_node, pack_module
from saved_videos import read_video, saved_file
from tiny_workflows import stream_to_file, tiny_workflow

# role -> latent channels of the tiny VAE
VAES = {"wan21_vae": 16, "taew22": 48, "ltxv_ckpt": 128}


def load_vae(host, names, role):
    if role == "ltxv_ckpt":
        return call_node(host, "CheckpointLoaderSimple", ckpt_name=names[role])[2]
    return call_node(host, "VAELoader", vae_name=names[role])[0]


@torch.no_grad()
def streamed(vae, latent, tile, overlap):
    blocks = pack_module("nodes.streaming_decode").decoded_frames(vae, latent, tile, overlap)
    return torch.cat(list(blocks))


def random_video_latent(channels, frames, size=2, seed=0):
    return torch.randn(1, channels, frames, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("role", VAES)
@pytest.mark.parametrize("tile, overlap", [(4, 1), (6, 2), (5, 2)])
def test_streamed_decode_equals_the_vaes_own_temporal_tiling(comfy_inprocess, tiny_model_names, monkeypatch, role, tile, overlap):
    vae = load_vae(comfy_inprocess, tiny_model_names, role)
    if role == "ltxv_ckpt":
        # the random-weight LTX VAE decodes far outside 0..1; ComfyUI's tiler clamps after blending,
        # the stream clamps each tile before, so compare the blending without the clamp
        monkeypatch.setattr(vae, "process_output", lambda image: image)
    latent = random_video_latent(VAES[role], 11)
    with torch.inference_mode():  # as ComfyUI runs every node; its VAE post-processes in place
        own = vae.decode_tiled(latent, tile_x=64, tile_y=64, overlap=8, tile_t=tile, overlap_t=overlap)[0]
    ours = streamed(vae, latent, tile, overlap)
    assert ours.shape == own.shape
    # relative to the video's own variation: the random-weight autoencoders' outputs span 1e-4 to 1
    torch.testing.assert_close(ours, own, rtol=0, atol=1e-4 * (own - own.mean()).abs().mean().item())


@pytest.mark.parametrize("role", VAES)
def test_streamed_decode_has_the_frames_of_a_full_decode(comfy_inprocess, tiny_model_names, role):
    vae = load_vae(comfy_inprocess, tiny_model_names, role)
    latent = random_video_latent(VAES[role], 13, seed=1)
    full = vae.decode(latent)[0]
    ours = streamed(vae, latent, 5, 2)
    assert ours.shape == full.shape
    # before the first overlap only the first tile contributes, and it saw the same latent frames
    if role != "ltxv_ckpt":  # LTX-Video's decoder also looks at later latent frames
        first_own = vae.temporal_compression_decode() * (5 - 2)
        torch.testing.assert_close(ours[:first_own], full[:first_own], rtol=0, atol=1e-5)


def test_tiled_decode_approximates_the_full_decode_without_seams(comfy_inprocess, tiny_model_names):
    # the tiny Wan 2.2 autoencoder carries one frame of state per block, so tiles can warm up
    # and away from the seams give the full decode back
    vae = load_vae(comfy_inprocess, tiny_model_names, "taew22_fading")
    latent = random_video_latent(48, 16, size=4)
    full = vae.decode(latent)[0]
    ours = streamed(vae, latent, 8, 3)
    variation = (full - full.mean(dim=0)).abs().mean()
    error = (ours - full).abs().mean(dim=(1, 2, 3)) / variation
    assert error.mean() < 0.03, error
    assert error.max() < 0.15, error
    # the tiles overlap on frames 20-28 and 40-48; the later tile's state settles within two more
    # latent frames (8 frames), and from there on the decode is the full one again
    exact = torch.ones(len(full), dtype=torch.bool)
    exact[20:37] = exact[40:57] = False
    assert error[exact].max() < 1e-3, error
    assert error[~exact].max() > 1e-2, "the check above would not see a seam"


def test_image_model_latents_decode_frame_by_frame(comfy_inprocess):
    # an image VAE (no temporal compression) gets frames as batch rows, as SD1.5 + a motion module makes them
    vae = call_node(comfy_inprocess, "VAELoader", vae_name="pixel_space")[0]
    latent = torch.rand(7, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ours = streamed(vae, latent, 3, 1)
    torch.testing.assert_close(ours, vae.decode(latent))


def test_a_long_run_streams_to_a_file_through_the_server(comfy_server, tiny_model_names):
    length = 120
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=length, wan22_5b=True)
    decode = stream_to_file(prompt)
    workflow = {"nodes": [], "links": [], "version": 0.4, "extra": {"test": "streamed"}}
    entry = comfy_server.run_prompt(prompt, extra_data={"extra_pnginfo": {"workflow": workflow}})
    path = saved_file(comfy_server.output_dir, entry, decode)
    assert path.parent == comfy_server.output_dir / "longvideo"
    frames, size, fps, tags = read_video(path)
    assert frames == 4 * (length - 1) + 1
    # a 64x64 empty latent (Empty Hunyuan Latent Video, 1/8) is sized for Wan 2.2-5B's 1/16 by the
    # sampler as KSampler sizes it, so the video is the 64x64 asked for
    assert size == (64, 64) and fps == 16
    assert json.loads(tags["workflow"]) == workflow
    assert json.loads(tags["prompt"])[decode]["class_type"] == "LongVideoDecodeToVideoFile"


@pytest.mark.parametrize("video_format", ["mp4", "webm"])
def test_the_video_output_is_the_written_file_and_plugs_into_save_video(comfy_inprocess, tiny_model_names, video_format):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=9, wan22_5b=True)
    decode = stream_to_file(prompt, format=video_format)
    prompt["90"] = {"class_type": "SaveVideo", "inputs": {"video": [decode, 0], "filename_prefix": "copy", "format": "auto", "codec": "auto"}}
    comfy_inprocess.clear_cache()
    entry = comfy_inprocess.run_prompt(prompt)
    path = saved_file(comfy_inprocess.output_dir, entry, decode)
    assert path.suffix == f".{video_format}"
    video = comfy_inprocess.node_output(decode)
    # decoded through ComfyUI's own reader (0.33's get_frame_count says 1 for any untrimmed webm)
    assert len(video.get_components().images) == read_video(path)[0] == 33
    assert video.get_dimensions() == (64, 64)
    copy = comfy_inprocess.output_dir / entry["outputs"]["90"]["images"][0]["filename"]
    assert read_video(copy)[0] == 33


def test_a_failed_decode_keeps_a_valid_video_of_the_tiles_written(comfy_inprocess, tiny_model_names):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=20, wan22_5b=True)
    decode = stream_to_file(prompt, filename_prefix="longvideo/failing")
    prompt["90"] = {"class_type": "LongVideoTestFailingVAE", "inputs": {"vae": prompt[decode]["inputs"]["vae"], "decodes": 2}}
    prompt[decode]["inputs"]["vae"] = ["90", 0]
    comfy_inprocess.clear_cache()
    with pytest.raises(AssertionError, match="test VAE failure"):
        comfy_inprocess.run_prompt(prompt)
    [path] = (comfy_inprocess.output_dir / "longvideo").glob("failing_*.mp4")
    # tiles of 8 latent frames sharing 2: the third decode fails; written are the first tile's
    # 29 frames and the second's, less the 5 frames still held back for the next crossfade
    assert read_video(path)[0] == 29 + 24 - 5


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"tile_frames": 4, "tile_overlap": 3}, r"tile_overlap \(3\) can be at most half of tile_frames \(4\)"),
        ({"crf": 60}, "crf 60 is out of H.264's range"),
        ({"tile_overlap": 0}, "must share at least one latent frame"),
    ],
)
def test_settings_that_cannot_work_are_refused_with_a_reason(comfy_inprocess, tiny_model_names, changes, message):
    prompt = tiny_workflow("fifo_wan21_t2v_1.3B", tiny_model_names, length=5, wan22_5b=True)
    stream_to_file(prompt, **changes)
    comfy_inprocess.clear_cache()
    with pytest.raises(AssertionError, match=message):
        comfy_inprocess.run_prompt(prompt)


def test_the_progressive_ar_samplers_latent_streams_to_a_file(comfy_inprocess, tiny_model_names):
    # LTX-Video compresses time 8x: tiles of 6 latent frames are 41 frames sharing 9
    prompt = tiny_workflow("pavdm_ltxv", tiny_model_names, length=14)
    decode = stream_to_file(prompt, tile_frames=6, tile_overlap=2, fps=24.0)
    comfy_inprocess.clear_cache()
    entry = comfy_inprocess.run_prompt(prompt)
    frames, size, fps, _ = read_video(saved_file(comfy_inprocess.output_dir, entry, decode))
    assert frames == 8 * (14 - 1) + 1
    assert size == (64, 64) and fps == 24

"""Streaming Decode to Video File continues the video of a run with checkpoints: a decode that stopped
part-way is finished onto the same file, decoding only the tiles it still needs."""

import av
import pytest
import torch
from pack_access import call_node, pack_module
from saved_videos import read_video, saved_file
from test_checkpoints import STATES, checkpointed, state_frames
from tiny_workflows import stream_to_file


def pixels(path) -> torch.Tensor:
    with av.open(str(path)) as container:
        return torch.stack([torch.from_numpy(frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)])


@pytest.mark.parametrize("role, channels", [("taew22", 48), ("ltxv_ckpt", 128)])
@pytest.mark.parametrize("first_frame", [0, 9, 13, 30, 44])
def test_a_decode_from_a_frame_on_gives_the_frames_of_a_whole_decode_and_skips_the_tiles_before(comfy_inprocess, tiny_model_names, role, channels, first_frame):
    if role == "ltxv_ckpt":
        vae = call_node(comfy_inprocess, "CheckpointLoaderSimple", ckpt_name=tiny_model_names[role])[2]
    else:
        vae = call_node(comfy_inprocess, "VAELoader", vae_name=tiny_model_names[role])[0]
    latent = torch.randn(1, channels, 13, 2, 2, generator=torch.Generator().manual_seed(0))
    streaming = pack_module("nodes.streaming_decode")
    decodes = []
    original = vae.decode

    def counted(samples):
        decodes.append(samples.shape[2])
        return original(samples)

    whole = torch.cat(list(streaming.decoded_frames(vae, latent, 5, 2)))
    vae.decode = counted
    later = torch.cat(list(streaming.decoded_frames(vae, latent, 5, 2, first_frame)))
    assert torch.equal(later, whole[first_frame:])
    # tiles of 5 latent frames sharing 2 start at latent frames 0, 3, 6, 9: the decode from a frame on
    # starts with the last tile whose frames from there on are not crossfaded with the one before
    compression = vae.temporal_compression_decode()
    shared = compression * (2 - 1) + 1
    first_tile = max([0] + [k for k, start in enumerate((0, 3, 6, 9)) if k and compression * start + shared <= first_frame])
    assert len(decodes) == 4 - first_tile


def test_a_decode_that_stopped_is_finished_onto_the_same_file(comfy_inprocess, tiny_model_names):
    prompt, _ = checkpointed(tiny_model_names, "diagonal_queue", every_frames=4)
    decode = stream_to_file(prompt, filename_prefix="longvideo/continued", crf=0, tile_frames=4, tile_overlap=1)
    vae = prompt[decode]["inputs"]["vae"]
    prompt["91"] = {"class_type": "LongVideoTestFailingVAE", "inputs": {"vae": vae, "decodes": 2}}
    prompt[decode]["inputs"]["vae"] = ["91", 0]
    before = set((comfy_inprocess.output_dir / STATES).iterdir()) if (comfy_inprocess.output_dir / STATES).is_dir() else set()
    comfy_inprocess.clear_cache()
    with pytest.raises(AssertionError, match="test VAE failure"):
        comfy_inprocess.run_prompt(prompt)
    [partial] = (comfy_inprocess.output_dir / "longvideo").glob("continued_*.mp4")
    stopped_at = read_video(partial)[0]
    # a crash while decoding: the sampler goes on from its last state (all 10 frames done, no model call)
    [run] = set((comfy_inprocess.output_dir / STATES).iterdir()) - before
    prompt["90"]["inputs"]["resume_from"] = f"{run.name}/frame_{state_frames(comfy_inprocess, run.name)[-1]:06d}.safetensors"
    prompt[decode]["inputs"]["vae"] = vae
    comfy_inprocess.clear_cache()
    entry = comfy_inprocess.run_prompt(prompt)
    path = saved_file(comfy_inprocess.output_dir, entry, decode)
    assert path == partial
    frames, _, fps, tags = read_video(path)
    assert 0 < stopped_at < frames == 4 * (10 - 1) + 1 and fps == 16
    assert tags["longvideo_run"] == run.name and "prompt" in tags
    # the same frames as a decode in one go
    prompt[decode]["inputs"].update(filename_prefix="longvideo/in_one_go", continue_video=False)
    comfy_inprocess.clear_cache()
    in_one_go = saved_file(comfy_inprocess.output_dir, comfy_inprocess.run_prompt(prompt), decode)
    assert torch.equal(pixels(path), pixels(in_one_go))
    # a finished video is output as it is
    prompt[decode]["inputs"].update(filename_prefix="longvideo/continued", continue_video=True)
    comfy_inprocess.clear_cache()
    assert saved_file(comfy_inprocess.output_dir, comfy_inprocess.run_prompt(prompt), decode) == path
    assert len(list((comfy_inprocess.output_dir / "longvideo").glob("continued_*"))) == 1

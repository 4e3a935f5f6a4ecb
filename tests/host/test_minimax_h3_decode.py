"""Streaming Decode to Video File with MiniMax H3: its video VAE decoded in tiles of whole 5-latent-frame
groups with the groups before them that it looks at, and its sound written piece by piece; inside real
ComfyUI with the tiny taeh3 and H3's audio VAE (random weights)."""
import av
import pytest
import torch

from pack_access import call_node, pack_module
from saved_videos import read_video, saved_file
from tiny_workflows import stream_to_file, tiny_workflow

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

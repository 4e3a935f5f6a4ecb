"""The example inputs shipped in the pack's input/ folder, drawn procedurally, and what the workflows need of them.

Run as a script to write them again: python tests/host/example_inputs.py
(needs torch, PyAV and Pillow, all of which ComfyUI installs).
"""
from __future__ import annotations

from pathlib import Path

import torch

PACK_INPUTS = Path(__file__).resolve().parents[2] / "input"
GUIDE_IMAGE = ("example.png", 832, 480)
# the extension workflows encode the clip at their latent's size: Cosmos Predict2 848x480, Wan 2.2 TI2V-5B 1280x704
CONTEXT_CLIPS = {"pavdm_cosmos_predict2_2b_extend": ("clip_to_extend.mp4", 848, 480), "pavdm_wan22_5b_extend": ("clip_to_extend_1280x704.mp4", 1280, 704)}
CONTEXT_FRAMES = 17  # 5 latent frames for Wan / Cosmos: more than one chunk of 4 to take the context from
CHUNKS_VIDEO = ("chunks_to_join.mp4", 320, 192)
CHUNK_LENGTH, CHUNK_OVERLAP, CHUNKS = 81, 8, 2  # as stitch_chunks.json stitches them
FPS = 16


def landscape(t: float, width: int, height: int) -> torch.Tensor:
    """A frame [height, width, 3] in 0..1 of a sunset over the sea, the camera panning right with time t (seconds)."""
    y = torch.linspace(0.0, 1.0, height)[:, None].expand(height, width)
    screen_x = torch.linspace(0.0, width / height, width)[None, :].expand(height, width)
    x = screen_x + 0.08 * t  # the far sun stays in place on screen, the hills and the waves move by
    horizon = 0.58
    sky_t = (y / horizon).clamp(0, 1)[..., None]
    sky = torch.tensor([0.10, 0.16, 0.42]) * (1 - sky_t) + torch.tensor([0.98, 0.62, 0.32]) * sky_t
    glow = torch.exp(-((screen_x - 0.75 * width / height) ** 2 + (y - horizon + 0.12) ** 2) / 0.006)[..., None]
    sky = sky + glow * torch.tensor([0.35, 0.25, 0.05])
    ripples = 0.5 + 0.5 * torch.sin(90 * (y - horizon) ** 0.7 * 6 + 3 * x + 2.5 * t)
    depth = ((y - horizon) / (1 - horizon)).clamp(0, 1)[..., None]
    sea = torch.tensor([0.55, 0.35, 0.30]) * (1 - depth) + torch.tensor([0.05, 0.12, 0.25]) * depth
    sea = sea + 0.06 * ripples[..., None] * (1 - depth)
    hills = horizon - 0.05 - 0.05 * torch.sin(4.0 * x) - 0.03 * torch.sin(11.0 * x + 1.0)
    frame = torch.where((y < horizon)[..., None], sky, sea)
    frame = torch.where(((y > hills) & (y < horizon))[..., None], torch.tensor([0.12, 0.10, 0.16]).expand(height, width, 3), frame)
    return frame.clamp(0, 1)


def write_video(path: Path, frames, width: int, height: int) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "26"}
        for frame in frames:
            pixels = (frame * 255).round().to(torch.uint8).numpy()
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())


def write_example_inputs(folder: Path = PACK_INPUTS) -> None:
    from PIL import Image

    folder.mkdir(exist_ok=True)
    name, width, height = GUIDE_IMAGE
    Image.fromarray((landscape(0.0, width, height) * 255).round().to(torch.uint8).numpy()).save(folder / name, optimize=True)
    for name, width, height in CONTEXT_CLIPS.values():
        write_video(folder / name, (landscape(index / FPS, width, height) for index in range(CONTEXT_FRAMES)), width, height)
    name, width, height = CHUNKS_VIDEO
    step = CHUNK_LENGTH - CHUNK_OVERLAP
    # every chunk after the first starts with the previous chunk's last frames, and its colours have drifted
    drift = [torch.ones(3), torch.tensor([1.15, 1.0, 0.82])]
    frames = (
        (landscape((chunk * step + index) / FPS, width, height) * drift[chunk % 2]).clamp(0, 1)
        for chunk in range(CHUNKS) for index in range(CHUNK_LENGTH)
    )
    write_video(folder / name, frames, width, height)


if __name__ == "__main__":
    write_example_inputs()
    print(f"wrote {', '.join(sorted(path.name for path in PACK_INPUTS.iterdir()))} in {PACK_INPUTS}")

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
# LTX-2 extends a clip with its sound; its latent is 32x smaller than the picture, and 24 fps makes frames
# own 8 or 9 of its 25 audio latents per second
SOUND_CLIP = ("clip_with_sound_to_extend.mp4", 768, 512)
SOUND_CLIP_FRAMES, SOUND_CLIP_FPS = 25, 24  # 4 latent frames: 1 + 3 x 8
SOUND_SAMPLE_RATE = 48000
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


def waves_and_gulls(seconds: float, sample_rate: int = SOUND_SAMPLE_RATE) -> torch.Tensor:
    """Stereo sound [2, samples] in -1..1 for the sunset: a low swell and two gull-like chirps."""
    t = torch.arange(round(seconds * sample_rate)) / sample_rate
    swell = 0.25 * torch.sin(2 * torch.pi * 110 * t) * (0.6 + 0.4 * torch.sin(2 * torch.pi * 0.7 * t))
    chirp = 0.15 * torch.sin(2 * torch.pi * (900 + 600 * (t % 0.5)) * t) * (t % 0.5 < 0.12)
    return torch.stack([swell + chirp, swell + 0.5 * chirp]).clamp(-1, 1)


def write_video(path: Path, frames, width: int, height: int, fps: int = FPS, sound=None) -> None:
    """An H.264 video, with ``sound`` ([channels, samples] at SOUND_SAMPLE_RATE) as an AAC track if given."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "26"}
        track = None if sound is None else container.add_stream("aac", rate=SOUND_SAMPLE_RATE, layout="stereo")
        for frame in frames:
            pixels = (frame * 255).round().to(torch.uint8).numpy()
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
        if track is not None:
            samples = av.AudioFrame.from_ndarray(sound.to(torch.float32).contiguous().numpy(), format="fltp", layout="stereo")
            samples.sample_rate = SOUND_SAMPLE_RATE
            container.mux(track.encode(samples))
            container.mux(track.encode())


def write_example_inputs(folder: Path = PACK_INPUTS) -> None:
    from PIL import Image

    folder.mkdir(exist_ok=True)
    name, width, height = GUIDE_IMAGE
    Image.fromarray((landscape(0.0, width, height) * 255).round().to(torch.uint8).numpy()).save(folder / name, optimize=True)
    for name, width, height in CONTEXT_CLIPS.values():
        write_video(folder / name, (landscape(index / FPS, width, height) for index in range(CONTEXT_FRAMES)), width, height)
    name, width, height = SOUND_CLIP
    write_video(
        folder / name,
        (landscape(index / SOUND_CLIP_FPS, width, height) for index in range(SOUND_CLIP_FRAMES)),
        width,
        height,
        SOUND_CLIP_FPS,
        waves_and_gulls(SOUND_CLIP_FRAMES / SOUND_CLIP_FPS),
    )
    name, width, height = CHUNKS_VIDEO
    step = CHUNK_LENGTH - CHUNK_OVERLAP
    # every chunk after the first starts with the previous chunk's last frames, and its colours have drifted
    drift = [torch.ones(3), torch.tensor([1.15, 1.0, 0.82])]
    frames = (
        (landscape((chunk * step + index) / FPS, width, height) * drift[chunk % 2]).clamp(0, 1) for chunk in range(CHUNKS) for index in range(CHUNK_LENGTH)
    )
    write_video(folder / name, frames, width, height)


if __name__ == "__main__":
    write_example_inputs()
    print(f"wrote {', '.join(sorted(path.name for path in PACK_INPUTS.iterdir()))} in {PACK_INPUTS}")

"""The input files the shipped workflows load, made small and deterministic for tests."""

from pathlib import Path

import torch

GUIDE_IMAGE = "example.png"  # ComfyUI ships this name in its input folder; the k-step workflows load it
CONTEXT_VIDEO = "clip_to_extend.mp4"  # the clip the PA-VDM extension workflow loads
CHUNKS_VIDEO = "chunks_to_join.mp4"  # the back-to-back chunks the stitching workflow loads
SOUND_CLIP = "clip_with_sound_to_extend.mp4"  # the clip with sound the LTX-2 extension workflow loads


def write_guide_image(input_dir: Path, size: int = 64) -> None:
    from PIL import Image

    path = input_dir / GUIDE_IMAGE
    if not path.exists():
        ramp = torch.linspace(0, 255, size).to(torch.uint8)
        pixels = torch.stack([ramp[None].expand(size, size), ramp[:, None].expand(size, size), ramp.flip(0)[None].expand(size, size)], -1)
        Image.fromarray(pixels.numpy()).save(path)


def write_test_video(path: Path, frames: int = 9, size: int = 64) -> None:
    """Colour ramps whose blue channel rises frame by frame, so frame order is visible."""
    import av  # ComfyUI's own dependency, present wherever the host tier runs

    if path.exists():
        return
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        ramp = torch.linspace(0, 255, size).round().to(torch.uint8)
        for index in range(frames):
            image = torch.stack(
                [ramp[None].expand(size, size), ramp[:, None].expand(size, size), torch.full((size, size), (20 * index) % 256, dtype=torch.uint8)], -1
            )
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image.numpy(), format="rgb24")))
        container.mux(stream.encode())


def write_sound_clip(path: Path, fps: int = 24, frames: int = 25, size: int = 64) -> None:
    """Colour ramps whose blue channel rises frame by frame, with the example clip's sound (AAC)."""
    from example_inputs import waves_and_gulls, write_video

    if path.exists():
        return
    ramp = torch.linspace(0, 1, size)
    images = (
        torch.stack([ramp[None].expand(size, size), ramp[:, None].expand(size, size), torch.full((size, size), index / frames)], -1) for index in range(frames)
    )
    write_video(path, images, size, size, fps, waves_and_gulls(frames / fps))


def write_workflow_inputs(input_dir: Path, chunk_frames: int) -> None:
    """Every file a shipped workflow loads from ComfyUI's input folder."""
    write_guide_image(input_dir)
    write_test_video(input_dir / CONTEXT_VIDEO)
    write_sound_clip(input_dir / SOUND_CLIP)
    write_test_video(input_dir / CHUNKS_VIDEO, frames=chunk_frames)

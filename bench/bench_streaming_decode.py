"""Streaming decode and write benchmark: peak memory writing 256, 2,048 and 10,000 frames at 64x64.

Run: python bench/bench_streaming_decode.py   (CPU is enough; prints a markdown table)

Each length runs in a fresh process, which reports its peak RSS. "streamed" is the path of the
Streaming Decode to Video File node: temporal tiles decoded one at a time (decode_in_tiles) and
written to an mp4 as they finish. "whole IMAGE" is the usual VAE Decode -> Create Video -> Save
Video path: every frame decoded into one float32 IMAGE, then written. The decoder is a stand-in
for a Wan-style VAE (4x time, 8x space, 4n+1 frames): a 3-D convolution on the latent and an
upsampling, so the numbers show the pipeline around the VAE, not a VAE's own working memory.
Lengths are the nearest 4n+1 at or above 256, 2,048 and 10,000 frames. The latent itself is held
whole in both paths, as ComfyUI passes a LATENT; its size is listed, and it is all that grows with
the length on the streamed path.
"""
from __future__ import annotations

import argparse
import importlib.util
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from samplers.chunk_stitching import decode_in_tiles  # noqa: E402

# the writer imports no ComfyUI; load its file without the `nodes` package, which registers nodes
_spec = importlib.util.spec_from_file_location("longvideo_video_file", ROOT / "nodes" / "video_file.py")
video_file = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(video_file)

TARGET_FRAMES = (256, 2048, 10_000)
TIME_COMPRESSION, SPACE_COMPRESSION, LATENT_CHANNELS, SIZE = 4, 8, 16, 64
TILE, OVERLAP = 16, 2


class StandInVideoDecoder:
    """latent [1, 16, n, 8, 8] -> frames [4 (n - 1) + 1, 64, 64, 3] in 0..1."""

    def __init__(self):
        torch.manual_seed(0)
        self.mix = torch.nn.Conv3d(LATENT_CHANNELS, 3, 3, padding=1)

    @torch.no_grad()
    def __call__(self, latent):
        rgb = torch.sigmoid(self.mix(latent))[0]  # [3, n, h, w]
        repeats = torch.tensor([1] + [TIME_COMPRESSION] * (rgb.shape[1] - 1))
        frames = rgb.repeat_interleave(repeats, dim=1).movedim(1, 0)
        return torch.nn.functional.interpolate(frames, scale_factor=SPACE_COMPRESSION, mode="nearest").movedim(1, -1)


def latent_frames(frames: int) -> int:
    return -(-(frames - 1) // TIME_COMPRESSION) + 1


def write(mode: str, frames: int, path: str) -> None:
    decoder = StandInVideoDecoder()
    latent_size = SIZE // SPACE_COMPRESSION
    latent = torch.randn(LATENT_CHANNELS, latent_frames(frames), latent_size, latent_size, generator=torch.Generator().manual_seed(0))
    with video_file.VideoFileWriter(path, fps=16.0) as writer:
        if mode == "streamed":
            for block in decode_in_tiles(decoder, latent, TILE, OVERLAP, TIME_COMPRESSION):
                writer.write(block)
        else:
            writer.write(decoder(latent[None]))


def measure(mode: str, frames: int) -> tuple[float, int, float]:
    """(peak RSS in MB, frames in the file, seconds) of one fresh process."""
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "bench.mp4")
        start = time.perf_counter()
        out = subprocess.run([sys.executable, __file__, "--memory-run", mode, str(frames), path], capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        with av.open(path) as container:
            written = sum(1 for _ in container.decode(video=0))
    return float(out.stdout.strip()), written, seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-run", nargs=3, metavar=("MODE", "FRAMES", "PATH"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory_run:
        mode, frames, path = args.memory_run
        write(mode, int(frames), path)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return

    print(f"{SIZE}x{SIZE} frames, mp4 (H.264), tiles of {TILE} latent frames sharing {OVERLAP}, 1 CPU thread")
    print("| frames | streamed: peak RSS (MB) | streamed: s | whole IMAGE: peak RSS (MB) | whole IMAGE: s | float32 IMAGE (MB) | latent (MB) |")
    print("|---|---|---|---|---|---|---|")
    for target in TARGET_FRAMES:
        streamed_mb, written, streamed_s = measure("streamed", target)
        whole_mb, whole_written, whole_s = measure("whole", target)
        assert written == whole_written == TIME_COMPRESSION * (latent_frames(target) - 1) + 1
        image_mb = written * SIZE * SIZE * 3 * 4 / 2**20
        latent_mb = latent_frames(target) * LATENT_CHANNELS * (SIZE // SPACE_COMPRESSION) ** 2 * 4 / 2**20
        print(f"| {written} | {streamed_mb:.0f} | {streamed_s:.1f} | {whole_mb:.0f} | {whole_s:.1f} | {image_mb:.0f} | {latent_mb:.1f} |")


if __name__ == "__main__":
    main()

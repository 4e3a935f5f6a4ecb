"""Diagonal Queue Sampler benchmark: model calls per output frame, sampler overhead, peak memory.

Run: python bench/bench_diagonal_queue.py   (CPU is enough; prints a markdown table)

The model is a fixed 3-D convolution standing in for a video network: what matters here is how
the sampler around it behaves, not what it draws. Overhead is the wall time spent outside the
model divided by the time inside it. Peak memory is the peak RSS of a fresh process that consumes
frames as they are emitted, so it shows whether the sampler itself grows with the length.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from samplers.diagonal_queue import QueueLayout, generate  # noqa: E402
from samplers.frame_levels import NoiseSpace  # noqa: E402

LAYOUTS = {
    "DD": QueueLayout(window=8, partitions=1),
    "DD+LP": QueueLayout(window=8, partitions=4),
    "DD+LP+LD": QueueLayout(window=8, partitions=4, lookahead=True),
}


class ConvVideoModel:
    """x0 from ``depth`` 3-D convolutions: a deterministic stand-in with a fixed cost per frame.

    One convolution is ~7 kFLOP per latent element; a real video transformer spends thousands of
    times more, so the overhead at depth 1 is an upper bound far above what a real model sees.
    """

    def __init__(self, channels: int, depth: int = 1):
        torch.manual_seed(0)
        self.convs = [torch.nn.Conv3d(channels, channels, 3, padding=1) for _ in range(depth)]
        self.calls = 0
        self.frames = 0
        self.seconds = 0.0

    @torch.no_grad()
    def __call__(self, x, sigmas, prompt):
        start = time.perf_counter()
        out = x
        for conv in self.convs:
            out = conv(out) * 0.1 + out * 0.9
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.frames += x.shape[0] * x.shape[2]
        return out


def run(layout: QueueLayout, num_frames: int, channels: int, size: int, batch_windows: bool, depth: int = 1):
    model = ConvVideoModel(channels, depth)
    sigmas = torch.cat([torch.linspace(1.0, 1.0 / layout.levels, layout.levels), torch.zeros(1)])
    clip = torch.randn(1, channels, layout.window, size, size)
    start = time.perf_counter()
    with torch.no_grad():
        for _index, _frame in generate(model, clip, sigmas, layout, num_frames, NoiseSpace.RECTIFIED_FLOW, 1.0, torch.Generator().manual_seed(0), batch_windows):
            pass
    total = time.perf_counter() - start
    return model, total


def peak_rss_mb(layout_name: str, num_frames: int) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-run", layout_name, str(num_frames)], capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-run", nargs=2, metavar=("LAYOUT", "FRAMES"))
    parser.add_argument("--frames", type=int, default=48, help="output frames for the speed measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory_run:
        name, frames = args.memory_run
        run(LAYOUTS[name], int(frames), channels=4, size=16, batch_windows=False)
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return

    print(f"eta 1, latent 16x32x32, window 8, N = {args.frames} output frames, 1 CPU thread")
    print("| options | model calls per output frame (steady) | calls per frame incl. warm-up | frames per call | overhead, 1 conv | overhead, 10 convs | overhead, 10 convs, batched | peak RSS 64 / 512 / 4096 frames (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, layout in LAYOUTS.items():
        cells = []
        for depth, batched in ((1, False), (10, False), (10, True)):
            model, total = run(layout, args.frames, channels=16, size=32, batch_windows=batched, depth=depth)
            cells.append(f"{(total - model.seconds) / model.seconds:.2%}")
            if depth == 1:
                calls, frames_per_call = model.calls, model.frames / model.calls
        memory = " / ".join(f"{peak_rss_mb(name, n):.0f}" for n in (64, 512, 4096))
        print(f"| {name} | {len(layout.windows())} | {calls / args.frames:.2f} | {frames_per_call:.1f} | {' | '.join(cells)} | {memory} |")


if __name__ == "__main__":
    main()

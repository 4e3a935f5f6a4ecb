"""Diagonal Queue Sampler benchmark: model calls per output frame, sampler overhead, peak memory.

Run: python bench/bench_diagonal_queue.py   (CPU is enough; prints a markdown table)
Stand-in model, overhead and memory: see bench/stand_in.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stand_in import ConvVideoModel, own_peak_rss_mb, peak_rss_mb, timed  # noqa: E402

from samplers.diagonal_queue import QueueLayout, generate  # noqa: E402
from samplers.frame_levels import NoiseSpace  # noqa: E402

LAYOUTS = {
    "DD": QueueLayout(window=8, partitions=1),
    "DD+LP": QueueLayout(window=8, partitions=4),
    "DD+LP+LD": QueueLayout(window=8, partitions=4, lookahead=True),
}


def run(layout: QueueLayout, num_frames: int, channels: int, size: int, batch_windows: bool, depth: int = 1):
    model = ConvVideoModel(channels, depth)
    sigmas = torch.cat([torch.linspace(1.0, 1.0 / layout.levels, layout.levels), torch.zeros(1)])
    clip = torch.randn(1, channels, layout.window, size, size)
    frames = generate(
        model,
        (1, channels, size, size),
        sigmas,
        layout=layout,
        num_frames=num_frames,
        space=NoiseSpace.RECTIFIED_FLOW,
        clip=clip,
        eta=1.0,
        generator=torch.Generator().manual_seed(0),
        windows_per_call=layout.windows_per_iteration if batch_windows else 1,
    )
    return model, timed(frames)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-run", nargs=2, metavar=("LAYOUT", "FRAMES"))
    parser.add_argument("--frames", type=int, default=48, help="output frames for the speed measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory_run:
        name, frames = args.memory_run
        run(LAYOUTS[name], int(frames), channels=4, size=16, batch_windows=False)
        print(own_peak_rss_mb())
        return

    print(f"eta 1, latent 16x32x32, window 8, N = {args.frames} output frames, 1 CPU thread")
    print(
        "| options | model calls per output frame (steady) | calls per frame incl. warm-up | frames per call | overhead, 1 conv | overhead, 10 convs | overhead, 10 convs, batched | peak RSS 64 / 512 / 4096 frames (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, layout in LAYOUTS.items():
        cells = []
        for depth, batched in ((1, False), (10, False), (10, True)):
            model, total = run(layout, args.frames, channels=16, size=32, batch_windows=batched, depth=depth)
            cells.append(f"{(total - model.seconds) / model.seconds:.2%}")
            if depth == 1:
                calls, frames_per_call = model.calls, model.frames / model.calls
        memory = " / ".join(f"{peak_rss_mb(__file__, name, n):.0f}" for n in (64, 512, 4096))
        print(f"| {name} | {len(layout.windows())} | {calls / args.frames:.2f} | {frames_per_call:.1f} | {' | '.join(cells)} | {memory} |")


if __name__ == "__main__":
    main()

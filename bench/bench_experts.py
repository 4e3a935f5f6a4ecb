"""Two experts (Wan 2.2 A14B): expert switches per output frame and the memory that running ahead costs.

Run: python bench/bench_experts.py   (CPU is enough; prints a markdown table)
Each expert is the stand-in model of bench/stand_in.py. A switch is a change of expert between two
consecutive model calls: where only one 14B expert fits in memory, each is a model load. The
schedule is Wan's: 42 levels (window 21 x 2 partitions) or PA-VDM's 18 (chunks of 3, 6 noisy
chunks), shifted by 8 as ModelSamplingSD3 does, boundary 0.875 (text-to-video). Peak memory is
measured in a fresh process at a 480p latent (16 x 60 x 104) with eta 1, so it includes the
random draws that running ahead makes in advance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stand_in import ConvVideoModel, own_peak_rss_mb, peak_rss_mb  # noqa: E402

from samplers import diagonal_queue, progressive_ar  # noqa: E402
from samplers.experts import Experts  # noqa: E402
from samplers.frame_levels import NoiseSpace  # noqa: E402

FLOW = NoiseSpace.RECTIFIED_FLOW
BOUNDARY = 0.875
SHIFT = 8.0
# name -> (sampler, layout, steps, switch_every)
CONFIGS = {
    "FIFO LP, K=1": ("fifo", diagonal_queue.QueueLayout(21, 2), 42, 1),
    "FIFO LP, K=4": ("fifo", diagonal_queue.QueueLayout(21, 2), 42, 4),
    "FIFO LP, K=16": ("fifo", diagonal_queue.QueueLayout(21, 2), 42, 16),
    "FIFO LP, K=64": ("fifo", diagonal_queue.QueueLayout(21, 2), 42, 64),
    "FIFO LP+LD (in step)": ("fifo", diagonal_queue.QueueLayout(21, 2, lookahead=True), 42, 16),
    "PA c=3, 6 chunks (in step)": ("pa", progressive_ar.ChunkLayout(3, 6), 18, 16),
}


def shifted_sigmas(steps: int) -> torch.Tensor:
    t = torch.linspace(1.0, 0.0, steps + 1)
    return SHIFT * t / (1 + (SHIFT - 1) * t)


def run(name: str, num_frames: int, channels: int, height: int, width: int):
    sampler, layout, steps, switch_every = CONFIGS[name]
    models = [ConvVideoModel(channels), ConvVideoModel(channels)]
    experts = Experts(models, [BOUNDARY], switch_every=switch_every)
    generate = diagonal_queue.generate if sampler == "fifo" else progressive_ar.generate
    frames = generate(
        experts,
        (1, channels, height, width),
        shifted_sigmas(steps),
        layout=layout,
        num_frames=num_frames,
        space=FLOW,
        eta=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    with torch.no_grad():
        for _ in frames:
            pass
    return experts, models


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-run", nargs=2, metavar=("CONFIG", "FRAMES"))
    parser.add_argument("--frames", type=int, default=256, help="output latent frames for the switch count")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory_run:
        name, frames = args.memory_run
        run(name, int(frames), channels=16, height=60, width=104)
        print(own_peak_rss_mb())
        return

    print(f"boundary {BOUNDARY}, shift {SHIFT}, N = {args.frames} output latent frames (latent 4x8x8 for the counts)")
    print("| sampler | expert switches per output frame | model calls per output frame (high / low) | peak RSS, 48 frames at 16x60x104 (MB) |")
    print("|---|---|---|---|")
    for name in CONFIGS:
        experts, models = run(name, args.frames, channels=4, height=8, width=8)
        calls = " / ".join(f"{m.calls / args.frames:.2f}" for m in models)
        print(f"| {name} | {experts.switches / args.frames:.3f} | {calls} | {peak_rss_mb(__file__, name, 48):.0f} |")


if __name__ == "__main__":
    main()

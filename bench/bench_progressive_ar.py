"""Progressive AR Sampler benchmark, next to the Diagonal Queue Sampler on the same stand-in model.

Run: python bench/bench_progressive_ar.py   (CPU is enough; prints a markdown table)
Stand-in model, overhead and memory: see bench/stand_in.py. Both samplers run deterministic
steps (eta 0) and start from noise / a given clip without counting the clip's sampling.
Frame evaluations (frames the model sees per output frame) compare cost across window sizes:
a transformer's cost grows at least linearly with the frames in a call.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from stand_in import ConvVideoModel, own_peak_rss_mb, peak_rss_mb, timed  # noqa: E402

from samplers import diagonal_queue, progressive_ar  # noqa: E402
from samplers.frame_levels import NoiseSpace  # noqa: E402

FLOW = NoiseSpace.RECTIFIED_FLOW
# name -> (sampler, layout, steps); every window shows the model 20 latent frames
CONFIGS = {
    "PA c=4, 4 chunks, T=16": ("pa", progressive_ar.ChunkLayout(4, 4), 16),
    "PA c=4, 4 chunks, T=32": ("pa", progressive_ar.ChunkLayout(4, 4), 32),
    "PA c=2, 9 chunks, T=18": ("pa", progressive_ar.ChunkLayout(2, 9), 18),
    "FIFO DD, window 20": ("fifo", diagonal_queue.QueueLayout(20), 20),
}


def run(name: str, num_frames: int, channels: int, size: int, depth: int = 1):
    sampler, layout, steps = CONFIGS[name]
    model = ConvVideoModel(channels, depth)
    sigmas = torch.cat([torch.linspace(1.0, 1.0 / steps, steps), torch.zeros(1)])
    generator = torch.Generator().manual_seed(0)
    clip = None if sampler == "pa" else torch.randn(1, channels, layout.window, size, size)
    generate = progressive_ar.generate if sampler == "pa" else diagonal_queue.generate
    frames = generate(model, (1, channels, size, size), sigmas, layout=layout, num_frames=num_frames, space=FLOW, clip=clip, generator=generator)
    return model, timed(frames)


def steady_calls_per_frame(name: str) -> float:
    sampler, layout, steps = CONFIGS[name]
    return steps / layout.noisy_frames if sampler == "pa" else len(layout.windows())


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--memory-run", nargs=2, metavar=("CONFIG", "FRAMES"))
    parser.add_argument("--frames", type=int, default=96, help="output latent frames for the speed measurement")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.memory_run:
        name, frames = args.memory_run
        run(name, int(frames), channels=4, size=16)
        print(own_peak_rss_mb())
        return

    print(f"eta 0, latent 16x32x32, N = {args.frames} output latent frames, 1 CPU thread")
    print(
        "| sampler | model calls per output frame (steady) | calls per frame, whole run | frames per call | frame evaluations per output frame | overhead, 1 conv | overhead, 10 convs | peak RSS 64 / 512 / 4096 frames (MB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in CONFIGS:
        cells = []
        for depth in (1, 10):
            model, total = run(name, args.frames, channels=16, size=32, depth=depth)
            cells.append(f"{(total - model.seconds) / model.seconds:.2%}")
            if depth == 1:
                calls, frames_seen = model.calls, model.frames
        memory = " / ".join(f"{peak_rss_mb(__file__, name, n):.0f}" for n in (64, 512, 4096))
        print(
            f"| {name} | {steady_calls_per_frame(name):.2f} | {calls / args.frames:.2f} | {frames_seen / calls:.1f} | "
            f"{frames_seen / args.frames:.1f} | {' | '.join(cells)} | {memory} |"
        )


if __name__ == "__main__":
    main()

"""What the benchmarks share: a stand-in video model with a fixed cost, and peak-memory runs.

The model is a fixed 3-D convolution standing in for a video network: what matters here is how
the sampler around it behaves, not what it draws. Overhead is the wall time spent outside the
model divided by the time inside it. Peak memory is the peak RSS of a fresh process that consumes
frames as they are emitted, so it shows whether the sampler itself grows with the length.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time

import torch


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
    def __call__(self, x, sigmas, prompt, frames):
        start = time.perf_counter()
        out = x
        for conv in self.convs:
            out = conv(out) * 0.1 + out * 0.9
        self.seconds += time.perf_counter() - start
        self.calls += 1
        self.frames += x.shape[0] * x.shape[2]
        return out


def timed(frames) -> float:
    """Consume a stream of sampler output; return the total wall time."""
    start = time.perf_counter()
    with torch.no_grad():
        for _ in frames:
            pass
    return time.perf_counter() - start


def peak_rss_mb(script: str, *args) -> float:
    """Peak RSS of ``script --memory-run ARGS`` in a fresh process (the script prints it)."""
    out = subprocess.run([sys.executable, script, "--memory-run", *map(str, args)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def own_peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

"""Per-frame prompt schedules: which prompt each output frame is made under.

Each conditioning entry may carry a frame range ``(start, stop)`` (``stop`` None = to the end);
entries without one apply to every frame. Frames whose set of active entries is the same share a
prompt, so a schedule is a list of entry groups plus the group of every frame.
"""

from __future__ import annotations

from typing import Optional, Sequence

FrameRange = Optional[tuple[int, Optional[int]]]


def schedule_prompts(ranges: Sequence[FrameRange], num_frames: int) -> tuple[list[list[int]], list[int]]:
    """Group entries into prompts; return ``(entries of each prompt, prompt of each frame)``."""
    prompts: list[list[int]] = []
    prompt_of_frame = []
    for frame in range(num_frames):
        active = [i for i, r in enumerate(ranges) if r is None or (r[0] <= frame and (r[1] is None or frame < r[1]))]
        if not active:
            raise ValueError(
                f"Output frame {frame} is not covered by any prompt: give one prompt without a frame range, or "
                f"make the frame ranges cover all {num_frames} frames."
            )
        if active not in prompts:
            prompts.append(active)
        prompt_of_frame.append(prompts.index(active))
    return prompts, prompt_of_frame

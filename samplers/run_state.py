"""What resuming and re-rolling a run share across the samplers.

Each sampler keeps where its run stands in a small state object that its loop advances, one
iteration at a time (diagonal_queue.QueueState, progressive_ar.WindowState): the frames still in
the queue or window and their levels, the random generator's state, the reference frames. The
sampler reports it after every iteration it can go on from (frame_levels.Progress.state), and a
run given it back goes on with the same bits as one that never stopped (docs/algorithms.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Callable, Optional

import torch


@dataclass(frozen=True)
class Reroll:
    """A run that changes course: from the first frame at or after ``from_frame`` that a new
    iteration finishes (the diagonal queue's next group of frames, the progressive window's next
    chunk), the noise comes from ``generator`` and the prompts from ``prompt_of_frame`` (None: as
    before); every frame before it is made exactly as before."""

    from_frame: int
    generator: Optional[torch.Generator] = None
    prompt_of_frame: Optional[Callable[[int], int]] = None

    def switch(self, generator, prompt_of_frame):
        """The generator and prompts from the switch on."""
        return (generator if self.generator is None else self.generator), (prompt_of_frame if self.prompt_of_frame is None else self.prompt_of_frame)


def resume_on(state, generator: Optional[torch.Generator], device):
    """The state with its frames on ``device``, ``generator`` set to the state it saved."""
    if state.generator is not None:
        if generator is None:
            raise ValueError("The state was saved from a run with a random generator; resume it with one.")
        generator.set_state(state.generator)
    moved = {}
    for field in fields(state):
        value = getattr(state, field.name)
        if field.name == "generator":
            continue
        if isinstance(value, torch.Tensor):
            moved[field.name] = value.to(device)
        elif isinstance(value, dict):
            moved[field.name] = {key: tensor.to(device) for key, tensor in value.items()}
    return replace(state, **moved)


def check_frames(tensor: torch.Tensor, frame_shape, frames: int, what: str) -> None:
    """``tensor`` holds ``frames`` frames of ``frame_shape`` (batch, channels, height, width)."""
    batch, channels, height, width = frame_shape
    expected = (batch, channels, frames, height, width)
    if tuple(tensor.shape) != expected:
        raise ValueError(
            f"The state's {what} has shape {tuple(tensor.shape)}, but this run needs {expected}: resume with the latent size, batch "
            f"and layout the state was saved with."
        )


def raise_late_reroll(state, reroll: Reroll) -> None:
    raise ValueError(
        f"The state is at frame {state.next_frame}, past the re-roll's frame {reroll.from_frame}: re-roll from a state saved at or before the frame."
    )

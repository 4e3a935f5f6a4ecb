"""Checkpoints (resume / re-roll): a long run's state saved to the output folder, and runs that go on from one.

The samplers keep where a run stands in a small state (samplers/run_state.py): the queue or window,
the random generator, the reference. Every `every_frames` output frames, when the run is cancelled
and when it fails, that state goes to ``output/longvideo_states/<run>/frame_<next frame>.safetensors``
(the last `keep` of a run are kept), and the frames finished since the last save go next to it
(``frames_<first>-<stop>.safetensors``, never pruned: they are the video so far). A run given a state
file loads the frames before it, goes on from the state with the same bits an uninterrupted run
gives, and outputs the whole video. Settings that would change the frames are refused by name.

A re-roll goes on from a state at or before frame N with the run's settings until frame N is
next, then with this workflow's seed and prompts; it is a new run, whose first state comes after
frame N.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import folder_paths
import torch
from comfy_api.latest import io
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..samplers.diagonal_queue import QueueState
from ..samplers.progressive_ar import WindowState
from ..samplers.run_state import Reroll
from .schema import CATEGORY, CHECKPOINTS

STATES_FOLDER = "longvideo_states"
NO_STATE = "none"
NO_REROLL = -1
FORMAT = 1
STATE_TYPES = {"diagonal_queue": QueueState, "progressive_ar": WindowState}
# keys of the settings, as the messages name them
SETTING_NAMES = {
    "sampler": "the sampler",
    "layout": "the layout (window, partitions, lookahead, frames per level; chunk size, window chunks)",
    "sigmas": "the schedule (SIGMAS)",
    "eta": "eta",
    "latent": "the latent's batch, channels and size",
    "model": "the model (its type, size and patches such as LoRAs)",
    "cfg": "cfg",
    "boundaries": "the experts' boundary",
    "anchor": "the reference anchor",
}


@dataclass(frozen=True)
class CheckpointSettings:
    every_frames: int = 64
    keep: int = 3
    resume_from: Optional[str] = None  # a state file, relative to the states folder
    reroll_from_frame: Optional[int] = None


def states_dir() -> Path:
    return Path(folder_paths.get_output_directory()) / STATES_FOLDER


def state_files() -> list[str]:
    """The saved states, newest first, as ``<run>/frame_<frame>.safetensors``."""
    root = states_dir()
    if not root.is_dir():
        return []
    files = sorted(root.glob("*/frame_*.safetensors"), key=lambda path: path.stat().st_mtime, reverse=True)
    return [path.relative_to(root).as_posix() for path in files]


class Checkpoints(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="LongVideoCheckpoints",
            display_name="Checkpoints (resume / re-roll)",
            category=CATEGORY,
            description="Saves the sampler's state (its queue or window, not the video) to the output folder while it runs, so a "
            "cancelled or failed run goes on from where it stopped, and re-rolls the video from any frame on with a new seed or prompt.",
            inputs=[
                io.Int.Input(
                    "every_frames",
                    default=64,
                    min=0,
                    max=1_000_000,
                    tooltip="Save the state every this many output latent frames; 0: only when the run is cancelled or fails. It is also saved at the end.",
                ),
                io.Int.Input(
                    "keep", default=3, min=1, max=10_000, tooltip="States kept per run; older ones are deleted. Keep more to re-roll from further back."
                ),
                io.Combo.Input(
                    "resume_from",
                    options=[NO_STATE, *state_files()],
                    default=NO_STATE,
                    tooltip="none: start a new run. A state file (output/longvideo_states/<run>/frame_<N>): go on from frame N with the same frames an uninterrupted run gives; the output is the whole video. The sampler's settings must be those of the run. Refresh the page to see new files.",
                ),
                io.Int.Input(
                    "reroll_from_frame",
                    default=NO_REROLL,
                    min=NO_REROLL,
                    max=1_000_000,
                    tooltip="-1: resume as the run was. N: re-roll from latent frame N: every frame before N stays as it was, from N on the sampler's current seed and prompts apply (a new prompt from N on: Prompt Frame Range, the old prompt up to N). resume_from must be a state at or before N.",
                ),
            ],
            outputs=[
                CHECKPOINTS.Output(display_name="checkpoints", tooltip="Connect to the checkpoints input of the Diagonal Queue or Progressive AR sampler.")
            ],
        )

    @classmethod
    def execute(cls, every_frames, keep, resume_from, reroll_from_frame) -> io.NodeOutput:
        if reroll_from_frame != NO_REROLL and resume_from == NO_STATE:
            raise ValueError("A re-roll goes on from a saved state: choose the state at or before the re-roll frame in resume_from.")
        return io.NodeOutput(
            CheckpointSettings(
                every_frames, keep, None if resume_from == NO_STATE else resume_from, None if reroll_from_frame == NO_REROLL else reroll_from_frame
            )
        )


# ---------------------------------------------------------------------------------------------- digests


def digest(value, depth: int = 0) -> str:
    """A short digest of tensors, numbers, strings and the containers and objects holding them (conditioning, patches)."""
    hasher = hashlib.sha256()
    _feed(hasher, value, depth)
    return hasher.hexdigest()[:16]


def _feed(hasher, value, depth):
    if isinstance(value, torch.Tensor):
        data = value.detach().to("cpu").contiguous()
        hasher.update(f"{data.dtype}{tuple(data.shape)}".encode())
        hasher.update(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"")
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            if key != "uuid":  # ComfyUI gives every prepared condition a random one
                hasher.update(str(key).encode())
                _feed(hasher, value[key], depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _feed(hasher, item, depth + 1)
    elif value is None or isinstance(value, (bool, int, float, str)):
        hasher.update(repr(value).encode())
    elif depth < 4 and hasattr(value, "__dict__"):
        hasher.update(type(value).__name__.encode())
        _feed(hasher, vars(value), depth + 1)
    else:
        hasher.update(type(value).__name__.encode())


def model_fingerprint(patcher) -> dict:
    """What tells models apart without reading their weights: type, size and patches (LoRAs with their strengths)."""
    model = patcher.model
    parameters = sum(p.numel() for p in model.diffusion_model.parameters())
    patches = {key: [(entry[0], entry[2], _patch_sample(entry[1])) for entry in entries] for key, entries in patcher.patches.items()}
    return {"type": type(model).__name__, "parameters": parameters, "patches": digest(patches)}


def _patch_sample(patch):
    """A few values of each tensor of a patch (a LoRA's weights), enough to tell two files apart."""
    weights = getattr(patch, "weights", patch)
    tensors = weights if isinstance(weights, (list, tuple)) else [weights]
    return [t.detach().flatten()[:16].float().cpu() for t in tensors if isinstance(t, torch.Tensor)]


def frame_runs(per_frame: list[str]) -> list[list]:
    """``[[first frame, value], ...]`` of each run of equal values."""
    runs: list[list] = []
    for frame, value in enumerate(per_frame):
        if not runs or runs[-1][1] != value:
            runs.append([frame, value])
    return runs


def per_frame(runs: list[list], length: int) -> list[str]:
    starts = [start for start, _ in runs] + [length]
    return [value for (start, value), stop in zip(runs, starts[1:]) for _ in range(start, max(start, stop))]


# ---------------------------------------------------------------------------------------------- a run's checkpoints


@dataclass(frozen=True)
class RunSettings:
    """What decides a run's frames, besides its state: compared when a run goes on from a state."""

    sampler: str
    settings: dict  # SETTING_NAMES -> JSON-able value
    prompt_digests: list[str]  # the conditioning of each prompt of the run
    prompt_of_frame: list[int]  # the prompt of each output frame
    seed: int
    length: int


@dataclass(frozen=True)
class Resumption:
    """How a run goes on: from this state, with these prompts until a re-roll takes over."""

    state: object
    prompt_of_frame: Callable[[int], int]
    reroll: Optional[Reroll]


class RunCheckpoints:
    """A run's saved states: restores the one it goes on from, saves new ones as it runs."""

    def __init__(self, options: CheckpointSettings, run: RunSettings):
        self.options, self.run = options, run
        self.state_type = STATE_TYPES[run.sampler]
        self.name = f"{run.sampler}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        self.frames: list[list] = []  # [file relative to the states folder, first frame, stop frame]
        self.saved_through = 0  # frames stored in self.frames
        self.last_save = 0
        self.switch_iteration = -1  # a re-roll saves states only once it has changed course
        self.latest = self.last_saved = None
        self.prompt_runs = frame_runs([run.prompt_digests[p] for p in run.prompt_of_frame])

    # -- going on from a state

    def resume(self, output: torch.Tensor, reroll_switch: Callable[[object, int], tuple[int, int]]) -> Optional[Resumption]:
        """The state to go on from, with the frames before it put into ``output``; None for a new run.

        ``reroll_switch(state, frame)``: the first frame a re-roll from ``frame`` changes, and the iteration it takes over at.
        """
        if self.options.resume_from is None:
            return None
        tensors, meta = read_state(self.options.resume_from)
        state = self.state_type.from_record(tensors, meta["numbers"])
        reroll_frame = self.options.reroll_from_frame
        self._check_settings(meta, rerolled=reroll_frame is not None)
        original_prompts = per_frame(meta["prompts"], max(meta["length"], self.run.length))
        if reroll_frame is None:
            self._check_prompts(original_prompts, state.next_frame)
            self.name = meta["run"]
            prompt_of_frame, reroll = self.run.prompt_of_frame.__getitem__, None
        else:
            if reroll_frame < state.next_frame:
                raise ValueError(
                    f"The state {self.options.resume_from} is at frame {state.next_frame}, past the re-roll frame {reroll_frame}: "
                    f"choose a state at or before frame {reroll_frame} in resume_from."
                )
            self.name = f"{meta['run']}-reroll{reroll_frame}-{secrets.token_hex(2)}"
            first_changed, self.switch_iteration = reroll_switch(state, reroll_frame)
            mine = [self.run.prompt_digests[p] for p in self.run.prompt_of_frame]
            self.prompt_runs = frame_runs(original_prompts[:first_changed] + mine[first_changed:])
            prompt_of_frame = self._original_prompts(original_prompts)
            generator = None if self.run.seed == meta["seed"] else torch.Generator().manual_seed(self.run.seed)
            reroll = Reroll(reroll_frame, generator, self.run.prompt_of_frame.__getitem__)
        for file, start, stop in meta["frames"]:
            output[:, :, start:stop] = _load_frames(file, output, start, stop)
        self.frames = [list(item) for item in meta["frames"]]
        self.saved_through = self.last_save = state.next_frame
        return Resumption(state, prompt_of_frame, reroll)

    def _check_settings(self, meta: dict, rerolled: bool) -> None:
        if meta["sampler"] != self.run.sampler:
            raise ValueError(f"The state {self.options.resume_from} was saved by the {meta['sampler']} sampler, not the {self.run.sampler} one.")
        changed = []
        for key, now in self.run.settings.items():
            saved = meta["settings"].get(key)
            if saved != now:
                changed.append(f"{SETTING_NAMES[key]} was {_shown(saved)}, now {_shown(now)}")
        if not rerolled and meta["seed"] != self.run.seed:
            changed.append(f"seed was {meta['seed']}, now {self.run.seed} (to change the seed from a frame on, set reroll_from_frame)")
        if changed:
            raise ValueError(
                f"The state {self.options.resume_from} comes from a run with other settings, which would change the frames: {'; '.join(changed)}. "
                f"Set them back, or start a new run (resume_from: none)."
            )

    def _check_prompts(self, original: list[str], first: int) -> None:
        mine = [self.run.prompt_digests[p] for p in self.run.prompt_of_frame]
        differ = [frame for frame in range(first, len(mine)) if original[frame] != mine[frame]]
        if differ:
            raise ValueError(
                f"The prompts differ from the run's from frame {differ[0]} on, which would change the frames. Set them back, or change them "
                f"from a frame on with reroll_from_frame."
            )

    def _original_prompts(self, original: list[str]) -> Callable[[int], int]:
        """Until the re-roll takes over, every frame gets the prompt the run gave it: this workflow's prompt with the same conditioning."""
        index = {value: prompt for prompt, value in reversed(list(enumerate(self.run.prompt_digests)))}

        def prompt_of_frame(frame: int) -> int:
            if original[frame] not in index:
                raise ValueError(
                    f"Frame {frame} is made again as the run made it until the re-roll takes over, but this workflow lacks the prompt the "
                    f"run gave it: keep the run's prompt up to the re-roll frame (Prompt Frame Range) and put the new one after it."
                )
            return index[original[frame]]

        return prompt_of_frame

    # -- saving

    def observe(self, state, output: torch.Tensor) -> None:
        """A state the sampler reported: saved when ``every_frames`` more frames are done."""
        if state is None or state.iteration <= self.switch_iteration:
            return
        self.latest = state
        every = self.options.every_frames
        if every and state.next_frame >= self.last_save + every:
            self.save(state, output)

    def stopped(self, output: torch.Tensor) -> None:
        """The run was cancelled or failed: save where it stood, unless that is saved already."""
        if self.latest is None or self.latest is self.last_saved:
            return
        try:
            path = self.save(self.latest, output)
        except Exception:  # the run's own error matters more than this one
            logging.exception("LongVideo: the run's state could not be saved")
            return
        logging.warning(
            "LongVideo: the run stopped; its state at frame %d is saved as %s: choose it in Checkpoints' resume_from to go on.", self.latest.next_frame, path
        )

    def finished(self, output: torch.Tensor) -> None:
        if self.latest is not None and self.latest is not self.last_saved:
            self.save(self.latest, output)

    def save(self, state, output: torch.Tensor) -> str:
        folder = states_dir() / self.name
        folder.mkdir(parents=True, exist_ok=True)
        if state.next_frame > self.saved_through:
            file = f"{self.name}/frames_{self.saved_through:06d}-{state.next_frame:06d}.safetensors"
            save_file({"frames": output[:, :, self.saved_through : state.next_frame].contiguous()}, states_dir() / file)
            self.frames.append([file, self.saved_through, state.next_frame])
            self.saved_through = state.next_frame
        tensors, numbers = state.to_record()
        meta = {
            "format": FORMAT,
            "run": self.name,
            "sampler": self.run.sampler,
            "numbers": numbers,
            "settings": self.run.settings,
            "seed": self.run.seed,
            "length": self.run.length,
            "prompts": self.prompt_runs,
            "frames": self.frames,
        }
        name = f"{self.name}/frame_{state.next_frame:06d}.safetensors"
        partial = folder / f".frame_{state.next_frame:06d}.partial"
        save_file({key: value.contiguous() for key, value in tensors.items()}, partial, metadata={"longvideo": json.dumps(meta)})
        os.replace(partial, states_dir() / name)
        self.last_save, self.last_saved = state.next_frame, state
        self._prune(folder)
        return name

    def _prune(self, folder: Path) -> None:
        states = sorted(folder.glob("frame_*.safetensors"))
        for old in states[: max(0, len(states) - self.options.keep)]:
            old.unlink()


def read_state(name: str) -> tuple[dict, dict]:
    path = states_dir() / name
    if not path.is_file():
        raise ValueError(f"The state file {name} is not in {STATES_FOLDER} of the output folder any more; choose another in resume_from.")
    with safe_open(str(path), framework="pt") as file:
        meta = json.loads(file.metadata()["longvideo"])
    if meta.get("format") != FORMAT:
        raise ValueError(f"The state file {name} was saved in another format ({meta.get('format')}); this version reads format {FORMAT}.")
    return load_file(str(path)), meta


def _load_frames(file: str, output: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    path = states_dir() / file
    if not path.is_file():
        raise ValueError(f"The frames {start} to {stop - 1} of this run were saved in {file}, which is gone: the run cannot go on without them.")
    frames = load_file(str(path))["frames"]
    expected = (*output.shape[:2], stop - start, *output.shape[3:])
    if tuple(frames.shape) != expected:
        raise ValueError(f"The frames in {file} have shape {tuple(frames.shape)}, not {expected}: they belong to a video of another size.")
    return frames


def _shown(value) -> str:
    if isinstance(value, list) and len(value) > 6:
        return f"a list of {len(value)} ({value[0]:.4g} to {value[-1]:.4g})" if all(isinstance(v, float) for v in value) else f"a list of {len(value)}"
    return json.dumps(value)

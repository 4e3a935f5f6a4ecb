"""The per-frame run: a sampler from samplers/ driven through ComfyUI, from LATENT in to LATENT out.

A sampler node says which sampler, layout and settings; this module does the rest for every
sampler alike: the model family and its latent layout, the largest call ComfyUI must plan for,
window batching, loading the model and preparing the conditioning, the output buffer the
frames stream into, progress with previews, and the checks for cancel.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple, Optional

import comfy.model_management
import comfy.sample
import torch

from ...samplers.anchoring import FIRST_FRAME, reference_frames
from ...samplers.experts import Experts, check_boundaries
from ...samplers.frame_levels import Denoiser, Progress
from ...samplers.streams import FramePacking
from ..checkpoints import RunCheckpoints, RunSettings, digest, model_fingerprint
from ..input_checks import check_finite_number, check_finite_tensor, latent_samples
from ..progress import FrameProgress
from .denoiser import ExpertLoader, PromptScheduleGuider, run_with_framewise_denoisers
from .families import FRAMES_AS_BATCH, host_layout, model_family, noise_space, to_host_space, to_model_space, video_layout
from .inputs import check_latent_channels, check_sigmas
from .sound import PackedFramesDenoiser, SoundOutput, SoundTimeline, audio_video_samples, fitted_sound, sound_units
from .sound import to_model_space as sound_to_model_space

# the output LATENT of a run with checkpoints names its run, so Streaming Decode can continue its video
RUN_KEY = "longvideo_run"
# keys of an input LATENT that do not describe the sampler's output (KSampler drops them too)
INPUT_ONLY_LATENT_KEYS = ("noise_mask", "batch_index", "downscale_ratio_spacial", "downscale_ratio_temporal", RUN_KEY)
BATCHING_CHOICES = ("auto", "batched", "one by one")


@dataclass(frozen=True)
class Guidance:
    """What predicts x0: ComfyUI guiders (CFG over the prompts), one per expert with the noisiest
    band first, or one for a single model; the prompt index of every output frame; the boundaries
    between the experts' bands and how far one may run ahead of the other (samplers.experts)."""

    guiders: tuple
    prompt_of_frame: Callable[[int], int] = lambda frame: 0
    boundaries: tuple[float, ...] = ()
    switch_every: int = 1


class ClipInput(NamedTuple):
    """A clean clip the video continues, with what to tell the user when it is unusable."""

    latent: dict
    name: str  # "context", "input": the latent's name in messages
    when_empty: str  # what to do when it holds only zeros
    # the output-frame index the sampler gives the clip's first frame, from the clip's latent frames
    # (an audio-video run starts its sound's timeline there); None where the latent is no clip to continue
    first_frame: Optional[Callable[[int], int]] = None


def sample_video(
    guidance: Guidance,
    latent: dict,
    sigmas: torch.Tensor,
    *,
    sampler,
    layout,
    length: int,
    seed: int,
    eta: float,
    clip: Optional[ClipInput] = None,
    window_batching: str = "auto",
    anchor=None,
    checkpoints=None,
) -> dict:
    """Run ``sampler`` (a generate function of samplers/) and return the output LATENT of ``length`` frames.

    ``latent`` gives batch, channels and size; ``layout`` is the sampler's layout (its
    frames_per_call and windows_per_iteration size the model calls). ``anchor``: Reference
    Anchor's settings; ``checkpoints``: the Checkpoints node's (saving, resuming, re-rolling).
    """
    check_finite_number("eta", eta)
    check_sigmas(sigmas)
    patcher = guidance.guiders[0].model_patcher
    family = model_family(patcher.model)
    check_boundaries(guidance.boundaries, sigmas)
    if family.audio_time_dim is not None:
        _check_sound_options(family, anchor, checkpoints)
    video, timeline = _input_video(guidance, latent, family, patcher)
    model, device = patcher.model, patcher.load_device
    clip_video = None if clip is None else _clip_video(clip, family, video)
    reference = _reference(anchor, family, model, video, device)
    plan = _plan_calls(family, patcher, layout, video, reference, clip, clip_video, window_batching, timeline, length)

    batch, channels, _, height, width = video.shape
    output = torch.zeros(batch, channels, length, height, width)
    progress = _ProgressReport(patcher, None if plan.sound is None else plan.sound.packing)
    recorder = None
    resumption = None
    if checkpoints is not None:
        settings = _run_settings(sampler, guidance, layout, sigmas, eta, video, reference, seed, length)
        recorder = RunCheckpoints(checkpoints, settings)
        resumption = recorder.resume(output, lambda state, frame: layout.reroll_switch(state, frame, len(sigmas) - 1))
    late = [_BoundInsideSampling() for _ in guidance.guiders]
    denoise = late[0] if len(late) == 1 else Experts(late, guidance.boundaries, guidance.switch_every)
    generated = sampler(
        denoise,
        plan.frame_shape,
        sigmas,
        layout=layout,
        num_frames=length,
        space=noise_space(model),
        clip=plan.model_clip,
        eta=eta,
        generator=torch.Generator().manual_seed(seed),
        prompt_of_frame=guidance.prompt_of_frame if resumption is None else resumption.prompt_of_frame,
        windows_per_call=plan.windows_per_call,
        device=device,
        callback=progress if recorder is None else _Saving(recorder, output, progress),
        reference=reference,
        resume=None if resumption is None else resumption.state,
        reroll=None if resumption is None else resumption.reroll,
    )

    def stream_into_output(framewise_denoisers):
        _bind_denoisers(late, framewise_denoisers, guidance, plan)
        for index, block in generated:
            if index >= 0:
                output[:, :, index : index + block.shape[2]] = plan.host_frames(model, index, block).to(output)

    try:
        run_with_framewise_denoisers(
            list(guidance.guiders),
            plan.call_shape,
            sigmas,
            seed,
            stream_into_output,
            comfy.model_management.throw_exception_if_processing_interrupted,
            plan.sound_shape,
        )
    except BaseException:
        if recorder is not None:
            recorder.stopped(output)
        raise
    out = {key: value for key, value in latent.items() if key not in INPUT_ONLY_LATENT_KEYS}
    if recorder is not None:
        recorder.finished(output)
        out[RUN_KEY] = recorder.name
    out["samples"] = host_layout(output, family) if plan.sound is None else plan.sound.latent_samples(output)
    return out


def _input_video(guidance: Guidance, latent: dict, family, patcher) -> tuple[torch.Tensor, Optional[SoundTimeline]]:
    """The input LATENT's video ``[B, C, F, H, W]``, checked, and for a model with sound its timeline
    (the latent's sound checked against it)."""
    model = patcher.model
    timeline = None
    if family.audio_time_dim is not None:
        samples, latent_audio = audio_video_samples(latent, "latent", family)
        timeline = SoundTimeline.of(model, guidance.guiders)
        # the latent's sound must fit its video at its frame rate (made for another rate, it is refused)
        fitted_sound(latent_audio, samples, timeline, sound_units(model), "latent", family)
    else:
        samples = comfy.sample.fix_empty_latent_channels(
            patcher, latent_samples(latent, "latent"), latent.get("downscale_ratio_spacial"), latent.get("downscale_ratio_temporal")
        )
    video = video_layout(samples, family)
    check_latent_channels(video, model, family)
    return video, timeline


@dataclass(frozen=True)
class _CallPlan:
    """How the sampler's frames look and how they reach the model: the frame shape the sampler
    works on, the largest call ComfyUI must plan for (and its sound), windows per call, the clip to
    continue in the sampler's space, and for a model with sound, how its frames are packed."""

    frame_shape: tuple[int, ...]
    call_shape: tuple[int, ...]
    sound_shape: Optional[list[int]]
    windows_per_call: int
    model_clip: Optional[torch.Tensor]
    sound: Optional[SoundOutput]
    # the output-frame index of the video's first frame: the samplers number a given clip's frames before the output's
    video_start: int

    def host_frames(self, model, index: int, block: torch.Tensor) -> torch.Tensor:
        """Frames the sampler finished, as the output LATENT's video holds them (their sound kept aside)."""
        return to_host_space(model, block) if self.sound is None else self.sound.write(model, index, block)


def _plan_calls(
    family,
    patcher,
    layout,
    video: torch.Tensor,
    reference,
    clip: Optional[ClipInput],
    clip_video: Optional[torch.Tensor],
    window_batching: str,
    timeline: Optional[SoundTimeline],
    length: int,
) -> _CallPlan:
    model, device = patcher.model, patcher.load_device
    batch, channels, _, height, width = video.shape
    frames = layout.frames_per_call + reference_frames(reference)
    windows_per_call = layout.windows_per_iteration if _batch_windows(window_batching, patcher, layout, video, family, frames) else 1
    rows = windows_per_call * batch
    call_shape = (rows * frames, channels, height, width) if family.mechanism == FRAMES_AS_BATCH else (rows, channels, frames, height, width)
    video_start = 0 if clip is None else clip.first_frame(clip_video.shape[2])
    if family.audio_time_dim is None:
        model_clip = None if clip_video is None else to_model_space(model, clip_video.to(device))
        return _CallPlan((batch, channels, height, width), call_shape, None, windows_per_call, model_clip, None, video_start)
    units_shape = sound_units(model)
    stream = timeline.stream(units_shape, video_start, family.audio_time_dim)
    packing = FramePacking(stream, (channels, height, width))
    clip_sound = None if clip is None else _clip_sound(clip, timeline, units_shape, family, clip_video)
    sound_shape = [rows, *units_shape]
    sound_shape.insert(family.audio_time_dim, frames * stream.max_units)
    model_clip = None
    if clip is not None:
        model_clip = packing.pack(*sound_to_model_space(model, clip_video.to(device), clip_sound.to(device)), video_start)
    sound = SoundOutput(packing, timeline, batch, length, clip_sound)
    return _CallPlan((batch, 1, 1, packing.frame_elements), call_shape, sound_shape, windows_per_call, model_clip, sound, video_start)


def _bind_denoisers(late: list, framewise_denoisers: list, guidance: Guidance, plan: _CallPlan) -> None:
    """Point each expert's late-bound denoiser at its framewise denoiser, inside ComfyUI's sampling;
    with experts, through a loader that loads an expert when the run switches to it."""
    loader = ExpertLoader(list(guidance.guiders), plan.call_shape)
    for index, (proxy, framewise) in enumerate(zip(late, framewise_denoisers)):
        framewise.video_start = plan.video_start
        if plan.sound is not None:
            framewise = PackedFramesDenoiser(framewise, plan.sound.packing, plan.sound.timeline, plan.video_start)
        proxy.bound = framewise if len(late) == 1 else loader.denoiser(index, framewise)


def _check_sound_options(family, anchor, checkpoints) -> None:
    """What the samplers do not carry LTX-2's sound through yet."""
    if checkpoints is not None:
        raise ValueError(f"{family.name} makes video and sound together, and Checkpoints do not save the sound yet: disconnect the Checkpoints node.")
    if anchor is not None and anchor.reference is not None:
        raise ValueError(
            f"{family.name} makes video and sound together, and a reference latent has no sound: leave the Reference Anchor's "
            f"reference unconnected to anchor every window on the video's first frame."
        )


def _clip_sound(clip: ClipInput, timeline: SoundTimeline, units_shape, family, clip_video: torch.Tensor) -> torch.Tensor:
    """The clip's sound fitted to the clip's video, for each video of the batch."""
    given_video, audio = audio_video_samples(clip.latent, clip.name, family)
    audio = fitted_sound(audio, given_video, timeline, units_shape, clip.name, family)
    return audio.expand(clip_video.shape[0], *audio.shape[1:])


def _reference(anchor, family, model, video: torch.Tensor, device):
    """The reference the samplers show in front of every window, in model space: None, FIRST_FRAME, or a latent's first frame."""
    if anchor is None:
        return None
    if anchor.reference is None:
        return FIRST_FRAME
    first = _clip_video(ClipInput(anchor.reference, "reference", "encode an image with the model's VAE, or leave the reference unconnected."), family, video)[
        :, :, :1
    ]
    return to_model_space(model, first.to(device))


def _run_settings(sampler, guidance: Guidance, layout, sigmas, eta, video, reference, seed, length) -> RunSettings:
    """What decides the frames besides the state, for the checks of a resumed run (nodes/checkpoints.py)."""
    guider = guidance.guiders[0]
    conds = getattr(guider, "original_conds", {})
    if isinstance(guider, PromptScheduleGuider):
        prompts = [digest([conds[f"positive_{i}"], conds.get("negative")]) for i in range(sum(1 for key in conds if key.startswith("positive_")))]
    else:
        prompts = [digest(conds)]
    batch, channels, _, height, width = video.shape
    settings = {
        "sampler": sampler.__module__.rsplit(".", 1)[-1],
        "layout": asdict(layout),
        "sigmas": [float(s) for s in sigmas],
        "eta": float(eta),
        "latent": [batch, channels, height, width],
        "model": [model_fingerprint(g.model_patcher) for g in guidance.guiders],
        "cfg": [getattr(g, "cfg", None) for g in guidance.guiders],
        "boundaries": list(guidance.boundaries),
        "anchor": None if reference is None else reference if isinstance(reference, str) else digest(reference),
    }
    return RunSettings(settings["sampler"], settings, prompts, [guidance.prompt_of_frame(frame) for frame in range(length)], seed, length)


class _Saving:
    """The progress callback of a run with checkpoints: the state is noted (and saved when due) before anything else."""

    def __init__(self, recorder: RunCheckpoints, output: torch.Tensor, progress):
        self.recorder, self.output, self.progress = recorder, output, progress

    def __call__(self, progress: Progress) -> None:
        self.recorder.observe(progress.state, self.output)
        self.progress(progress)


class _BoundInsideSampling:
    """The denoiser of a run; the sampler gets it (and checks its arguments) before ComfyUI loads the models."""

    bound: Optional[Denoiser] = None

    def __call__(self, x: torch.Tensor, sigmas: torch.Tensor, prompt: int, frames: torch.Tensor) -> torch.Tensor:
        return self.bound(x, sigmas, prompt, frames)


class _ProgressReport:
    """The sampler's progress on ComfyUI's bar, previewing the last frame of what was finished (the video of packed frames)."""

    def __init__(self, patcher, packing: Optional[FramePacking] = None):
        self.patcher, self.packing = patcher, packing
        self.bar: Optional[FrameProgress] = None

    def __call__(self, progress: Progress) -> None:
        comfy.model_management.throw_exception_if_processing_interrupted()
        if self.bar is None:
            self.bar = FrameProgress(progress.iterations, self.patcher)
        finished = progress.finished
        if finished is not None and self.packing is not None:
            finished = self.packing.video(finished)
        self.bar.update(progress.iteration, finished)


def _clip_video(clip: ClipInput, family, video: torch.Tensor) -> torch.Tensor:
    samples = audio_video_samples(clip.latent, clip.name, family)[0] if family.audio_time_dim is not None else latent_samples(clip.latent, clip.name)
    clip_video = video_layout(samples, family)
    check_finite_tensor(
        clip_video, f"the {clip.name} latent", f"they would spread to every frame of the video. Check the node that made it, or {clip.when_empty}"
    )
    if clip_video.shape[1] != video.shape[1] or clip_video.shape[3:] != video.shape[3:]:
        raise ValueError(
            f"The {clip.name} latent has {clip_video.shape[1]} channels at {clip_video.shape[4]}x{clip_video.shape[3]} latent "
            f"pixels, but the latent has {video.shape[1]} channels at {video.shape[4]}x{video.shape[3]}. Encode the {clip.name} "
            f"at the video's size with the model's VAE."
        )
    if clip_video.shape[0] not in (1, video.shape[0]):
        raise ValueError(
            f"The {clip.name} latent has a batch of {clip_video.shape[0]}, the latent {video.shape[0]}: use the same batch, or a {clip.name} of batch 1."
        )
    if torch.count_nonzero(clip_video) == 0:
        raise ValueError(f"The {clip.name} latent is empty (all zeros): {clip.when_empty}")
    return clip_video.expand(video.shape[0], -1, -1, -1, -1)


def _batch_windows(window_batching: str, patcher, layout, video: torch.Tensor, family, frames: int) -> bool:
    if window_batching not in BATCHING_CHOICES:
        raise ValueError(f"Unknown window batching {window_batching!r}; choose one of {', '.join(BATCHING_CHOICES)}.")
    if family.one_row_per_call:
        if window_batching == "batched":
            logging.warning(
                "%s takes one window per model call (its transformer takes a batch of one): the windows of each iteration run one after the other.", family.name
            )
        return False
    if window_batching != "auto":
        return window_batching == "batched"
    if family.mechanism == FRAMES_AS_BATCH or layout.windows_per_iteration == 1:
        # a motion module sees the whole batch as one video, so its windows cannot share a call
        return False
    batch, channels, _, height, width = video.shape
    # cond + uncond rows for every window of an iteration
    shape = (2 * batch * layout.windows_per_iteration, channels, frames, height, width)
    needed = patcher.model.memory_required(shape)
    # the patcher's own answer: under dynamic VRAM, model_management.get_free_memory leaves out what it can offload
    return needed < 0.5 * patcher.get_free_memory(patcher.load_device)

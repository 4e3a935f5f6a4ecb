"""k-step noise search (Zhan et al.; docs/algorithms.md §3): pick each chunk's initial noise by cheap previews.

Long image-to-video made chunk by chunk drifts because one bad initial noise gives a bad chunk,
and its last frame then guides every later chunk. Before the full ``s``-step sample of a chunk,
``m`` candidate noises are each sampled completely with their own ``k``-step schedule (not the
first ``k`` steps of the ``s``-step run), decoded, and scored against the guide image; the
full sample reuses the best candidate. A chunk costs ``m * k + s`` sampler steps.

A candidate is a seed: the same seed gives the same initial noise and the same per-step noise
of stochastic samplers, which is what the paper's "manual seed before every run" means. Chunk
``i`` tries seeds ``seed + i * m + j`` for ``j < m``, so no two candidates of a video share noise.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, Optional, TypeVar

import torch

Frames = TypeVar("Frames")  # one chunk's decoded frames, in whatever form the caller works with
Embed = Callable[[torch.Tensor], torch.Tensor]  # images [N, H, W, C] in 0..1 -> embeddings [N, D]


@dataclass(frozen=True)
class SearchCost:
    candidates: int  # m
    preview_steps: int  # k
    steps: int  # s

    def __post_init__(self):
        for name in ("candidates", "preview_steps", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")

    @property
    def steps_per_chunk(self) -> int:
        return self.candidates * self.preview_steps + self.steps

    def total_steps(self, chunks: int) -> int:
        return chunks * self.steps_per_chunk

    @property
    def overhead(self) -> float:
        """Sampler steps relative to plain chunk-by-chunk sampling with ``s`` steps."""
        return self.steps_per_chunk / self.steps

    def describe(self, chunks: int) -> str:
        m, k, s = self.candidates, self.preview_steps, self.steps
        return (
            f"cost: m*k + s = {m}*{k} + {s} = {self.steps_per_chunk} steps per chunk, "
            f"{self.total_steps(chunks)} for {chunks} chunks ({self.overhead:.2f}x plain chunking), "
            f"plus {m + 1} VAE decodes per chunk"
        )


def candidate_seeds(seed: int, chunk: int, candidates: int) -> list[int]:
    first = seed + chunk * candidates
    return [first + j for j in range(candidates)]


def min_frame_similarity(guide: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """The paper's score: the lowest cosine similarity between the guide's and any frame's embedding.

    ``guide``: ``[D]``; ``frames``: ``[..., F, D]`` (leading dimensions, e.g. candidates, are kept).
    """
    return torch.nn.functional.cosine_similarity(frames.float(), guide.float().expand_as(frames), dim=-1).amin(dim=-1)


class GuideScorer:
    """The paper's score of decoded frames against a guide; the guide's embedding is reused across candidates."""

    def __init__(self, embed: Embed):
        self.embed = embed
        self._guide = None
        self._guide_embedding = None

    @torch.no_grad()
    def __call__(self, guide: torch.Tensor, frames: torch.Tensor) -> float:
        if guide is not self._guide:
            self._guide, self._guide_embedding = guide, self.embed(guide[-1:])[0]
        return float(min_frame_similarity(self._guide_embedding, self.embed(frames)))


def best_candidate(scores: list[float]) -> int:
    """Index of the highest score; the first one wins ties, as torch.argmax in the reference."""
    if not scores:
        raise ValueError("No candidate scores to choose from.")
    return max(range(len(scores)), key=lambda j: (scores[j], -j))


@dataclass(frozen=True)
class ChunkResult(Generic[Frames]):
    index: int
    seeds: list[int]
    scores: list[float]
    chosen: int  # index into seeds and scores
    frames: Frames  # the full s-step sample, decoded

    @property
    def chosen_seed(self) -> int:
        return self.seeds[self.chosen]

    def describe(self) -> str:
        listed = ", ".join(f"{seed}: {score:.6f}" for seed, score in zip(self.seeds, self.scores))
        return f"chunk {self.index + 1}: seed {self.chosen_seed} chosen (score {self.scores[self.chosen]:.6f}) from {listed}"


def search_chunk(
    seeds: list[int],
    preview: Callable[[int], Frames],
    score: Callable[[Frames], float],
    on_candidate: Optional[Callable[[int, int, float], None]] = None,
) -> tuple[list[float], int]:
    """Preview and score every candidate seed, one at a time so memory holds one preview.

    Returns all scores and the index of the best candidate.
    """
    scores = []
    for j, seed in enumerate(seeds):
        scores.append(float(score(preview(seed))))
        if on_candidate is not None:
            on_candidate(j, seed, scores[-1])
    return scores, best_candidate(scores)


def search_chunks(
    chunks: int,
    candidates: int,
    seed: int,
    guide,
    preview: Callable[[object, int], Frames],
    sample: Callable[[object, int], Frames],
    score: Callable[[object, Frames], float],
    next_guide: Callable[[Frames], object],
    on_candidate: Optional[Callable[[int, int, float], None]] = None,
) -> Iterator[ChunkResult[Frames]]:
    """Yield each chunk as it is finished; the caller keeps or streams the frames.

    ``preview(guide, seed)`` samples with ``k`` steps and ``sample(guide, seed)`` with ``s`` steps,
    both conditioned on ``guide``; ``score(guide, frames)`` rates a preview against it, and
    ``next_guide(frames)`` takes the conditioning of the next chunk from a finished one.
    """
    if chunks < 1:
        raise ValueError(f"The number of chunks must be at least 1, got {chunks}.")
    for index in range(chunks):
        seeds = candidate_seeds(seed, index, candidates)
        scores, chosen = search_chunk(seeds, functools.partial(preview, guide), functools.partial(score, guide), on_candidate)
        frames = sample(guide, seeds[chosen])
        yield ChunkResult(index, seeds, scores, chosen, frames)
        guide = next_guide(frames)

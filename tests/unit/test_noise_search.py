"""k-step noise search (docs/algorithms.md §3) on synthetic frames and embeddings: no model, no ComfyUI."""

import pytest
import torch

from samplers.noise_search import GuideScorer, SearchCost, best_candidate, candidate_seeds, min_frame_similarity, search_chunk, search_chunks

DIM = 16


def drifting_frames(guide, seed, frames=6):
    """Frames that start at the guide and drift away from it, by a seed-dependent amount."""
    generator = torch.Generator().manual_seed(seed)
    drift = torch.rand((), generator=generator) * 2.0
    direction = torch.randn(DIM, generator=generator)
    steps = torch.linspace(0, 1, frames)[:, None]
    return guide + drift * steps * direction, float(drift)


def test_the_score_is_the_worst_frame_cosine_to_the_guide():
    guide = torch.tensor([1.0, 0.0])
    frames = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    assert min_frame_similarity(guide, frames).item() == pytest.approx(0.0, abs=1e-7)
    assert min_frame_similarity(guide, frames[:2]).item() == pytest.approx(2**-0.5)
    # candidates batched along a leading dimension are scored independently
    batched = min_frame_similarity(guide, torch.stack([frames[:2], frames[[0, 0]]]))
    torch.testing.assert_close(batched, torch.tensor([2**-0.5, 1.0]))


def test_the_guide_scorer_embeds_the_guide_once_and_scores_frames_by_their_worst_cosine():
    embedded = []

    def embed(images):
        embedded.append(images.shape[0])
        return images.flatten(1)  # an "embedding" per image: its pixels

    scorer = GuideScorer(embed)
    guide = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 1.0]]]])  # two guide frames; the last one is the guide
    frames = torch.tensor([[[[0.0, 2.0]]], [[[1.0, 1.0]]]])
    assert scorer(guide, frames) == pytest.approx(2**-0.5)
    assert scorer(guide, frames[:1]) == pytest.approx(1.0)
    assert embedded == [1, 2, 1]  # the guide's embedding is reused for the second candidate
    scorer(guide.clone(), frames[:1])
    assert embedded[-2:] == [1, 1]  # a new guide is embedded again


def test_the_scorer_picks_the_candidate_whose_frames_stay_closest_to_the_guide():
    guide = torch.randn(DIM, generator=torch.Generator().manual_seed(0))
    seeds = candidate_seeds(100, 0, 8)
    drifts = {seed: drifting_frames(guide, seed)[1] for seed in seeds}
    scores, chosen = search_chunk(seeds, lambda seed: drifting_frames(guide, seed)[0], lambda frames: min_frame_similarity(guide, frames))
    assert len(set(drifts.values())) == 8
    assert seeds[chosen] == min(drifts, key=drifts.get)
    assert scores[chosen] == max(scores)


def test_ties_go_to_the_first_candidate_like_argmax():
    assert best_candidate([0.2, 0.9, 0.9, 0.1]) == 1
    assert best_candidate([0.5]) == 0
    assert best_candidate([0.3, 0.7, 0.1]) == int(torch.argmax(torch.tensor([0.3, 0.7, 0.1])))
    with pytest.raises(ValueError):
        best_candidate([])


def test_candidate_seeds_are_reproducible_and_never_shared_between_chunks():
    assert candidate_seeds(42, 0, 5) == [42, 43, 44, 45, 46]
    assert candidate_seeds(42, 1, 5) == [47, 48, 49, 50, 51]
    every = [s for chunk in range(4) for s in candidate_seeds(7, chunk, 3)]
    assert every == list(range(7, 19))


def test_step_accounting():
    cost = SearchCost(candidates=5, preview_steps=8, steps=50)
    assert cost.steps_per_chunk == 90
    assert cost.total_steps(5) == 450
    assert cost.overhead == pytest.approx(1.8)
    assert "5*8 + 50 = 90 steps per chunk, 450 for 5 chunks (1.80x" in cost.describe(5)
    assert SearchCost(5, 3, 50).overhead == pytest.approx(1.3)
    with pytest.raises(ValueError, match="preview_steps must be at least 1"):
        SearchCost(5, 0, 50)


class CountingModel:
    """Stand-in sampler: records every run; frames drift from the guide by a seed-dependent amount."""

    def __init__(self, preview_steps, steps):
        self.preview_steps, self.steps = preview_steps, steps
        self.runs = []

    def run(self, guide, seed, steps):
        self.runs.append((seed, steps))
        return drifting_frames(guide, seed)[0]

    def preview(self, guide, seed):
        return self.run(guide, seed, self.preview_steps)

    def sample(self, guide, seed):
        return self.run(guide, seed, self.steps)


def test_search_loop_samples_each_chunk_with_its_best_seed_and_chains_the_guides():
    cost = SearchCost(candidates=4, preview_steps=3, steps=20)
    model = CountingModel(cost.preview_steps, cost.steps)
    first_guide = torch.randn(DIM, generator=torch.Generator().manual_seed(1))
    guides, seen = [], []

    def score(guide, frames):
        guides.append(guide)
        return min_frame_similarity(guide, frames)

    chunks = list(
        search_chunks(
            3, cost.candidates, 10, first_guide, model.preview, model.sample, score, lambda frames: frames[-1], lambda j, seed, s: seen.append((j, seed, s))
        )
    )

    assert sum(steps for _, steps in model.runs) == cost.total_steps(3)
    assert [c.seeds for c in chunks] == [candidate_seeds(10, i, 4) for i in range(3)]
    assert len(seen) == 12 and [s for _, _, s in seen] == [s for c in chunks for s in c.scores]
    guide = first_guide
    for chunk in chunks:
        # every full run reuses the winning candidate's seed right after its chunk's previews
        assert model.runs[chunk.index * 5 + 4] == (chunk.chosen_seed, 20)
        assert chunk.scores[chunk.chosen] == max(chunk.scores)
        # the scores are those of the frames the preview made from that guide and seed
        for seed, score_value in zip(chunk.seeds, chunk.scores):
            assert score_value == pytest.approx(float(min_frame_similarity(guide, drifting_frames(guide, seed)[0])))
        torch.testing.assert_close(chunk.frames, drifting_frames(guide, chunk.chosen_seed)[0])
        assert f"seed {chunk.chosen_seed} chosen" in chunk.describe()
        guide = chunk.frames[-1]
    assert all(g is first_guide for g in guides[:4])
    assert all(torch.equal(g, chunks[0].frames[-1]) for g in guides[4:8])


def test_the_loop_streams_chunks_one_at_a_time():
    model = CountingModel(2, 5)
    chunks = search_chunks(10, 2, 0, torch.ones(DIM), model.preview, model.sample, min_frame_similarity, lambda frames: frames[-1])
    next(chunks)
    assert len(model.runs) == 3
    with pytest.raises(ValueError, match="at least 1"):
        next(search_chunks(0, 2, 0, torch.ones(DIM), model.preview, model.sample, min_frame_similarity, lambda f: f[-1]))

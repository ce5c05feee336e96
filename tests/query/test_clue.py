"""CLUE: uncertainty weights, weighted centroid pick, selection invariants."""

import numpy as np
import pytest
import torch

from adakit.registry import STRATEGIES


def _clue(**params):
    cls = STRATEGIES.get("clue")
    return cls(cls.Params.validated(params, "query"))


def _weights(view, idx, t):
    """The released CLUE code's weights: entropy of softmax(z / T) + 1e-8 (the floor inside the log)."""
    p = torch.softmax(view.logits[torch.as_tensor(idx)].double() / t, dim=1).numpy() + 1e-8
    return np.array([-sum(pc * np.log(pc) for pc in row) for row in p])


def test_single_cluster_picks_sample_nearest_weighted_mean(view_factory):
    # b = 1: the weighted k-means centroid is Σ w_i f_i / Σ w_i; the pick is the sample nearest to it
    view = view_factory(30, 4, 3, labelled=5, seed=0)
    cand = view.unlabelled_indices
    for t in (0.1, 1.0):
        sel = _clue(temperature=t).select(view, 1, np.random.default_rng(0))
        w = _weights(view, cand, t)
        f = view.embeddings[torch.as_tensor(cand)].double().numpy()
        centre = (w[:, None] * f).sum(0) / w.sum()
        j = int(np.argmin(((f - centre) ** 2).sum(1)))
        assert sel.indices.tolist() == [int(cand[j])]
        assert sel.scores[0] == pytest.approx(w[j], rel=1e-6)


def test_weights_steer_the_clusters(view_factory):
    # two far blobs; only one blob is uncertain: with b = 2 both centroids land in the uncertain blob
    view = view_factory(40, 2, 2, seed=1)
    x = torch.zeros(40, 2)
    x[:20] = torch.randn(20, 2) * 0.5
    x[20:] = torch.randn(20, 2) * 0.5 + torch.tensor([20.0, 0.0])
    view.pool.x = x
    logits = torch.zeros(40, 2)
    logits[20:, 0] = 10.0  # confident: entropy weight ≈ 0 at T = 0.1
    view.__dict__["_outputs"] = (x, logits)
    sel = _clue().select(view, 2, np.random.default_rng(0))
    assert all(i < 20 for i in sel.indices)


@pytest.mark.parametrize("labelled,budget", [(0, 5), (10, 7), (38, 5), (40, 3)])
def test_selection_invariants(view_factory, selection_checker, labelled, budget):
    view = view_factory(40, 6, 3, labelled=labelled, seed=2, clusters=3)
    sel = _clue().select(view, budget, np.random.default_rng(0))
    selection_checker(sel, view, budget)


def test_reproducible_and_duplicates(view_factory, selection_checker):
    view = view_factory(80, 5, 4, labelled=8, seed=3)
    a = _clue().select(view, 10, np.random.default_rng(2))
    b = _clue().select(view, 10, np.random.default_rng(2))
    assert a.indices.tolist() == b.indices.tolist()
    # many exact duplicates: clusters collapse, the picker still returns b distinct samples
    x = torch.zeros(20, 3)
    x[10:] = 1.0
    view = view_factory(20, 3, 2, seed=4)
    view.__dict__["_outputs"] = (x, torch.zeros(20, 2))
    sel = _clue().select(view, 6, np.random.default_rng(0))
    selection_checker(sel, view, 6)


def test_saturated_logits_keep_the_released_entropy_floor(view_factory):
    # saturated logits (gap ≥ 80 at T = 0.1: p exactly one-hot in float64) used to get weight exactly 0;
    # with the released code's floor every weight is finite and > 0, and equals −Σ (p + 1e-8) log(p + 1e-8)
    from adakit.query._algorithms import nearest_to_centroids, weighted_kmeans
    from adakit.query.clue import clue_weights

    view = view_factory(60, 4, 5, labelled=0, seed=5, clusters=3)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(60, 5, generator=g)
    sat = torch.arange(60) % 3 != 0  # two thirds saturated, with different gaps
    logits[sat, 0] = 80.0 + 40.0 * torch.rand(int(sat.sum()), generator=g)
    view.__dict__["_outputs"] = (view.embeddings, logits)
    assert (torch.softmax(logits.double() / 0.1, 1)[sat].max(1).values == 1.0).all()  # saturated indeed
    w = clue_weights(logits, 0.1)
    ref = _weights(view, np.arange(60), 0.1)
    assert torch.isfinite(w).all() and (w > 0).all()
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-12)
    np.testing.assert_allclose(w[sat].numpy(), 4 * 1e-8 * -np.log(1e-8) - (1 + 1e-8) * np.log1p(1e-8), rtol=1e-6)
    a = _clue(kmeans="sklearn").select(view, 8, np.random.default_rng(3))
    b = _clue(kmeans="sklearn").select(view, 8, np.random.default_rng(3))
    assert a.indices.tolist() == b.indices.tolist()  # deterministic for a seed
    # the selection is the released code's: sklearn KMeans weighted by the floored entropy, nearest sample
    rng = np.random.default_rng(3)
    centres = weighted_kmeans(view.embeddings.float(), 8, rng, weights=ref)
    assert a.indices.tolist() == nearest_to_centroids(view.embeddings.float(), centres).tolist()
    np.testing.assert_allclose(a.scores, ref[a.indices], rtol=1e-12)


def test_features_far_from_the_origin_pick_as_the_same_features_near_it():
    """Features with a large shared offset (1000, spread 0.1) lost their distances to float32 cancellation: every one
    of 20 selections differed from the same features without the offset. CLUE shifts them to their mean first."""
    import adakit

    rng = np.random.default_rng(0)
    for seed in range(20):
        f, z = (rng.normal(size=(40, 4)) * 0.1).astype(np.float32), rng.normal(size=(40, 3))
        near = adakit.select("clue", logits=z, embeddings=f, budget=4, seed=seed).indices
        far = adakit.select("clue", logits=z, embeddings=f + np.float32(1000), budget=4, seed=seed).indices
        assert sorted(near) == sorted(far)

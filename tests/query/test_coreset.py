"""CoreSet: k-center greedy against a brute-force loop; source centres; selection invariants."""

import numpy as np
import pytest

from adakit.registry import STRATEGIES


def _coreset(**params):
    cls = STRATEGIES.get("coreset")
    return cls(cls.Params.validated(params, "query"))


def _brute(x: np.ndarray, centres: np.ndarray, cand: list[int], k: int):
    centres = [c for c in centres]
    picks, dists = [], []
    for _ in range(k):
        best, best_d = None, -1.0
        for i in cand:
            if i in picks:
                continue
            d = min(np.linalg.norm(x[i] - c) for c in centres)
            if d > best_d:
                best, best_d = i, d
        picks.append(best)
        dists.append(best_d)
        centres.append(x[best])
    return picks, dists


def test_matches_brute_force_on_20_points(view_factory):
    view = view_factory(20, 3, 2, labelled=[1, 6, 11], seed=0)
    x = view.embeddings.double().numpy()
    sel = _coreset().select(view, 6, np.random.default_rng(0))
    picks, dists = _brute(x, x[[1, 6, 11]], view.unlabelled_indices.tolist(), 6)
    assert sel.indices.tolist() == picks
    np.testing.assert_allclose(sel.scores, dists, rtol=1e-5)


def test_source_embeddings_as_centres(view_factory):
    view = view_factory(20, 3, 2, labelled=[2], seed=1, source_n=8)
    x = view.embeddings.double().numpy()
    centres = np.concatenate([x[[2]], view.source_embeddings.double().numpy()])
    sel = _coreset(use_source=True).select(view, 5, np.random.default_rng(0))
    picks, dists = _brute(x, centres, view.unlabelled_indices.tolist(), 5)
    assert sel.indices.tolist() == picks
    np.testing.assert_allclose(sel.scores, dists, rtol=1e-5)


@pytest.mark.parametrize("labelled,budget", [(0, 5), (10, 7), (38, 5), (40, 3)])
def test_selection_invariants(view_factory, selection_checker, labelled, budget):
    view = view_factory(40, 6, 3, labelled=labelled, seed=2)
    sel = _coreset().select(view, budget, np.random.default_rng(0))
    selection_checker(sel, view, budget)


def test_reproducible_without_labelled(view_factory):
    view = view_factory(100, 4, 3, seed=3)
    a = _coreset().select(view, 10, np.random.default_rng(1))
    b = _coreset().select(view, 10, np.random.default_rng(1))
    assert a.indices.tolist() == b.indices.tolist()
    assert np.isinf(a.scores[0])  # first pick without any centre


@pytest.mark.parametrize("offset", [0.0, 100.0, 1000.0])
def test_features_far_from_the_origin_keep_their_distances(offset):
    """|x|² + |c|² − 2x·c in float32 cancelled the distances of features with a large shared offset (spread 0.1 at
    offset 1000: every pick differed from exact k-center greedy; distances read 0.5 and 0 instead of 0.3 and 0.15).
    CoreSet (and CLUE) shift such features to their mean first; the picks follow the exact float64 distances."""
    import adakit

    rng = np.random.default_rng(0)
    for _ in range(10):
        f = (rng.normal(size=(12, 4)) * 0.1 + offset).astype(np.float32)
        lab = np.zeros(12, dtype=bool)
        lab[:3] = True
        src = (rng.normal(size=(5, 4)) * 0.1 + offset).astype(np.float32)
        for use_source, centres in ((False, f[:3]), (True, np.concatenate([f[:3], src]))):
            sel = adakit.select("coreset", embeddings=f, labelled=lab, budget=3, use_source=use_source,
                                source_embeddings=src if use_source else None)
            picks, dists = _brute(f.astype(np.float64), centres.astype(np.float64), list(range(3, 12)), 3)
            assert sel.indices.tolist() == picks
            np.testing.assert_allclose(sel.scores, dists, rtol=1e-3)

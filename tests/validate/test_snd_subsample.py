"""SND on a seeded uniform subsample above `max_samples` rows (issue #14, Performance): exact below it, the
same rows for every checkpoint, rescaled to the pool's size, cost set by the subsample and not by the pool."""

import math

import numpy as np
import pytest
import torch

import adakit
from adakit.errors import ConfigError
from adakit.validate.snd import MAX_SAMPLES, SNDParams, soft_neighbourhood_density, subsample_rows


def _pool(n, c=5, seed=0):
    return np.random.default_rng(seed).dirichlet(np.full(c, 0.3), size=n)


def test_exact_at_or_below_max_samples():
    q = _pool(120)
    exact = soft_neighbourhood_density(q, max_samples=None)
    assert subsample_rows(120, 120) is None and subsample_rows(120, None) is None
    assert soft_neighbourhood_density(q, max_samples=120) == exact
    assert adakit.validate("snd", probs=q) == pytest.approx(exact)  # the default (30k) is far above 120 rows
    assert SNDParams().max_samples == MAX_SAMPLES


def test_above_max_samples_scores_the_seeded_rows_of_every_checkpoint():
    rows = subsample_rows(300, 80, seed=3)
    assert len(rows) == 80 and len(np.unique(rows)) == 80 and (np.diff(rows) > 0).all() and rows.max() < 300
    np.testing.assert_array_equal(rows, subsample_rows(300, 80, seed=3))  # depends on (N, n, seed) only
    assert not np.array_equal(rows, subsample_rows(300, 80, seed=4))
    # two checkpoints (different probabilities, same pool) are scored on the same rows: the exact SND of those rows
    # plus log((N−1)/(n−1)), the shift of log Z from scoring n − 1 candidate neighbours instead of N − 1
    for q in (_pool(300, seed=1), _pool(300, seed=2)):
        sub = soft_neighbourhood_density(q, max_samples=80, seed=3)
        assert sub == pytest.approx(soft_neighbourhood_density(q[rows], max_samples=None) + math.log(299 / 79),
                                    rel=1e-6)
        assert sub != pytest.approx(soft_neighbourhood_density(q, max_samples=None), rel=1e-3)
        via_params = adakit.validate("snd", probs=q, params={"max_samples": 80, "seed": 3})
        assert via_params == pytest.approx(sub, rel=1e-6)
        t = torch.as_tensor(q)  # a tensor pool takes the same rows
        assert soft_neighbourhood_density(t, max_samples=80, seed=3) == pytest.approx(sub, rel=1e-6)
    assert adakit.validate("snd", probs=q, params={"max_samples": None}) == pytest.approx(
        soft_neighbourhood_density(q, max_samples=None), rel=1e-6)


def test_rescaled_subsample_keeps_the_pool_scale():
    # degenerate model (the same prediction everywhere): every neighbour is equally close, SND = log(N−1) exactly
    same = np.tile([0.5, 0.3, 0.2], (500, 1))
    assert soft_neighbourhood_density(same, max_samples=50) == pytest.approx(math.log(499), rel=1e-5)
    # a clustered model: the rescaled subsample is near the exact score, the raw one a full log(499/99) lower
    q = np.eye(5)[np.random.default_rng(0).integers(0, 5, 500)] * 0.8 + _pool(500, seed=5) * 0.2
    exact = soft_neighbourhood_density(q, max_samples=None)
    assert soft_neighbourhood_density(q, max_samples=100) == pytest.approx(exact, abs=0.1)
    assert soft_neighbourhood_density(q, max_samples=100) - math.log(499 / 99) < exact - 1.5


def test_cost_is_set_by_the_subsample_not_the_pool(monkeypatch):
    sizes, addmm = [], torch.addmm
    monkeypatch.setattr(torch, "addmm", lambda *a, **k: sizes.append(addmm(*a, **k).shape) or addmm(*a, **k))
    soft_neighbourhood_density(_pool(2000), block_elements=400, max_samples=100)
    # 100 rows in 20×20 tiles: 5·6/2 tiles on and above the diagonal, none touching the other 1,900 rows
    assert len(sizes) == 15 and max(a * b for a, b in sizes) <= 400


def test_subsample_tracks_the_exact_ranking_of_models():
    # three models of clearly different neighbourhood density keep their order on a 40% subsample
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 600)
    models = [np.eye(4)[y] * (1 - e) + e / 4 + rng.dirichlet(np.ones(4), 600) * e for e in (0.1, 0.5, 0.9)]
    models = [m / m.sum(1, keepdims=True) for m in models]
    exact = [soft_neighbourhood_density(m, max_samples=None) for m in models]
    sub = [soft_neighbourhood_density(m, max_samples=240) for m in models]
    assert np.argsort(exact).tolist() == np.argsort(sub).tolist()


def test_bad_max_samples_is_a_config_error():
    with pytest.raises(ConfigError, match="max_samples"):
        adakit.validate("snd", probs=_pool(10), params={"max_samples": 1})
    with pytest.raises(ConfigError, match="max_samples=1"):
        soft_neighbourhood_density(_pool(10), max_samples=1)

import numpy as np
import torch

from adakit.query.base import top_k
from adakit.query.uncertainty import entropy, least_confidence, margin
from adakit.registry import STRATEGIES

P = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0]])


def test_scores_by_hand():
    h0 = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1))
    np.testing.assert_allclose(entropy(P)[0], h0, rtol=1e-6)
    assert float(entropy(P)[2]) == 0.0
    np.testing.assert_allclose(least_confidence(P), [0.3, 0.6, 0.0], atol=1e-7)
    np.testing.assert_allclose(margin(P), [0.5, 1.0, 0.0], atol=1e-7)


def test_top_k_breaks_ties_with_rng():
    scores = np.array([1.0, 5.0, 5.0, 5.0, 0.0])
    cand = np.arange(10, 15)
    picks = {tuple(top_k(scores, cand, 2, np.random.default_rng(s)).indices) for s in range(20)}
    assert all(set(p) <= {11, 12, 13} for p in picks) and len(picks) > 1
    assert top_k(scores, cand, 9, np.random.default_rng(0)).indices.tolist()[-1] == 14  # whole pool


class _View:
    def __init__(self, probs, labelled):
        self.probs = probs
        self.labelled = labelled
        self.unlabelled_indices = np.flatnonzero(~labelled)


def test_simple_strategies_pick_unlabelled_most_uncertain():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(torch.randn(50, 4, generator=g) * 3, dim=1)
    labelled = np.zeros(50, bool)
    labelled[:10] = True
    for name, score in (("entropy", entropy), ("confidence", least_confidence), ("margin", margin)):
        sel = STRATEGIES.get(name)(STRATEGIES.get(name).Params()).select(_View(probs, labelled), 5,
                                                                         np.random.default_rng(0))
        expected = 10 + np.argsort(-score(probs[10:]).numpy(), kind="stable")[:5]
        assert sorted(sel.indices.tolist()) == sorted(expected.tolist()), name
    rnd = STRATEGIES.get("random")(STRATEGIES.get("random").Params())
    a = rnd.select(_View(probs, labelled), 7, np.random.default_rng(3)).indices
    b = rnd.select(_View(probs, labelled), 7, np.random.default_rng(3)).indices
    assert a.tolist() == b.tolist() and len(set(a)) == 7 and (a >= 10).all()

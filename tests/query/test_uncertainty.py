import numpy as np
import pytest
import torch

from adakit.query.base import top_k
from adakit.query.uncertainty import entropy, least_confidence, margin, score_rows
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


def _near_tie_probs() -> torch.Tensor:
    """float32 rows whose top-2 gaps are 1..6 float32 ulps of 0.45 (≈ 3e-8 each): distinct gaps that float32
    rounding of 1 − (p1 − p2) maps onto fewer values."""
    p2 = torch.tensor(0.45, dtype=torch.float32)
    rows = []
    for i in (6, 3, 1, 5, 2, 4):  # shuffled: the smallest gap is row 2
        p1 = p2.clone()
        for _ in range(i):
            p1 = torch.nextafter(p1, torch.tensor(1.0))
        rows.append(torch.stack([p1, p2, 1.0 - p1 - p2]))
    return torch.stack(rows)


def test_top_two_equals_topk_with_ties_and_any_layout():
    from adakit.query.uncertainty import top_two

    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(500, 7, generator=g) * 3, dim=1)
    p[:50, 3] = p[:50, 5] = 2.0  # tied tops: the second largest equals the largest
    p[50:60] = 0.0  # all-zero rows: every entry is the top
    for x in (p, p.double(), p.T.contiguous().T, p[:, :2], p.half(), p.bfloat16()):
        for nonnegative in (False, True):
            assert torch.equal(top_two(x, nonnegative), x.topk(2, dim=1).values)
    assert (top_two(p)[:50, 1] == 2.0).all()
    for c in (2, 3, 4, 5, 6, 31, 64, 65, 345, 3000):  # 3000: a count of entries below the top past float16's 2048
        x = torch.randint(0, 5, (400, c), generator=g).float()  # many ties, in every position
        x[:20] = 0.0
        x[20:40, :2] = 4.0  # the top tied in the first two columns only
        before = x.clone()
        for xx in (x, x.half()):
            assert torch.equal(top_two(xx, nonnegative=True), xx.topk(2, dim=1).values), c
        assert torch.equal(x, before)  # the input is left as it was
        z = x - 2.5 * torch.randn(400, c, generator=g).abs()  # negative entries: the general path
        for zz in (z, z.double(), z.half(), -x):
            assert torch.equal(top_two(zz), zz.topk(2, dim=1).values), c


def test_top_two_by_blocks_of_rows(monkeypatch):
    from adakit.query import uncertainty

    x = torch.randint(0, 5, (1000, 7), generator=torch.Generator().manual_seed(1)).float()
    monkeypatch.setattr(uncertainty, "TOP_TWO_BLOCK", 7 * 64)  # 64 rows a block: 16 blocks, the last one short
    for y in (x, x - 2.0):
        assert torch.equal(uncertainty.top_two(y, nonnegative=bool(y.amin() >= 0)), y.topk(2, dim=1).values)


def test_margin_is_float64_no_false_ties():
    p = _near_tie_probs()
    assert p.dtype == torch.float32
    top = p.topk(2, dim=1).values
    f32 = (1.0 - (top[:, 0] - top[:, 1])).tolist()  # the old float32 scores: false ties
    assert len(set(f32)) < len(f32)
    m = margin(p)
    assert m.dtype == torch.float64
    assert len(set(m.tolist())) == len(m)
    assert np.argsort(-m.numpy()).tolist() == [2, 4, 1, 5, 3, 0]  # by gap 1, 2, 3, 4, 5, 6 ulps
    # the selections are deterministic: every seed picks the smallest gaps, for margin and SDM alike
    from adakit import select

    for name in ("margin", "sdm"):
        picks = {tuple(select(name, probs=p, budget=2, seed=s).indices.tolist()) for s in range(10)}
        assert picks == {(2, 4)}, (name, picks)
    lc = least_confidence(torch.tensor([[1 - 3e-8, 3e-8], [1 - 9e-8, 9e-8]], dtype=torch.float32))
    assert lc.dtype == torch.float64 and lc[0] < lc[1]


@pytest.mark.parametrize("score", [margin, entropy, least_confidence])
@pytest.mark.parametrize("share", [0.2, 0.5, 0.9])
def test_score_rows_equals_scoring_the_gathered_rows_on_both_branches(score, share):
    """Scoring every row then indexing (rows ≥ half the pool) or gathering first: the same values, bit for bit."""
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(torch.randn(200, 7, generator=g) * 3, dim=1)
    p[:10] = p[10]  # ties between rows
    rows = np.random.default_rng(0).permutation(200)[: int(share * 200)]  # unsorted
    assert torch.equal(score_rows(score, p, rows), score(p[torch.as_tensor(rows)]))

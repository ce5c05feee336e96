"""SDM margin sampling and SDM-G (Xie et al. CVPR 2022, Eq. 3, 8–9)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from adakit.adapt.sdm_loss import AdaptiveMarginLoss, MarginLoss
from adakit.models.heads import CosineHead
from adakit.query.sdm import SDMGradientSampling, SDMMarginSampling
from adakit.registry import STRATEGIES


def _all_scores(strategy, view):
    """Scores of every unlabelled sample (budget = pool), keyed by pool index."""
    sel = strategy.select(view, len(view), np.random.default_rng(0))
    return dict(zip(sel.indices.tolist(), sel.scores.tolist())), sel


def _reference_sdm_g(view, loss_fn, lam):
    """Eq. 8–9 with torch.autograd, one sample at a time (a few samples only)."""
    out = {}
    head = view.head
    for n in view.unlabelled_indices[:6]:
        f = view.embeddings[n:n + 1].clone().requires_grad_(True)
        z = head(f)
        p = torch.softmax(z, 1)
        top = p.detach().topk(2, dim=1)
        (i1, i2), (p1, p2) = top.indices[0].tolist(), top.values[0]
        (g1,) = torch.autograd.grad(loss_fn(z, torch.tensor([i1])).sum(), f, retain_graph=True)
        (g2,) = torch.autograd.grad(loss_fn(z, torch.tensor([i2])).sum(), f, retain_graph=True)
        grad_l = p1 * g1 + p2 * g2
        q = 1 - (p[0, i1] - p[0, i2])
        (grad_q,) = torch.autograd.grad(q, f)
        out[int(n)] = float(q.detach() + lam * F.cosine_similarity(grad_l, grad_q, dim=1)[0])
    return out


def test_registered_and_no_needs():
    assert STRATEGIES.get("sdm") is SDMMarginSampling and STRATEGIES.get("sdm_g") is SDMGradientSampling
    assert not SDMMarginSampling.needs and not SDMGradientSampling.needs


def test_sdm_scores_are_the_margin_by_hand(view_factory, selection_checker):
    view = view_factory(n=30, labelled=5)
    strat = SDMMarginSampling(SDMMarginSampling.Params())
    sel = strat.select(view, 7, np.random.default_rng(0))
    selection_checker(sel, view, 7)
    ps = np.sort(view.probs.numpy(), axis=1)
    q = 1 - (ps[:, -1] - ps[:, -2])
    assert np.allclose(sel.scores, q[sel.indices], atol=1e-6)
    unl = view.unlabelled_indices
    assert sel.scores.min() >= np.sort(q[unl])[-7] - 1e-7


def test_sdm_g_matches_autograd_without_objective(view_factory, selection_checker):
    """No SDM objective: L is the released code's form (CE + multi-margin on normalised logits − max-logit)."""
    view = view_factory(n=25, labelled=3, seed=1)
    strat = SDMGradientSampling(SDMGradientSampling.Params())
    scores, sel = _all_scores(strat, view)
    selection_checker(sel, view, len(view))

    def code_form(z, y):
        zn = F.normalize(z, dim=1)
        return F.cross_entropy(z, y) + F.multi_margin_loss(zn, y) - zn.gather(1, y[:, None]).mean()

    ref = _reference_sdm_g(view, code_form, 0.01)
    for n, v in ref.items():
        assert scores[n] == pytest.approx(v, abs=1e-5)


@pytest.mark.parametrize("objective", ["sdm_raw", "sdm_a"])
def test_sdm_g_uses_the_objective_training_loss(view_factory, objective):
    if objective == "sdm_raw":
        obj = MarginLoss(MarginLoss.Params(raw_logits=True), feature_dim=8, num_classes=4)
    else:
        obj = AdaptiveMarginLoss(AdaptiveMarginLoss.Params(), feature_dim=8, num_classes=4)
    view = view_factory(n=25, seed=2, objective=obj)
    strat = SDMGradientSampling(SDMGradientSampling.Params(lam=0.5))
    scores, _ = _all_scores(strat, view)
    ref = _reference_sdm_g(view, obj.per_sample_loss, 0.5)
    for n, v in ref.items():
        assert scores[n] == pytest.approx(v, abs=1e-5)


def test_sdm_g_with_a_cosine_head_uses_the_head_vjp(view_factory):
    view = view_factory(n=20, seed=3)
    head = CosineHead(8, 4, temperature=0.3)
    view.model.head = head
    strat = SDMGradientSampling(SDMGradientSampling.Params(lam=1.0, block_size=7))  # several blocks
    scores, _ = _all_scores(strat, view)
    obj = MarginLoss(MarginLoss.Params(), feature_dim=8, num_classes=4)
    ref = _reference_sdm_g(view, obj.per_sample_loss, 1.0)
    for n, v in ref.items():
        assert scores[n] == pytest.approx(v, abs=1e-5)


def test_sdm_g_lambda_zero_is_margin_sampling(view_factory):
    view = view_factory(n=40, labelled=4, seed=4)
    a = SDMGradientSampling(SDMGradientSampling.Params(lam=0.0)).select(view, 9, np.random.default_rng(1))
    b = SDMMarginSampling(SDMMarginSampling.Params()).select(view, 9, np.random.default_rng(1))
    assert np.array_equal(a.indices, b.indices)
    assert np.allclose(a.scores, b.scores, atol=1e-6)


def test_sdm_g_cosine_term_is_bounded_and_matters(view_factory):
    view = view_factory(n=60, seed=5)
    q = SDMMarginSampling(SDMMarginSampling.Params()).select(view, 60, np.random.default_rng(0))
    g = SDMGradientSampling(SDMGradientSampling.Params(lam=0.3)).select(view, 60, np.random.default_rng(0))
    qs = dict(zip(q.indices.tolist(), q.scores.tolist()))
    diff = np.array([s - qs[i] for i, s in zip(g.indices.tolist(), g.scores.tolist())])
    assert (np.abs(diff) <= 0.3 + 1e-6).all() and np.abs(diff).max() > 1e-3


def test_sdm_g_nothing_left(view_factory):
    view = view_factory(n=10, labelled=np.ones(10, dtype=bool))
    sel = SDMGradientSampling(SDMGradientSampling.Params()).select(view, 3, np.random.default_rng(0))
    assert len(sel.indices) == 0


@pytest.mark.slow
@pytest.mark.parametrize("strategy,objective", [("sdm_g", "sdm"), ("sdm", "sdm_a")])
def test_runs_end_to_end_from_config(office31_short_run, strategy, objective):
    office31_short_run(strategy, {"name": objective})

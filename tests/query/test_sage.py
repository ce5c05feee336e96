"""SAGE (Bouvier et al., seed 001): POP (Eq. 5), embedding (Eq. 6), g_c vs autograd, Alg. 1 selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from adakit.errors import ConfigError
from adakit.models.discriminators import ClassDiscriminator
from adakit.query.sage import SageSampling, compute_sage, positive_orthogonal_projection, sage_embedding
from adakit.registry import STRATEGIES


class StandIn(nn.Module):
    """A stand-in objective that provides a class-level discriminator."""

    provides = frozenset({"class_discriminator"})

    def __init__(self, disc: nn.Module):
        super().__init__()
        self.class_discriminator = disc


def _sage(view, **params):
    return SageSampling(SageSampling.Params(**params))


def test_registered_with_needs():
    assert STRATEGIES.get("sage") is SageSampling
    assert SageSampling.needs == frozenset({"class_discriminator"})


def test_pop_by_hand_two_classes():
    # g1 = (1, 0), g2 = (−1, 1), p = (0.75, 0.25): E = (0.5, 0.25), ||E||² = 0.3125
    # λ1 = |0.5|/0.3125 = 1.6 → g̃1 = (0.2, −0.4) ⊥ E;  λ2 = |−0.25|/0.3125 = 0.8 → g̃2 = (−1.4, 0.8)
    g = torch.tensor([[[1.0, 0.0], [-1.0, 1.0]]], dtype=torch.float64)
    p = torch.tensor([[0.75, 0.25]], dtype=torch.float64)
    gt = positive_orthogonal_projection(g, p)
    assert torch.allclose(gt[0], torch.tensor([[0.2, -0.4], [-1.4, 0.8]], dtype=torch.float64))
    s = sage_embedding(g, p)
    assert torch.allclose(s[0], torch.tensor([[0.75 ** 0.5 * 0.2, -(0.75 ** 0.5) * 0.4],
                                              [0.5 * -1.4, 0.5 * 0.8]], dtype=torch.float64))
    # without POP the embedding is √p_c·g_c
    assert torch.allclose(sage_embedding(g, p, pop=False)[0], torch.tensor([[0.75 ** 0.5, 0.0], [-0.5, 0.5]],
                                                                           dtype=torch.float64))


def test_pop_is_zero_when_annotation_agrees_with_the_expected_gradient():
    gen = torch.Generator().manual_seed(0)
    # C = 1: the only label is the expected one
    g = torch.randn(5, 1, 4, generator=gen, dtype=torch.float64)
    assert torch.allclose(positive_orthogonal_projection(g, torch.ones(5, 1, dtype=torch.float64)),
                          torch.zeros_like(g), atol=1e-12)
    # all g_c positive multiples of one direction: every annotation agrees with E
    v = torch.randn(5, 1, 4, generator=gen, dtype=torch.float64)
    a = torch.rand(5, 3, 1, generator=gen, dtype=torch.float64) + 0.1
    p = torch.softmax(torch.randn(5, 3, generator=gen, dtype=torch.float64), 1)
    assert torch.allclose(positive_orthogonal_projection(a * v, p), torch.zeros(5, 3, 4, dtype=torch.float64),
                          atol=1e-12)


def test_pop_orthogonality_and_growth():
    """g_c·E ≥ 0 → g̃_c ⊥ E (orthogonal projection); g_c·E < 0 → g̃_c·E = 2 g_c·E and ||g̃_c|| > ||g_c||."""
    gen = torch.Generator().manual_seed(1)
    g = torch.randn(50, 5, 6, generator=gen, dtype=torch.float64)
    p = torch.softmax(torch.randn(50, 5, generator=gen, dtype=torch.float64), 1)
    e = (p.unsqueeze(2) * g).sum(1, keepdim=True)
    gt = positive_orthogonal_projection(g, p)
    dots, dots_t = (g * e).sum(2), (gt * e).sum(2)
    agree = dots >= 0
    assert agree.any() and (~agree).any()
    assert torch.allclose(dots_t[agree], torch.zeros_like(dots_t[agree]), atol=1e-10)
    assert torch.allclose(dots_t[~agree], 2 * dots[~agree], atol=1e-10)
    assert (gt.norm(dim=2)[~agree] > g.norm(dim=2)[~agree]).all()
    # ||S(x)||² = Σ_c p_c ||g̃_c||² (the norm of SAGE §3.3)
    s = sage_embedding(g, p)
    assert torch.allclose(s.flatten(1).norm(dim=1) ** 2, (p * gt.norm(dim=2) ** 2).sum(1))


def test_pop_zero_expected_gradient_keeps_g():
    g = torch.tensor([[[1.0, 0.0], [-1.0, 0.0]]])
    p = torch.tensor([[0.5, 0.5]])  # E = 0
    assert torch.allclose(positive_orthogonal_projection(g, p), g)


@pytest.mark.parametrize("kind", ["linear", "mlp"])
def test_embedding_matches_autograd(kind):
    torch.manual_seed(2)
    m, c = 5, 3
    disc = nn.Linear(m, c) if kind == "linear" else ClassDiscriminator(m, c, hidden=8)
    f = torch.randn(7, m)
    p = torch.softmax(torch.randn(7, c), 1)
    norms, rows, k = compute_sage(disc, f, p, block_size=3)
    assert k is None and rows.shape == (7, c * m)
    disc.eval()
    for n in range(3):  # reference: per-sample, per-class autograd
        gs = []
        for cls in range(c):
            fn = f[n:n + 1].clone().requires_grad_(True)
            (gc,) = torch.autograd.grad(-torch.log(torch.sigmoid(disc(fn)[0, cls])), fn)
            gs.append(gc[0])
        g = torch.stack(gs)
        e = (p[n][:, None] * g).sum(0)
        lam = (g @ e).abs() / (e @ e)
        ref = (p[n].sqrt()[:, None] * (g - lam[:, None] * e)).flatten()
        assert torch.allclose(rows[n], ref, atol=1e-5)
        assert norms[n].item() == pytest.approx(ref.norm().item(), rel=1e-5)


def test_random_projection_above_the_memory_limit():
    torch.manual_seed(3)
    m, c, n = 64, 4, 30
    disc = ClassDiscriminator(m, c, hidden=16)
    f = torch.randn(n, m)
    p = torch.softmax(torch.randn(n, c), 1)
    norms, rows, k = compute_sage(disc, f, p)
    limit = 4 * n * c * 16  # room for k = 16 dims per class
    pnorms, prows, pk = compute_sage(disc, f, p, max_bytes=limit, rng=np.random.default_rng(0))
    assert k is None and pk == 16 and prows.shape == (n, c * 16)
    assert torch.allclose(pnorms, norms)  # norms stay exact
    d_full = torch.cdist(rows, rows)[np.triu_indices(n, 1)]
    d_proj = torch.cdist(prows, prows)[np.triu_indices(n, 1)]
    ratio = (d_proj / d_full).numpy()
    assert 0.8 < np.median(ratio) < 1.2 and np.corrcoef(d_full.numpy(), d_proj.numpy())[0, 1] > 0.8


def _brute_force_alg1(rows: torch.Tensor, norms: torch.Tensor, b: int) -> list[int]:
    a = [int(norms.argmax())]
    d = torch.cdist(rows, rows)
    while len(a) < b:
        mind = d[:, a].min(dim=1).values
        mind[a] = -1
        a.append(int(mind.argmax()))
    return a


def test_select_is_algorithm_1(view_factory, selection_checker):
    torch.manual_seed(4)
    disc = ClassDiscriminator(8, 4, hidden=16)
    view = view_factory(n=40, labelled=8, objective=StandIn(disc), seed=4)
    sel = _sage(view).select(view, 6, np.random.default_rng(0))
    selection_checker(sel, view, 6)
    cand = view.unlabelled_indices
    norms, rows, _ = compute_sage(disc, view.embeddings[cand], view.probs[cand])
    assert sel.indices[0] == cand[int(norms.argmax())]
    assert sel.indices.tolist() == cand[_brute_force_alg1(rows, norms, 6)].tolist()
    assert np.allclose(sel.scores, norms.numpy()[np.searchsorted(cand, sel.indices)], atol=1e-6)


@pytest.mark.parametrize("params", [{"diversity": "kmeans_pp"}, {"diversity": "none"}, {"pop": False},
                                    {"max_embedding_mb": 1e-3}])
def test_options_give_valid_selections(view_factory, selection_checker, params):
    torch.manual_seed(5)
    view = view_factory(n=30, labelled=4, objective=StandIn(ClassDiscriminator(8, 4, hidden=16)), seed=5)
    sel = _sage(view, **params).select(view, 5, np.random.default_rng(0))
    selection_checker(sel, view, 5)
    cand = view.unlabelled_indices
    norms, _, _ = compute_sage(view.objective.class_discriminator, view.embeddings[cand], view.probs[cand],
                               pop=params.get("pop", True))
    assert sel.indices[0] == cand[int(norms.argmax())]
    if params.get("diversity") == "none":
        assert np.allclose(sel.scores, np.sort(norms.numpy())[::-1][:5], atol=1e-6)


def test_pop_changes_the_ranking(view_factory):
    torch.manual_seed(6)
    view = view_factory(n=50, objective=StandIn(ClassDiscriminator(8, 4, hidden=16)), seed=6)
    a = _sage(view, diversity="none").select(view, 50, np.random.default_rng(0))
    b = _sage(view, diversity="none", pop=False).select(view, 50, np.random.default_rng(0))
    assert not np.array_equal(a.indices, b.indices)


def test_missing_discriminator_is_a_config_error(view_factory):
    view = view_factory(n=10)
    with pytest.raises(ConfigError, match="class_discriminator"):
        _sage(view).select(view, 2, np.random.default_rng(0))


@pytest.mark.slow
def test_runs_end_to_end_from_config(office31_short_run):
    office31_short_run("sage", {"name": "tsf", "hidden": 64})

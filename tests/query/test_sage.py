"""SAGE (Bouvier et al., seed 001): POP (Eq. 5), embedding (Eq. 6), g_c vs autograd, Alg. 1 selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from adakit.errors import ConfigError
from adakit.models.discriminators import ClassDiscriminator
from adakit.query._algorithms import argmax_random, farthest_first
from adakit.query._gradients import class_discriminator_gradients
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


@pytest.mark.parametrize("kind", ["linear", "mlp", "deep_leaky", "relu_logits"])
def test_embedding_matches_autograd(kind):
    torch.manual_seed(2)
    m, c = 5, 3
    disc = _discriminator(kind, m, c)
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
        assert norms[n].item() == pytest.approx(ref.norm().item(), rel=1e-5, abs=1e-7)


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


def _reference_compute_sage(disc, f, p, *, pop=True, max_bytes=2**30, block_size=256, rng=None):
    """`compute_sage` as it was before issue #15 (explicit (B, C, m) gradients, POP, √p and the per-class
    projection all in feature space), kept verbatim as the reference the factored computation must reproduce."""
    n, c = p.shape
    m = f.shape[1]
    k = None
    if 4.0 * n * c * m > max_bytes:
        k = max(1, int(max_bytes // (4 * n * c)))
        gen = torch.Generator().manual_seed(int((rng or np.random.default_rng(0)).integers(2**63 - 1)))
        proj = torch.randn(c, m, k, generator=gen) / np.sqrt(k)
    norms = torch.empty(n)
    rows = torch.empty((n, c * (k or m)))
    for s in range(0, n, block_size):
        g, _ = class_discriminator_gradients(disc, f[s:s + block_size])
        g = g.float().cpu().contiguous()
        pb = p[s:s + block_size].float()
        if pop:
            e = torch.bmm(pb.unsqueeze(1), g)
            ee = (e * e).sum(2)
            dots = torch.bmm(g, e.transpose(1, 2)).squeeze(2)
            lam = torch.where(ee > 0, dots.abs() / ee.clamp_min(torch.finfo(g.dtype).tiny), torch.zeros_like(dots))
            g = g.baddbmm_(lam.unsqueeze(2), e, alpha=-1.0)
        emb = g.mul_(pb.clamp_min(0).sqrt().unsqueeze(2))
        norms[s:s + block_size] = torch.linalg.vector_norm(emb.flatten(1), dim=1)
        if k is not None:
            emb = torch.bmm(emb.transpose(0, 1), proj).transpose(0, 1)
        rows[s:s + block_size] = emb.reshape(len(emb), -1)
    return norms, rows, k


def _reference_select(disc, view, budget, rng, max_bytes):
    """`SageSampling.select` before issue #15 (default farthest-first), on the reference embedding."""
    cand = view.unlabelled_indices
    norms, rows, _ = _reference_compute_sage(disc, view.embeddings[cand], view.probs[cand], max_bytes=max_bytes,
                                             rng=rng)
    picks, _ = farthest_first(rows, budget, rng=rng, first=argmax_random(norms, rng))
    return cand[picks], norms.numpy()[picks]


def _discriminator(kind: str, m: int, c: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(m, c)
    if kind == "mlp":
        return ClassDiscriminator(m, c, hidden=8)
    if kind == "deep_leaky":  # three hidden layers, LeakyReLU, dropout (skipped: eval mode)
        return nn.Sequential(nn.Linear(m, 20), nn.LeakyReLU(0.2), nn.Dropout(0.5), nn.Linear(20, 16), nn.ReLU(),
                             nn.Linear(16, 12), nn.LeakyReLU(0.1), nn.Linear(12, c))
    if kind == "linear_linear":  # no activation between the layers
        return nn.Sequential(nn.Linear(m, 9), nn.Linear(9, c))
    if kind == "relu_logits":  # an activation on the logits themselves (the explicit Jacobian code rejects it)
        return nn.Sequential(nn.Linear(m, 16), nn.ReLU(), nn.Linear(16, c), nn.ReLU())
    if kind == "tanh":  # not piecewise linear: the torch.func path
        return nn.Sequential(nn.Linear(m, 16), nn.Tanh(), nn.Linear(16, c))
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["linear", "mlp", "deep_leaky", "linear_linear", "tanh"])
@pytest.mark.parametrize("pop", [True, False])
@pytest.mark.parametrize("projected", [False, True])
def test_factored_embedding_matches_the_explicit_one(kind, pop, projected):
    """The factored S (gradients never formed, issue #15) equals the explicit (B, C, m) computation."""
    torch.manual_seed(7)
    n, m, c = 70, 12, 5
    disc = _discriminator(kind, m, c)
    f = torch.randn(n, m) * 2.0
    p = torch.softmax(2.0 * torch.randn(n, c), 1)
    p[0] = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])  # one-hot prediction: g̃ of the predicted class is 0
    limit = 4 * n * c * 3 if projected else 2**30  # k = 3 per class
    got = compute_sage(disc, f, p, pop=pop, max_bytes=limit, block_size=16, rng=np.random.default_rng(1))
    ref = _reference_compute_sage(disc, f, p, pop=pop, max_bytes=limit, block_size=16, rng=np.random.default_rng(1))
    assert got[2] == ref[2] == (3 if projected else None)
    assert torch.allclose(got[0], ref[0], rtol=1e-5, atol=1e-6)
    assert torch.allclose(got[1], ref[1], rtol=1e-4, atol=1e-5 * float(ref[1].abs().max()))


def test_float64_discriminator():
    torch.manual_seed(8)
    disc = ClassDiscriminator(6, 3, hidden=10).double()
    f, p = torch.randn(20, 6, dtype=torch.float64), torch.softmax(torch.randn(20, 3, dtype=torch.float64), 1)
    norms, rows, _ = compute_sage(disc, f, p, block_size=7)
    ref_norms, ref_rows, _ = _reference_compute_sage(disc, f, p, block_size=7)
    assert norms.dtype == rows.dtype == torch.float32
    assert torch.allclose(norms, ref_norms, rtol=1e-6) and torch.allclose(rows, ref_rows, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("max_mb", [64.0, 0.25])  # exact S; S projected to k = 5 dims per class
def test_selection_equals_the_pre_issue_15_code(view_factory, max_mb):
    """Same picks and scores as the explicit implementation on a moderate pool (issue #15: speed, same selection)."""
    torch.manual_seed(9)
    disc = ClassDiscriminator(32, 10, hidden=64)
    view = view_factory(n=1400, m=32, c=10, labelled=60, clusters=12, objective=StandIn(disc), seed=9)
    sel = _sage(view, max_embedding_mb=max_mb).select(view, 40, np.random.default_rng(3))
    ref_idx, ref_scores = _reference_select(disc, view, 40, np.random.default_rng(3), max_mb * 2**20)
    assert sel.indices.tolist() == ref_idx.tolist()
    assert np.allclose(sel.scores, ref_scores, rtol=1e-5)


@pytest.mark.slow
def test_runs_end_to_end_from_config(office31_short_run):
    office31_short_run("sage", {"name": "tsf", "hidden": 64})


@pytest.mark.parametrize("kind", ["mlp", "deep_leaky", "linear_linear", "relu_logits", "linear"])
@pytest.mark.parametrize("projected", [False, True])
def test_class_chunks_give_the_same_bits_as_all_classes_at_once(monkeypatch, kind, projected):
    """`_SageMLP.block` works a few classes at a time (issue #15, speed): one class per chunk, a split chunk and
    all C at once give bit-identical norms and rows."""
    import adakit.query.sage as sage_mod

    torch.manual_seed(11)
    n, m, c = 50, 12, 7
    disc = _discriminator(kind, m, c).eval()
    f, p = torch.randn(n, m) * 2.0, torch.softmax(2.0 * torch.randn(n, c), 1)
    limit = 4 * n * c * 3 if projected else 2**30
    out = []
    for rows_per_chunk in (10**9, 16, 48):  # all classes; 1 class (block 16); 3 classes (7 = 3 + 3 + 1)
        monkeypatch.setattr(sage_mod, "CHUNK_ROWS", rows_per_chunk)
        out.append(compute_sage(disc, f, p, max_bytes=limit, block_size=16, rng=np.random.default_rng(1)))
    for norms, rows, _ in out[1:]:
        assert torch.equal(norms, out[0][0]) and torch.equal(rows, out[0][1])
    ref = _reference_compute_sage(disc, f, p, max_bytes=limit, block_size=16, rng=np.random.default_rng(1))
    assert torch.allclose(out[1][0], ref[0], rtol=1e-5, atol=1e-6)

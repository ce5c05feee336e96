"""Closed-form / batched per-sample gradients of adakit.query._gradients against torch.autograd, per sample."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from adakit.adapt.sdm_loss import AdaptiveMarginLoss, MarginLoss
from adakit.models.discriminators import ClassDiscriminator
from adakit.models.grl import grad_reverse
from adakit.models.heads import CosineHead, LinearHead
from adakit.query._gradients import (
    MarginLossForm,
    class_discriminator_gradients,
    head_on,
    logit_grad_to_features,
    margin_loss_logit_grad,
    margin_score_logit_grad,
    piecewise_linear_layers,
)

FORMS = [
    {},
    {"raw_logits": True},
    {"class_mean": False, "margin": 0.5},
    {"ce_weight": 0.3, "margin_weight": 2.0, "max_logit_weight": 0.7},
    {"adaptive": True},
    {"adaptive": True, "detach_alpha": False, "raw_logits": True},
    {"label_smoothing": 0.1, "ce_weight": 0.5},
    {"adaptive": True, "label_smoothing": 0.3},
]


def _objective(form: dict):
    form = dict(form)
    adaptive = form.pop("adaptive", False)
    detach = form.pop("detach_alpha", True)
    if adaptive:
        cls = AdaptiveMarginLoss
        form["detach_alpha"] = detach
    else:
        cls = MarginLoss
    return cls(cls.Params.validated(form, "objective"), feature_dim=3, num_classes=5)


@pytest.mark.parametrize("form", FORMS)
def test_margin_loss_logit_grad_matches_autograd_of_the_objective(form):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(7, 5, generator=g, dtype=torch.float64) * 2
    y = torch.randint(5, (7,), generator=g)
    obj = _objective(form)
    zr = z.clone().requires_grad_(True)
    obj.per_sample_loss(zr, y).sum().backward()  # rows are independent: row n of the grad is ∂L_n/∂z_n
    closed = margin_loss_logit_grad(z, y, MarginLossForm(**form))
    assert torch.allclose(closed.double(), zr.grad, atol=1e-5)
    # the form the objective reports is the one the closed form is given
    assert MarginLossForm(**obj.sdm_loss_form) == MarginLossForm(**{**MarginLossForm().__dict__, **form})


def test_margin_score_logit_grad_is_the_exact_gradient_of_q():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(6, 4, generator=g, dtype=torch.float64)
    zr = z.clone().requires_grad_(True)
    p = torch.softmax(zr, 1)
    dq, i1, i2 = margin_score_logit_grad(p.detach())
    rows = torch.arange(6)
    q = 1 - (p[rows, i1] - p[rows, i2])
    (auto,) = torch.autograd.grad(q.sum(), zr)
    assert torch.allclose(dq, auto, atol=1e-12)
    assert (i1 == p.argmax(1)).all()


def test_exact_margin_gradient_adds_the_term_the_released_code_drops():
    """Released SDM.py: s_Q = p1(1−p1)W1 − p2(1−p2)W2 − (p1−p2)Σ_{k≥3} p_k W_k; exact ∇(p1−p2) = s_Q + p1p2(W1−W2)."""
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 6, generator=g, dtype=torch.float64)
    w = torch.randn(6, 4, generator=g, dtype=torch.float64)
    p = torch.softmax(z, 1)
    dq, _, _ = margin_score_logit_grad(p)
    exact_margin_grad = -(dq @ w)
    ps, order = p.sort(1, descending=True)
    ws = w[order]  # (N, C, m) rows sorted by probability
    p1, p2 = ps[:, :1], ps[:, 1:2]
    code = (p1 * (1 - p1)) * ws[:, 0] - (p2 * (1 - p2)) * ws[:, 1] - (ps[:, 2:, None] * ws[:, 2:]).sum(1) * (p1 - p2)
    assert torch.allclose(exact_margin_grad, code + p1 * p2 * (ws[:, 0] - ws[:, 1]), atol=1e-12)
    assert not torch.allclose(exact_margin_grad, code, atol=1e-6)


@pytest.mark.parametrize("head_kind", ["linear", "cosine"])
def test_logit_grad_to_features_matches_per_sample_autograd(head_kind):
    torch.manual_seed(4)
    head = LinearHead(5, 3) if head_kind == "linear" else CosineHead(5, 3, temperature=0.5)
    f = torch.randn(4, 5)
    y = torch.tensor([0, 2, 1, 1])
    form = MarginLossForm()
    with torch.no_grad():
        z = head(f)
    dz = margin_loss_logit_grad(z, y, form)
    weight, h = head_on(head, "cpu")
    assert (weight is not None) == (head_kind == "linear")
    got = logit_grad_to_features(dz, weight=weight, head=h, f=f)
    obj = _objective({})
    for n in range(len(f)):  # reference: one autograd call per sample, on a few samples
        fn = f[n:n + 1].clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(obj.per_sample_loss(head(fn), y[n:n + 1]).sum(), fn)
        assert torch.allclose(got[n], ref[0], atol=1e-5), n


class _ReversedGradLayer(nn.Module):
    """A module torch.func cannot trace (custom autograd.Function): exercises the per-class fallback."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, f):
        # identity forward; the reversal is undone (coefficient −1) so the gradient is the plain one
        return self.inner(grad_reverse(f, -1.0))


CASES = [("linear", 6, 3), ("mlp", 6, 3), ("mlp", 3, 5), ("leaky", 6, 3), ("leaky", 3, 5), ("tanh", 6, 3),
         ("tanh", 3, 5), ("fallback", 6, 3)]


@pytest.mark.parametrize("kind,m,c", CASES)
def test_class_discriminator_gradients_match_autograd(kind, m, c):
    """Closed form for linear / ReLU / LeakyReLU MLPs (reverse product when C ≤ m, forward when m < C);
    torch.func jacrev / jacfwd for other modules (tanh); per-class autograd when torch.func cannot trace."""
    torch.manual_seed(5)
    if kind == "linear":
        disc = nn.Linear(m, c)
    elif kind == "mlp":
        disc = ClassDiscriminator(m, c, hidden=16, dropout=0.5)
    elif kind == "leaky":
        disc = nn.Sequential(nn.Linear(m, 7), nn.LeakyReLU(0.2), nn.Dropout(0.3), nn.Linear(7, 9), nn.ReLU(),
                             nn.Linear(9, c))
    elif kind == "tanh":
        disc = nn.Sequential(nn.Linear(m, 7), nn.Tanh(), nn.Dropout(0.3), nn.Linear(7, c))
    else:
        disc = _ReversedGradLayer(ClassDiscriminator(m, c, hidden=16, dropout=0.5))
    expected_closed = kind in ("linear", "mlp", "leaky")
    assert (piecewise_linear_layers(disc) is not None) == expected_closed
    disc.train()
    f = torch.randn(5, m)
    g, d = class_discriminator_gradients(disc, f)
    assert disc.training, "training mode must be restored"
    assert g.shape == (5, c, m) and d.shape == (5, c)
    disc.eval()
    for n in range(3):
        for cls in range(c):
            fn = f[n:n + 1].clone().requires_grad_(True)
            (ref,) = torch.autograd.grad(-torch.log(torch.sigmoid(disc(fn)[0, cls])), fn)
            assert torch.allclose(g[n, cls], ref[0], atol=1e-5), (n, cls)
    assert torch.allclose(d, torch.sigmoid(disc(f)), atol=1e-6)


def test_linear_discriminator_closed_form():
    """g_c = −(1 − d_c)·V_c by hand for a 2-class linear discriminator."""
    disc = nn.Linear(2, 2)
    with torch.no_grad():
        disc.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        disc.bias.zero_()
    f = torch.tensor([[0.0, 0.0]])  # logits 0 → d = 1/2
    g, d = class_discriminator_gradients(disc, f)
    assert torch.allclose(d, torch.full((1, 2), 0.5))
    assert torch.allclose(g[0], torch.tensor([[-0.5, -1.0], [0.0, 0.5]]))

"""SDM margin loss (objective ``sdm``) and SDM-A (``sdm_a``) against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from adakit.adapt.base import Batch
from adakit.adapt.sdm_loss import AdaptiveMarginLoss, MarginLoss
from adakit.errors import ConfigError
from adakit.registry import OBJECTIVES

# z = [3, 0, 4] has norm 5 → ẑ = [0.6, 0, 0.8];  z = [1, 2, 2] has norm 3 → ẑ = [1/3, 2/3, 2/3]
Z = torch.tensor([[3.0, 0.0, 4.0], [1.0, 2.0, 2.0]], dtype=torch.float64)
Y = torch.tensor([0, 1])


def _ce(z, y):
    return math.log(sum(math.exp(v) for v in z)) - z[y]


def make(name="sdm", **params):
    cls = OBJECTIVES.get(name)
    return cls(cls.Params.validated(params, "objective"), feature_dim=4, num_classes=3)


def test_registered():
    assert OBJECTIVES.get("sdm") is MarginLoss and OBJECTIVES.get("sdm_a") is AdaptiveMarginLoss


def test_code_form_by_hand():
    # sample 1 (y=0): hinges 1−0.6+0 = 0.4, 1−0.6+0.8 = 1.2 → 1.6/3; max-logit −0.6
    # sample 2 (y=1): hinges 1−2/3+1/3 = 2/3, 1−2/3+2/3 = 1 → (5/3)/3; max-logit −2/3
    l1 = _ce([3, 0, 4], 0) + 1.6 / 3 - 0.6
    l2 = _ce([1, 2, 2], 1) + (5 / 3) / 3 - 2 / 3
    obj = make()
    assert torch.allclose(obj.per_sample_loss(Z, Y), torch.tensor([l1, l2], dtype=torch.float64), atol=1e-12)
    assert obj.classification_loss(Z, Y).item() == pytest.approx((l1 + l2) / 2, abs=1e-12)


def test_code_form_equals_the_released_code_expression():
    """CE + Margin_loss(normalize(z)) − mean(normalize(z)_y), Margin_loss as in the released util/losses.py."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64)
    y = torch.randint(5, (6,), generator=g)
    zn = F.normalize(z)
    onehot = F.one_hot(y, 5).to(z.dtype)
    margin_code = torch.clamp(1 - ((zn * onehot).sum(1, keepdim=True) - zn) - onehot, min=0).sum() / (6 * 5)
    ref = F.cross_entropy(z, y) + margin_code - (zn * onehot).sum() / 6
    obj = make("sdm", raw_logits=False)
    assert obj.classification_loss(z, y).item() == pytest.approx(ref.item(), abs=1e-12)
    assert margin_code.item() == pytest.approx(F.multi_margin_loss(zn, y).item(), abs=1e-12)


def test_raw_logits_eq1_by_hand():
    # Eq. 1 on raw logits, plain sum: sample 1 (y=0): [1−3+0]_+ + [1−3+4]_+ = 0 + 2;
    # sample 2 (y=1): [1−2+1]_+ + [1−2+2]_+ = 0 + 1
    obj = make(raw_logits=True, ce_weight=0, max_logit_weight=0, class_mean=False)
    assert torch.allclose(obj.per_sample_loss(Z, Y), torch.tensor([2.0, 1.0], dtype=torch.float64))
    # with the defaults' other terms: CE + hinge/C − z_y
    obj = make(raw_logits=True)
    exp = torch.tensor([_ce([3, 0, 4], 0) + 2 / 3 - 3, _ce([1, 2, 2], 1) + 1 / 3 - 2], dtype=torch.float64)
    assert torch.allclose(obj.per_sample_loss(Z, Y), exp, atol=1e-12)


def test_margin_and_weights():
    # m = 0.5 on normalised logits, sample 1: [0.5−0.6+0]_+ + [0.5−0.6+0.8]_+ = 0 + 0.7
    obj = make(margin=0.5, ce_weight=0, max_logit_weight=2.0, margin_weight=3.0, class_mean=False)
    assert obj.per_sample_loss(Z[:1], Y[:1]).item() == pytest.approx(3.0 * 0.7 - 2.0 * 0.6, abs=1e-12)


def test_sdm_a_by_hand():
    # α_i = 1 − (ẑ_y − ẑ_i)/m = h_i/m. sample 1: α = (0.4, 1.2) → 0.4·0.4 + 1.2·1.2 = 1.6 (÷3)
    # sample 2: α = (2/3, 1) → 4/9 + 1 = 13/9 (÷3). Max-logit term as in sdm.
    obj = make("sdm_a")
    exp = torch.tensor([_ce([3, 0, 4], 0) + 1.6 / 3 - 0.6, _ce([1, 2, 2], 1) + (13 / 9) / 3 - 2 / 3],
                       dtype=torch.float64)
    assert torch.allclose(obj.per_sample_loss(Z, Y), exp, atol=1e-12)
    # inactive hinges get no (negative) α contribution: raw z = [5, 0, 1], y = 0 → all hinges ≤ 0
    obj = make("sdm_a", raw_logits=True, ce_weight=0, max_logit_weight=0)
    assert obj.per_sample_loss(torch.tensor([[5.0, 0.0, 1.0]]), torch.tensor([0])).item() == 0.0


def test_sdm_a_alpha_gradient_detached_or_not():
    """Detached α: ∂L/∂z_i = α_i·∂h_i; differentiated: 2·α_i·∂h_i (α_i·h_i = h_i²/m). Raw logits, hinge only."""
    z = torch.tensor([[1.0, 0.5, -2.0]], dtype=torch.float64)
    y = torch.tensor([0])
    # h_1 = 1 − 1 + 0.5 = 0.5 (α = 0.5), h_2 = 1 − 1 − 2 < 0 → inactive
    grads = {}
    for detach in (True, False):
        zr = z.clone().requires_grad_(True)
        make("sdm_a", raw_logits=True, ce_weight=0, max_logit_weight=0, class_mean=False,
             detach_alpha=detach).per_sample_loss(zr, y).sum().backward()
        grads[detach] = zr.grad[0]
    assert torch.allclose(grads[True], torch.tensor([-0.5, 0.5, 0.0], dtype=torch.float64))
    assert torch.allclose(grads[False], torch.tensor([-1.0, 1.0, 0.0], dtype=torch.float64))


def test_applies_to_source_and_labelled_target():
    obj = make()
    b = Batch(xs=torch.zeros(2, 4), ys=Y, idx_s=torch.arange(2), zs=Z, fs=torch.zeros(2, 4),
              xl=torch.zeros(1, 4), yl=Y[1:], idx_l=torch.arange(1), zl=Z[1:], fl=torch.zeros(1, 4))
    terms = obj(None, b, 0.5)
    assert terms["ce_source"].item() == pytest.approx(obj.classification_loss(Z, Y).item())
    assert terms["ce_target"].item() == pytest.approx(obj.per_sample_loss(Z[1:], Y[1:]).item())


def test_bad_params_name_the_key():
    with pytest.raises(ConfigError, match="objective.margin"):
        MarginLoss.Params.validated({"margin": 0}, "objective")
    with pytest.raises(ConfigError, match="detach_alpha"):
        MarginLoss.Params.validated({"detach_alpha": True}, "objective")

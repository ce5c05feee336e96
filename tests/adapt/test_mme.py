import tempfile

import pytest
import torch
from _uda_demo import assert_beats_source_only

from adakit.adapt.base import Batch
from adakit.config import build_config
from adakit.errors import ConfigError
from adakit.loop import ActiveLoop
from adakit.models.heads import CosineHead
from adakit.registry import OBJECTIVES


def make(**params):
    cls = OBJECTIVES.get("mme")
    return cls(cls.Params.validated(params, "objective"), feature_dim=3, num_classes=5)


def entropy(z):
    p = torch.softmax(z, 1)
    return -(p * torch.log(p)).sum(1)


def test_defaults_and_required_head():
    obj = make()
    assert obj.params.entropy_weight == 0.1 and obj.params.entropy_grl_coeff == 1.0
    assert obj.params.omega == "mme" and obj.required_head == "cosine" and obj.uses_unlabelled


def test_loop_builds_the_cosine_head():
    cfg = build_config({"data": {"format": "demo"}, "model": {"hidden_dim": 8, "bottleneck_dim": 4},
                        "objective": {"name": "mme"}, "budget": {"rounds": 0},
                        "train": {"warmup_iters": 0, "device": "cpu"}})
    assert cfg.model.head == "linear"
    with tempfile.TemporaryDirectory() as d:
        head = ActiveLoop(cfg, d, show_progress=False).model.head
    assert isinstance(head, CosineHead) and head.temperature == 0.05


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.g = torch.nn.Linear(4, 3)
        self.head = CosineHead(3, 5, temperature=0.5)

    def forward(self, x):
        f = self.g(x)
        return f, self.head(f)


def _batch(model, x):
    f, z = model(x)
    return Batch(xs=x[:2], ys=torch.tensor([0, 1]), idx_s=torch.arange(2), fs=f[:2], zs=z[:2], xu=x[2:],
                 fu=f[2:], zu=z[2:])


def test_term_value():
    model, x = Tiny(), torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    obj = make(entropy_weight=0.3)
    b = _batch(model, x)
    terms = obj(model, b, 0.5)
    assert set(terms) == {"ce_source", "mme_entropy"}
    term = terms["mme_entropy"]
    assert term.item() == pytest.approx(-0.3 * entropy(model.head(b.fu)).mean().item(), rel=1e-6)


def test_head_maximises_and_features_minimise_the_entropy():
    model, x = Tiny(), torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    obj = make(entropy_weight=0.1)
    obj.omega_terms(model, _batch(model, x))["mme_entropy"].backward()
    head_grad = model.head.weight.grad.clone()
    g_grads = [p.grad.clone() for p in model.g.parameters()]
    # exact: head gets ∇(−λH), the extractor ∇(+λH)
    model.zero_grad()
    h = entropy(model(x[2:])[1]).mean()
    h.backward()
    assert torch.allclose(head_grad, -0.1 * model.head.weight.grad, atol=1e-7)
    for got, p in zip(g_grads, model.g.parameters()):
        assert torch.allclose(got, 0.1 * p.grad, atol=1e-7)

    def h_after(step_head: bool) -> float:
        m = Tiny()
        with torch.no_grad():
            if step_head:
                m.head.weight -= 0.05 * head_grad
            else:
                for p, g in zip(m.g.parameters(), g_grads):
                    p -= 0.05 * g
            return entropy(m(x[2:])[1]).mean().item()

    h0 = h.item()
    assert h_after(step_head=True) > h0  # the head's gradient step increases H
    assert h_after(step_head=False) < h0  # the feature-side step decreases H


@pytest.mark.slow
def test_improves_target_accuracy_over_source_only():
    assert_beats_source_only("mme")


@pytest.mark.parametrize("name", ["dann", "cdan_e", "mstn", "gsda", "sdm", "tsf"])
def test_omega_mme_adds_the_same_entropy_term_to_any_objective(name):
    """Ω_MME inside a UDA objective (SAGE Eq. 10): its own terms unchanged, plus MME's term."""
    model, x = Tiny(), torch.randn(8, 4, generator=torch.Generator().manual_seed(1))
    cls = OBJECTIVES.get(name)
    plain = cls(cls.Params.validated({}, "objective"), feature_dim=3, num_classes=5)
    reg = cls(cls.Params.validated({"omega": "mme", "entropy_weight": 0.3}, "objective"), feature_dim=3,
              num_classes=5)
    reg.load_state_dict(plain.state_dict())
    assert reg.uses_unlabelled and cls.head_for(reg.params) == "cosine" and cls.head_for(plain.params) != "cosine"
    plain.eval(), reg.eval()  # no dropout in the discriminators: the terms must agree exactly
    b = _batch(model, x)
    got, ref = reg(model, b, 0.5), plain(model, b, 0.5)
    assert set(got) == set(ref) | {"mme_entropy"}
    for k in ref:
        assert got[k].item() == pytest.approx(ref[k].item(), rel=1e-6)
    assert got["mme_entropy"].item() == pytest.approx(-0.3 * entropy(model.head(b.fu)).mean().item(), rel=1e-6)


def test_omega_mme_with_a_linear_head_objective_is_a_config_error():
    cls = OBJECTIVES.get("biwaa")
    with pytest.raises(ConfigError, match="omega=mme needs the cosine head"):
        cls.head_for(cls.Params.validated({"omega": "mme"}, "objective"))


def test_omega_values_are_checked():
    with pytest.raises(ConfigError, match="omega"):
        OBJECTIVES.get("dann").Params.validated({"omega": "ent"}, "objective")
    with pytest.raises(ConfigError, match="omega"):
        OBJECTIVES.get("mme").Params.validated({"omega": "none"}, "objective")


def test_loop_builds_the_cosine_head_for_dann_with_omega_mme():
    cfg = build_config({"data": {"format": "demo"}, "model": {"hidden_dim": 8, "bottleneck_dim": 4},
                        "objective": {"name": "dann", "omega": "mme"}, "budget": {"rounds": 0},
                        "train": {"warmup_iters": 0, "device": "cpu"}})
    with tempfile.TemporaryDirectory() as d:
        loop = ActiveLoop(cfg, d, show_progress=False)
    assert isinstance(loop.model.head, CosineHead) and loop.objective.uses_unlabelled

import pytest
import torch
import torch.nn.functional as F
from _toy import make_objective, toy_batch
from _uda_demo import assert_beats_source_only

from adakit.config import build_config
from adakit.errors import ConfigError
from adakit.models.grl import grl_schedule
from adakit.registry import OBJECTIVES


def make(name="dann", m=3, c=4, **params):
    return make_objective(name, m, c, **params)


def batch(seed=0):
    return toy_batch(seed=seed, target_in=2)


def test_registered_with_defaults_and_provides_domain_discriminator():
    obj = OBJECTIVES.get("dann")(OBJECTIVES.get("dann").Params(), feature_dim=8, num_classes=3)
    assert obj.uses_unlabelled and "domain_discriminator" in obj.provides
    assert obj.params.trade_off == 1.0 and obj.params.grl_max == 1.0 and obj.params.hidden == 1024
    assert obj.domain_discriminator(torch.randn(2, 8)).shape == (2, 1)
    with pytest.raises(ConfigError, match="objective.nope"):
        build_config({"objective": {"name": "dann", "nope": 1}})


def test_loss_matches_hand_computation():
    obj, b = make(trade_off=0.5), batch()
    terms = obj(torch.nn.Identity(), b, progress=0.3)
    d = obj.domain_discriminator
    src = b.fs[[0, 1, 3]]  # the labelled target row (S∪T) is left out
    ls, lt = d(src).squeeze(1), d(b.fu).squeeze(1)
    bce_s = -torch.log(torch.sigmoid(ls))  # source = 1
    bce_t = -torch.log(1 - torch.sigmoid(lt))  # target = 0
    expected = 0.5 * 0.5 * (bce_s.mean() + bce_t.mean())
    assert terms["adversarial"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert terms["ce_source"].item() == pytest.approx(F.cross_entropy(b.zs, b.ys).item())


def test_features_get_the_negated_scaled_gradient_and_the_discriminator_the_plain_one():
    obj, b = make(trade_off=0.7), batch()
    progress = 0.25
    lam = grl_schedule(progress)
    obj.transfer_terms(torch.nn.Identity(), b, progress)["adversarial"].backward()
    got_fs, got_fu = b.fs.grad.clone(), b.fu.grad.clone()
    got_d = [p.grad.clone() for p in obj.domain_discriminator.parameters()]
    # reference without reversal
    fs, fu = b.fs.detach().requires_grad_(), b.fu.detach().requires_grad_()
    obj.zero_grad()
    d = obj.domain_discriminator
    src = fs[[0, 1, 3]]
    ref = 0.7 * 0.5 * (F.softplus(-d(src)).mean() + F.softplus(d(fu)).mean())
    ref.backward()
    assert torch.allclose(got_fs, -lam * fs.grad, atol=1e-6)
    assert torch.allclose(got_fu, -lam * fu.grad, atol=1e-6)
    assert torch.equal(got_fs[2], torch.zeros(3))
    for g, p in zip(got_d, d.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)


@pytest.mark.slow
def test_improves_target_accuracy_over_source_only():
    assert_beats_source_only("dann", hidden=64)

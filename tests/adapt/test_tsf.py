import pytest
import torch
import torch.nn.functional as F
from _toy import make_objective, toy_batch
from _uda_demo import assert_beats_source_only

from adakit.models.grl import grl_schedule
from adakit.models.heads import CosineHead
from adakit.registry import OBJECTIVES


def make(name="tsf", m=3, c=4, **params):
    return make_objective(name, m, c, **params)


def batch(seed=0):
    return toy_batch(seed=seed, ys=(2, 0, 1, 3), target_in=3, logit_scale=2.0, logits_grad=True)


def test_defaults_and_class_discriminator():
    cls = OBJECTIVES.get("tsf")
    obj = cls(cls.Params(), feature_dim=8, num_classes=6)
    assert obj.params.trade_off == 1.0 and obj.params.grl_max == 1.0
    assert obj.uses_unlabelled and "class_discriminator" in obj.provides and obj.required_head is None
    assert obj.class_discriminator(torch.randn(2, 8)).shape == (2, 6)


def hand_loss(d, b):
    rows = [0, 1, 2]
    ds, dt = torch.sigmoid(d(b.fs[rows])), torch.sigmoid(d(b.fu))
    ys = b.ys[rows]
    p = torch.softmax(b.zu.detach(), 1)
    src = torch.stack([-torch.log(1 - ds[i, ys[i]]) for i in range(3)]).mean()  # −E_S[y·log(1 − d)]
    tgt = -(p * torch.log(dt)).sum(1).mean()  # −E_T[p·log d]
    return src + tgt


def test_loss_matches_hand_computation_and_p_is_detached():
    obj, b = make(trade_off=0.4), batch()
    term = obj(torch.nn.Identity(), b, 0.6)["tsf"]
    assert term.item() == pytest.approx(0.4 * hand_loss(obj.class_discriminator, b).item(), rel=1e-5)
    term.backward()
    assert b.zu.grad is None


def test_discriminator_minimises_and_features_maximise():
    obj, b = make(), batch()
    obj.transfer_terms(torch.nn.Identity(), b, 0.3)["tsf"].backward()
    lam = grl_schedule(0.3)
    got_fs, got_fu = b.fs.grad.clone(), b.fu.grad.clone()
    got_d = [p.grad.clone() for p in obj.class_discriminator.parameters()]
    obj.zero_grad()
    b2 = batch()
    hand_loss(obj.class_discriminator, b2).backward()
    assert torch.allclose(got_fs, -lam * b2.fs.grad, atol=1e-6)
    assert torch.allclose(got_fu, -lam * b2.fu.grad, atol=1e-6)
    assert torch.equal(got_fs[3], torch.zeros(3))
    for g, p in zip(got_d, obj.class_discriminator.parameters()):
        assert torch.allclose(g, p.grad, atol=1e-6)
    # a discriminator step lowers the BCE form: d_c → 0 on source class c, → 1 on target
    before = hand_loss(obj.class_discriminator, b2).item()
    with torch.no_grad():
        for p, g in zip(obj.class_discriminator.parameters(), got_d):
            p -= 0.1 * g
    assert hand_loss(obj.class_discriminator, b2).item() < before


def test_tsf_mme_adds_the_minimax_entropy_with_a_cosine_head():
    cls = OBJECTIVES.get("tsf_mme")
    assert cls.required_head == "cosine" and "class_discriminator" in cls.provides
    obj = make("tsf_mme", entropy_weight=0.2)
    head = CosineHead(3, 4)
    model = torch.nn.Module()
    model.head = head
    b = batch()
    terms = obj(model, b, 0.5)
    assert set(terms) == {"ce_source", "tsf", "mme_entropy"}
    p = F.softmax(head(b.fu), 1)
    assert terms["mme_entropy"].item() == pytest.approx((0.2 * (p * torch.log(p)).sum(1).mean()).item(), rel=1e-5)
    assert terms["tsf"].item() == pytest.approx(hand_loss(obj.class_discriminator, b).item(), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tsf", "tsf_mme"])
def test_improves_target_accuracy_over_source_only(name):
    assert_beats_source_only(name, hidden=64)

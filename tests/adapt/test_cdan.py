import pytest
import torch
import torch.nn.functional as F
from _toy import make_objective, toy_batch
from _uda_demo import assert_beats_source_only

from adakit.models.discriminators import MultilinearMap, RandomMultilinearMap
from adakit.models.grl import grl_schedule
from adakit.registry import OBJECTIVES


def make(name="cdan", m=3, c=4, **params):
    return make_objective(name, m, c, **params)


def batch(seed=0):
    return toy_batch(seed=seed, ys=(0, 1, 2, 3), target_in=1, logit_scale=2.0, logits_grad=True)


def outer(f, z):
    p = torch.softmax(z.detach(), 1)
    return torch.stack([torch.outer(p[i], f[i]).flatten() for i in range(len(f))])


def test_map_choice_and_discriminator_input_size():
    small = make(m=8, c=3)
    assert isinstance(small.map, MultilinearMap) and small.discriminator.in_dim == 24
    big = OBJECTIVES.get("cdan")(OBJECTIVES.get("cdan").Params(), feature_dim=256, num_classes=31)
    assert isinstance(big.map, RandomMultilinearMap) and big.discriminator.in_dim == 1024
    assert big.map.rf.shape == (256, 1024) and big.map.rg.shape == (31, 1024)
    assert {"map.rf", "map.rg"} <= set(big.state_dict())  # the fixed matrices are saved with the objective
    f, z = torch.randn(5, 256), torch.randn(5, 31)
    assert big.map(f, torch.softmax(z, 1)).shape == (5, 1024)


def test_cdan_loss_matches_hand_computation_and_p_is_detached():
    obj, b = make(trade_off=2.0), batch()
    term = obj(torch.nn.Identity(), b, progress=0.5)["adversarial"]
    d = obj.discriminator
    rows = [0, 2, 3]
    ls, lt = d(outer(b.fs[rows], b.zs[rows])).squeeze(1), d(outer(b.fu, b.zu)).squeeze(1)
    expected = 2.0 * 0.5 * ((-torch.log(torch.sigmoid(ls))).mean() + (-torch.log(1 - torch.sigmoid(lt))).mean())
    assert term.item() == pytest.approx(expected.item(), rel=1e-5)
    term.backward()
    assert b.zu.grad is None  # p enters as a constant (CDAN code: input_list[1].detach())


def test_entropy_weights_and_cdan_e_loss():
    obj, b = make("cdan_e"), batch()
    p = torch.softmax(b.zu.detach(), 1)
    h = -(p * torch.log(p)).sum(1)
    w = obj.entropy_weights(b.zu)
    assert torch.allclose(w, 1 + torch.exp(-h), atol=1e-6)
    assert not w.requires_grad
    assert ((w > 1) & (w <= 2)).all()
    # a one-hot prediction (H = 0) gets w = 2, a uniform one w = 1 + 1/C
    w2 = obj.entropy_weights(torch.tensor([[50.0, 0, 0, 0], [0.0, 0, 0, 0]]))
    assert torch.allclose(w2, torch.tensor([2.0, 1.25]), atol=1e-6)

    term = obj(torch.nn.Identity(), b, progress=0.5)["adversarial"]
    d = obj.discriminator
    rows = [0, 2, 3]
    ws, wt = obj.entropy_weights(b.zs[rows]), obj.entropy_weights(b.zu)
    ws, wt = ws / ws.sum(), wt / wt.sum()  # each domain's weights sum to 1
    ls, lt = d(outer(b.fs[rows], b.zs[rows])).squeeze(1), d(outer(b.fu, b.zu)).squeeze(1)
    bce_s, bce_t = -torch.log(torch.sigmoid(ls)), -torch.log(1 - torch.sigmoid(lt))
    expected = ((ws * bce_s).sum() + (wt * bce_t).sum()) / 2  # the CDAN code divides by Σ weights = 2
    assert term.item() == pytest.approx(expected.item(), rel=1e-5)
    # uniform weights give back CDAN
    plain = make("cdan")
    plain.load_state_dict(obj.state_dict())
    with torch.no_grad():
        b2 = batch()
        b2.zs, b2.zu = torch.zeros(4, 4), torch.zeros(3, 4)
        assert obj(torch.nn.Identity(), b2, 0.5)["adversarial"].item() == pytest.approx(
            plain(torch.nn.Identity(), b2, 0.5)["adversarial"].item(), rel=1e-6)


def test_features_get_the_reversed_gradient():
    obj, b = make("cdan_e"), batch()
    obj.transfer_terms(torch.nn.Identity(), b, 0.4)["adversarial"].backward()
    lam = grl_schedule(0.4)
    got_fs, got_fu = b.fs.grad.clone(), b.fu.grad.clone()
    fs, fu = b.fs.detach().requires_grad_(), b.fu.detach().requires_grad_()
    rows = [0, 2, 3]
    ws, wt = obj.entropy_weights(b.zs[rows]), obj.entropy_weights(b.zu)
    d = obj.discriminator
    ref = 0.5 * ((ws / ws.sum() * F.softplus(-d(outer(fs[rows], b.zs[rows])).squeeze(1))).sum()
                 + (wt / wt.sum() * F.softplus(d(outer(fu, b.zu)).squeeze(1))).sum())
    ref.backward()
    assert torch.allclose(got_fs, -lam * fs.grad, atol=1e-6)
    assert torch.allclose(got_fu, -lam * fu.grad, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cdan", "cdan_e"])
def test_improves_target_accuracy_over_source_only(name):
    assert_beats_source_only(name, hidden=64)

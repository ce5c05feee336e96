import pytest
import torch
from _uda_demo import assert_beats_source_only

from adakit.adapt.base import Batch
from adakit.models.grl import grl_schedule
from adakit.registry import OBJECTIVES


def make(**params):
    cls = OBJECTIVES.get("mstn")
    return cls(cls.Params.validated({"hidden": 5, "dropout": 0.0, **params}, "objective"), feature_dim=2,
               num_classes=3)


def batch():
    fs = torch.tensor([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0], [5.0, -1.0]], requires_grad=True)
    fu = torch.tensor([[0.0, 1.0], [2.0, 2.0], [4.0, 0.0]], requires_grad=True)
    ys = torch.tensor([0, 0, 1, 2])  # row 2 is labelled target (S∪T): left out, so source class 1 is absent
    zu = torch.tensor([[0.0, 5.0, 0.0], [0.0, 3.0, 1.0], [9.0, 0.0, 0.0]])  # pseudo-labels 1, 1, 0
    return Batch(xs=fs, ys=ys, idx_s=torch.arange(4), fs=fs, zs=torch.zeros(4, 3), xu=fu, fu=fu, zu=zu,
                 target_in_s=torch.tensor([False, False, True, False]))


def test_defaults():
    obj = OBJECTIVES.get("mstn")(OBJECTIVES.get("mstn").Params(), feature_dim=4, num_classes=3)
    assert obj.params.decay == 0.3 and obj.params.semantic_weight == 1.0 and obj.params.grl_max == 1.0
    assert obj.uses_unlabelled and "domain_discriminator" in obj.provides
    assert obj.source_centroids.shape == (3, 4) and not obj.source_centroids.any()


def test_centroids_follow_the_moving_average_for_present_classes_only():
    obj = make()
    old_s = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    old_t = torch.tensor([[-1.0, 0.0], [0.0, -1.0], [7.0, 7.0]])
    obj.source_centroids.copy_(old_s)
    obj.target_centroids.copy_(old_t)
    obj.transfer_terms(torch.nn.Identity(), batch(), 0.5)
    # source: class 0 mean (2, 3), class 1 absent, class 2 mean (5, -1)
    exp_s = torch.stack([0.7 * old_s[0] + 0.3 * torch.tensor([2.0, 3.0]), old_s[1],
                         0.7 * old_s[2] + 0.3 * torch.tensor([5.0, -1.0])])
    # target (pseudo-labels 1, 1, 0): class 0 mean (4, 0), class 1 mean (1, 1.5), class 2 absent
    exp_t = torch.stack([0.7 * old_t[0] + 0.3 * torch.tensor([4.0, 0.0]),
                         0.7 * old_t[1] + 0.3 * torch.tensor([1.0, 1.5]), old_t[2]])
    assert torch.allclose(obj.source_centroids, exp_s)
    assert torch.allclose(obj.target_centroids, exp_t)
    assert not obj.source_centroids.requires_grad
    # a second step moves them again from the stored values
    obj.transfer_terms(torch.nn.Identity(), batch(), 0.5)
    assert torch.allclose(obj.source_centroids[0], 0.7 * exp_s[0] + 0.3 * torch.tensor([2.0, 3.0]))


def test_semantic_loss_value_and_gradient_through_the_batch_contribution():
    obj = make(semantic_weight=2.0, trade_off=0.0)
    old_s = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    obj.source_centroids.copy_(old_s)
    b = batch()
    progress = 0.2
    terms = obj.transfer_terms(torch.nn.Identity(), b, progress)
    cs, ct = obj.source_centroids.clone(), obj.target_centroids.clone()
    lam = grl_schedule(progress)
    expected = 2.0 * lam * ((cs - ct) ** 2).sum(1).sum() / 3
    assert terms["semantic"].item() == pytest.approx(expected.item(), rel=1e-6)
    terms["semantic"].backward()
    # d/d f_i (row of source class 0, n = 2) = 2·λ·2(cs_0 − ct_0)/K · 0.3/2
    g0 = 2.0 * lam * 2 * (cs[0] - ct[0]) / 3 * 0.3 / 2
    assert torch.allclose(b.fs.grad[0], g0, atol=1e-6) and torch.allclose(b.fs.grad[1], g0, atol=1e-6)
    assert torch.equal(b.fs.grad[2], torch.zeros(2))  # labelled target row: not in the source centroids
    # target row 2 (pseudo-label 0, alone): −2·λ·2(cs_0 − ct_0)/K · 0.3
    assert torch.allclose(b.fu.grad[2], -2.0 * lam * 2 * (cs[0] - ct[0]) / 3 * 0.3, atol=1e-6)


def test_adversarial_term_is_dann():
    dann_cls = OBJECTIVES.get("dann")
    dann = dann_cls(dann_cls.Params.validated({"hidden": 5, "dropout": 0.0}, "objective"), 2, 3)
    obj = make()
    dann.domain_discriminator.load_state_dict(obj.domain_discriminator.state_dict())
    a = obj.transfer_terms(torch.nn.Identity(), batch(), 0.3)["adversarial"]
    b = dann.transfer_terms(torch.nn.Identity(), batch(), 0.3)["adversarial"]
    assert a.item() == pytest.approx(b.item())


def test_centroids_are_saved_and_restored():
    obj = make()
    obj.transfer_terms(torch.nn.Identity(), batch(), 0.5)
    state = obj.state_dict()
    assert {"source_centroids", "target_centroids"} <= set(state)
    other = make()
    other.load_state_dict(state)
    assert torch.equal(other.source_centroids, obj.source_centroids)
    assert torch.equal(other.target_centroids, obj.target_centroids)


@pytest.mark.slow
def test_improves_target_accuracy_over_source_only():
    assert_beats_source_only("mstn", hidden=64)

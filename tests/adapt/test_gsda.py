import pytest
import torch
import torch.nn.functional as F
from _uda_demo import final_accuracy

from adakit.adapt.base import Batch
from adakit.adapt.gsda import GSDA, default_group_count, random_partition
from adakit.models.grl import grl_schedule
from adakit.registry import OBJECTIVES

C, M = 5, 4


def _objective(**params):
    torch.manual_seed(0)
    cls = OBJECTIVES.get("gsda")
    p = cls.Params.validated({"hidden": 8, "local_hidden": 6, "dropout": 0.0, "groups": 2, **params}, "objective")
    return cls(p, M, C, 20)


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    fs = torch.randn(3, M, generator=g).requires_grad_()
    fu = torch.randn(4, M, generator=g).requires_grad_()
    zu = torch.randn(4, C, generator=g)
    zu[0, 2] = 10.0  # confident
    zu[1, 4] = 10.0  # confident
    return Batch(xs=fs, ys=torch.tensor([0, 3, 4]), idx_s=torch.arange(3), xu=fu, idx_u=torch.arange(4),
                 fs=fs, zs=torch.randn(3, C), fu=fu, zu=zu)


def _reference(obj: GSDA, fs, ys, fu, zu):
    """L_adv and L_syn from explicit per-sample losses and per-sample autograd gradients (a loop)."""
    h = torch.cat([fs, fu])
    ns, nt = len(fs), len(fu)
    d = [1.0] * ns + [0.0] * nt
    c = [0.5 / ns] * ns + [0.5 / nt] * nt
    p = torch.softmax(zu, 1)
    conf = p.max(1).values >= obj.params.threshold
    pw = torch.cat([F.one_hot(ys, C).float(), p * conf.unsqueeze(1)])
    hard = torch.cat([F.one_hot(ys, C).float(), F.one_hot(p.argmax(1), C).float() * conf.unsqueeze(1)])
    pw = pw * ((hard[:ns].sum(0) > 0) & (hard[ns:].sum(0) > 0))  # classes seeing one domain only: skipped
    member = F.one_hot(obj.group_of, obj.num_groups).float()
    w = torch.cat([pw, pw @ member], 1)  # classes then groups (of the kept classes)
    rows = w.sum(1) > 0  # rows the local level sees
    k = w.shape[1]
    adv = h.new_zeros(())
    norms = torch.zeros(1 + k, dtype=h.dtype)
    for i in range(ns + nt):
        hi = h[i:i + 1]
        target = torch.tensor([d[i]])
        lg = c[i] * F.binary_cross_entropy_with_logits(obj.domain_discriminator(hi).squeeze(1), target)
        ll = [c[i] * w[i, j] * F.binary_cross_entropy_with_logits(obj.local_discriminators(hi)[j], target)
              for j in range(k)]
        adv = adv + lg + sum(ll)
        for j, loss in enumerate([lg, *ll]):
            (gi,) = torch.autograd.grad(loss, hi, create_graph=True, allow_unused=True)
            if gi is not None and (j > 0 or rows[i]):
                norms = norms + F.one_hot(torch.tensor(j), 1 + k) * gi.norm()
    n_g, n_cls, n_grp = norms[0], norms[1:1 + C], norms[1 + C:]
    group_terms = [(n_grp[q] - sum(n_cls[kk] for kk in range(C) if obj.group_of[kk] == q)).abs()
                   for q in range(obj.num_groups)]
    syn = sum(group_terms) / obj.num_groups + (n_g - n_grp.sum()).abs()
    return adv, syn


def test_group_partition_is_disjoint_and_covering():
    assert default_group_count(31) == 6 and default_group_count(65) == 13 and default_group_count(3) == 1
    for c, b in ((31, 6), (65, 13), (10, 3)):
        group_of = random_partition(c, b, torch.Generator().manual_seed(1))
        sizes = torch.bincount(group_of, minlength=b)
        assert len(group_of) == c and set(group_of.tolist()) == set(range(b))  # every class in exactly one group
        assert int(sizes.max() - sizes.min()) <= 1
    obj = OBJECTIVES.get("gsda")(GSDA.Params(), 8, 31, 10)
    assert obj.num_groups == 6 and "group_of" in obj.state_dict()
    assert obj.local_discriminators.heads == 31 + 6


def test_confident_targets_only_in_local_weights():
    obj = _objective()
    b = _batch()
    w = obj.local_weights(b.ys, b.zu)
    assert w.shape == (7, C + 2)
    assert w[5:].abs().sum() == 0  # rows 5, 6 are not confident
    # source one-hot (0, 3, 4), confident targets in classes 2 and 4: only class 4 has both domains
    onehot = F.one_hot(b.ys, C).float()
    only4 = torch.tensor([0.0, 0, 0, 0, 1])
    torch.testing.assert_close(w[:3, :C], onehot * only4)
    torch.testing.assert_close(w[3:5, :C], torch.softmax(b.zu[:2], 1) * only4)
    # group weight = Σ of its (kept) classes' weights
    torch.testing.assert_close(w[:, C:], w[:, :C] @ F.one_hot(obj.group_of, 2).float())
    # without class discriminators, groups are kept when both domains have a row in them
    g = _objective(use_class=False)
    wg = g.local_weights(b.ys, b.zu)
    member = F.one_hot(g.group_of, 2).float()
    pt = torch.softmax(b.zu, 1) * (torch.softmax(b.zu, 1).max(1, keepdim=True).values >= 0.9)
    assert set(g.group_of[[0, 3, 4]].tolist()) == {0, 1} and set(g.group_of[[2, 4]].tolist()) == {0, 1}
    torch.testing.assert_close(wg, torch.cat([onehot, pt]) @ member)


def test_sync_equals_per_sample_reference():
    obj = _objective()
    b = _batch()
    terms = obj.transfer_terms(None, b, progress=0.3)
    adv, syn = _reference(obj, b.fs, b.ys, b.fu, b.zu)
    torch.testing.assert_close(terms["adversarial"], adv, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(terms["sync"], syn, rtol=1e-5, atol=1e-6)
    assert float(terms["reversal"].detach()) == 0.0
    assert float(syn.detach()) > 0


@pytest.mark.parametrize("use_sync", [True, False])
def test_gradient_routing(use_sync):
    obj = _objective(use_sync=use_sync, beta=0.7)
    b = _batch(1)
    progress = 0.4
    lam = grl_schedule(progress)
    terms = obj.transfer_terms(None, b, progress)
    terms.pop("entropy")
    sum(terms.values()).backward()
    disc_params = list(obj.domain_discriminator.parameters()) + list(obj.local_discriminators.parameters())
    got_d = [p.grad.clone() for p in disc_params]
    # reference: discriminators minimise L_adv + β·L_syn; the encoder gets −λ∇L_adv + β∇L_syn
    fs, fu = b.fs.detach().requires_grad_(), b.fu.detach().requires_grad_()
    adv, syn = _reference(obj, fs, b.ys, fu, b.zu)
    beta = 0.7 if use_sync else 0.0
    g_adv = torch.autograd.grad(adv, [fs, fu, *disc_params], retain_graph=True)
    g_syn = torch.autograd.grad(syn, [fs, fu, *disc_params], allow_unused=True)
    g_syn = [torch.zeros_like(a) if s is None else s for a, s in zip(g_adv, g_syn)]
    torch.testing.assert_close(b.fs.grad, -lam * g_adv[0] + beta * g_syn[0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(b.fu.grad, -lam * g_adv[1] + beta * g_syn[1], rtol=1e-4, atol=1e-6)
    for got, a, s in zip(got_d, g_adv[2:], g_syn[2:]):
        torch.testing.assert_close(got, a + beta * s, rtol=1e-4, atol=1e-6)
    if use_sync:  # the synchronisation gradient on the features is real and not reversed
        assert g_syn[0].abs().sum() > 0


def test_no_confident_target_leaves_global_only():
    obj = _objective()
    b = _batch()
    b.zu = torch.zeros(4, C)  # uniform predictions: nobody confident, no local discriminator active
    lam = grl_schedule(0.5)
    terms = obj.transfer_terms(None, b, 0.5)
    assert float(terms["sync"].detach()) == 0.0
    sum(v for k, v in terms.items() if k != "entropy").backward()
    adv, _ = _reference(obj, b.fs.detach().requires_grad_(), b.ys, b.fu.detach().requires_grad_(), b.zu)
    torch.testing.assert_close(terms["adversarial"], adv)
    h = torch.cat([b.fs, b.fu]).detach().requires_grad_()
    d = torch.tensor([1.0] * 3 + [0.0] * 4)
    c = torch.tensor([0.5 / 3] * 3 + [0.5 / 4] * 4)
    lg = (c * F.binary_cross_entropy_with_logits(obj.domain_discriminator(h).squeeze(1), d, reduction="none")).sum()
    (g,) = torch.autograd.grad(lg, h)
    torch.testing.assert_close(torch.cat([b.fs.grad, b.fu.grad]), -lam * g)


def test_entropy_term_by_hand():
    """The unlabelled target's cross-entropy is replaced by α·mean H(p) (Eq. 4-5), α = 0.02 by default; with
    α = 0 the term is left out."""
    b = _batch()
    p = torch.softmax(b.zu, 1)
    h = -(p * p.log()).sum(1).mean()
    obj = _objective()
    assert obj.params.alpha == 0.02 and obj.params.beta == 1.0 and obj.params.threshold == 0.9
    torch.testing.assert_close(obj.transfer_terms(None, b, 0.5)["entropy"], 0.02 * h)
    torch.testing.assert_close(_objective(alpha=0.5).transfer_terms(None, _batch(), 0.5)["entropy"], 0.5 * h)
    assert "entropy" not in _objective(alpha=0.0).transfer_terms(None, _batch(), 0.5)


def test_classifier_gets_only_classification_terms():
    obj = _objective()
    head = torch.nn.Linear(M, C)
    b = _batch()
    b.zs, b.zu = head(b.fs), head(b.fu)
    terms = obj(None, b, 0.5)
    adv_only = terms["adversarial"] + terms["sync"] + terms["reversal"]
    grads = torch.autograd.grad(adv_only, list(head.parameters()), allow_unused=True)
    assert all(g is None or g.abs().sum() == 0 for g in grads)
    ent = torch.autograd.grad(terms["entropy"], head.weight)[0]
    assert ent.abs().sum() > 0


@pytest.mark.parametrize("flags,heads,keys", [
    ({"use_class": False, "use_group": False}, 0, {"entropy", "adversarial"}),
    ({"use_group": False}, C, {"entropy", "adversarial", "sync", "reversal"}),
    ({"use_class": False}, 2, {"entropy", "adversarial", "sync", "reversal"}),
    ({"use_sync": False}, C + 2, {"entropy", "adversarial"}),
])
def test_ablation_switches(flags, heads, keys):
    obj = _objective(**flags)
    assert (obj.local_discriminators.heads if obj.local_discriminators is not None else 0) == heads
    terms = obj.transfer_terms(None, _batch(), 0.5)
    assert set(terms) == keys
    assert all(torch.isfinite(v) for v in terms.values())


def test_gsda_improves_over_source_only():
    # demo shift without the contrast inversion (see _uda_demo.py); seeds 0-6 (300 iterations): source-only
    # 0.12-0.27, GSDA 0.31-0.47, smallest gain 0.11; seed 0: 0.12 -> 0.42
    base = final_accuracy("source_only")
    acc = final_accuracy("gsda", hidden=64, local_hidden=32)
    assert acc >= base + 0.08, (base, acc)


def test_entropy_of_a_masked_class_is_finite_with_finite_gradients():
    """0·log 0 = 0 (docs/methods.md): a −inf logit gave NaN."""
    import math

    from adakit.adapt._regularizers import entropy

    z = torch.tensor([[0.0, 0.0, -math.inf], [1.0, 2.0, 3.0]], requires_grad=True)
    h = entropy(z)
    torch.testing.assert_close(h[0], torch.tensor(math.log(2.0)))
    p = torch.softmax(z[1].detach(), 0)
    torch.testing.assert_close(h[1], -(p * p.log()).sum())
    h.sum().backward()
    assert torch.isfinite(z.grad).all()

"""AADA (Su et al. WACV 2020): s(x) = H(p)·(1 − d(f))/d(f), d = P(source) of the domain discriminator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from adakit.errors import ConfigError
from adakit.models.discriminators import DomainDiscriminator
from adakit.query.aada import AADASampling, aada_scores
from adakit.registry import STRATEGIES


class StandIn(nn.Module):
    """A stand-in objective that provides a domain discriminator."""

    provides = frozenset({"domain_discriminator"})

    def __init__(self, disc: nn.Module):
        super().__init__()
        self.domain_discriminator = disc


def _linear_disc(m: int, seed: int = 0) -> nn.Linear:
    g = torch.Generator().manual_seed(seed)
    d = nn.Linear(m, 1)
    with torch.no_grad():
        d.weight.copy_(torch.randn(1, m, generator=g))
        d.bias.copy_(torch.randn(1, generator=g))
    return d


def test_registered_with_needs():
    assert STRATEGIES.get("aada") is AADASampling
    assert AADASampling.needs == frozenset({"domain_discriminator"})


def test_scores_by_hand():
    # p = (0.5, 0.5): H = ln 2; logit 0 → d = 1/2 → w = 1; logit ln 3 → d = 3/4 → w = 1/3
    p = torch.tensor([[0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    logits = torch.tensor([0.0, float(np.log(3.0)), -5.0])
    s = aada_scores(p, logits)
    assert s[0].item() == pytest.approx(np.log(2.0))
    assert s[1].item() == pytest.approx(np.log(2.0) / 3.0)
    assert s[2].item() == 0.0  # confident prediction: H = 0 whatever the domain weight


def test_extreme_discriminator_is_finite():
    p = torch.tensor([[0.6, 0.4], [0.6, 0.4]])
    s = aada_scores(p, torch.tensor([-200.0, 200.0]))
    assert torch.isfinite(s).all() and s[0] > 1e80 and s[1] < 1e-80


def test_select_top_b_by_hand(view_factory, selection_checker):
    disc = _linear_disc(8)
    view = view_factory(n=30, labelled=6, objective=StandIn(disc))
    sel = AADASampling(AADASampling.Params()).select(view, 5, np.random.default_rng(0))
    selection_checker(sel, view, 5)
    p = view.probs.double()
    h = -(p * p.log()).sum(1)
    d = torch.sigmoid(disc(view.embeddings).double())[:, 0].detach()
    ref = (h * (1 - d) / d).numpy()
    assert np.allclose(sel.scores, ref[sel.indices], rtol=1e-5)
    unl = view.unlabelled_indices
    assert set(sel.indices.tolist()) == set(unl[np.argsort(-ref[unl])[:5]].tolist())


def test_mlp_discriminator_in_eval_mode(view_factory):
    """Dropout is off while scoring (deterministic scores) and the training mode is restored."""
    torch.manual_seed(0)
    disc = DomainDiscriminator(8, hidden=16, dropout=0.5)
    disc.train()
    view = view_factory(n=20, objective=StandIn(disc))
    strat = AADASampling(AADASampling.Params(block_size=3))
    a = strat.select(view, 20, np.random.default_rng(0))
    b = strat.select(view, 20, np.random.default_rng(0))
    assert np.array_equal(a.indices, b.indices) and np.allclose(a.scores, b.scores)
    assert disc.training


def test_missing_discriminator_is_a_config_error(view_factory):
    view = view_factory(n=10)
    with pytest.raises(ConfigError, match="domain_discriminator"):
        AADASampling(AADASampling.Params()).select(view, 2, np.random.default_rng(0))


@pytest.mark.slow
def test_runs_end_to_end_from_config(office31_short_run):
    office31_short_run("aada", {"name": "dann", "hidden": 64})


def test_probe_domain_trains_a_discriminator_on_detached_features():
    """objective.probe_domain: a domain discriminator beside any objective, no gradient into the features."""
    import torch.nn.functional as F

    from adakit.adapt.base import Batch
    from adakit.registry import OBJECTIVES

    cls = OBJECTIVES.get("finetune")
    params = cls.Params.validated({"probe_domain": True}, "objective")
    assert "domain_discriminator" in cls.provides_for(params) and "domain_discriminator" not in cls.provides
    obj = cls(params, feature_dim=3, num_classes=2).eval()  # eval: no dropout, so the hand value is exact
    assert obj.uses_unlabelled
    g = torch.Generator().manual_seed(0)
    fs, fu = torch.randn(4, 3, generator=g, requires_grad=True), torch.randn(2, 3, generator=g, requires_grad=True)
    b = Batch(xs=fs, ys=torch.tensor([0, 1, 0, 1]), idx_s=torch.arange(4), fs=fs, zs=torch.randn(4, 2, generator=g),
              xu=fu, fu=fu, target_in_s=torch.tensor([False, False, False, True]))
    term = obj.probe_terms(b)["domain_probe"]
    d = obj.domain_discriminator
    ls, lt = d(fs[:3]).squeeze(1), d(fu).squeeze(1)
    hand = 0.5 * (F.binary_cross_entropy_with_logits(ls, torch.ones(3))
                  + F.binary_cross_entropy_with_logits(lt, torch.zeros(2)))
    assert term.item() == pytest.approx(hand.item(), rel=1e-6)
    term.backward()
    assert fs.grad is None and fu.grad is None  # the model is not trained by the probe
    assert all(p.grad is not None for p in d.parameters())
    # DANN already has its discriminator: the flag adds nothing there
    dann = OBJECTIVES.get("dann")
    assert dann(dann.Params.validated({"probe_domain": True}, "objective"), 3, 2).probe_terms(b) == {}


@pytest.mark.slow
def test_mme_with_probe_runs_aada_from_config(office31_short_run):
    office31_short_run("aada", {"name": "mme", "probe_domain": True})


def _probe_fit(probe: bool, mode: str = "separate", iters: int = 12):
    """Fine-tuning a model with a batch-norm bottleneck for a few steps, with or without ``probe_domain``."""
    from adakit.config import ModelConfig, TrainConfig
    from adakit.data.domain import TensorDomain
    from adakit.models import build_model
    from adakit.registry import OBJECTIVES
    from adakit.train import Trainer

    g = torch.Generator().manual_seed(0)
    src = TensorDomain(name="s", classes=["a", "b"], ids=[f"s{i}" for i in range(24)], y=np.arange(24) % 2,
                       x=torch.randn(24, 6, generator=g))
    pool = TensorDomain(name="t", classes=["a", "b"], ids=[f"t{i}" for i in range(16)], y=np.arange(16) % 2,
                        x=torch.randn(16, 6, generator=g) * 3 + 5)  # a shifted target: its batch statistics differ
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="identity", bottleneck_dim=4), (6,), 2)  # Linear + BatchNorm + ReLU
    cls = OBJECTIVES.get("finetune")
    obj = cls(cls.Params.validated({"probe_domain": probe}, "objective"), feature_dim=4, num_classes=2)
    trainer = Trainer(model, obj, TrainConfig(batch_size=8, labelled_target=mode), torch.device("cpu"))
    before = [p.detach().clone() for p in obj.parameters()]
    stats = trainer.fit(src, pool, np.array([1, 2]), np.array([1, 0]), iters=iters, seed=0, show_progress=False)
    return model, obj, stats, before


@pytest.mark.parametrize("mode", ["separate", "union"])
def test_probe_leaves_fine_tuning_unchanged(mode):
    """The probe beside fine-tuning must not change the model: the unlabelled target batch used to enter the
    model's training pass (and its batch-norm statistics), which lowered Office-31 A→W source-only accuracy from
    68.7% to 57.5% (seed 0). Now the model's weights and batch-norm buffers equal those of plain fine-tuning."""
    plain, *_ = _probe_fit(False, mode)
    probed, obj, stats, before = _probe_fit(True, mode)
    assert obj.probe_pass and obj.uses_unlabelled
    for (k, a), (_, b) in zip(plain.state_dict().items(), probed.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert stats["domain_probe"] > 0  # the probe did train
    assert any(not torch.equal(a, b) for a, b in zip(before, obj.parameters(), strict=True))


def test_probe_pass_feeds_eval_mode_features_to_the_probe():
    """With ``probe_pass`` the probe sees eval-mode features of the source rows (labelled target rows of S∪T
    excluded) and of the unlabelled batch, and no gradient reaches the model."""
    import torch.nn.functional as F

    from adakit.adapt.base import Batch
    from adakit.registry import OBJECTIVES
    from adakit.train import Trainer

    cls = OBJECTIVES.get("finetune")
    obj = cls(cls.Params.validated({"probe_domain": True}, "objective"), feature_dim=3, num_classes=2).eval()
    mme = OBJECTIVES.get("mme")
    assert not mme(mme.Params.validated({"probe_domain": True}, "objective"), 3, 2).probe_pass  # MME uses fu
    model = nn.Sequential()  # stand-in with .features: BatchNorm in training mode changes with the batch
    bn = nn.BatchNorm1d(3)
    model.features = bn
    model.forward = lambda x: (bn(x), x[:, :2])
    model.train()
    trainer = Trainer.__new__(Trainer)
    trainer.model, trainer.objective = model, obj
    trainer.dist = type("D", (), {"enabled": False})()
    g = torch.Generator().manual_seed(0)
    xs, xu = torch.randn(4, 3, generator=g), torch.randn(2, 3, generator=g) + 4
    b = Batch(xs=xs, ys=torch.tensor([0, 1, 0, 1]), idx_s=torch.arange(4), xu=xu,
              target_in_s=torch.tensor([False, False, True, False]))
    trainer._forward(b)
    assert b.fu is None and len(b.fs) == 4 and model.training  # the unlabelled rows stayed out of the training pass
    # batch norm (momentum 0.1, fresh stats 0 / 1) updated by the 4 rows of xs only, then applied in eval mode
    mean, var = 0.1 * xs.mean(0), 0.9 + 0.1 * xs.var(0, unbiased=True)
    assert torch.allclose(bn.running_mean, mean) and torch.allclose(bn.running_var, var)

    def ev(x):
        return (x - mean) / torch.sqrt(var + bn.eps)

    assert torch.allclose(b.probe_fs, ev(xs[[0, 1, 3]]), atol=1e-6) and torch.allclose(b.probe_fu, ev(xu), atol=1e-6)
    d = obj.domain_discriminator
    ls, lt = d(ev(xs[[0, 1, 3]])).squeeze(1), d(ev(xu)).squeeze(1)
    hand = 0.5 * (F.binary_cross_entropy_with_logits(ls, torch.ones(3))
                  + F.binary_cross_entropy_with_logits(lt, torch.zeros(2)))
    assert obj.probe_terms(b)["domain_probe"].item() == pytest.approx(hand.item(), rel=1e-5)

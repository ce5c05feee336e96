"""`adakit.objective` and `Objective.losses`: objectives in a training loop the user writes."""

from __future__ import annotations

import math
import re
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import adakit
from adakit.errors import ConfigError, DataError
from adakit.models.grl import grl_schedule
from adakit.models.heads import CosineHead
from adakit.registry import OBJECTIVES

M, C = 6, 3


def _net(seed: int = 0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, M), nn.Tanh()), nn.Linear(M, C)


def _step(obj, body, head, n=8, labelled=True, seed=1):
    g = torch.Generator().manual_seed(seed)
    xs, xt = torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g) + 1.0
    ys = torch.arange(n) % C
    fs, ft = body(xs), body(xt)
    extra = {}
    if labelled:
        fl = body(xt[:3])
        extra = {"labelled_features": fl, "labelled_logits": head(fl), "labelled_labels": torch.tensor([0, 1, 2])}
    return obj.losses(source_features=fs, source_logits=head(fs), source_labels=ys, target_features=ft,
                      target_logits=head(ft), target_indices=torch.arange(n), progress=0.5, head=head, **extra)


def test_finetune_terms_are_the_cross_entropies():
    body, head = _net()
    obj = adakit.objective("finetune", feature_dim=M, num_classes=C)
    xs, xl = torch.randn(5, 4), torch.randn(2, 4)
    ys, yl = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([2, 2])
    fs, fl = body(xs), body(xl)
    terms = obj.losses(source_features=fs, source_logits=head(fs), source_labels=ys, labelled_features=fl,
                       labelled_logits=head(fl), labelled_labels=yl, progress=0.0)
    assert set(terms) == {"ce_source", "ce_target"}
    none_yet = obj.losses(source_features=fs, source_logits=head(fs), source_labels=ys, progress=0.0,
                          labelled_features=fl[:0], labelled_logits=head(fl)[:0], labelled_labels=yl[:0])
    assert set(none_yet) == {"ce_source"}  # an empty labelled batch (no target label yet) is no labelled batch
    torch.testing.assert_close(terms["ce_source"], F.cross_entropy(head(fs), ys))
    torch.testing.assert_close(terms["ce_target"], F.cross_entropy(head(fl), yl))


def test_dann_term_and_its_reversed_gradient_match_a_hand_computation():
    """adversarial = ½(BCE(d(f_s), 1) + BCE(d(f_t), 0)); the features get −λ(progress) times its gradient, the
    discriminator its plain gradient (DANN, Eq. 9-10)."""
    body, head = _net()
    obj = adakit.objective("dann", feature_dim=M, num_classes=C, hidden=8, dropout=0.0)
    fs = torch.randn(5, M, requires_grad=True)
    ft = torch.randn(4, M, requires_grad=True)
    ys = torch.tensor([0, 1, 2, 0, 1])
    progress = 0.3
    terms = obj.losses(source_features=fs, source_logits=head(fs), source_labels=ys, target_features=ft,
                       target_logits=head(ft), progress=progress)
    d = obj.domain_discriminator
    expect = 0.5 * (F.binary_cross_entropy_with_logits(d(fs).squeeze(1), torch.ones(5))
                    + F.binary_cross_entropy_with_logits(d(ft).squeeze(1), torch.zeros(4)))
    torch.testing.assert_close(terms["adversarial"], expect)
    g_fs, g_ft = torch.autograd.grad(terms["adversarial"], [fs, ft], retain_graph=True)
    h_fs, h_ft = torch.autograd.grad(expect, [fs, ft], retain_graph=True)
    lam = grl_schedule(progress, 1.0, 10.0)
    assert 0 < lam < 1
    torch.testing.assert_close(g_fs, -lam * h_fs)
    torch.testing.assert_close(g_ft, -lam * h_ft)
    w = next(d.parameters())
    (g_w,) = torch.autograd.grad(terms["adversarial"], [w], retain_graph=True)
    (h_w,) = torch.autograd.grad(expect, [w])
    torch.testing.assert_close(g_w, h_w)


@pytest.mark.parametrize("name", [n for n in OBJECTIVES.names() if n != "biwaa_i"])
def test_every_objective_trains_through_losses(name):
    """Every registered objective: finite terms, and the step's loss reaches the user's network; the adapting
    ones also send a non-zero gradient to it from their own terms alone (not only the cross-entropy)."""
    body, _ = _net()
    cls = OBJECTIVES.get(name)
    obj = adakit.objective(name, feature_dim=M, num_classes=C, pool_size=8)
    head = CosineHead(M, C) if obj.head_for(obj.params) == "cosine" else nn.Linear(M, C)
    terms = _step(obj, body, head)
    assert terms and all(torch.isfinite(v) for v in terms.values())
    assert "ce_source" in terms and ("ce_target" in terms) == cls.uses_labelled
    own = [v for k, v in terms.items() if not k.startswith("ce_")]
    if cls.uses_unlabelled:
        assert own, terms
        grads = torch.autograd.grad(sum(own), list(body.parameters()), allow_unused=True)
        assert any(g is not None and float(g.abs().sum()) > 0 for g in grads), name


def test_the_objective_keeps_its_moving_statistics_between_steps():
    """MSTN's centroids move with each step in training mode, stay in eval mode, and are in its state_dict."""
    body, head = _net()
    obj = adakit.objective("mstn", feature_dim=M, num_classes=C)
    before = obj.state_dict()["source_centroids"].clone()
    _step(obj, body, head)
    moved = obj.state_dict()["source_centroids"].clone()
    assert not torch.equal(before, moved)
    obj.eval()
    _step(obj, body, head, seed=2)
    assert torch.equal(obj.state_dict()["source_centroids"], moved)


def test_biwaa_reads_the_linear_head_and_the_pool_positions():
    body, head = _net()
    obj = adakit.objective("biwaa", feature_dim=M, num_classes=C, pool_size=20)
    _step(obj, body, head)
    torch.testing.assert_close(obj.domain_discriminator.head_weight, head.weight.detach())
    assert not torch.allclose(obj.aggregated[:8], torch.full((8, C), 1 / C))  # the memory of rows 0..7 moved
    torch.testing.assert_close(obj.aggregated[8:], torch.full((12, C), 1 / C))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_biwaa_and_sdm_in_other_dtypes_a_cosine_head_refused_and_eval_leaves_the_state(dtype):
    """BIWAA's discriminator cast features to float32 against a float64 head copy, its memory update failed in
    half precision, SDM's hinge had no half kernel on the CPU, a cosine head passed as BIWAA's linear one, and an
    evaluation pass overwrote the discriminator's copy of the head."""
    kw = {"feature_dim": 4, "num_classes": 3}
    b = adakit.objective("biwaa", pool_size=8, **kw).to(dtype)
    head = nn.Linear(4, 3).to(dtype)
    fs, ft = torch.randn(4, 4, dtype=dtype), torch.randn(4, 4, dtype=dtype)
    batch = {"source_features": fs, "source_logits": head(fs), "source_labels": [0, 1, 2, 0],
             "target_features": ft, "target_logits": head(ft), "target_indices": [0, 1, 2, 3], "progress": 0.5}
    assert all(torch.isfinite(v.float()).all() for v in b.losses(**batch, head=head).values())
    assert b.domain_discriminator(ft).shape == (4, 1)  # as AADA calls it
    before = {k: v.clone() for k, v in b.state_dict().items()}
    b.eval()
    b.losses(**batch, head=nn.Linear(4, 3).to(dtype))  # e.g. an averaged head, in an evaluation pass
    assert all(torch.equal(before[k], v) for k, v in b.state_dict().items())
    with pytest.raises(ConfigError, match="head= must be the linear head mapping features to logits"):
        b.losses(**batch, head=CosineHead(4, 3).to(dtype))
    sdm = adakit.objective("sdm", **kw).to(dtype)
    assert torch.isfinite(sdm.losses(source_features=fs, source_logits=head(fs), source_labels=[0, 1, 2, 0],
                                     progress=0.0)["ce_source"].float())


@pytest.mark.parametrize("call,message", [
    (lambda: adakit.objective("nope", feature_dim=M, num_classes=C), "unknown objective 'nope'"),
    (lambda: adakit.objective("dann", feature_dim=M, num_classes=C, trade_of=1.0), "trade_of"),
    (lambda: adakit.objective("dann", feature_dim=0, num_classes=C), "feature_dim= must be a whole number ≥ 1"),
    (lambda: adakit.objective("dann", feature_dim=M, num_classes=1), "num_classes= must be a whole number ≥ 2"),
    (lambda: adakit.objective(nn.Linear, feature_dim=M, num_classes=C), "registered name"),
    (lambda: adakit.objective("biwaa", feature_dim=M, num_classes=C), "pass pool_size="),
    (lambda: adakit.objective("biwaa_i", feature_dim=M, num_classes=C, pool_size=5), "runs=10"),
    (lambda: adakit.objective("biwaa", feature_dim=M, num_classes=C, pool_size=5, omega="mme"),
     "adakit.objective('biwaa'): objective.omega=mme needs the cosine head"),
    (lambda: adakit.objective(adakit.objective("dann", feature_dim=M, num_classes=C), feature_dim=M, num_classes=C),
     "got a DANN instance, which is built already"),
])
def test_bad_objective_arguments_are_config_errors(call, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        call()


def _losses(name="dann", pool_size=0, **kw):
    obj = adakit.objective(name, feature_dim=M, num_classes=C, pool_size=pool_size)
    args = {"source_features": torch.randn(4, M), "source_logits": torch.randn(4, C),
            "source_labels": torch.tensor([0, 1, 2, 0]), "target_features": torch.randn(4, M),
            "target_logits": torch.randn(4, C), "progress": 0.5}
    args.update(kw)
    return obj.losses(**{k: v for k, v in args.items() if v is not None})


@pytest.mark.parametrize("kw,error,message", [
    ({"target_features": None, "target_logits": None}, ConfigError, "needs target_features= and target_logits="),
    ({"source_features": torch.randn(4, M + 1)}, DataError, "source_features= must be a (N, 6) tensor"),
    ({"target_logits": torch.randn(4, C + 2)}, DataError, "target_logits= must be a (N, 3) tensor"),
    ({"target_logits": torch.randn(3, C)}, DataError, "target_features= has 4 rows, target_logits= 3"),
    ({"source_labels": torch.tensor([0, 1, 3, 0])}, DataError, "source_labels= must lie in 0..2, got 0..3"),
    ({"source_labels": torch.tensor([0.0, 1, 2, 0])}, DataError, "source_labels= must be 4 integer class indices"),
    ({"source_labels": np.array(["a", None, 1, 0], dtype=object)}, DataError, "source_labels= must be integers"),
    ({"target_logits": None}, ConfigError, "needs target_logits= with target_features="),
    ({"progress": torch.tensor([0.1, 0.2])}, ConfigError, "a number in [0, 1]; got tensor([0.1000, 0.2000])"),
    ({"progress": 1.5}, ConfigError, "progress= is the fraction of training done, a number in [0, 1]; got 1.5"),
    ({"source_features": torch.randn(0, M), "source_logits": torch.randn(0, C), "source_labels": torch.zeros(0)},
     DataError, "source_features= is empty"),
    ({"labelled_features": torch.randn(2, M), "labelled_logits": torch.randn(2, C)}, ConfigError,
     "needs labelled_labels="),
    # what a model's outputs look like when passed as they come: each error says what to pass instead
    ({"source_features": (torch.randn(4, M), torch.randn(4, C))}, DataError,
     "got tuple; your model returns several outputs: pass each tensor to its keyword"),
    ({"target_logits": {"logits": torch.randn(4, C)}}, DataError,
     "target_logits= must be a (N, 3) tensor (the objective was built with feature_dim=6, num_classes=3), got dict; "
     "your model returns a dict: pass the tensor of its logits"),
    ({"source_features": torch.randn(4, M, 5, 5)}, DataError,
     "got (4, 6, 5, 5); pool or flatten feature maps to (N, m) as your head reads them (e.g. "
     "torch.flatten(f, 1) after global average pooling)"),
    ({"target_features": torch.randn(M)}, DataError, "got (6,); a single sample is a batch of one: pass "
                                                     "t.unsqueeze(0)"),
])
def test_bad_losses_inputs_name_the_keyword(kw, error, message):
    with pytest.raises(error, match=re.escape(message)):
        _losses(**kw)


def test_another_dtype_than_the_objective_is_named_and_to_dtype_works():
    with pytest.raises(ConfigError, match=re.escape("source_features= is torch.float64, the objective's parameters "
                                                    "torch.float32; call objective.to(torch.float64)")):
        _losses(source_features=torch.randn(4, M, dtype=torch.float64))
    # every part is checked before anything is computed (the target batch moved MSTN's centroids, then failed)
    mstn = adakit.objective("mstn", feature_dim=M, num_classes=C)
    before = mstn.target_centroids.clone()
    with pytest.raises(ConfigError, match=re.escape("target_features= is torch.float64")):
        mstn.losses(source_features=torch.randn(4, M), source_logits=torch.randn(4, C), source_labels=[0, 1, 2, 0],
                    target_features=torch.randn(4, M, dtype=torch.float64), target_logits=torch.randn(4, C),
                    progress=0.5)
    assert torch.equal(before, mstn.target_centroids)
    obj = adakit.objective("dann", feature_dim=M, num_classes=C).to(torch.float64)
    f = torch.randn(4, M, dtype=torch.float64)
    terms = obj.losses(source_features=f, source_logits=torch.randn(4, C, dtype=torch.float64),
                       source_labels=torch.tensor([0, 1, 2, 0]), target_features=f + 1,
                       target_logits=torch.randn(4, C, dtype=torch.float64), progress=0.5)
    assert terms["adversarial"].dtype == torch.float32  # (the BCE is taken in float32, as in a run)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # under autocast the parameters stay float32
        terms = _losses(source_features=torch.randn(4, M, dtype=torch.bfloat16))
    assert torch.isfinite(terms["adversarial"])


def test_numbers_of_numpy_and_torch_types_are_taken():
    y = np.array([0, 1, 2, 1])
    obj = adakit.objective("dann", feature_dim=torch.tensor(M), num_classes=y.max() + 1)
    assert (obj.feature_dim, obj.num_classes) == (M, C) and type(obj.num_classes) is int
    for progress in (np.float32(0.5), np.int64(0), torch.tensor(0.25), torch.linspace(0, 1, 5)[4]):
        _losses(progress=progress)
    terms = _losses("finetune", source_labels=np.array([0, 1, 2, 1], dtype=np.uint32))
    torch.testing.assert_close(terms["ce_source"], terms["ce_source"])  # (uint32 labels were a raw error)


def test_gsda_leaves_out_its_gradient_synchronisation_without_gradients():
    """A validation pass under no_grad and frozen features: GSDA's sync is made of feature gradients (it crashed)."""
    body, head = _net()
    obj = adakit.objective("gsda", feature_dim=M, num_classes=C, threshold=0.0)
    obj.eval()
    with torch.no_grad():
        terms = _step(obj, body, head)
    assert "sync" not in terms and torch.isfinite(terms["adversarial"])
    obj.train()
    fs, ft = body(torch.randn(8, 4)).detach(), body(torch.randn(8, 4)).detach()
    frozen = obj.losses(source_features=fs, source_logits=head(fs), source_labels=torch.arange(8) % C,
                        target_features=ft, target_logits=head(ft), progress=0.5)
    assert "sync" not in frozen
    assert "sync" in _step(obj, body, head)  # with gradients it is there


def test_objectives_that_read_the_head_or_the_pool_say_so():
    with pytest.raises(ConfigError, match=re.escape("needs head= (your cosine classifier head")):
        _losses("mme")
    with pytest.raises(ConfigError, match=re.escape("needs target_indices=")):
        _losses("biwaa", pool_size=10, head=nn.Linear(M, C))
    with pytest.raises(DataError, match=re.escape("target_indices= must lie in 0..9 (pool_size=10), got 0..10")):
        _losses("biwaa", pool_size=10, head=nn.Linear(M, C), target_indices=torch.tensor([0, 1, 2, 10]))
    with pytest.raises(ConfigError, match=re.escape("head= must be the linear head mapping features to logits")):
        _losses("biwaa", pool_size=10, head=CosineHead(M + 1, C), target_indices=torch.arange(4))
    with pytest.raises(ConfigError, match=re.escape("head= has a (3, 7) weight; the objective was built for")):
        _losses("biwaa", pool_size=10, head=nn.Linear(M + 1, C), target_indices=torch.arange(4))
    with pytest.raises(DataError, match=re.escape("target_indices= must be 4 integer pool positions, got dtype "
                                                  "torch.bool")):
        _losses("biwaa", pool_size=10, head=nn.Linear(M, C), target_indices=torch.ones(4, dtype=torch.bool))
    with pytest.raises(ConfigError, match=re.escape("head= has a (3, 7) weight; the objective was built for "
                                                    "feature_dim=6, num_classes=3")):
        _losses("mme", head=CosineHead(M + 1, C))
    with pytest.warns(UserWarning, match="defined on a cosine head"):
        _losses("mme", head=nn.Linear(M, C))


def test_readme_snippet_of_objectives_in_your_own_loop_runs(readme_python):
    (code,) = readme_python("### Objectives in your own training loop")[:1]
    ns: dict = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), ns)
    assert set(ns["terms"]) == {"ce_source", "adversarial"}
    assert math.isfinite(float(ns["loss"].detach()))


def test_objectives_without_parameters_check_dtypes_and_the_head_and_biwaa_reads_the_head_in_eval_mode():
    """Fine-tuning, SDM and MME have no parameters to compare inputs with: float64 labelled rows beside float32
    source rows gave terms of mixed dtypes, integer features a raw log_softmax error, a float32 cosine head on
    float64 features a raw matmul error. BIWAA in eval mode weighed features with its stored copy of the head
    (zeros before any training step: adversarial = log 2 exactly) instead of the head given."""
    import math

    from adakit.models.heads import CosineHead

    f32, z32, y = torch.randn(4, 6), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    sdm = adakit.objective("sdm", feature_dim=6, num_classes=3)
    with pytest.raises(ConfigError, match=r"labelled_features= is torch.float64, source_features= torch.float32"):
        sdm.losses(source_features=f32, source_logits=z32, source_labels=y, labelled_features=f32.double(),
                   labelled_logits=z32.double(), labelled_labels=y, progress=0.5)
    ft = adakit.objective("finetune", feature_dim=6, num_classes=3)
    with pytest.raises(DataError, match=r"source_logits= must be floating-point .*torch.int64"):
        ft.losses(source_features=f32, source_logits=z32.long(), source_labels=y, progress=0.5)
    mme = adakit.objective("mme", feature_dim=6, num_classes=3)
    with pytest.raises(ConfigError, match=r"head= is torch.float32 on cpu, source_features= torch.float64"):
        mme.losses(source_features=f32.double(), source_logits=z32.double(), source_labels=y,
                   target_features=f32.double(), target_logits=z32.double(), progress=0.5, head=CosineHead(6, 3))
    torch.manual_seed(0)
    head = torch.nn.Linear(6, 3)
    biwaa = adakit.objective("biwaa", feature_dim=6, num_classes=3, pool_size=4).eval()
    terms = biwaa.losses(source_features=f32, source_logits=head(f32), source_labels=y, target_features=f32 + 1,
                         target_logits=head(f32 + 1), target_indices=torch.arange(4), progress=0.5, head=head)
    assert not biwaa.domain_discriminator.head_weight.any()  # an evaluation leaves the copy (and the state) alone
    assert not math.isclose(float(terms["adversarial"]) / biwaa.params.trade_off, math.log(2), rel_tol=1e-6)


def _loop(obj, opt, steps, accumulate=1, fused=False):
    """``steps`` micro-batches of a small DANN-style loop (the README's order: losses, zero_grad, backward, step),
    stepping every ``accumulate`` of them."""
    body, head = _net()
    params = [*body.parameters(), *head.parameters()]
    opt = opt(params) if opt is not None else None
    for step in range(steps):
        fs, ft = body(torch.randn(8, 4)), body(torch.randn(8, 4) + 1)
        terms = obj.losses(source_features=fs, source_logits=head(fs), source_labels=torch.arange(8) % C,
                           target_features=ft, target_logits=head(ft), progress=step / steps)
        if step % accumulate == 0 and opt is not None:
            opt.zero_grad()
        sum(terms.values()).backward()
        if (step + 1) % accumulate == 0 and opt is not None:
            opt.step()


def test_discriminators_left_out_of_the_optimizer_are_named_once():
    """An optimizer without the objective's parameters left its discriminator as it was built, silently (its
    gradient only piled up), while the features still got the reversed gradient of that untrained discriminator."""
    obj = adakit.objective("dann", feature_dim=M, num_classes=C, hidden=8)
    before = [p.detach().clone() for p in obj.parameters()]
    with pytest.warns(UserWarning, match=re.escape("dann.losses(): the objective's parameters (its discriminators) "
                                                   "got gradients but did not change")) as caught:
        _loop(obj, lambda ps: torch.optim.SGD(ps, lr=0.05), 120)
    assert len([w for w in caught if "did not change" in str(w.message)]) == 1  # once, not at every step
    assert "objective.parameters()" in str(caught[0].message)
    assert all(torch.equal(a, b) for a, b in zip(before, obj.parameters()))  # (what the warning is about)
    frozen = adakit.objective("dann", feature_dim=M, num_classes=C, hidden=8).requires_grad_(False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _loop(frozen, lambda ps: torch.optim.SGD(ps, lr=0.05), 60)  # kept as built on purpose: nothing said


@pytest.mark.parametrize("accumulate,fused", [(1, False), (8, False), (1, True)])
def test_discriminators_in_the_optimizer_are_not_named(accumulate, fused, recwarn):
    """With the objective's parameters in the optimizer nothing is said: stepping every 8 micro-batches, and with
    the fused SGD kernel (which leaves the parameters' version counters as they were); in eval mode and under
    no_grad nothing is counted."""
    obj = adakit.objective("dann", feature_dim=M, num_classes=C, hidden=8)
    opt = torch.optim.SGD([*obj.parameters()], lr=0.05, fused=fused)
    _loop(obj, lambda ps: _Both(torch.optim.SGD(ps, lr=0.05), opt), 120, accumulate)
    obj.eval()
    _loop(obj, None, 60)
    obj.train()
    with torch.no_grad():
        for _ in range(60):
            obj.losses(**_losses_args())
    assert not [w for w in recwarn if "did not change" in str(w.message)]


def _losses_args():
    return {"source_features": torch.randn(4, M), "source_logits": torch.randn(4, C),
            "source_labels": torch.tensor([0, 1, 2, 0]), "target_features": torch.randn(4, M),
            "target_logits": torch.randn(4, C), "progress": 0.5}


class _Both:
    """Two optimizers stepped together (the model's and the objective's)."""

    def __init__(self, *opts):
        self.opts = opts

    def zero_grad(self):
        for o in self.opts:
            o.zero_grad()

    def step(self):
        for o in self.opts:
            o.step()

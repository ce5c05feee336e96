"""`adakit.select`: every registered strategy as a function of arrays, equal to the loop's selection on a view."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import adakit
from adakit.data.domain import TensorDomain
from adakit.errors import ConfigError, DataError
from adakit.models import Model
from adakit.models.heads import CosineHead, LinearHead
from adakit.pool import PoolView
from adakit.query.aada import domain_discriminator_logits
from adakit.registry import OBJECTIVES, STRATEGIES

N, D, M, C = 60, 5, 6, 4

#: extra parameter sets checked besides the defaults
EXTRA_PARAMS = {"coreset": [{"use_source": True}], "sage": [{"diversity": "kmeans_pp"}, {"diversity": "none"}],
                "las": [{"neighbours": "pool", "oversample": 2}], "clue": [{"temperature": 1.0}]}


class _Backbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.out_dim = M
        self.net = nn.Sequential(nn.Linear(D, M), nn.ReLU(), nn.Linear(M, M))

    def forward(self, x):
        return self.net(x)


def _domain(name: str, n: int, g: torch.Generator) -> TensorDomain:
    centres = 2.0 * torch.randn(C, D, generator=g)
    y = torch.randint(C, (n,), generator=g)
    return TensorDomain(name=name, classes=[f"c{i}" for i in range(C)], ids=np.array([f"{name}/{i}" for i in range(n)]),
                        y=y.numpy(), x=centres[y] + torch.randn(n, D, generator=g))


def _objective_for(strategy_cls) -> str | None:
    """An objective providing what the strategy needs (SDM-G: sdm_a, whose training loss it differentiates)."""
    if strategy_cls.name == "sdm_g":
        return "sdm_a"
    if not strategy_cls.needs:
        return None
    return next(n for n in OBJECTIVES.names() if set(strategy_cls.needs) <= set(OBJECTIVES.get(n).provides))


def pool_view(objective: str | None = None, head: str = "linear", labelled: int = 10, seed: int = 0) -> PoolView:
    """A real `PoolView`: MLP backbone → features (M) → head (C) on a target pool with ``labelled`` labels."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    pool, source = _domain("tgt", N, g), _domain("src", 30, g)
    model = Model(_Backbone(), None, LinearHead(M, C) if head == "linear" else CosineHead(M, C))
    obj = None
    if objective is not None:
        cls = OBJECTIVES.get(objective)
        prm = {"hidden": 16} if "hidden" in cls.Params.model_fields else {}
        if "raw_logits" in cls.Params.model_fields:
            prm["raw_logits"] = True  # not the default loss form: checks that SDM-G gets the objective's
        obj = cls(cls.Params.validated(prm, "objective"), feature_dim=M, num_classes=C, pool_size=N)
    mask = np.zeros(N, dtype=bool)
    mask[np.random.default_rng(seed).permutation(N)[:labelled]] = True
    labels = np.where(mask, pool.y, -1)
    return PoolView(model, pool, mask, labels, objective=obj, source=source)


def view_arrays(view: PoolView) -> dict:
    """Everything a view holds, as the keywords of `adakit.select`."""
    obj = view.objective
    return {"probs": view.probs, "logits": view.logits, "embeddings": view.embeddings, "labelled": view.labelled,
            "labels": view.labels, "source_embeddings": view.source_embeddings, "head_weight": view.head_weight,
            "domain_discriminator": getattr(obj, "domain_discriminator", None),
            "class_discriminator": getattr(obj, "class_discriminator", None),
            "sdm_loss_form": getattr(obj, "sdm_loss_form", None)}


def _cases():
    for name in STRATEGIES.names():
        for params in [{}, *EXTRA_PARAMS.get(name, [])]:
            yield pytest.param(name, params, id=f"{name}-{params}" if params else name)


@pytest.mark.parametrize("name,params", list(_cases()))
def test_select_equals_the_loop_strategy_on_the_view_arrays(name, params):
    """The acceptance test: same view arrays and seed → exactly the loop strategy's indices and scores."""
    cls = STRATEGIES.get(name)
    view = pool_view(_objective_for(cls))
    strat = cls(cls.Params.validated(params, "query"))
    budget = 7
    expected = strat.select(view, budget, np.random.default_rng([3, 2]))  # the loop's rng for seed 3, round 2
    assert len(expected.indices) == budget
    got = adakit.select(name, budget=budget, seed=np.random.default_rng([3, 2]), **view_arrays(view), **params)
    assert isinstance(got.indices, np.ndarray) and isinstance(got.scores, np.ndarray)
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_array_equal(got.scores, expected.scores)
    assert not view.labelled[got.indices].any()
    # an int seed is the same as default_rng(seed); numpy arrays and an index array for labelled as well
    arrays = {k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in view_arrays(view).items()}
    arrays["labelled"] = view.labelled_indices
    arrays["labels"] = view.labels[view.labelled_indices]
    again = adakit.select(name, budget=budget, seed=5, **arrays, **params)
    np.testing.assert_array_equal(again.indices, strat.select(view, budget, np.random.default_rng(5)).indices)


@pytest.mark.parametrize("name", STRATEGIES.names())
def test_excluded_samples_are_never_picked_and_are_not_labelled(name):
    """exclude= (queries still out with annotators, samples nobody could label) removes samples from the
    candidates only: the strategy's own first picks, once excluded, are never picked again, and the view's
    labelled set (CoreSet's centres, LAS's context) is unchanged; an index array works like a mask."""
    cls = STRATEGIES.get(name)
    arrays = view_arrays(pool_view(_objective_for(cls)))
    first = adakit.select(name, budget=7, seed=1, **arrays).indices
    free = int((~arrays["labelled"]).sum())
    got = adakit.select(name, budget=free, seed=1, exclude=first, **arrays).indices
    assert len(got) == free - 7 and not np.isin(got, first).any() and not arrays["labelled"][got].any()
    mask = np.isin(np.arange(N), first)
    np.testing.assert_array_equal(adakit.select(name, budget=4, seed=2, exclude=mask, **arrays).indices,
                                  adakit.select(name, budget=4, seed=2, exclude=first, **arrays).indices)
    with pytest.raises(DataError, match=r"exclude= indices must lie in \[0, 60\)"):
        adakit.select(name, budget=4, exclude=[60], **arrays)


def test_strategy_instance_and_class_are_accepted():
    view = pool_view()
    cls = STRATEGIES.get("las")
    inst = cls(cls.Params(k=3))
    a = adakit.select(inst, budget=4, seed=1, **view_arrays(view))
    b = adakit.select(cls, budget=4, seed=1, k=3, **view_arrays(view))
    np.testing.assert_array_equal(a.indices, b.indices)
    with pytest.raises(ConfigError, match="set them on the instance"):
        adakit.select(inst, budget=4, k=3, **view_arrays(view))


def test_sdm_g_with_a_non_linear_head_module():
    """The cosine head (MME) has no closed form: SDM-G takes one VJP of the head given as head=."""
    view = pool_view("sdm", head="cosine")
    cls = STRATEGIES.get("sdm_g")
    expected = cls(cls.Params()).select(view, 5, np.random.default_rng(0))
    got = adakit.select("sdm_g", logits=view.logits, embeddings=view.embeddings, head=view.head,
                        sdm_loss_form=view.objective.sdm_loss_form, labelled=view.labelled, budget=5, seed=0)
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_array_equal(got.scores, expected.scores)
    with pytest.raises(ConfigError, match="pass head= or head_weight=, not both"):
        adakit.select("sdm_g", logits=view.logits, head=view.head, head_weight=view.head_weight, budget=5)
    with pytest.raises(ConfigError, match="sdm_loss_form= must name MarginLossForm fields"):
        adakit.select("sdm_g", logits=view.logits, head_weight=view.head_weight, budget=5, sdm_loss_form={"m": 1})


def test_aada_from_per_sample_domain_outputs():
    """AADA from the discriminator's outputs on the pool instead of the discriminator itself."""
    view = pool_view("dann")
    disc = view.objective.domain_discriminator
    expected = STRATEGIES.get("aada")(STRATEGIES.get("aada").Params()).select(view, 6, np.random.default_rng(0))
    d_logits = domain_discriminator_logits(disc, view.embeddings)
    by_logits = adakit.select("aada", probs=view.probs, domain_logits=d_logits, labelled=view.labelled, budget=6)
    np.testing.assert_array_equal(by_logits.indices, expected.indices)
    np.testing.assert_array_equal(by_logits.scores, expected.scores)
    by_probs = adakit.select("aada", probs=view.probs.numpy(), domain_probs=torch.sigmoid(d_logits).numpy(),
                             labelled=view.labelled, budget=6)
    np.testing.assert_array_equal(by_probs.indices, expected.indices)
    np.testing.assert_allclose(by_probs.scores, expected.scores, rtol=1e-5)
    # a plain callable works as a discriminator; an adakit objective may be passed whole
    fn = adakit.select("aada", probs=view.probs, embeddings=view.embeddings, labelled=view.labelled, budget=6,
                       domain_discriminator=lambda f: disc.eval()(f))
    whole = adakit.select("aada", probs=view.probs, embeddings=view.embeddings, labelled=view.labelled, budget=6,
                          objective=view.objective)
    np.testing.assert_array_equal(fn.indices, expected.indices)
    np.testing.assert_array_equal(whole.indices, expected.indices)


@pytest.mark.parametrize("name,kwargs,keyword", [
    ("aada", {"embeddings": True}, "domain_discriminator="),
    ("sage", {"embeddings": True}, "class_discriminator="),
    ("badge", {}, "embeddings="),
    ("coreset", {"embeddings": True, "use_source": True}, "source_embeddings="),
    ("sdm_g", {}, "head_weight="),
    ("clue", {"embeddings": True}, "logits="),
])
def test_missing_inputs_name_the_keyword_and_the_strategy(name, kwargs, keyword):
    p = np.full((10, 3), 1 / 3)
    extra = {k: v for k, v in kwargs.items() if k != "embeddings"}
    if kwargs.get("embeddings"):
        extra["embeddings"] = np.zeros((10, 2))
    with pytest.raises(ConfigError, match=rf"adakit\.select\('{name}'\).*{keyword}"):
        adakit.select(name, probs=p, budget=2, **extra)


def test_bad_inputs_are_named_errors():
    p = np.random.default_rng(0).dirichlet(np.ones(3), size=10)
    with pytest.raises(ConfigError, match="needs the pool's outputs"):
        adakit.select("random", budget=2)
    with pytest.raises(ConfigError, match="budget= must be a non-negative integer"):
        adakit.select("margin", probs=p, budget=-1)
    with pytest.raises(ConfigError, match=r"select\('margin'\)\.bogus: unknown key"):
        adakit.select("margin", probs=p, budget=2, bogus=1)
    with pytest.raises(ConfigError, match="unknown strategy 'nope'"):
        adakit.select("nope", probs=p, budget=2)
    with pytest.raises(DataError, match="disagree on the number of samples"):
        adakit.select("badge", probs=p, embeddings=np.zeros((9, 2)), budget=2)
    with pytest.raises(DataError, match="pass raw classifier outputs as logits="):
        adakit.select("margin", probs=p * 3, budget=2)
    negative = p.copy()
    negative[4] = [1.5, -0.5, 0.0]  # sums to 1, but is no probability
    with pytest.raises(DataError, match="non-negative, summing to 1"):
        adakit.select("margin", probs=negative, budget=2)
    with pytest.raises(DataError, match="NaN"):
        adakit.select("margin", logits=np.full((10, 3), np.nan), budget=2)
    for name in ("margin", "entropy"):  # one class: no top two, no classifier
        with pytest.raises(DataError, match=r"at least 2 classes, got shape \(10, 1\)"):
            adakit.select(name, logits=np.zeros((10, 1)), budget=2)
    with pytest.raises(DataError, match=r"labelled= indices must lie in \[0, 10\)"):
        adakit.select("margin", probs=p, labelled=[3, 10], budget=2)
    with pytest.raises(DataError, match=r"boolean mask must have shape \(10,\)"):
        adakit.select("margin", probs=p, labelled=np.zeros(9, dtype=bool), budget=2)
    with pytest.raises(DataError, match="labels= must have one entry per pool sample"):
        adakit.select("margin", probs=p, labelled=[1, 2], labels=[0], budget=2)


def test_finite_check_catches_one_bad_entry_and_accepts_an_overflowing_sum():
    from adakit.selection import all_finite

    x = torch.zeros(100, 7)
    assert all_finite(x)
    for bad in (math.nan, math.inf, -math.inf):
        y = x.clone()
        y[63, 5] = bad
        assert not all_finite(y)
    big = torch.full((4, 3), 3e38)  # finite entries whose float32 sum overflows to inf
    assert not torch.isfinite(big.sum()) and all_finite(big)
    with pytest.raises(DataError, match="embeddings= holds NaN"):
        adakit.select("badge", probs=np.full((4, 2), 0.5), embeddings=np.array([[0.0], [1], [np.inf], [2]]), budget=2)


def test_probs_checked_from_their_row_sums():
    """probs= skips the separate finiteness pass: a bad entry must still be named as NaN/inf, and entries so large
    that a row's sum overflows are no probabilities (not a NaN error)."""
    p = np.full((6, 4), 0.25, dtype=np.float32)
    for bad in (np.nan, np.inf, -np.inf):
        q = p.copy()
        q[3, 2] = bad
        with pytest.raises(DataError, match=r"probs= holds NaN or infinite values"):
            adakit.select("margin", probs=q, budget=2)
    q = p.copy()
    q[1] = 3e38  # finite, but its row sums to inf
    with pytest.raises(DataError, match="non-negative, summing to 1"):
        adakit.select("margin", probs=q, budget=2)
    assert len(adakit.select("margin", probs=p, budget=2).indices) == 2


def test_labelled_mask_and_index_array_exclude_the_same_samples():
    logits = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    idx = np.array([0, 5, 7, 29])
    mask = np.isin(np.arange(30), idx)
    a = adakit.select("entropy", logits=logits, labelled=idx, budget=26)
    b = adakit.select("entropy", logits=logits, labelled=torch.as_tensor(mask), budget=40)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert sorted(a.indices) == sorted(set(range(30)) - set(idx))  # every unlabelled one, no labelled one
    # a 2-D index array was flattened without a word ((N, 1) columns, or an (rows, cols) pair from np.nonzero)
    for name in ("labelled", "exclude"):
        with pytest.raises(DataError, match=rf"{name}= as indices must be one-dimensional, got shape \(4, 1\)"):
            adakit.select("entropy", logits=logits, budget=3, **{name: idx[:, None]})
    # probs are softmax(logits): margin on either gives the same order
    np.testing.assert_array_equal(adakit.select("margin", logits=logits, budget=5).indices,
                                  adakit.select("margin", probs=torch.softmax(logits, 1).numpy(), budget=5).indices)


def test_masks_as_integers_seeds_and_labels_are_checked():
    logits = torch.randn(30, 4, generator=torch.Generator().manual_seed(0))
    mask = np.zeros(30, np.uint8)
    mask[[2, 3]] = 1
    with pytest.raises(DataError, match="labelled= is an integer array of 0s and 1s.*mask.astype\\(bool\\)"):
        adakit.select("margin", logits=logits, labelled=mask, budget=3)
    with pytest.raises(DataError, match="exclude= is an integer array of 0s and 1s"):
        adakit.select("margin", logits=logits, exclude=mask.astype(np.int64), budget=3)
    picked = adakit.select("margin", logits=logits, labelled=mask.astype(bool), budget=28).indices
    assert 2 not in picked and 3 not in picked and len(picked) == 28
    for seed in (-1, "a", 1.5):
        with pytest.raises(ConfigError, match="seed= must be what numpy.random.default_rng takes"):
            adakit.select("random", logits=logits, budget=3, seed=seed)
    for seed in ([0, 1], np.random.SeedSequence(1), np.int64(7)):  # what default_rng takes (the loop: [seed, round])
        assert len(adakit.select("random", logits=logits, budget=3, seed=seed).indices) == 3
    with pytest.raises(DataError, match="labels= must hold class indices .* map class names to their indices"):
        adakit.select("coreset", logits=logits, embeddings=logits, labelled=[0, 1], labels=["a", "b"], budget=3)
    with pytest.raises(DataError, match="labels= must hold class indices in \\[0, 4\\) or -1 .* from 0 to 7"):
        adakit.select("coreset", logits=logits, embeddings=logits, labelled=[0, 1], labels=[0, 7], budget=3)


def test_modules_are_tried_on_a_few_rows_before_the_work_and_their_failures_named():
    logits, f = torch.randn(40, 4), torch.randn(40, 8)
    cases = [("aada", "domain_discriminator", nn.Linear(7, 1), "failed on 16 rows .*mat1 and mat2 shapes"),
             ("aada", "domain_discriminator", lambda x: x.numpy()[:, 0], "returned a ndarray"),
             ("aada", "domain_discriminator", nn.Linear(8, 3), "returned shape \\(16, 3\\) .*\\(N,\\) or \\(N, 1\\)"),
             ("sdm_g", "head", nn.Sequential(nn.Linear(8, 3)), "head= returned shape \\(16, 3\\) .*\\(N, 4\\)"),
             ("sdm_g", "head", nn.Linear(8, 3), "head= has a \\(3, 8\\) weight, one row per class, but logits= "
                                                "have 4 classes"),
             ("sage", "class_discriminator", nn.Linear(8, 3), "class_discriminator= returned shape \\(16, 3\\)")]
    for strategy, keyword, module, msg in cases:
        with pytest.raises(DataError, match=msg):
            adakit.select(strategy, logits=logits, embeddings=f, budget=3, **{keyword: module})
    disc = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    double = nn.Linear(8, 4).double()  # a float64 module gets its rows in float64
    assert len(adakit.select("sdm_g", logits=logits, embeddings=f, budget=3, head=double).indices) == 3
    before = disc[1].running_mean.clone()
    assert len(adakit.select("aada", logits=logits, embeddings=f, budget=3, domain_discriminator=disc).indices) == 3
    assert disc.training and torch.equal(disc[1].running_mean, before)  # called in eval mode, mode restored


def test_float64_discriminators_and_random_functions():
    """A float64 discriminator gets float64 rows (it raised a dtype error in the pass after the check); a function
    that is random between calls (a module with dropout in training mode inside it) is named in a warning."""
    torch.manual_seed(0)
    logits, f = torch.randn(40, 4), torch.randn(40, 8)
    disc = nn.Sequential(nn.Linear(8, 6), nn.Dropout(0.5), nn.Linear(6, 1))
    ref = adakit.select("aada", logits=logits, embeddings=f, budget=5, domain_discriminator=disc)
    got = adakit.select("aada", logits=logits, embeddings=f, budget=5, domain_discriminator=disc.double())
    np.testing.assert_array_equal(got.indices, ref.indices)
    dann64 = adakit.objective("dann", feature_dim=8, num_classes=4).to(torch.float64)  # as the README says
    assert len(adakit.select("aada", logits=logits, embeddings=f, budget=5, objective=dann64).indices) == 5
    disc.float().train()
    with pytest.warns(RuntimeWarning, match="domain_discriminator= gave other outputs for the same rows"):
        adakit.select("aada", logits=logits, embeddings=f, budget=5, domain_discriminator=lambda x: disc(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adakit.select("aada", logits=logits, embeddings=f, budget=5, domain_discriminator=lambda x: disc.eval()(x))


def test_bfloat16_probabilities_are_accepted_within_their_rounding():
    """A bfloat16 softmax sums to 1 only to ~0.004; float32 rows that far off are still refused."""
    p = torch.softmax(3 * torch.randn(300, 65, generator=torch.Generator().manual_seed(0)), 1)
    half = p.bfloat16()
    assert float((half.float().sum(1) - 1).abs().max()) > 1e-3  # beyond the float32 tolerance
    assert len(adakit.select("margin", probs=half, budget=5).indices) == 5
    assert np.isfinite(adakit.validate("entropy", probs=half))
    with pytest.raises(DataError, match="rows must be probabilities"):
        adakit.select("margin", probs=half.float() * 1.003, budget=5)


def test_torch_inputs_of_any_dtype_give_the_float32_selection():
    g = torch.Generator().manual_seed(1)
    logits, feats = torch.randn(40, 3, generator=g), torch.randn(40, 5, generator=g)
    ref = adakit.select("badge", logits=logits, embeddings=feats, budget=6, seed=2)
    got = adakit.select("badge", logits=logits.double().numpy(), embeddings=feats.double(), budget=6, seed=2)
    np.testing.assert_array_equal(got.indices, ref.indices)
    assert got.indices.dtype == np.int64


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize(("name", "params"), [(n, p) for n in sorted(STRATEGIES.names())
                                              for p in [{}] + EXTRA_PARAMS.get(n, [])])
def test_cuda_inputs_give_the_cpu_selection(name, params, gpu_kmeans_pp_schedule):
    """Every strategy computes on the GPU when given CUDA tensors, and picks what it picks on the CPU."""
    from adakit.selection import make_strategy

    cls = STRATEGIES.get(name)
    view = pool_view(_objective_for(cls))
    cpu = adakit.select(name, budget=5, seed=0, **view_arrays(view), **params)
    strat = make_strategy(name, params)
    loop_cpu = strat.select(view, 5, np.random.default_rng([0, 1]))  # the loop's path on a CPU run
    on_gpu = {k: v.cuda() if isinstance(v, (torch.Tensor, nn.Module)) else v for k, v in view_arrays(view).items()}
    got = adakit.select(name, budget=5, seed=0, **on_gpu, **params)
    assert isinstance(got.indices, np.ndarray) and got.indices.dtype == np.int64
    np.testing.assert_array_equal(got.indices, cpu.indices)
    np.testing.assert_allclose(got.scores, cpu.scores, rtol=1e-4, atol=1e-6)
    # the loop's path on a CUDA run: a PoolView whose outputs stay on the GPU, as the loop builds it
    gpu_view = pool_view(_objective_for(cls))
    gpu_view.model.cuda()
    if gpu_view.objective is not None:
        gpu_view.objective.cuda()
    gpu_view.device, gpu_view.outputs_device = torch.device("cuda"), torch.device("cuda")
    assert gpu_view.embeddings.is_cuda and gpu_view.probs.is_cuda
    loop_gpu = strat.select(gpu_view, 5, np.random.default_rng([0, 1]))
    np.testing.assert_array_equal(loop_gpu.indices, loop_cpu.indices)


def test_import_adakit_is_cheap_and_exports_the_api_lazily():
    import subprocess
    import sys

    code = ("import sys, adakit; assert 'torch' not in sys.modules, 'import adakit pulled in torch'; "
            "assert callable(adakit.select) and 'torch' in sys.modules; "
            "from adakit import Selection, Strategy, Objective, register_strategy, register_objective; "
            "import adakit.selection; assert callable(adakit.select); "
            "assert {'select', 'register_strategy'} <= set(dir(adakit))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        adakit.nope  # noqa: B018


@pytest.mark.parametrize("name", ["random", "entropy", "confidence", "margin", "sdm"])
def test_an_empty_pool_gives_an_empty_selection(name):
    sel = adakit.select(name, probs=np.zeros((0, 3)), budget=2)
    assert sel.indices.shape == (0,) and sel.scores.shape == (0,)


def test_readme_snippet_of_strategies_as_functions_runs(readme_python):
    (code,) = readme_python("### Strategies as functions")[:1]
    ns: dict = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), ns)
    assert len(ns["sel"].indices) == 10 and not np.isin(ns["sel"].indices, ns["pending"]).any()
    assert not ns["labelled"][ns["sel"].indices].any()


def test_functions_that_are_differentiated_must_pass_gradients():
    """SAGE and SDM-G differentiate class_discriminator= / head=: a function under torch.no_grad or returning
    detached outputs gave zero gradients and hence arbitrary picks (SAGE), or a raw autograd error (SDM-G)."""
    torch.manual_seed(0)
    logits, f = torch.randn(40, 4), torch.randn(40, 8)
    disc = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4)).eval()

    @torch.no_grad()
    def no_grad(x):
        return disc(x)

    for bad in (no_grad, lambda x: disc(x).detach(), lambda x: disc(x.detach())):
        with pytest.raises(DataError, match="class_discriminator= gives outputs with no gradient"):
            adakit.select("sage", logits=logits, embeddings=f, class_discriminator=bad, budget=5)
        with pytest.raises(DataError, match="head= gives outputs with no gradient"):
            adakit.select("sdm_g", logits=logits, embeddings=f, head=bad, budget=5)
    ok = adakit.select("sage", logits=logits, embeddings=f, class_discriminator=lambda x: disc(x), budget=5)
    assert float(ok.scores.max()) > 0


def test_module_outputs_and_head_weights_of_the_wrong_shape_are_named():
    logits, f = torch.randn(40, 4), torch.randn(40, 8)
    with pytest.raises(DataError, match=r"domain_discriminator= returned shape \(\) for 16 rows"):
        adakit.select("aada", logits=logits, embeddings=f, budget=3, domain_discriminator=lambda x: x.sum())
    disc = nn.Linear(8, 4)
    with pytest.raises(DataError, match=r"class_discriminator= returned shape \(16, 4, 1\)"):
        adakit.select("sage", logits=logits, embeddings=f, budget=3, class_discriminator=lambda x: disc(x)[:, :, None])
    w = torch.randn(4, 8)
    for bad in (w.T, torch.randn(5, 8)):
        for kw in ({}, {"embeddings": f}):
            with pytest.raises(DataError, match=r"head_weight= must be \(C, m\) (= \(4, |with C = 4 rows)"):
                adakit.select("sdm_g", logits=logits, head_weight=bad, budget=3, **kw)
    assert len(adakit.select("sdm_g", logits=logits, embeddings=f, head_weight=w, budget=3).indices) == 3


def test_probabilities_given_as_logits_and_nearly_normalised_probabilities_are_named():
    z = torch.randn(30, 5)
    p = torch.softmax(3 * z, 1)
    with pytest.raises(DataError, match="every row of logits= is non-negative and sums to 1: these are probabilities"):
        adakit.select("badge", logits=p, embeddings=torch.randn(30, 6), budget=3)
    assert len(adakit.select("badge", probs=torch.softmax(p, 1), logits=p, embeddings=torch.randn(30, 6),
                             budget=3).indices) == 3  # really logits: say so with their softmax
    with pytest.raises(DataError, match=r"rows must be probabilities summing to 1 .*rounded or truncated\? "
                                        r"Renormalise them"):
        adakit.select("margin", probs=np.round(p.numpy(), 2) + 0.004, budget=3)


def test_labels_and_labelled_must_agree():
    z = torch.randn(30, 3)
    lab = np.full(30, -1)
    lab[[17, 22, 8]] = [0, 1, 2]
    picks = adakit.select("margin", logits=z, labels=lab, budget=3).indices  # labels alone mark the labelled
    assert not set(picks.tolist()) & {17, 22, 8}
    with pytest.raises(DataError, match=r"labels= gives a label to 2 sample\(s\) that labelled= does not name "
                                        r"\(e\.g\. sample 17\)"):
        adakit.select("margin", logits=z, labels=lab, labelled=[8], budget=3)
    with pytest.raises(DataError, match="labelled= names sample 5 more than once with different labels"):
        adakit.select("coreset", logits=z, embeddings=z, labelled=[5, 5], labels=[0, 1], budget=3)
    mask = np.zeros(30, dtype=bool)
    mask[[3, 4]] = True
    same = adakit.select("coreset", logits=z, embeddings=z, labelled=mask, labels=[0, 1], budget=3)
    ref = adakit.select("coreset", logits=z, embeddings=z, labelled=[3, 4], labels=[0, 1], budget=3)
    np.testing.assert_array_equal(same.indices, ref.indices)
    with pytest.raises(DataError, match=r"or one per sample in labelled= \(2\), got 3"):
        adakit.select("margin", logits=z, labelled=mask, labels=[0, 1, 2], budget=3)
    with pytest.raises(DataError, match="an integer array of 0s and 1s"):  # on a pool of two: [0, 0] is a mask
        adakit.select("margin", logits=z[:2], labelled=np.array([0, 0]), budget=2)
    assert adakit.select("margin", logits=z[:2], labelled=np.array([0, 1]), budget=2).indices.size == 0


def test_read_only_arrays_give_no_torch_warning_and_aada_names_probabilities():
    z = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    frozen = np.broadcast_to(z, z.shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adakit.select("margin", logits=frozen, budget=3)
        adakit.validate("snd", probs=np.broadcast_to(np.full((40, 4), 0.25), (40, 4)))
    f = torch.randn(40, 8)
    disc = nn.Sequential(nn.Linear(8, 1), nn.Sigmoid())
    with pytest.warns(UserWarning, match=r"every value of domain_discriminator= on the pool lies in \[0, 1\]"):
        adakit.select("aada", logits=z, embeddings=f, budget=3, domain_discriminator=disc)
    with pytest.warns(UserWarning, match=r"every value of domain_logits= on the pool lies in \[0, 1\]"):
        adakit.select("aada", logits=z, budget=3, domain_logits=torch.rand(40))
    with warnings.catch_warnings():  # an adakit objective's discriminator: not second-guessed (its logits may all
        warnings.simplefilter("error")  # lie in [0, 1] before it has trained, as in the loop)
        adakit.select("aada", logits=z, embeddings=f, budget=3, objective=_SigmoidHolder(disc))
    with pytest.warns(UserWarning, match=r"source_embeddings= is read only with use_source=True \(the source"):
        adakit.select("coreset", logits=z, embeddings=f, source_embeddings=f, budget=3)


def test_embeddings_whose_squared_distances_overflow_are_named():
    """coreset on features of magnitude 1e20 ended in numpy's "high <= 0" (distances inf/NaN) and BADGE returned
    NaN scores: refused, naming the keyword."""
    z, f = torch.randn(30, 3), torch.randn(30, 4)
    for name in ("coreset", "badge"):
        with pytest.raises(DataError, match=r"embeddings= holds values up to .*e\+20, whose squared distances"):
            adakit.select(name, logits=z, embeddings=f * 1e20, budget=3)
    assert len(adakit.select("coreset", logits=z, embeddings=f * 1e12, budget=3).indices) == 3


def test_float64_values_beyond_float32_are_named_as_such():
    """float64 logits or features above 3.4e38 became infinite in the float32 copy and were reported as "holds NaN
    or infinite values", which they did not."""
    z, f = np.random.default_rng(0).normal(size=(30, 3)), np.random.default_rng(1).normal(size=(30, 4))
    for kw in ({"logits": z * 1e39, "embeddings": f}, {"logits": z, "embeddings": f * 1e39}):
        name = "logits" if kw["logits"] is not z else "embeddings"
        with pytest.raises(DataError, match=rf"{name}= holds values up to .*e\+39, beyond float32's range"):
            adakit.select("coreset", budget=3, **kw)
    with pytest.raises(DataError, match=r"embeddings= holds NaN or infinite values"):
        adakit.select("coreset", logits=z, embeddings=np.where(f > 1, np.inf, f), budget=3)


def test_embeddings_whose_squared_distances_underflow_are_named():
    """Features of magnitude 1e-30 (or 1e-24 in float32) have squared distances below float32's smallest number:
    CoreSet, BADGE and CLUE saw ties everywhere and picked at random (CoreSet kept 0 of 12 k-center picks). Refused
    like those that overflow; all-zero features (identical samples) are still taken."""
    z, f = torch.randn(30, 3), torch.randn(30, 4)
    for name in ("coreset", "badge", "clue"):
        with pytest.raises(DataError, match=r"embeddings= holds values of magnitude at most .*e-30, whose squared "
                                            r"distances underflow float32"):
            adakit.select(name, logits=z, embeddings=f.double() * 1e-30, budget=3)
    # float64 values below float32's smallest number are zeros in the float32 copy: named, not taken as identical
    with pytest.raises(DataError, match=r"embeddings= holds values of magnitude at most .*e-50"):
        adakit.select("coreset", logits=z, embeddings=f.numpy().astype(np.float64) * 1e-50, budget=3)
    with pytest.raises(DataError, match=r"source_embeddings= holds values of magnitude at most"):
        adakit.select("coreset", logits=z, embeddings=f, source_embeddings=f * 1e-24, budget=3, use_source=True)
    assert len(adakit.select("coreset", logits=z, embeddings=f * 1e-12, budget=3).indices) == 3
    assert len(adakit.select("coreset", logits=z, embeddings=f * 1e-17, budget=3).indices) == 3
    assert len(adakit.select("coreset", logits=z, embeddings=torch.zeros(30, 4), budget=3).indices) == 3


@pytest.mark.parametrize("name", ["las", "clue", "coreset", "badge"])
def test_embeddings_without_features_are_named(name):
    # embeddings of shape (N, 0) crashed in scikit-learn's KMeans (LAS, CLUE: a ValueError) or gave picks
    # computed from nothing (CoreSet, BADGE)
    with pytest.raises(DataError, match=r"embeddings= has shape \(30, 0\): no feature per sample"):
        adakit.select(name, logits=torch.randn(30, 3), embeddings=torch.zeros(30, 0), budget=3)


class _SigmoidHolder:
    """An object providing ``domain_discriminator`` as a trained objective does."""

    def __init__(self, disc):
        self.domain_discriminator = disc


def test_a_head_for_another_class_count_is_named_also_without_embeddings():
    """sdm_g with head= of 4 classes for 3-class logits and no embeddings= was a raw torch matmul error."""
    with pytest.raises(DataError, match=r"head= has a \(4, 2\) weight, one row per class, but logits= have 3 classes"):
        adakit.select("sdm_g", logits=torch.randn(8, 3), head=torch.nn.Linear(2, 4), budget=2)


def test_select_takes_a_zero_head_weight():
    # head_weight= is a linear head built by adakit (always differentiable); an all-zero one (an untrained head, a
    # probe on constant features) was refused as "outputs with no gradient"
    rng = np.random.default_rng(0)
    z, f = rng.normal(size=(20, 3)), rng.normal(size=(20, 4))
    for name in ("margin", "sdm_g"):
        sel = adakit.select(name, logits=z, embeddings=f, head_weight=np.zeros((3, 4)), budget=3)
        assert len(set(np.asarray(sel.indices).tolist())) == 3 and np.isfinite(np.asarray(sel.scores)).all()
    # with a zero head SDM-G's gradient term vanishes: its picks are margin sampling's
    sdm_g = adakit.select("sdm_g", logits=z, embeddings=f, head_weight=np.zeros((3, 4)), budget=3)
    margin = adakit.select("margin", logits=z, budget=3)
    assert np.asarray(sdm_g.indices).tolist() == np.asarray(margin.indices).tolist()


def test_scipy_sparse_arrays_are_read_as_their_dense_rows():
    """A sparse embedding matrix (TF-IDF rows, load_svmlight_file) was 'must be a numpy array or torch tensor (can't
    convert np.ndarray of type numpy.object_...)', though load_run(...).predict takes it: now its dense rows, the same
    selection as the dense array."""
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(0)
    f = rng.normal(size=(40, 6)) * (rng.random((40, 6)) < 0.4)
    z = rng.normal(size=(40, 3))
    for name in ("coreset", "badge"):
        dense = adakit.select(name, logits=z, embeddings=f, budget=4, labelled=[0, 1])
        sparse = adakit.select(name, logits=sp.csr_matrix(z), embeddings=sp.csr_matrix(f), budget=4, labelled=[0, 1])
        assert dense.indices.tolist() == sparse.indices.tolist()


def test_budget_as_an_integer_tensor_and_nan_labels_are_named():
    """budget=torch.tensor(3) (a count computed in torch) was refused as not an integer; labels= holding NaN for
    unknown said only 'got dtype float64'. The tensor is now the count it holds, and NaN labels are named with the
    fix (-1 marks unknown)."""
    z = np.random.default_rng(0).normal(size=(20, 3))
    assert adakit.select("margin", logits=z, budget=torch.tensor(3)).indices.tolist() == \
        adakit.select("margin", logits=z, budget=3).indices.tolist()
    for bad in (torch.tensor(2.0), torch.tensor([3, 4]), 3.0):
        with pytest.raises(ConfigError, match="budget= must be a non-negative integer"):
            adakit.select("margin", logits=z, budget=bad)
    with pytest.raises(DataError, match=r"labels= holds NaN .*mark unknown labels with -1"):
        adakit.select("margin", logits=z, budget=2, labels=np.r_[0.0, np.nan, np.full(18, -1.0)])


def test_a_transposed_head_weight_without_embeddings_names_the_class_count():
    """Without embeddings= the width m is unknown: a transposed (m, C) head_weight was told 'must be (C, m) = (4, 4)
    ..., got (8, 4)', an expected shape made up from its own width. It now names the rule it breaks: C rows."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 4))
    with pytest.raises(DataError, match=r"head_weight= must be \(C, m\) with C = 4 rows \(one per class of "
                                        r"probs=/logits=\), got \(8, 4\)"):
        adakit.select("sdm_g", logits=z, head_weight=rng.normal(size=(8, 4)), budget=3)
    with pytest.raises(DataError, match=r"head_weight= must be \(C, m\) = \(4, 8\) .* got \(8, 4\)"):
        adakit.select("sdm_g", logits=z, embeddings=rng.normal(size=(30, 8)), head_weight=rng.normal(size=(8, 4)),
                      budget=3)

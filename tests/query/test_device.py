"""Strategies compute on the device of the pool outputs (issue #15: strategies on CUDA tensors).

On a CPU machine: every strategy keeps its pool-sized tensors where they are (no numpy / ``.cpu()`` round
trip of a pool-sized tensor outside the scikit-learn / faiss steps), the tensor ranking equals numpy's, and
the ``device`` argument and `PoolView` placement work. Tests marked ``cuda`` (run by benchmarks/gpu_check.sh)
check that CUDA inputs give the CPU selections for every strategy, through `adakit.select` and `PoolView`.

Device mixes without a GPU: every strategy also runs with torch's default device set to "meta", so a tensor
created without ``device=`` cannot meet the pool's tensors unnoticed. (A `FakeTensorMode` run with inputs
faked onto "cuda" was tried first and dropped: every strategy needs data-dependent operations, ``int(argmax)``,
``nonzero``, numpy tie-breaks, which fake tensors cannot evaluate.)
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import adakit
from adakit.data.domain import TensorDomain
from adakit.errors import ConfigError
from adakit.models import Model
from adakit.models.backbones import Identity
from adakit.models.heads import LinearHead
from adakit.pool import PoolView
from adakit.query import _algorithms
from adakit.query.base import Selection, top_k
from adakit.registry import OBJECTIVES, STRATEGIES
from adakit.selection import _device

N, M, C, BUDGET = 240, 8, 5, 4
#: rows from which a tensor counts as pool-sized (LAS's b·(1 + M) = 44 candidate positions stay below)
POOL_ROWS = 100

#: every strategy with its default parameters, and the variants that take other code paths
CASES = [(name, {}) for name in STRATEGIES.names()] + [
    ("coreset", {"use_source": True}), ("sage", {"diversity": "kmeans_pp"}), ("sage", {"diversity": "none"}),
    ("sage", {"max_embedding_mb": 0.01}), ("las", {"neighbours": "pool", "oversample": 2}),
    ("las", {"search": "ivf", "nprobe": 2}), ("clue", {"kmeans": "torch"}), ("las", {"kmeans": "torch"}),
] + ([("clue", {"kmeans": "faiss"})] if _algorithms._faiss() is not None else [])  # a GPU machine may lack faiss
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items()) or 'default'}" for n, p in CASES]

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _objective(name: str):
    """An objective providing what the strategy needs (SDM-G: sdm_a, for its training-loss form), or None."""
    cls = STRATEGIES.get(name)
    if name == "sdm_g":
        obj_name = "sdm_a"
    elif cls.needs:
        obj_name = next(n for n in OBJECTIVES.names() if set(cls.needs) <= set(OBJECTIVES.get(n).provides))
    else:
        return None
    ocls = OBJECTIVES.get(obj_name)
    prm = {"hidden": 16} if "hidden" in ocls.Params.model_fields else {}
    return ocls(ocls.Params.validated(prm, "objective"), feature_dim=M, num_classes=C, pool_size=N)


def _pool(name: str, seed: int = 0) -> dict:
    """The keywords of `adakit.select` for a clustered synthetic pool, 10% labelled, on the CPU."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    centres = 3.0 * torch.randn(C, M, generator=g)
    y = torch.randint(C, (N,), generator=g)
    f = centres[y] + torch.randn(N, M, generator=g)
    head = nn.Linear(M, C)
    with torch.no_grad():
        z = head(f)
    labelled = np.random.default_rng(seed).permutation(N)[: N // 10]
    obj = _objective(name)
    return {"logits": z, "probs": torch.softmax(z, 1), "embeddings": f, "labelled": labelled,
            "labels": y.numpy()[labelled], "source_embeddings": centres[torch.randint(C, (50,), generator=g)],
            "head_weight": head.weight.detach(),
            "domain_discriminator": getattr(obj, "domain_discriminator", None),
            "class_discriminator": getattr(obj, "class_discriminator", None),
            "sdm_loss_form": getattr(obj, "sdm_loss_form", None)}


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_strategies_keep_pool_sized_tensors_on_their_device(name, params, monkeypatch, host_copies):
    """On a GPU nothing pool-sized may come back to the host mid-selection (only the picks do), except inside the
    documented CPU steps (conftest.CPU_STEPS: scikit-learn / faiss k-means). Exact
    neighbours use torch there (as on a GPU)."""
    mode = host_copies(POOL_ROWS)
    monkeypatch.setattr(_algorithms, "_faiss", lambda: None if params.get("kmeans") != "faiss" else pytest.importorskip(
        "faiss"))
    kw = _pool(name)
    with mode:
        sel = adakit.select(name, budget=BUDGET, seed=0, device="cpu", **kw, **params)
    assert mode.copies == [], f"{name} took pool-sized tensors to the host: {mode.copies}"
    assert isinstance(sel.indices, np.ndarray) and sel.indices.dtype == np.int64 and len(sel.indices) == BUDGET
    assert isinstance(sel.scores, np.ndarray) and sel.scores.dtype == np.float64


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_every_tensor_a_strategy_creates_states_its_device(name, params):
    """With the default device set to "meta" (no data), a tensor created without ``device=`` lands there and
    clashes with the CPU pool (as a CPU tensor would with a CUDA pool): the selection must not change."""
    kw = _pool(name)
    ref = adakit.select(name, budget=BUDGET, seed=0, **kw, **params)
    with torch.device("meta"):
        got = adakit.select(name, budget=BUDGET, seed=0, **kw, **params)
    np.testing.assert_array_equal(got.indices, ref.indices)
    np.testing.assert_array_equal(got.scores, ref.scores)


def test_device_cpu_and_float64_inputs_give_the_default_selection():
    kw = _pool("badge")
    ref = adakit.select("badge", budget=BUDGET, seed=1, **kw)
    wide = {k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in kw.items()}
    got = adakit.select("badge", budget=BUDGET, seed=1, device=torch.device("cpu"), **wide)
    np.testing.assert_array_equal(got.indices, ref.indices)
    np.testing.assert_array_equal(got.scores, ref.scores)


def test_device_argument_errors_name_the_value():
    p = np.full((10, 3), 1 / 3)
    with pytest.raises(ConfigError, match=r"adakit\.select\('margin'\): device='gpu0' is not a torch device"):
        adakit.select("margin", probs=p, budget=2, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="device='cuda' but no CUDA device is available"):
            adakit.select("margin", probs=p, budget=2, device="cuda")


def test_default_device_is_the_first_tensor_among_probs_logits_embeddings():
    meta = torch.empty(3, 2, device="meta")
    assert _device(None, (np.zeros((3, 2)), meta, torch.zeros(3, 2)), "w") == torch.device("meta")
    assert _device(None, (None, np.zeros((3, 2)), None), "w") == torch.device("cpu")
    assert _device("cpu", (meta,), "w") == torch.device("cpu")  # an explicit device wins


def test_top_k_on_a_tensor_ranks_as_numpy_with_ties():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 6, (500,), generator=g).double() / 7  # many ties, broken by the rng
    scores[::50] = float("inf")
    cand = np.arange(1000, 1500)
    for k in (1, 37, 500, 600):
        for seed in range(3):
            a = top_k(scores, cand, k, np.random.default_rng(seed))
            b = top_k(scores.numpy(), cand, k, np.random.default_rng(seed))
            np.testing.assert_array_equal(a.indices, b.indices)
            np.testing.assert_array_equal(a.scores, b.scores)
    nan = scores.clone()
    nan[1::3] = float("nan")  # NaN scores are ranked last, as numpy's lexsort does
    for k in (5, 400):
        np.testing.assert_array_equal(top_k(nan, cand, k, np.random.default_rng(2)).indices,
                                      top_k(nan.numpy(), cand, k, np.random.default_rng(2)).indices)
    f32 = torch.rand(300, generator=g)  # float32 scores: ranked in float64, as numpy's path
    np.testing.assert_array_equal(top_k(f32, cand[:300], 50, np.random.default_rng(1)).indices,
                                  top_k(f32.numpy(), cand[:300], 50, np.random.default_rng(1)).indices)


def test_cluster_sums_on_a_gpu_equal_the_cpu_sums():
    """The IVF's k-means sums clusters by a one-hot product off the CPU (deterministic on a GPU)."""
    g = torch.Generator().manual_seed(0)
    x, a = torch.randn(500, 6, generator=g), torch.randint(7, (500,), generator=g)
    a[a == 3] = 4  # an empty cluster
    ref = _algorithms._cluster_sums(x, a, 7)
    torch.testing.assert_close(_algorithms._cluster_sums(x, a, 7, onehot=True), ref)
    assert (ref[3] == 0).all()


def test_selection_from_tensors_is_numpy():
    sel = Selection(torch.tensor([3, 1], dtype=torch.int32), torch.tensor([0.5, 0.25], dtype=torch.float32))
    assert sel.indices.dtype == np.int64 and sel.scores.dtype == np.float64
    assert sel.indices.tolist() == [3, 1] and sel.scores.tolist() == [0.5, 0.25]


def _poolview(outputs_on_device: bool, device: str = "cpu") -> PoolView:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(30, M, generator=g)
    pool = TensorDomain(name="t", classes=[f"c{i}" for i in range(C)], ids=np.array([f"t/{i}" for i in range(30)]),
                        y=np.zeros(30, dtype=np.int64), x=x)
    # a source of its own: were it the pool itself, every pool sample would sit at distance 0 from a source
    # sample and CoreSet's (use_source) farthest-first would pick among ties that float rounding decides
    source = TensorDomain(name="s", classes=pool.classes, ids=np.array([f"s/{i}" for i in range(20)]),
                          y=np.zeros(20, dtype=np.int64), x=torch.randn(20, M, generator=g) + 0.5)
    torch.manual_seed(0)  # the same head weights for every view
    model = Model(Identity(M), None, LinearHead(M, C)).to(device)
    return PoolView(model, pool, np.zeros(30, dtype=bool), device=device, outputs_on_device=outputs_on_device,
                    source=source)


def test_pool_view_holds_cpu_outputs_without_a_copy():
    for on_device in (False, True):  # a CPU run: the very tensors forward_domain returned, no second copy
        view = _poolview(on_device)
        f, z = view._outputs
        assert view.embeddings is f and view.logits is z
        assert view.head_weight.device.type == "cpu"


def test_pool_view_keeps_its_outputs_on_the_device_and_follows_replaced_outputs():
    view = _poolview(True)
    view.outputs_device = torch.device("meta")  # as for device="cuda": the held outputs go to that device
    f, z = torch.randn(30, M), torch.randn(30, C)
    view.__dict__["_outputs"] = (f, z)
    assert view.embeddings.device.type == "meta" and view.logits.device.type == "meta"
    view.__dict__["_outputs"] = (f[:10], z[:10])  # replaced (as the loop's cached pool pass): moved again
    assert view.embeddings.shape[0] == 10
    assert _poolview(False).outputs_device == torch.device("cpu")


# --------------------------------------------------------------------------------------------- CUDA


def _to(kw: dict, device: str, modules: bool = True) -> dict:
    """Tensors (and copies of the modules, with ``modules``) on ``device``; the originals stay where they are."""
    import copy

    def move(v):
        if isinstance(v, torch.Tensor):
            return v.to(device)
        return copy.deepcopy(v).to(device) if modules and isinstance(v, nn.Module) else v

    return {k: move(v) for k, v in kw.items()}


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_cuda_pool_gives_the_cpu_selection(name, params, gpu_kmeans_pp_schedule):
    kw = _pool(name)
    ref = adakit.select(name, budget=BUDGET, seed=0, **kw, **params)
    for given in (_to(kw, "cuda"), _to(kw, "cuda", modules=False)):  # modules on the GPU, or left on the CPU
        got = adakit.select(name, budget=BUDGET, seed=0, **given, **params)
        assert isinstance(got.indices, np.ndarray) and got.indices.dtype == np.int64
        np.testing.assert_array_equal(got.indices, ref.indices)
        np.testing.assert_allclose(got.scores, ref.scores, rtol=1e-4, atol=1e-6)
    got = adakit.select(name, budget=BUDGET, seed=0, device="cuda", **{k: v.numpy() if isinstance(v, torch.Tensor)
                                                                       else v for k, v in kw.items()}, **params)
    np.testing.assert_array_equal(got.indices, ref.indices)


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("name", ["margin", "sdm"])
def test_cuda_margin_scores_are_float64_and_exact(name):
    kw = _pool(name)
    ref = adakit.select(name, probs=kw["probs"], budget=20, seed=0)
    got = adakit.select(name, probs=kw["probs"].cuda(), budget=20, seed=0)
    np.testing.assert_array_equal(got.indices, ref.indices)
    np.testing.assert_array_equal(got.scores, ref.scores)  # 1 − (p1 − p2) in float64 on the GPU: same bits


@pytest.mark.cuda
@cuda
def test_cuda_pool_view_runs_strategies_on_the_gpu(gpu_kmeans_pp_schedule):
    from adakit.selection import make_strategy

    cpu = _poolview(False)
    gpu = _poolview(True, "cuda")
    assert gpu.embeddings.is_cuda and gpu.logits.is_cuda and gpu.source_embeddings.is_cuda
    assert gpu.head_weight.is_cuda
    for name in ("margin", "badge", "coreset", "las", "clue", "sdm_g"):
        strat = make_strategy(name, {"use_source": True} if name == "coreset" else {})
        a = strat.select(cpu, 3, np.random.default_rng([0, 1]))
        b = strat.select(gpu, 3, np.random.default_rng([0, 1]))
        np.testing.assert_array_equal(b.indices, a.indices)


@pytest.mark.cuda
@cuda
def test_cuda_bounded_kmeans_runs_on_the_gpu_as_on_the_cpu(monkeypatch):
    """Above EXACT_KMEANS_MAX a GPU pool's k-means (CLUE, LAS) is the torch one on the GPU: the same seeding draws
    and Lloyd iterations as on the CPU, centroids equal to float rounding, and the same picks."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 16, generator=g) + 3.0 * torch.randn(50, 16, generator=g)[torch.randint(50, (4000,),
                                                                                                  generator=g)]
    w = torch.rand(4000, generator=g).double()
    cpu = _algorithms.weighted_kmeans(x, 40, np.random.default_rng(0), weights=w, backend="torch")
    gpu = _algorithms.weighted_kmeans(x.cuda(), 40, np.random.default_rng(0), weights=w.cuda(), backend="torch")
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)
    monkeypatch.setattr(_algorithms, "EXACT_KMEANS_MAX", 0)
    calls = []
    real = _algorithms.weighted_lloyd
    monkeypatch.setattr(_algorithms, "weighted_lloyd", lambda *a, **k: calls.append(a[0].device.type) or real(*a, **k))
    kw = _pool("clue")
    ref = adakit.select("clue", budget=BUDGET, seed=0, kmeans="torch", **kw)
    got = adakit.select("clue", budget=BUDGET, seed=0, **_to(kw, "cuda"))  # auto: torch on the GPU
    np.testing.assert_array_equal(got.indices, ref.indices)
    assert calls == ["cpu", "cuda"]


def test_query_speed_cells_run_the_pool_on_the_given_device(monkeypatch):
    """benchmarks/query_speed.py --device (gpu_check.sh step 4 passes cuda): the cell's pool and modules move
    there and `adakit.select` computes there; here on the CPU, the path a GPU run takes."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import query_speed

    pool = query_speed.SyntheticPool(300).to("meta")  # every array and module follows
    assert {pool.embeddings.device.type, pool.probs.device.type, pool.head.weight.device.type,
            next(pool.objective.parameters()).device.type} == {"meta"}
    monkeypatch.setenv("QS_DEVICE", "cpu")
    monkeypatch.setenv("QS_BUDGET", "3")
    res = query_speed.child("margin", 400, False, 1)
    assert res["adakit"]["wall"] > 0 and "adakit_gpu_peak_mb" not in res

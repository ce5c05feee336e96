"""Pool outputs kept on the model's device (issue #15, GPU path): `forward_domain(keep_on_device=True)`, the
`PoolView` and loop plumbing, and the consumers of the pool outputs (validators, accuracy, PAA's neighbours).

Without a GPU: the option is checked on the "meta" device (a tensor there cannot be copied to the host, so any
host copy fails), with a counter of host copies, and a CPU loop round taking the CUDA code path (its outputs
"kept on the device") must record exactly what the default path records. The ``cuda`` test (run by
benchmarks/gpu_check.sh) checks a CUDA loop round against the CPU-output path's selection.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import adakit.inference
import adakit.loop
import adakit.pool
from adakit.adapt.paa import AnchorParams, AnchorSet, _knn
from adakit.config import build_config
from adakit.data.domain import TensorDomain
from adakit.inference import accuracy, forward_domain
from adakit.ledger import Ledger
from adakit.loop import ActiveLoop
from adakit.models import Model
from adakit.models.backbones import Identity
from adakit.models.heads import LinearHead
from adakit.pool import PoolView

N, M, C = 30, 8, 5
TINY = {"seed": 0, "data": {"format": "demo"}, "model": {"hidden_dim": 16, "bottleneck_dim": 8},
        "query": {"strategy": "margin"}, "budget": {"total": 0.02, "rounds": 1},
        "train": {"warmup_iters": 20, "round_iters": 10, "threads": 1, "device": "cpu"}}


def _domain(n: int = N) -> TensorDomain:
    x = torch.randn(n, M, generator=torch.Generator().manual_seed(0))
    return TensorDomain(name="t", classes=[f"c{i}" for i in range(C)], ids=np.array([f"t/{i}" for i in range(n)]),
                        y=np.arange(n, dtype=np.int64) % C, x=x)


def _model(device: str = "cpu") -> Model:
    torch.manual_seed(0)
    return Model(Identity(M), None, LinearHead(M, C)).to(device)


# ------------------------------------------------------------------------------------------ forward_domain


def test_keep_on_device_leaves_the_outputs_on_the_model_device():
    """On "meta" (like CUDA: a copy to the host is real work; here it fails) the kept outputs stay there."""
    f, z = forward_domain(_model("meta"), _domain(), 7, "meta", keep_on_device=True)
    assert (f.device.type, z.device.type, f.shape, z.shape, f.dtype) == ("meta", "meta", (N, M), (N, C),
                                                                           torch.float32)
    with pytest.raises(NotImplementedError):  # the default asks for the host copy
        forward_domain(_model("meta"), _domain(), 7, "meta")


def test_cpu_outputs_are_identical_and_never_copied(host_copies):
    model, dom = _model(), _domain()
    mode = host_copies(N, to_cpu=True)
    with mode:
        kept = forward_domain(model, dom, 7, "cpu", keep_on_device=True)
    assert mode.copies == []
    with mode:
        default = forward_domain(model, dom, 7, "cpu")
    assert [c[:2] for c in mode.copies] == [("cpu", "adakit.inference.forward_domain")] * 2  # no-ops on a CPU tensor
    with torch.no_grad():
        ref = model(dom.x)
    for a, b, r in zip(kept, default, ref):
        torch.testing.assert_close(a, r, rtol=0, atol=0)  # batches of 7 written in place = one pass over all
        torch.testing.assert_close(b, r, rtol=0, atol=0)


class _Half(nn.Module):
    """bf16 outputs (as under autocast): forward_domain returns them as float32."""

    feature_dim, num_classes = M, C

    def forward(self, x):
        return x.bfloat16(), x[:, :C].bfloat16()


def test_low_precision_outputs_become_float32():
    dom = _domain()
    f, z = forward_domain(_Half(), dom, 4, keep_on_device=True)
    assert f.dtype == z.dtype == torch.float32
    torch.testing.assert_close(f, dom.x.bfloat16().float(), rtol=0, atol=0)
    torch.testing.assert_close(z, dom.x[:, :C].bfloat16().float(), rtol=0, atol=0)


def test_accuracy_computes_where_the_logits_are():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0], [0.0, 0.5]])
    y = np.array([0, 0, 0, -1])
    assert accuracy(logits, y) == {"accuracy": pytest.approx(2 / 3), "mean_class_accuracy": pytest.approx(2 / 3)}
    with torch.device("meta"):  # a label tensor created without device= would land on "meta" and clash
        assert accuracy(logits, y)["accuracy"] == pytest.approx(2 / 3)


# -------------------------------------------------------------------------------------------- PoolView


def test_pool_view_on_the_device_makes_its_pool_pass_there_without_a_copy(monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("keep_on_device"))
        return forward_domain(*args, **kwargs)

    monkeypatch.setattr(adakit.pool, "forward_domain", spy)
    view = PoolView(_model("meta"), _domain(), np.zeros(N, dtype=bool), device="meta", outputs_on_device=True,
                    source=_domain(12))
    f, z = view._outputs
    assert f.device.type == "meta" and view.embeddings is f and view.logits is z  # no second copy
    assert view.source_embeddings.device.type == "meta" and view.head_weight.device.type == "meta"
    assert calls == [True, True]
    cpu = PoolView(_model(), _domain(), np.zeros(N, dtype=bool), outputs_on_device=False)
    assert cpu.embeddings is cpu._outputs[0] and calls[-1] is False


# --------------------------------------------------------------------------------------------------- PAA


def test_paa_neighbours_stay_on_the_device_of_the_embeddings(monkeypatch):
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs.get("keep_on_device"))
        return forward_domain(*args, **kwargs)

    monkeypatch.setattr("adakit.adapt.paa.forward_domain", spy)
    dom = _domain()
    a = AnchorSet(AnchorParams(kind="laa", tau=0.0, k=3), _model(), dom, np.array([0, 1]), np.array([0, 1]), 4,
                  np.random.default_rng(0), "cpu", C)
    assert calls == [True]  # the features of the fit's start stay on the model's device (CUDA: the GPU)
    nbrs = _knn(a.emb, np.array([0, 1]), 3)
    assert nbrs.device == a.emb.device and not (nbrs == torch.tensor([[0], [1]])).any()  # self excluded
    assert a.propose(np.array([0, 1])) > 0  # candidates come back to the host as numpy, among the neighbours
    assert set(np.concatenate(a.pending_idx).tolist()) <= set(nbrs.flatten().tolist())


# ------------------------------------------------------------------------------------------------ the loop


def _run_recorded(tmp_path, name: str, keep: bool, monkeypatch, host_copies) -> tuple[list, list, list, list]:
    """A TINY run (warm-up + 1 round) taking the CUDA path's plumbing (``keep``) or not: (queries, metrics,
    forward_domain's keep_on_device per call, pool-sized host copies)."""
    calls: list = []
    inner = adakit.inference.forward_domain

    def spy(*args, **kwargs):
        calls.append(bool(kwargs.get("keep_on_device")))
        return inner(*args, **kwargs)

    for mod in (adakit.loop, adakit.pool, adakit.inference):
        monkeypatch.setattr(mod, "forward_domain", spy)
    monkeypatch.setattr(ActiveLoop, "outputs_on_device", property(lambda self: keep))
    loop = ActiveLoop(build_config(TINY), tmp_path / name, show_progress=False)
    mode = host_copies(len(loop.domains.pool), to_cpu=True)
    with mode:
        loop.run()
    monkeypatch.undo()
    with Ledger(tmp_path / name / "ledger.sqlite") as led:
        queries = [(q.pool_index, q.suggested) for q in led.queries()]
        metrics = led.metrics()
    return queries, metrics, calls, mode.copies


def test_a_loop_round_with_outputs_kept_on_the_device_records_what_the_default_path_records(tmp_path, monkeypatch,
                                                                                           host_copies):
    """The CUDA path's plumbing on a CPU run: every loop pass over the test set / pool keeps its outputs, the
    only pool-sized host copies are the validators' (softmax(z) and f, once per evaluation), and the run's
    queries and metrics (accuracy, validators) equal the default path's."""
    q0, m0, calls0, copies0 = _run_recorded(tmp_path, "default", False, monkeypatch, host_copies)
    q1, m1, calls1, copies1 = _run_recorded(tmp_path, "kept", True, monkeypatch, host_copies)
    assert q1 == q0 and len(q1) > 0
    assert m1 == m0 and "val/snd" in m1[-1]
    # the loop's passes: test set of round 0 (= the pool, transductive; cached for round 1's query), of round 1
    assert calls0 == [False, False] and calls1 == [True, True]

    def host(copies, kind="cpu"):
        return [where.rsplit(".", 1)[1] for func, where, _ in copies if func == kind]

    # the kept path: the validators' softmax(z) and f, once per evaluation, nothing else
    assert host(copies1) == host(copies1, "numpy") == ["_probs", "validator_scores"] * 2
    assert host(copies0) == ["forward_domain", "forward_domain", "_probs", "validator_scores"] * 2  # no-ops on CPU


# ---------------------------------------------------------------------------------------------------- CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("strategy", ["margin", "las"])
def test_cuda_loop_round_with_outputs_on_the_gpu_selects_as_the_cpu_output_path(tmp_path, monkeypatch, strategy):
    """One short loop round on CUDA: the pool outputs of the evaluation stay on the GPU (no host copy) and feed
    the query; its selection equals the CPU-output path's (the same model's outputs returned to the host by
    `forward_domain`, then copied to the GPU for the strategy, as before ``keep_on_device``)."""
    seen: dict[int, np.ndarray] = {}
    original = ActiveLoop._select_on_main

    def check(self, r, budget, view, mask):
        assert view.embeddings.is_cuda and view.logits.is_cuda
        assert view.embeddings is view._outputs[0]  # the kept pass itself: no host round trip, no second copy
        old = PoolView(self.model, self.domains.pool, mask, view.labels, objective=self.objective,
                       source=self.domains.source, device=self.device, batch_size=self.cfg.train.eval_batch_size,
                       outputs_on_device=True)
        old.__dict__["_outputs"] = forward_domain(self.model, self.domains.pool, self.cfg.train.eval_batch_size,
                                                  self.device)  # the CPU-output path
        assert not old._outputs[0].is_cuda and old.embeddings.is_cuda
        torch.testing.assert_close(old.logits, view.logits)
        torch.testing.assert_close(old.embeddings, view.embeddings)
        seen[r] = self.strategy.select(old, budget, np.random.default_rng([self.cfg.seed, r])).indices
        return original(self, r, budget, view, mask)

    monkeypatch.setattr(ActiveLoop, "_select_on_main", check)
    cfg = build_config(TINY, ["train.device=cuda", f"query.strategy={strategy}"])
    loop = ActiveLoop(cfg, tmp_path / "run", show_progress=False)
    assert loop.outputs_on_device
    summary = loop.run()
    with Ledger(tmp_path / "run" / "ledger.sqlite") as led:
        picked = [q.pool_index for q in led.queries(1)]
    assert sorted(picked) == sorted(seen[1].tolist()) and len(picked) > 0
    assert summary["rounds"][-1]["accuracy"] is not None and "val/snd" in summary["rounds"][-1]

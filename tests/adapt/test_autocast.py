"""Every objective trains under bf16 autocast (``train.cpu_amp`` on the CPU): the same autocast code paths that
``train.amp`` takes on CUDA, where these machines cannot run them. A dtype mismatch (a bf16 activation meeting a
float32 buffer in an objective's own arithmetic, a moving statistic updated in bf16) fails here."""

import numpy as np
import pytest
import torch

from adakit import ActiveLoop
from adakit.registry import OBJECTIVES

# a strategy that reads what the objective provides, where it provides something beyond the pool outputs
STRATEGY = {"dann": "aada", "tsf": "sage", "sdm": "sdm_g"}


def _two_rounds(tmp_path, objective: str, train: dict, anchor: str = "none") -> ActiveLoop:
    """Two active rounds of ``objective`` on small arrays (the strategy reads what it provides); checks the labels
    and that every round's loss is finite."""
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(48, 6)).astype(np.float32), rng.normal(0.3, 1.0, size=(40, 6)).astype(np.float32)
    cfg = {"budget": {"total": 4, "rounds": 2}, "model": {"hidden_dim": 16, "bottleneck_dim": 8},
           "train": {"warmup_iters": 4, "round_iters": 3, "batch_size": 8, **train},
           "objective": {"name": objective}, "anchor": {"kind": anchor},
           "query": {"strategy": "las" if anchor != "none" else STRATEGY.get(objective, "margin")}}
    loop = ActiveLoop(cfg, tmp_path / "r", source=(xs, xs[:, :3].argmax(1)), target=(xt, xt[:, :3].argmax(1)),
                      show_progress=False)
    s = loop.run()
    assert [r["labels"] for r in s["rounds"]] == [0, 2, 4]
    losses = [loop.ledger.get_meta(f"train/{r}")["loss"] for r in range(3)]
    assert all(np.isfinite(v) for v in losses)
    return loop


@pytest.mark.parametrize("name", OBJECTIVES.names())
def test_objective_trains_and_queries_under_cpu_bf16_autocast(name, tmp_path):
    loop = _two_rounds(tmp_path, name, {"cpu_amp": True, "threads": 1})
    assert all(p.dtype == torch.float32 for p in loop.model.parameters())  # autocast leaves the weights alone


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", [*OBJECTIVES.names(), "finetune+laa"])
def test_objective_trains_and_queries_on_cuda_under_bf16_autocast(name, tmp_path):
    """The CUDA counterpart (benchmarks/gpu_check.sh runs it): every objective's training steps, discriminators,
    moving statistics and the query that reads them on the GPU under ``train.amp``; and LADA's anchor set
    (``anchor.kind: laa``, its neighbour search on the GPU)."""
    objective, anchor = (name.split("+") + ["none"])[:2]
    loop = _two_rounds(tmp_path, objective, {"amp": True, "device": "cuda"}, anchor)
    assert all(p.is_cuda and p.dtype == torch.float32 for p in loop.model.parameters())
    assert all(t.is_cuda for t in [*loop.objective.parameters(), *loop.objective.buffers()])

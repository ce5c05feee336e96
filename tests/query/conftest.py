"""Shared helpers for strategy tests: a real tiny `PoolView` over synthetic features.

Use the ``view_factory`` fixture (`make_view`) and ``selection_checker`` (`check_selection`) in any strategy
test under tests/query/.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from adakit.data.domain import TensorDomain
from adakit.models import Model
from adakit.models.backbones import Identity
from adakit.models.heads import LinearHead
from adakit.pool import PoolView


def make_view(n: int = 40, m: int = 8, c: int = 4, labelled=0, seed: int = 0, source_n: int = 0,
              objective: nn.Module | None = None, clusters: int | None = None,
              dtype: torch.dtype = torch.float32) -> PoolView:
    """A real `PoolView`: identity backbone (embeddings = the synthetic features x), linear head m → c.

    - ``labelled``: a count (the first ones of a random permutation), an index array or a boolean mask.
    - ``clusters``: draw x around that many random centres (default: plain Gaussian).
    - ``source_n``: also build a source domain of that many samples (``view.source_embeddings``).
    - ``objective``: passed to the view (e.g. a module with a ``domain_discriminator`` attribute).
    """
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    def feats(k: int) -> torch.Tensor:
        if clusters:
            centres = 3.0 * torch.randn(clusters, m, generator=g)
            return centres[torch.randint(clusters, (k,), generator=g)] + torch.randn(k, m, generator=g)
        return torch.randn(k, m, generator=g)

    classes = [f"c{i}" for i in range(c)]
    x = feats(n)
    pool = TensorDomain(name="target", classes=classes, ids=np.array([f"t/{i}" for i in range(n)]),
                        y=rng.integers(c, size=n), x=x)
    source = None
    if source_n:
        source = TensorDomain(name="source", classes=classes, ids=np.array([f"s/{i}" for i in range(source_n)]),
                              y=rng.integers(c, size=source_n), x=feats(source_n))
    head = LinearHead(m, c)
    with torch.no_grad():
        head.weight.copy_(torch.randn(c, m, generator=g))
        head.bias.copy_(0.1 * torch.randn(c, generator=g))
    model = Model(Identity(m), None, head).to(dtype)
    if isinstance(labelled, (int, np.integer)):
        mask = np.zeros(n, dtype=bool)
        mask[rng.permutation(n)[:int(labelled)]] = True
    else:
        arr = np.asarray(labelled)
        mask = arr.astype(bool) if arr.dtype == bool else np.isin(np.arange(n), arr)
    labels = np.where(mask, pool.y, -1)
    return PoolView(model, pool, mask, labels, objective=objective, source=source)


def check_selection(sel, view, budget: int) -> None:
    """The invariants every strategy keeps: exactly min(budget, #unlabelled) distinct unlabelled indices."""
    idx = np.asarray(sel.indices)
    expected = min(budget, len(view.unlabelled_indices))
    assert len(idx) == expected, (len(idx), expected)
    assert len(np.unique(idx)) == len(idx), "duplicate indices"
    assert not view.labelled[idx].any(), "labelled sample selected"
    assert ((idx >= 0) & (idx < len(view))).all()
    assert len(sel.scores) == len(idx)


@pytest.fixture
def view_factory():
    return make_view


@pytest.fixture
def selection_checker():
    return check_selection


@pytest.fixture
def office31_short_run(office31_features, tmp_path):
    """``run(strategy, objective)``: a 2-round A→W run on the frozen features (20 + 10 iterations, 2 % of the
    target); returns its summary after checking that every round's budget was spent."""
    from adakit.config import build_config
    from adakit.loop import ActiveLoop

    def run(strategy: str, objective: dict) -> dict:
        cfg = build_config({"data": {"format": "npz", "root": str(office31_features), "source": "amazon",
                                     "target": "webcam"},
                            "train": {"warmup_iters": 20, "round_iters": 10, "device": "cpu"},
                            "budget": {"total": 0.02, "rounds": 2},
                            "query": {"strategy": strategy}, "objective": objective})
        summary = ActiveLoop(cfg, tmp_path / "run", show_progress=False).run()
        assert len(summary["rounds"]) == 3
        assert summary["rounds"][-1]["labels"] == sum(summary["budget"]["per_round"]) > 0
        return summary

    return run

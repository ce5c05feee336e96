"""Run under ``torchrun --nproc_per_node=2`` by tests/test_distributed.py (not a test module itself).

``python tests/dist_worker.py OUT`` (one process) or under torchrun: trains each objective a few steps on
synthetic features through `Trainer.fit` and runs sharded pool inference; rank 0 saves the results to OUT.
"""

from __future__ import annotations

import sys

import numpy as np
import torch

from adakit import distributed
from adakit.config import build_config
from adakit.data.domain import TensorDomain
from adakit.inference import forward_domain
from adakit.models import build_model
from adakit.registry import OBJECTIVES
from adakit.train import Trainer

#: "finetune_probe": fine-tuning with objective.probe_domain on S∪T batches (the probe's features are gathered)
OBJECTIVES_CHECKED = ("finetune", "dann", "mstn", "gsda", "biwaa", "finetune_probe")


def domains(seed: int = 0, n_s: int = 45, n_t: int = 37, d: int = 12, c: int = 3):
    g = np.random.default_rng(seed)
    ys, yt = np.arange(n_s) % c, np.arange(n_t) % c
    xs = g.normal(size=(n_s, d)) + ys[:, None]
    xt = g.normal(size=(n_t, d)) + yt[:, None] + 0.5
    cls = [f"c{i}" for i in range(c)]
    return (TensorDomain(name="s", classes=cls, ids=[f"s{i}" for i in range(n_s)], y=ys, x=xs),
            TensorDomain(name="t", classes=cls, ids=[f"t{i}" for i in range(n_t)], y=yt, x=xt))


def train(name: str, steps: int = 8) -> dict:
    """Model + objective state after ``steps`` steps of ``name`` (batch 10: uneven shards of 5+5 / 10)."""
    probe = name == "finetune_probe"
    cfg = build_config({"model": {"backbone": "mlp", "hidden_dim": 16, "bottleneck_dim": 8, "dropout": 0.0},
                        "objective": {"name": "finetune", "probe_domain": True} if probe else {"name": name},
                        "train": {"batch_size": 11, "device": "cpu",
                                  **({"labelled_target": "union"} if probe else {})}})
    name = cfg.objective.name
    src, pool = domains()
    torch.manual_seed(0)
    model = build_model(cfg.model, (12,), 3)
    cls = OBJECTIVES.get(name)
    obj = cls(cfg.objective_params(), feature_dim=model.feature_dim, num_classes=3, pool_size=len(pool))
    trainer = Trainer(model, obj, cfg.train, torch.device("cpu"))
    labelled = np.array([0, 4, 9, 13, 20])
    trainer.fit(src, pool, labelled, pool.y[labelled], steps, seed=7, show_progress=False)
    f, z = forward_domain(model, pool, batch_size=8)
    with distributed.sharded_inference():
        fd, zd = forward_domain(model, pool, batch_size=8)
    return {"model": model.state_dict(), "objective": obj.state_dict(), "local": (f, z), "sharded": (fd, zd)}


def rank_draws() -> dict:
    """Draws of every rank from its own stream (`distributed.RankRandom`, twice: the stream goes on) and from the
    shared generator around them, gathered: {"own": [[rank 0's], [rank 1's]], "shared": [...]}."""
    torch.manual_seed(3)
    own = distributed.RankRandom(7, torch.device("cpu"))
    with own():
        first = torch.rand(4)
    shared = torch.rand(4)
    with own():
        second = torch.rand(4)
    mine = {"own": torch.cat([first, second]), "shared": shared}
    if not distributed.info().enabled:
        return {k: [v] for k, v in mine.items()}
    everyone = [None] * distributed.info().world_size
    torch.distributed.all_gather_object(everyone, mine)
    return {k: [m[k] for m in everyone] for k in mine}


def main(out: str) -> None:
    info = distributed.init("cpu")
    torch.set_num_threads(1)
    results = {name: train(name) for name in OBJECTIVES_CHECKED}
    draws = rank_draws()
    if info.main:
        torch.save({"world_size": info.world_size, "backend": info.backend, "results": results,
                    "rank_draws": draws}, out)


if __name__ == "__main__":
    main(sys.argv[1])

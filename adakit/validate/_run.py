"""What a run records: every validator its data allow, after each round and at warm-up checkpoints.

Inputs come from outputs the loop computes anyway (test = pool under the transductive protocol; the pool pass
is shared with the next query under the inductive one), plus the held-out source split (``data.source_val``)
and the ledger's record of each queried batch (the model's suggested class at query time and the label given).
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from adakit.errors import ConfigError, DataError
from adakit.ledger import DROPPED


def split_source_val(domains: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """(domains with the training source only, the held-out source split): a stratified seeded split in which
    training keeps at least one sample of every source class."""
    from sklearn.model_selection import train_test_split

    src = domains.source
    n_val = int(np.ceil(fraction * len(src)))
    n_classes = len(np.unique(src.y))
    if n_val < n_classes or len(src) - n_val < n_classes:
        fix = "raise or lower it" if 2 * n_classes <= len(src) else \
            f"no fraction can ({2 * n_classes} source samples needed): set it to 0"
        raise ConfigError(f"data.source_val={fraction}: holds out {n_val} of {len(src)} source samples; a "
                          f"stratified split needs at least one per class ({n_classes}) on each side; {fix} "
                          "(0 = no held-out source split)")
    strat = src.y if np.bincount(src.y).min() >= 2 else None
    train_idx, val_idx = train_test_split(np.arange(len(src)), test_size=n_val, random_state=seed, stratify=strat)
    # training must see every source class: a class the split held out whole (one sample, where the split falls
    # back to unstratified, or a few under a large fraction) gets one of its held-out samples back
    y = np.asarray(src.y)
    lost = np.setdiff1d(np.unique(y), y[train_idx])
    if len(lost):
        back = np.array([val_idx[np.flatnonzero(y[val_idx] == c)[0]] for c in lost])
        train_idx, val_idx = np.concatenate([train_idx, back]), np.setdiff1d(val_idx, back)
    return (replace(domains, source=src.subset(np.sort(train_idx), src.name)),
            src.subset(np.sort(val_idx), f"{src.name}-val"))


def _probs(logits: torch.Tensor) -> np.ndarray:
    """softmax(z) as numpy: computed where the logits are (the GPU in a CUDA run), then one host copy."""
    return torch.softmax(logits.float(), 1).cpu().numpy()


def queried_batch(ledger: Any, r: int, pool_size: int, strategy: str) -> dict[str, np.ndarray]:
    """Round r's answered queries: the class the model suggested at query time, the label, and (random sampling
    only) the inclusion probability b / (unlabelled pool size before the round)."""
    labels = {s: y for s, y in ledger.current_labels().items() if y != DROPPED}  # a dropped query has no label
    qs = [q for q in ledger.queries(r) if q.sample_id in labels and q.suggested is not None]
    if r == 0 or not qs:
        return {}
    out = {"queried_pred": np.array([q.suggested for q in qs], dtype=np.int64),
           "queried_labels": np.array([labels[q.sample_id] for q in qs], dtype=np.int64)}
    if strategy == "random":
        before = sum(1 for q in ledger.queries() if q.round < r)  # answered or dropped: out of the pool
        out["queried_inclusion"] = np.full(len(qs), len(ledger.queries(r)) / max(1, pool_size - before))
    return out


def validator_scores(loop: Any, pool_outputs: tuple[torch.Tensor, torch.Tensor], r: int | None) -> dict[str, float]:
    """``{"val/<name>": score}`` of every validator the run's data allow (r: the round, None at a warm-up
    checkpoint, where no queried batch exists)."""
    from adakit.validate import compute_all

    feats, logits = pool_outputs
    # the pool outputs may be CUDA tensors (the loop keeps them on the GPU): one host copy each, for numpy
    inputs: dict[str, Any] = {"probs": _probs(logits), "embeddings": feats.cpu().numpy()}
    val = getattr(loop, "source_val", None)
    if val is not None:
        f, z = loop.infer(val)
        inputs.update(source_probs=_probs(z), source_labels=np.asarray(val.y), source_embeddings=f.numpy())
    if r:
        inputs.update(queried_batch(loop.ledger, r, len(loop.domains.pool), loop.cfg.query.strategy))
    try:
        scores = compute_all(inputs, device=loop.device)
    except DataError as e:  # inputs that do not fit (a bug, not the user's data): the round is recorded without them
        warnings.warn(f"round {r}: validators not recorded: {e}", RuntimeWarning, stacklevel=2)
        scores = {}
    return {f"val/{k}": v for k, v in scores.items()}


def pool_outputs(loop: Any, test_outputs: tuple[torch.Tensor, torch.Tensor],
                 keep_on_device: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The pool's (features, logits): the test outputs when the pool is the test set, else one pass (kept by the
    loop for its next query; on the model's device with ``keep_on_device``)."""

    d = loop.domains
    if d.pool is d.test:
        return test_outputs
    return loop.infer(d.pool, keep_on_device=keep_on_device)


def warmup_checkpoint(loop: Any, step: int) -> None:
    """Evaluate (oracle accuracy + validators) and save the model at warm-up step ``step``; appended to the
    ledger meta ``warmup_checkpoints`` (and summary.json)."""
    from adakit.inference import accuracy

    d = loop.domains
    test = loop.infer(d.test)
    row: dict[str, Any] = {"round": 0, "step": step, "checkpoint": f"checkpoints/warmup-{step}.pt"}
    if (d.test.y >= 0).any():
        row.update(accuracy(test[1], d.test.y))
    row.update(validator_scores(loop, pool_outputs(loop, test), None))
    path = loop.run_dir / row["checkpoint"]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": loop.model.state_dict()}, path)
    rows = [x for x in loop.ledger.get_meta("warmup_checkpoints", []) if x["step"] != step]
    loop.ledger.set_meta("warmup_checkpoints", [*rows, row])


def checkpoint_steps(iters: int, k: int) -> list[int]:
    """k evenly spaced warm-up steps strictly inside (0, iters): iters·j/(k+1), j = 1..k (the end is round 0)."""
    return sorted({int(round(iters * j / (k + 1))) for j in range(1, k + 1)} - {0, iters})

"""`Trainer`: the one training loop for every objective.

Iteration-based: each step draws a source batch (with the labelled target folded in under S∪T), a
labelled-target batch (S+T) and an unlabelled-target batch (for objectives that use it), runs the
model once over their concatenation and minimises the sum of the objective's terms with SGD
(METHODS.md, Protocols: momentum 0.9, nesterov, weight decay 5e-4, lr 1e-2 for new layers and
0.1x for a pretrained backbone, decay lr·(1 + 10·progress)^(-0.75)).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict

import numpy as np
import torch
from torch import nn

from adakit.adapt.base import Batch, Objective
from adakit.adapt.paa import AnchorParams, AnchorSet
from adakit.data.domain import Domain
from adakit.progress import progress_bar


def inverse_decay(progress: float, gamma: float = 10.0, power: float = 0.75) -> float:
    """lr multiplier (1 + gamma·progress)^(−power)."""
    return (1.0 + gamma * progress) ** (-power)


def index_batches(candidates: np.ndarray, batch_size: int, steps: int, gen: np.random.Generator,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """(steps, batch) indices drawn from ``candidates``: epoch-wise reshuffles, or with ``weights``."""
    n = len(candidates)
    bs = min(batch_size, n) if weights is None else batch_size
    if weights is not None:
        return candidates[gen.choice(n, size=(steps, bs), p=weights / weights.sum())]
    epochs = -(-steps * bs // n)
    order = np.concatenate([gen.permutation(n) for _ in range(epochs)])
    return candidates[order[: steps * bs].reshape(steps, bs)]


def class_balanced_weights(y: np.ndarray) -> np.ndarray:
    counts = np.bincount(y)
    return 1.0 / counts[y]


class _Batches(torch.utils.data.Dataset):
    """Loads one batch per key (an index array), so DataLoader workers can load image files."""

    def __init__(self, domain: Domain, keys: np.ndarray):
        self.domain, self.keys = domain, keys

    def __len__(self) -> int:
        return len(self.keys)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.domain.load(self.keys[i], train=True)


def _loader(domain: Domain, keys: np.ndarray, workers: int):
    if workers == 0:
        return (domain.load(k, train=True) for k in keys)
    return iter(torch.utils.data.DataLoader(_Batches(domain, keys), batch_size=None, shuffle=False,
                                            num_workers=workers, persistent_workers=False))


class Trainer:
    """Trains ``model`` with ``objective``; keeps one optimizer across rounds (checkpointed)."""

    def __init__(self, model: nn.Module, objective: Objective, cfg, device: torch.device,
                 anchor: AnchorParams | None = None):
        self.model, self.objective, self.cfg, self.device = model, objective, cfg, device
        self.anchor = anchor if anchor is not None and anchor.kind != "none" else None
        self.last_anchor_size = 0
        groups = model.param_groups(cfg.lr, cfg.backbone_lr_mult)
        extra = list(objective.parameters())
        if extra:
            groups.append({"params": extra, "lr_mult": 1.0})
        for g in groups:
            g["lr"] = cfg.lr * g["lr_mult"]
        self.optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                         weight_decay=cfg.weight_decay, foreach=True)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "objective": self.objective.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])

    def _autocast(self):
        if self.device.type == "cuda" and self.cfg.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def fit(self, source: Domain, pool: Domain, labelled_idx: np.ndarray, labelled_y: np.ndarray,
            iters: int, seed: int, desc: str = "train", show_progress: bool = True,
            target_weights: np.ndarray | None = None) -> dict[str, float]:
        """Train for ``iters`` steps; returns the mean of each loss term and seconds per step.

        ``target_weights`` (pool-sized, optional): draw the unlabelled target batches with these weights
        (with replacement; BIWAA-I's class-balanced target loader) instead of epoch-wise shuffles.
        """
        if iters == 0:
            return {}
        cfg, obj = self.cfg, self.objective
        gen = np.random.default_rng(seed)
        torch.manual_seed(seed)
        labelled_idx = np.asarray(labelled_idx, dtype=np.int64)
        labelled_y = torch.as_tensor(np.asarray(labelled_y, dtype=np.int64))
        use_l = obj.uses_labelled and len(labelled_idx) > 0
        union = use_l and cfg.labelled_target == "union" and self.anchor is None
        ys_all = torch.as_tensor(source.y)
        # source stream (S∪T: over source rows then labelled target rows)
        n_s = len(source)
        if union:
            s_cand = np.arange(n_s + len(labelled_idx))
            s_w = None
            if cfg.class_balanced_source:
                s_w = class_balanced_weights(np.concatenate([source.y, labelled_y.numpy()]))
        else:
            s_cand = np.arange(n_s)
            s_w = class_balanced_weights(source.y) if cfg.class_balanced_source else None
        s_keys = index_batches(s_cand, cfg.batch_size, iters, gen, s_w)
        l_keys = index_batches(np.arange(len(labelled_idx)), cfg.batch_size, iters, gen) \
            if use_l and not union and self.anchor is None else None
        anchors = AnchorSet(self.anchor, self.model, pool, labelled_idx, labelled_y.numpy(), cfg.batch_size, gen,
                            self.device, obj.num_classes) if use_l and self.anchor is not None else None
        u_keys = None
        if obj.uses_unlabelled:
            mask = np.ones(len(pool), dtype=bool)
            mask[labelled_idx] = False
            u_cand = np.flatnonzero(mask) if mask.any() else np.arange(len(pool))
            u_w = None
            if target_weights is not None:
                u_w = np.asarray(target_weights, dtype=np.float64)[u_cand]
                u_w = u_w if u_w.sum() > 0 else None
            u_keys = index_batches(u_cand, cfg.batch_size, iters, gen, u_w)
        src_only = np.where(s_keys < n_s, s_keys, 0)
        s_iter = _loader(source, src_only, cfg.num_workers)
        tl_keys = None
        if union:
            tl_keys = np.where(s_keys >= n_s, labelled_idx[np.clip(s_keys - n_s, 0, None)]
                               if len(labelled_idx) else 0, 0)
        u_iter = _loader(pool, u_keys, cfg.num_workers) if u_keys is not None else None
        sums: dict[str, float] = defaultdict(float)
        self.model.train()
        obj.train()
        start = time.perf_counter()
        with progress_bar(iters, desc, enabled=show_progress) as bar:
            for it in range(iters):
                progress = it / iters
                for g in self.optimizer.param_groups:
                    g["lr"] = cfg.lr * g["lr_mult"] * inverse_decay(progress, cfg.lr_gamma, cfg.lr_power)
                batch = self._batch(next(s_iter), s_keys[it], n_s, ys_all, tl_keys, pool, labelled_idx,
                                    labelled_y, l_keys, u_iter, u_keys, it)
                if anchors is not None:
                    self._anchor_batch(batch, anchors, pool)
                with self._autocast():
                    self._forward(batch)
                    terms = obj(self.model, batch, progress)
                loss = sum(terms.values())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
                for k, v in terms.items():
                    sums[k] += float(v.detach())
                sums["loss"] += float(loss.detach())
                bar.advance(loss=float(loss.detach()))
        elapsed = time.perf_counter() - start
        out = {k: v / iters for k, v in sums.items()}
        out["sec_per_iter"] = elapsed / iters
        if anchors is not None:
            out["anchor_set"] = float(len(anchors) + sum(len(p) for p in anchors.pending_idx))
        return out

    def _batch(self, xs, s_key, n_s, ys_all, tl_keys, pool, labelled_idx, labelled_y, l_keys, u_iter,
               u_keys, it) -> Batch:
        dev = self.device
        is_t = torch.as_tensor(s_key >= n_s)
        ys = ys_all[np.where(s_key < n_s, s_key, 0)]
        if tl_keys is not None and bool(is_t.any()):
            rows = torch.nonzero(is_t).flatten()
            xs = xs.clone()
            xs[rows] = pool.load(tl_keys[it][is_t.numpy()], train=True).to(xs.dtype)
            ys = ys.clone()
            ys[rows] = labelled_y[torch.as_tensor(s_key[is_t.numpy()] - n_s)]
        b = Batch(xs=xs.to(dev), ys=ys.to(dev), idx_s=torch.as_tensor(s_key), target_in_s=is_t.to(dev))
        if l_keys is not None:
            k = l_keys[it]
            b.xl = pool.load(labelled_idx[k], train=True).to(dev)
            b.yl = labelled_y[torch.as_tensor(k)].to(dev)
            b.idx_l = torch.as_tensor(labelled_idx[k])
        if u_iter is not None:
            b.xu = next(u_iter).to(dev)
            b.idx_u = torch.as_tensor(u_keys[it])
        return b

    def _anchor_batch(self, b: Batch, anchors: AnchorSet, pool: Domain) -> None:
        """PAA: the labelled batch comes from the anchor set, mixed with its strong view; then propose."""
        idx, y = anchors.next_batch()
        x = pool.load(idx, train=True)
        b.xl = anchors.mix(x, pool.load_strong(idx).to(x.dtype)).to(self.device)
        b.yl = torch.as_tensor(y).to(self.device)
        b.idx_l = torch.as_tensor(idx)
        anchors.propose(idx)

    def _forward(self, b: Batch) -> None:
        parts = [b.xs] + [x for x in (b.xl, b.xu) if x is not None]
        f, z = self.model(torch.cat(parts))
        sizes = [len(p) for p in parts]
        fs = list(torch.split(f, sizes))
        zs = list(torch.split(z, sizes))
        b.fs, b.zs = fs.pop(0), zs.pop(0)
        if b.xl is not None:
            b.fl, b.zl = fs.pop(0), zs.pop(0)
        if b.xu is not None:
            b.fu, b.zu = fs.pop(0), zs.pop(0)

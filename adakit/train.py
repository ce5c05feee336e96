"""`Trainer`: the one training loop for every objective.

Iteration-based: each step draws a source batch (with the labelled target folded in under S∪T), a
labelled-target batch (S+T) and an unlabelled-target batch (for objectives that use it), runs the
model once over their concatenation and minimises the sum of the objective's terms with SGD
(docs/methods.md, Protocols: momentum 0.9, nesterov, weight decay 5e-4, lr 1e-2 for new layers and
0.1x for a pretrained backbone, decay lr·(1 + 10·progress)^(-0.75)).

Under torchrun (`adakit.distributed`) every rank draws the same global index stream, loads and forwards only
its slice of each batch, gathers the features/logits of the global batch for the objective and averages the
gradients of all parameters (model and objective) after ``backward``: the step equals the one-process step
up to the order of floating-point sums. On CUDA: bf16 autocast (``train.amp``), channels_last image
batches (``train.channels_last``) and pinned-memory loader workers (``train.num_workers``).
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from adakit import distributed
from adakit.adapt.base import Batch, Objective
from adakit.adapt.paa import AnchorParams, AnchorSet
from adakit.data.domain import Domain
from adakit.data.loading import batches
from adakit.progress import progress_bar
from adakit.provenance import cpu_lacks_bf16


def inverse_decay(progress: float, gamma: float = 10.0, power: float = 0.75) -> float:
    """lr multiplier (1 + gamma·progress)^(−power)."""
    return (1.0 + gamma * progress) ** (-power)


def index_batches(candidates: np.ndarray, batch_size: int, steps: int, gen: np.random.Generator,
                  weights: np.ndarray | None = None) -> np.ndarray:
    """(steps, batch) indices drawn from ``candidates``: epoch-wise reshuffles, or with ``weights`` (with
    replacement). A batch holds at most ``len(candidates)`` rows either way (weighted draws took ``batch_size`` rows,
    repeats of a smaller stream, before 2026-12-05)."""
    n = len(candidates)
    bs = min(batch_size, n)
    if weights is not None:
        return candidates[gen.choice(n, size=(steps, bs), p=weights / weights.sum())]
    epochs = -(-steps * bs // n)
    order = np.concatenate([gen.permutation(n) for _ in range(epochs)])
    return candidates[order[: steps * bs].reshape(steps, bs)]


#: bytes per step and batch row that a fit's drawn sample indices take at their peak (int64 indices of the source,
#: labelled and unlabelled target streams with their temporaries: 3.3 to 5.1 measured, S+T to S∪T with DANN)
INDEX_BYTES_PER_ROW = 6 * 8


def physical_memory() -> int | None:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_index_memory(cfg, memory: int | None = None) -> None:
    """Refuse (`ConfigError`) ``train.warmup_iters`` or ``train.round_iters`` (``cfg``: a `TrainConfig`) whose
    sample indices, drawn before a fit's first step, would take more than ``memory`` bytes (default:
    `physical_memory`; unknown: no check), before any work."""
    from adakit.errors import ConfigError

    memory = physical_memory() if memory is None else memory
    for key in ("warmup_iters", "round_iters"):
        steps = getattr(cfg, key)
        need = steps * cfg.batch_size * INDEX_BYTES_PER_ROW
        if memory is not None and need > memory:
            raise ConfigError(f"invalid config:\n  train.{key}: {steps} steps of train.batch_size={cfg.batch_size} "
                              f"rows: a fit draws the sample indices of all its steps before the first one, about "
                              f"{need / 2**30:,.1f} GiB here, more than this machine's {memory / 2**30:,.1f} GiB of "
                              f"memory; lower train.{key} (or train.batch_size)")


def class_balanced_weights(y: np.ndarray) -> np.ndarray:
    counts = np.bincount(y)
    return 1.0 / counts[y]


#: devices whose fused SGD kernel adakit uses (others, e.g. MPS, take the foreach kernel)
FUSED_SGD_DEVICES = ("cpu", "cuda")


def sgd(groups: list[dict], cfg) -> torch.optim.SGD:
    """SGD with momentum, Nesterov and weight decay as ``cfg`` (a `TrainConfig`) sets, with torch's fused kernel
    (``cfg.fused_sgd``, parameters on `FUSED_SGD_DEVICES`) or its foreach kernel: the same update, rounded
    differently in the last bits."""
    devices = {p.device.type for g in groups for p in g["params"]}
    fused = cfg.fused_sgd and devices <= set(FUSED_SGD_DEVICES)
    kernel = {"fused": True} if fused else {"foreach": True}
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                           weight_decay=cfg.weight_decay, **kernel)


class Trainer:
    """Trains ``model`` with ``objective``; keeps one optimizer across rounds (checkpointed)."""

    def __init__(self, model: nn.Module, objective: Objective, cfg, device: torch.device,
                 anchor: AnchorParams | None = None):
        self.model, self.objective, self.cfg, self.device = model, objective, cfg, device
        self.anchor = anchor if anchor is not None and anchor.kind != "none" else None
        self.dist = distributed.info()
        if self.dist.enabled:
            if self.anchor is not None:
                from adakit.errors import ConfigError

                raise ConfigError(f"anchor.kind={anchor.kind!r} (PAA) is not supported with several processes "
                                  "(its anchor set is proposed step by step on one process); run it without torchrun")
            distributed.sync_batchnorm(model)
            distributed.sync_batchnorm(objective)
        if device.type == "cpu" and cfg.cpu_amp and cpu_lacks_bf16():
            warnings.warn("train.cpu_amp: this CPU has no bf16 instructions (AMX or AVX512-BF16), so bf16 is emulated "
                          "and training runs several times slower (6-20x measured); set train.cpu_amp: false",
                          RuntimeWarning, stacklevel=2)
        self.channels_last = device.type == "cuda" and bool(getattr(cfg, "channels_last", True)) \
            and any(isinstance(m, nn.Conv2d) for m in model.modules())
        if self.channels_last:
            model.to(memory_format=torch.channels_last)
            model.channels_last = True  # read by adakit.inference.forward_domain
        self.last_anchor_size = 0
        groups = model.param_groups(cfg.lr, cfg.backbone_lr_mult)
        extra = list(objective.parameters())
        if extra:
            groups.append({"params": extra, "lr_mult": 1.0})
        for g in groups:
            g["lr"] = cfg.lr * g["lr_mult"]
        self.optimizer = sgd(groups, cfg)

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
        if self.device.type == "cpu" and self.cfg.cpu_amp:
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def fit(self, source: Domain, pool: Domain, labelled_idx: np.ndarray, labelled_y: np.ndarray,
            iters: int, seed: int, desc: str = "train", show_progress: bool = True,
            target_weights: np.ndarray | None = None,
            on_step: Callable[[int], None] | None = None) -> dict[str, float]:
        """Train for ``iters`` steps; returns the mean of each loss term and seconds per step.

        ``target_weights`` (pool-sized, optional): draw the unlabelled target batches with these weights
        (with replacement; BIWAA-I's class-balanced target loader) instead of epoch-wise shuffles.
        ``on_step(k)`` (optional) is called after step k = 1..iters (the loop's warm-up checkpoints).
        """
        if iters == 0:
            return {}
        cfg, obj = self.cfg, self.objective
        gen = np.random.default_rng(seed)
        torch.manual_seed(seed)
        distributed.broadcast_state(self.model, obj)  # every rank starts from rank 0's weights
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
                            self.device, obj.num_classes, cfg.num_workers) \
            if use_l and self.anchor is not None else None
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
        rows = _Rows(s_keys.shape[1], l_keys.shape[1] if l_keys is not None else 0,
                     u_keys.shape[1] if u_keys is not None else 0)
        pin = self.device.type == "cuda"
        own_rows = distributed.RankRandom(seed, self.device)  # torchrun: each rank's slice draws its own randomness
        with own_rows():  # (loader workers take their seeds from it)
            s_iter = batches(source, src_only[:, rows.s], cfg.num_workers, pin, train=True)
            l_iter = batches(pool, labelled_idx[l_keys[:, rows.l]], cfg.num_workers, pin, train=True) \
                if l_keys is not None else None
            u_iter = batches(pool, u_keys[:, rows.u], cfg.num_workers, pin, train=True) \
                if u_keys is not None else None
        tl_keys = None
        if union:
            tl_keys = np.where(s_keys >= n_s, labelled_idx[np.clip(s_keys - n_s, 0, None)]
                               if len(labelled_idx) else 0, 0)
        sums: dict[str, float | torch.Tensor] = defaultdict(float)
        acc = torch.float32 if self.device.type == "mps" else torch.float64  # as the float() sums were
        self.model.train()
        obj.train()
        average = WeightAverage(self.model, iters, cfg.weight_average)
        start = time.perf_counter()
        with progress_bar(iters, desc, enabled=show_progress) as bar:
            for it in range(iters):
                progress = it / iters
                for g in self.optimizer.param_groups:
                    g["lr"] = cfg.lr * g["lr_mult"] * inverse_decay(progress, cfg.lr_gamma, cfg.lr_power)
                with own_rows():
                    batch = self._batch(next(s_iter), s_keys[it], n_s, ys_all, tl_keys, pool, labelled_idx,
                                        labelled_y, l_keys, l_iter, u_iter, u_keys, it, rows)
                if anchors is not None:
                    self._anchor_batch(batch, anchors, pool)
                with self._autocast():
                    with own_rows():
                        self._forward(batch, rows)
                    terms = obj(self.model, batch, progress)
                loss = sum(terms.values())
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                distributed.average_gradients(p for g in self.optimizer.param_groups for p in g["params"])
                self.optimizer.step()
                average.step(it)
                for k, v in terms.items():  # summed on the device: no GPU -> CPU synchronisation per step
                    sums[k] = sums[k] + v.detach().to(acc)
                sums["loss"] = sums["loss"] + loss.detach().to(acc)
                if show_progress:
                    bar.advance(loss=float(loss.detach()))
                else:
                    bar.advance()
                if on_step is not None:
                    on_step(it + 1)
        average.apply()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - start
        distributed.check_in_sync(self.model, obj)
        out = {k: float(v) / iters for k, v in sums.items()}
        out["sec_per_iter"] = elapsed / iters
        if not np.isfinite(out["loss"]):  # (the model's weights are then NaN too: every later number is noise)
            bad = ", ".join(k for k, v in out.items() if k != "loss" and not np.isfinite(v))
            warnings.warn(f"{desc}: the training loss was not finite (NaN or inf{'; in ' + bad if bad else ''}), so "
                          f"the model it trained is not usable; lower train.lr (now {cfg.lr:g}; a large "
                          f"train.weight_decay, now {cfg.weight_decay:g}, or a small model.temperature of a cosine "
                          "head diverge too), or look for NaN / inf values in your data (a Dataset's items are not "
                          "checked ahead of training)", RuntimeWarning, stacklevel=2)
        if anchors is not None:
            out["anchor_set"] = float(len(anchors) + sum(len(p) for p in anchors.pending_idx))
        return out

    def _batch(self, xs, s_key, n_s, ys_all, tl_keys, pool, labelled_idx, labelled_y, l_keys, l_iter, u_iter,
               u_keys, it, rows: _Rows) -> Batch:
        """The step's `Batch`: inputs ``x*`` of this rank's rows (all rows in one process), labels and indices of
        the global batch."""
        dev = self.device
        nb = dev.type == "cuda"
        is_t = torch.as_tensor(s_key >= n_s)
        ys = ys_all[np.where(s_key < n_s, s_key, 0)]
        if tl_keys is not None and bool(is_t.any()):
            mine = is_t[rows.s]
            if bool(mine.any()):
                xs = xs.clone()
                xs[torch.nonzero(mine).flatten()] = pool.load(tl_keys[it][rows.s][mine.numpy()],
                                                              train=True).to(xs.dtype)
            rows_t = torch.nonzero(is_t).flatten()
            ys = ys.clone()
            ys[rows_t] = labelled_y[torch.as_tensor(s_key[is_t.numpy()] - n_s)]
        b = Batch(xs=self._to_device(xs), ys=ys.to(dev, non_blocking=nb), idx_s=torch.as_tensor(s_key),
                  target_in_s=is_t.to(dev))
        if l_keys is not None:
            k = l_keys[it]
            b.xl = self._to_device(next(l_iter))
            b.yl = labelled_y[torch.as_tensor(k)].to(dev)
            b.idx_l = torch.as_tensor(labelled_idx[k])
        if u_iter is not None:
            b.xu = self._to_device(next(u_iter))
            b.idx_u = torch.as_tensor(u_keys[it])
        return b

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=self.device.type == "cuda")
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _anchor_batch(self, b: Batch, anchors: AnchorSet, pool: Domain) -> None:
        """PAA: the labelled batch comes from the anchor set, mixed with its strong view; then propose."""
        idx, y = anchors.next_batch()
        x = pool.load(idx, train=True)
        b.xl = anchors.mix(x, pool.load_strong(idx).to(x.dtype)).to(self.device)
        b.yl = torch.as_tensor(y).to(self.device)
        b.idx_l = torch.as_tensor(idx)
        anchors.propose(idx)

    def _forward(self, b: Batch, rows: _Rows | None = None) -> None:
        """One model pass over this rank's rows of every part; in a multi-process run the features and
        logits of each part are then gathered into the global batch (`distributed.gather_batch_rows`)."""
        if b.xu is not None and getattr(self.objective, "probe_pass", False):
            xu, b.xu = b.xu, None  # only the domain probe uses it: keep it out of the training pass (batch norm)
            self._forward(b, rows)
            b.xu = xu
            self._probe_pass(b, rows)
            return
        parts = [b.xs] + [x for x in (b.xl, b.xu) if x is not None]
        f, z = self.model(torch.cat(parts))
        sizes = [len(p) for p in parts]
        fs = list(torch.split(f, sizes))
        zs = list(torch.split(z, sizes))
        if self.dist.enabled and rows is not None:
            totals = [rows.n_s] + [n for x, n in ((b.xl, rows.n_l), (b.xu, rows.n_u)) if x is not None]
            fs, zs = _gather_parts(f, z, totals)
        b.fs, b.zs = fs.pop(0), zs.pop(0)
        if b.xl is not None:
            b.fl, b.zl = fs.pop(0), zs.pop(0)
        if b.xu is not None:
            b.fu, b.zu = fs.pop(0), zs.pop(0)

    def _probe_pass(self, b: Batch, rows: _Rows | None) -> None:
        """``objective.probe_domain`` beside an objective that uses no unlabelled target: features of this rank's
        source rows and unlabelled batch for the domain probe, from a no-grad pass in eval mode (the features
        strategies score; no batch-norm statistic is updated), so the probe leaves the model's training unchanged.
        Under torchrun each rank computes its rows and the global batch is gathered, as for the model's outputs (the
        probe trained on each rank's rows alone, so its weights drifted apart)."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                f = self.model.features(torch.cat([b.xs, b.xu]))
        finally:
            self.model.train(was_training)
        fs, fu = f[: len(b.xs)], f[len(b.xs):]
        if self.dist.enabled and rows is not None:
            fs = distributed.gather_rows(fs, distributed.shard_counts(rows.n_s))
            fu = distributed.gather_rows(fu, distributed.shard_counts(rows.n_u))
        if b.target_in_s is not None:  # labelled target rows of S∪T are not source for the probe
            fs = fs[~b.target_in_s.to(fs.device)]
        b.probe_fs, b.probe_fu = fs, fu


class WeightAverage:
    """``train.weight_average``: the uniform average of the model's parameters and float buffers over the last
    ``fraction`` of a fit's ``iters`` steps (SWA, Izmailov et al., UAI 2018, Eq. 2 with one snapshot per step),
    written into the model when the fit ends. Every process of a multi-process run holds the same weights, so
    their averages agree. The objective's discriminators keep their last weights."""

    def __init__(self, model: nn.Module, iters: int, fraction: float):
        self.first = iters - max(1, round(iters * fraction)) if fraction > 0 else None
        self.tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
        self.mean: list[torch.Tensor] = []
        self.count = 0

    def step(self, it: int) -> None:
        if self.first is None or it < self.first:
            return
        self.count += 1
        current = [t.detach() for t in self.tensors]
        if self.count == 1:
            self.mean = [t.clone() for t in current]
        else:  # running mean: m += (x - m) / n
            for m, x in zip(self.mean, current):
                m.lerp_(x, 1.0 / self.count)

    def apply(self) -> None:
        if self.count:
            with torch.no_grad():
                for t, m in zip(self.tensors, self.mean):
                    t.copy_(m)


def _gather_parts(f: torch.Tensor, z: torch.Tensor, totals: list[int]) -> tuple[list, list]:
    """The global batch of every part (source, labelled, unlabelled) from this rank's rows ``[f | z]`` in one
    all_gather: rank r holds its share of each part in part order; the result is part-wise in rank order."""
    world = distributed.info().world_size
    shares = [distributed.shard_counts(n) for n in totals]  # [part][rank]
    per_rank = [[shares[p][r] for p in range(len(totals))] for r in range(world)]
    full = distributed.gather_batch_rows(torch.cat([f, z.to(f.dtype)], 1), [sum(c) for c in per_rank])
    chunks = torch.split(full, [c for rank in per_rank for c in rank])
    parts = [torch.cat([chunks[r * len(totals) + p] for r in range(world)]) for p in range(len(totals))]
    m = f.shape[1]
    return [x[:, :m] for x in parts], [x[:, m:].to(z.dtype) for x in parts]


class _Rows:
    """This rank's slice of the source, labelled-target and unlabelled-target rows of each global batch."""

    def __init__(self, n_s: int, n_l: int, n_u: int):
        self.n_s, self.n_l, self.n_u = n_s, n_l, n_u
        self.s, self.l, self.u = (distributed.shard_slice(n) for n in (n_s, n_l, n_u))

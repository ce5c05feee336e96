"""Data-parallel runs through ``torchrun`` (torch.distributed): process group, collectives, synced training.

``torchrun --nproc_per_node=N -m adakit run CONFIG --out DIR`` starts N processes; `init` (called by
``adakit run``/``resume`` and by `adakit.loop.ActiveLoop`) reads RANK / WORLD_SIZE / LOCAL_RANK from the
environment torchrun sets and joins the process group once: NCCL when the run's device is CUDA (rank r uses
``cuda:LOCAL_RANK``), gloo on CPU. Without those variables (or WORLD_SIZE=1) everything here is a no-op.

How a training step stays equal to the one-process step (same global batch, same seeds):

* every rank draws the same global index stream and loads only its slice of each batch (`shard_counts`);
* the model runs on the rank's slice; its features and logits are gathered (`gather_batch_rows`) so every rank
  hands the **whole** global batch to the objective and computes the same loss. The objective's batch
  statistics (MSTN/BIWAA class centroids, GSDA's class/group masks, BIWAA's per-sample aggregated predictions)
  are therefore computed from the global batch on every rank, identically — no buffer needs a broadcast, and
  they equal the one-process values;
* batch norm layers normalise with the statistics of the global batch (`sync_batchnorm`: two differentiable
  all-reduces per layer), as one process would;
* the gathered rows of the rank's own slice carry a gradient scaled by the world size, so after
  ``loss.backward()`` ``all_reduce(grad) / world_size`` (`average_gradients`) is exactly the gradient of the
  global-batch loss for every parameter: model and objective (discriminators) alike. This replaces
  `DistributedDataParallel`, whose bucketed all-reduce assumes each rank's loss covers only its own rows.

What differs from one process: the order of floating-point sums (gradients are summed over ranks), so weights
agree to float tolerance, not bitwise; and augmentation and dropout masks in the model, which each rank draws for
its rows from a stream of its own (`RankRandom`).
`check_in_sync` verifies after each fit that every rank holds the same weights and buffers.
"""

from __future__ import annotations

import atexit
import os
import types
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from adakit.models.grl import scale_grad


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run: rank, world size, local rank and backend (None: one process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


_info = DistInfo()
_sharded = False
_failed = False  # this process is stopping on an error: it leaves the group without waiting for the others


def mark_failed() -> None:
    """This process stops on an error (`adakit.cli._fail`): at exit it leaves the group at once. Waiting for the
    other ranks in the exit barrier hung until the group timeout (2 h) when they were blocked in a collective
    that this rank never joined (an image only this rank reads was unreadable, say)."""
    global _failed
    _failed = _failed or _info.enabled  # (one process: nothing to leave, and no state kept for later calls)


def info() -> DistInfo:
    """The current process's `DistInfo` (one process until `init` joined a group)."""
    return _info


def is_main() -> bool:
    """True on rank 0 (and in a one-process run): the rank that writes the ledger, checkpoints and reports. Before
    `init` joined the group, torchrun's RANK says (an error in the config is printed once, not once per rank)."""
    if _info.enabled or not launched():
        return _info.rank == 0
    return os.environ.get("RANK", "0").strip() in ("0", "")


def launched() -> bool:
    """Started by torchrun with more than one process (WORLD_SIZE > 1 in the environment)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init(device: str = "auto") -> DistInfo:
    """Join the torchrun process group once (idempotent): NCCL for a CUDA ``device``, gloo otherwise."""
    global _info
    if _info.enabled or not launched():
        return _info
    from adakit.errors import ConfigError

    try:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except (KeyError, ValueError) as e:
        raise ConfigError(f"WORLD_SIZE={os.environ.get('WORLD_SIZE')} is set but RANK/LOCAL_RANK are missing or "
                          f"not integers ({e}); start multi-process runs with torchrun --nproc_per_node=N") from None
    cuda = device != "cpu" and not device.startswith("mps") and torch.cuda.is_available()
    if cuda:
        if local >= torch.cuda.device_count():
            raise ConfigError(f"LOCAL_RANK={local} but this machine has {torch.cuda.device_count()} CUDA devices; "
                              "use --nproc_per_node at most the number of GPUs, or train.device=cpu")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        # ranks wait for rank 0's query and labelling: allow long selections on big pools (default 2 h)
        minutes = float(os.environ.get("ADAKIT_DIST_TIMEOUT_MIN", "120"))
        store = _join(rank, world)
        store.set_timeout(timedelta(minutes=minutes))
        dist.init_process_group("nccl" if cuda else "gloo", store=store, rank=rank, world_size=world,
                                timeout=timedelta(minutes=minutes))
        atexit.register(_shutdown)
    _info = DistInfo(rank, world, local, str(dist.get_backend()))
    return _info


def _join(rank: int, world: int):
    """The store of torchrun's rendezvous (``env://``), joined within ``ADAKIT_DIST_JOIN_TIMEOUT_S`` seconds (300).

    A separate, short timeout: RANK / WORLD_SIZE / MASTER_* left in a shell by hand (or by an earlier job) made one
    process wait for peers that never come, for the whole group timeout (2 h), without a word; MASTER_ADDR missing
    ended in torch's ValueError traceback. Both are a `ConfigError` (printed by this rank) naming what to do.
    """
    from adakit.errors import ConfigError

    env = f"WORLD_SIZE={world} and RANK={rank}"
    hint = ("start multi-process runs with `torchrun --nproc_per_node=N -m adakit run ...`, or unset RANK, "
            "WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT to run in one process")
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k, "").strip()]
    if missing:
        error = ConfigError(f"{env} are set in the environment but {' and '.join(missing)} "
                            f"{'is' if len(missing) == 1 else 'are'} not, so this process was not started by "
                            f"torchrun; {hint}")
        error.on_every_rank = False  # (no group yet: every process prints its own)
        raise error
    seconds = float(os.environ.get("ADAKIT_DIST_JOIN_TIMEOUT_S", "300"))
    try:
        store, _, _ = next(dist.rendezvous("env://", rank, world, timeout=timedelta(seconds=seconds)))
    except (RuntimeError, ValueError, OSError) as e:
        where = f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}"
        started = ("" if os.environ.get("TORCHELASTIC_RUN_ID") else
                   " (TORCHELASTIC_RUN_ID is not set either: not started by torchrun?)")
        error = ConfigError(f"rank {rank}: the {world} processes of the run did not all meet at {where} within "
                            f"{seconds:g} s ({' '.join(str(e).split())[:200]}); {env} are set in the environment"
                            f"{started}: {hint} (ADAKIT_DIST_JOIN_TIMEOUT_S sets how long to wait)")
        error.on_every_rank = False
        raise error from None
    return store


def _shutdown() -> None:
    """Leave the group at exit, after every rank got here (gloo).

    Ranks that destroy the group while a peer still has collectives in flight can abort the peer at exit
    ("terminate called without an active exception"). gloo's ``monitored_barrier`` lines the ranks up first; rank 0
    gives up after 60 s when a rank died, but the other ranks wait for rank 0 up to the group timeout, so a process
    that stops on an error or an interrupt (`mark_failed`, or an uncaught exception) leaves at once instead. NCCL has
    no such barrier and leaves at once.
    """
    if not dist.is_initialized():
        return
    import sys

    try:  # (an uncaught exception sets sys.last_value before the interpreter exits)
        if dist.get_backend() == "gloo" and not _failed and getattr(sys, "last_value", None) is None:
            dist.monitored_barrier(timeout=timedelta(seconds=60))
    except RuntimeError:
        pass  # a rank died or left early: leave anyway
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """``cuda`` → ``cuda:LOCAL_RANK`` in a multi-process run (one GPU per process); other devices unchanged."""
    if _info.enabled and device.type == "cuda":
        return torch.device("cuda", _info.local_rank)
    return device


# -- collectives (no-ops in one process) ---------------------------------------------------------------
def barrier() -> None:
    if _info.enabled:
        dist.barrier()


def broadcast_object(obj=None):
    """Rank 0's ``obj`` on every rank (picklable objects)."""
    if not _info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def differing_ranks(obj) -> tuple[list[int], list]:
    """The ranks whose ``obj`` (picklable, comparable) differs from rank 0's, and every rank's ``obj``; the same
    answer on every rank, so all of them can stop together. One process: ``([], [obj])``."""
    if not _info.enabled:
        return [], [obj]
    objs: list = [None] * _info.world_size
    dist.all_gather_object(objs, obj)
    return [r for r, o in enumerate(objs) if o != objs[0]], objs


def shard_counts(n: int, world: int | None = None) -> list[int]:
    """Rows of an n-row batch held by each rank (contiguous, in rank order; the first n % world get one more)."""
    world = _info.world_size if world is None else world
    return [n // world + (1 if r < n % world else 0) for r in range(world)]


def shard_slice(n: int) -> slice:
    """This rank's rows of an n-row batch (see `shard_counts`)."""
    counts = shard_counts(n)
    start = sum(counts[: _info.rank])
    return slice(start, start + counts[_info.rank])


def gather_rows(x: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """Every rank's rows concatenated in rank order (rank r holds ``counts[r]`` rows); padded all_gather."""
    if not _info.enabled:
        return x
    size = max(counts)
    padded = x.new_zeros((size, *x.shape[1:]))
    padded[: len(x)] = x
    parts = [torch.empty_like(padded) for _ in counts]
    dist.all_gather(parts, padded)
    return torch.cat([p[:c] for p, c in zip(parts, counts)])


def gather_batch_rows(x: torch.Tensor, counts: list[int]) -> torch.Tensor:
    """The global batch from every rank's rows, differentiable in this rank's rows.

    Every rank computes the same loss on the result; this rank's rows pass their gradient on multiplied by the
    world size, so the sum over ranks of the parameter gradients divided by the world size (`average_gradients`)
    is the gradient of that loss (the differentiable all_gather's reduce-scatter, without a collective).
    """
    if not _info.enabled:
        return x
    full = gather_rows(x.detach(), counts)
    start = sum(counts[: _info.rank])
    return torch.cat([full[:start], scale_grad(x, float(_info.world_size)), full[start + len(x):]])


def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """``grad ← all_reduce(grad) / world_size`` for every parameter, in one flat buffer per dtype.

    A parameter keeps ``grad = None`` only where no rank produced one (so SGD skips it as in one process).
    """
    if not _info.enabled:
        return
    params = [p for p in params if p.requires_grad]
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for p in params:
        by_dtype.setdefault(p.dtype, []).append(p)
    for group in by_dtype.values():
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in group]
                         + [torch.tensor([float(p.grad is not None) for p in group], dtype=group[0].dtype,
                                         device=group[0].device)])
        dist.all_reduce(flat)
        flat /= _info.world_size
        offset = 0
        has = (flat[-len(group):] > 0).tolist()  # one device -> host copy per step, not one per parameter
        for i, p in enumerate(group):
            n = p.numel()
            if has[i]:
                g = flat[offset: offset + n].view_as(p)
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad.copy_(g)
            offset += n


def broadcast_state(*modules: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank (what DDP does when it wraps a module)."""
    if not _info.enabled:
        return
    with torch.no_grad():
        for m in modules:
            for t in list(m.parameters()) + list(m.buffers()):
                dist.broadcast(t.data, src=0)


def check_in_sync(*modules: nn.Module, rtol: float = 1e-5) -> None:
    """Raise if the ranks' parameters and buffers differ (a bug in the synchronisation, never silent)."""
    if not _info.enabled:
        return
    tensors = [t for m in modules for t in list(m.parameters()) + list(m.buffers()) if t.numel()]
    if not tensors:
        return
    sums = torch.stack([t.detach().double().abs().sum() for t in tensors])
    parts = [torch.empty_like(sums) for _ in range(_info.world_size)]
    dist.all_gather(parts, sums)
    diff = max(float(((p - parts[0]).abs() / (parts[0].abs() + 1e-12)).max()) for p in parts)
    if diff > rtol:
        raise RuntimeError(f"ranks hold different weights/buffers after training (max relative difference {diff:.2e});"
                           " this is a bug in adakit's distributed synchronisation")


# -- batch norm over the global batch -----------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the backward sums the ranks' gradients (every rank's loss depends on the sum)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


def _global_bn_forward(self: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor:
    """Batch norm with the mean/variance of the global batch (all ranks' rows); eval mode as usual."""
    if not (self.training and _info.enabled):
        return type(self).forward(self, x)
    all_reduce = _AllReduceSum.apply
    dims = [0, *range(2, x.dim())]
    shape = [1, -1] + [1] * (x.dim() - 2)
    xf = x.float()
    local_n = torch.tensor([float(x.numel() // max(x.shape[1], 1))], device=x.device)
    sums = all_reduce(torch.cat([xf.sum(dims), local_n]))  # one collective: per-channel sums and the row count
    n = sums[-1].detach()  # a tensor: no GPU -> CPU synchronisation per layer
    mean = sums[:-1] / n
    centred = xf - mean.view(shape)
    var = all_reduce((centred * centred).sum(dims)) / n  # biased, as batch norm normalises
    y = centred * torch.rsqrt(var + self.eps).view(shape)
    if self.affine:
        y = y * self.weight.view(shape) + self.bias.view(shape)
    if self.track_running_stats and self.running_mean is not None:
        with torch.no_grad():
            self.num_batches_tracked += 1
            factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            unbiased = var.detach() * (n / (n - 1.0).clamp(min=1.0))
            self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
            self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)
    return y.to(x.dtype)


def sync_batchnorm(model: nn.Module) -> int:
    """Make every batch norm layer of ``model`` normalise over the global batch in training (in place; the
    state_dict is unchanged, so checkpoints load in one process). Returns the number of layers changed."""
    count = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and "forward" not in vars(m):
            m.forward = types.MethodType(_global_bn_forward, m)
            count += 1
    return count


# -- sharded inference ----------------------------------------------------------------------------------
@contextmanager
def sharded_inference() -> Iterator[None]:
    """Inside the block `adakit.inference.forward_domain` splits a domain across ranks and gathers the outputs.

    Every rank must enter it and make the same calls (collectives); outside it inference stays local, so a
    strategy running on rank 0 alone may still compute what it needs.
    """
    global _sharded
    old, _sharded = _sharded, _info.enabled
    try:
        yield
    finally:
        _sharded = old


def sharding() -> bool:
    """True inside `sharded_inference` in a multi-process run."""
    return _sharded


def rank_rows(n: int) -> np.ndarray:
    """This rank's contiguous share of ``range(n)`` for sharded inference."""
    return np.arange(n)[shard_slice(n)]


class RankRandom:
    """A random stream of this rank's own, for what each rank does with its own rows of a batch.

    Every rank seeds torch's global generator alike, which the work on the gathered global batch needs (the
    objective's draws, e.g. a discriminator's dropout, stay the same on every rank). Loading a rank's slice
    (augmentation, its loader workers' seeds) and the model's pass over it (dropout) draw from this stream
    instead, seeded by (seed, rank): without it each crop, flip and dropout mask was drawn once and reused by
    every rank's slice. Reproducible for a given seed and world size; a no-op in one process.
    """

    def __init__(self, seed: int, device: torch.device):
        self.enabled = _info.enabled
        if not self.enabled:
            return
        rank_seed = int(np.random.SeedSequence([seed, _info.rank]).generate_state(1)[0])
        self.cpu = torch.Generator().manual_seed(rank_seed).get_state()
        self.device = device if device.type == "cuda" else None
        self.cuda = None
        if self.device is not None:
            with torch.cuda.device(self.device):
                shared = torch.cuda.get_rng_state()
                torch.cuda.manual_seed(rank_seed)
                self.cuda = torch.cuda.get_rng_state()
                torch.cuda.set_rng_state(shared)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        shared = torch.get_rng_state()
        torch.set_rng_state(self.cpu)
        if self.device is not None:
            shared_cuda = torch.cuda.get_rng_state(self.device)
            torch.cuda.set_rng_state(self.cuda, self.device)
        try:
            yield
        finally:
            self.cpu = torch.get_rng_state()
            torch.set_rng_state(shared)
            if self.device is not None:
                self.cuda = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(shared_cuda, self.device)

"""Batched forward passes over a whole domain, and accuracy."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adakit.data.domain import Domain
from adakit.data.loading import batches
from adakit.devices import check_device
from adakit.progress import pass_bar


@torch.no_grad()
def forward_domain(model: nn.Module, domain: Domain, batch_size: int = 256, device: torch.device | str = "cpu",
                   keep_on_device: bool = False, num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Features f (N, m) and logits z (N, C) of every sample, in eval mode, float32: on the CPU, or with
    ``keep_on_device`` on ``device`` (the model's device), so a CUDA run's pool outputs never visit the host.

    The batches are written into one preallocated (N, m) and one (N, C) tensor on ``device`` (no list of batches
    concatenated at the end: the peak is one copy of the outputs, not two); the CPU copy, when one is asked for,
    is the last step. On a CPU device both settings return the very same tensors. ``num_workers`` > 0 loads the
    batches ahead in that many worker processes (image files; pinned memory for a CUDA device), as training does
    (`adakit.data.loading.batches`); the outputs are the same.

    ``device`` is checked as ``train.device`` is (`adakit.devices.check_device`: a CUDA device this machine lacks
    is a `ConfigError`); "meta" is allowed too (no data: with ``keep_on_device``, for tests).

    Inside `adakit.distributed.sharded_inference` (a torchrun run) each rank computes a contiguous share of the
    domain and the shares are gathered (padded all_gather) into the same order on every rank.
    """
    from adakit import distributed

    dev = check_device(device, "forward_domain: device", extra_types=("meta",))  # meta: the tests' stand-in GPU
    was_training = model.training
    model.eval()
    rows = distributed.rank_rows(len(domain)) if distributed.sharding() else np.arange(len(domain))
    channels_last = dev.type == "cuda" and getattr(model, "channels_last", False)
    feats = logits = None
    keys = [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]
    loaded = batches(domain, keys, num_workers, pin=dev.type == "cuda")
    with pass_bar(len(keys), f"inference on {domain.name}") as bar:
        for start, x in zip(range(0, len(rows), batch_size), loaded):
            x = x.to(dev, non_blocking=True)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            f, z = model(x)
            if feats is None:  # the widths are known from the first batch (a user's module may not state them)
                feats = torch.empty(len(rows), f.shape[1], dtype=torch.float32, device=f.device)
                logits = torch.empty(len(rows), z.shape[1], dtype=torch.float32, device=z.device)
            feats[start:start + len(f)] = f  # cast to float32 in place (bf16 under autocast)
            logits[start:start + len(z)] = z
            bar.advance()
    model.train(was_training)
    if feats is None:  # an empty share (more ranks than samples) or an empty domain
        feats = torch.zeros(0, int(model.feature_dim), device=dev)
        logits = torch.zeros(0, int(model.num_classes), device=dev)
    f, z = feats, logits
    if distributed.sharding():
        counts = distributed.shard_counts(len(domain))
        f, z = distributed.gather_rows(f, counts), distributed.gather_rows(z, counts)
    if keep_on_device:
        return f, z
    return f.cpu(), z.cpu()  # the one host copy (none on a CPU device: .cpu() returns the same tensor)


def accuracy(logits: torch.Tensor, y: np.ndarray) -> dict[str, float]:
    """Overall accuracy and mean per-class accuracy over samples with known labels."""
    y_t = torch.as_tensor(y, device=logits.device)  # logits may stay on the GPU (forward_domain keep_on_device)
    known = y_t >= 0
    pred = logits.argmax(1)[known]
    y_t = y_t[known]
    correct = (pred == y_t).float()
    counts = torch.bincount(y_t, minlength=logits.shape[1]).float()
    hits = torch.bincount(y_t, weights=correct, minlength=logits.shape[1])
    present = counts > 0
    return {"accuracy": float(correct.mean()), "mean_class_accuracy": float((hits[present] / counts[present]).mean())}

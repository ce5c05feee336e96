"""Batched forward passes over a whole domain, and accuracy."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adakit.data.domain import Domain


@torch.no_grad()
def forward_domain(model: nn.Module, domain: Domain, batch_size: int = 256,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Features f (N, m) and logits z (N, C) of every sample, in eval mode, on CPU float32.

    Inside `adakit.distributed.sharded_inference` (a torchrun run) each rank computes a contiguous share of the
    domain and the shares are gathered (padded all_gather) into the same order on every rank.
    """
    from adakit import distributed

    was_training = model.training
    model.eval()
    rows = distributed.rank_rows(len(domain)) if distributed.sharding() else np.arange(len(domain))
    dev = torch.device(device)
    channels_last = dev.type == "cuda" and getattr(model, "channels_last", False)
    feats, logits = [], []
    for start in range(0, len(rows), batch_size):
        x = domain.load(rows[start:start + batch_size]).to(dev, non_blocking=True)
        if channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        f, z = model(x)
        feats.append(f.float())
        logits.append(z.float())
    model.train(was_training)
    if not feats:  # an empty share (more ranks than samples) or an empty domain
        feats = [torch.zeros(0, int(model.feature_dim), device=dev)]
        logits = [torch.zeros(0, int(model.num_classes), device=dev)]
    f, z = torch.cat(feats), torch.cat(logits)
    if distributed.sharding():
        counts = distributed.shard_counts(len(domain))
        f, z = distributed.gather_rows(f, counts), distributed.gather_rows(z, counts)
    return f.cpu(), z.cpu()


def accuracy(logits: torch.Tensor, y: np.ndarray) -> dict[str, float]:
    """Overall accuracy and mean per-class accuracy over samples with known labels."""
    y_t = torch.as_tensor(y)
    known = y_t >= 0
    pred = logits.argmax(1)[known]
    y_t = y_t[known]
    correct = (pred == y_t).float()
    counts = torch.bincount(y_t, minlength=logits.shape[1]).float()
    hits = torch.bincount(y_t, weights=correct, minlength=logits.shape[1])
    present = counts > 0
    return {"accuracy": float(correct.mean()), "mean_class_accuracy": float((hits[present] / counts[present]).mean())}

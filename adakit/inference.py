"""Batched forward passes over a whole domain, and accuracy."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adakit.data.domain import Domain


@torch.no_grad()
def forward_domain(model: nn.Module, domain: Domain, batch_size: int = 256,
                   device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Features f (N, m) and logits z (N, C) of every sample, in eval mode, on CPU float32."""
    was_training = model.training
    model.eval()
    feats, logits = [], []
    for start in range(0, len(domain), batch_size):
        idx = np.arange(start, min(start + batch_size, len(domain)))
        f, z = model(domain.load(idx).to(device))
        feats.append(f.float().cpu())
        logits.append(z.float().cpu())
    model.train(was_training)
    return torch.cat(feats), torch.cat(logits)


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

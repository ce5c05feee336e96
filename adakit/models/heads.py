"""Bottleneck and classifier heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Bottleneck(nn.Module):
    """Linear + BatchNorm + ReLU (the CDAN / MDD codebases' bottleneck), 256-d by default."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, out_dim), nn.BatchNorm1d(out_dim), nn.ReLU(),
                                 nn.Dropout(dropout))
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class LinearHead(nn.Linear):
    """Linear classifier c(f) = W f + b."""


class CosineHead(nn.Module):
    """Cosine classifier for MME (Saito et al., ICCV 2019, §3.1): z = W f̂ / T, W rows and f L2-normalised."""

    def __init__(self, in_dim: int, num_classes: int, temperature: float = 0.05):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_dim))
        nn.init.xavier_normal_(self.weight)
        self.temperature = temperature
        self.bias = None

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(f, dim=1), F.normalize(self.weight, dim=1)) / self.temperature

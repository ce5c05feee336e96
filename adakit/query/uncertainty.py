"""Uncertainty scores of the probabilities p (N, C), vectorised."""

from __future__ import annotations

import torch


def entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ_c p_c log p_c (0·log 0 = 0)."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)


def least_confidence(p: torch.Tensor) -> torch.Tensor:
    """1 − p1."""
    return 1.0 - p.max(dim=1).values


def margin(p: torch.Tensor) -> torch.Tensor:
    """1 − (p1 − p2), p1 ≥ p2 the two largest probabilities (SDM, Eq. 3)."""
    top2 = p.topk(2, dim=1).values
    return 1.0 - (top2[:, 0] - top2[:, 1])

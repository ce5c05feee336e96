"""Uncertainty scores of the probabilities p (N, C), vectorised."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ_c p_c log p_c (0·log 0 = 0)."""
    return -(p * torch.log(p.clamp_min(1e-12))).sum(dim=1)


def least_confidence(p: torch.Tensor) -> torch.Tensor:
    """1 − p1, in float64 (float32 rounding of 1 − p1 merges distinct p1 near 1 into false ties)."""
    return 1.0 - p.max(dim=1).values.double()


def margin(p: torch.Tensor) -> torch.Tensor:
    """1 − (p1 − p2), p1 ≥ p2 the two largest probabilities (SDM, Eq. 3), in float64.

    In float32, 1 − (p1 − p2) rounds gaps below ~6e-8 apart onto the same value (false ties, then broken at
    random by `top_k`); the difference of two float32 numbers is exact in float64, so the ranking follows
    the gap p1 − p2 exactly.
    """
    top2 = top_two(p).double()
    return 1.0 - (top2[:, 0] - top2[:, 1])


def top_two(p: torch.Tensor) -> torch.Tensor:
    """(N, 2): the largest and the second-largest entry of each row (equal when the top is tied).

    On the CPU a numpy partition (`_cpu_top_two`: about 4× faster than ``topk(2, dim=1)`` on 200k × 65, same
    values); on other devices ``topk``.
    """
    if p.device.type != "cpu" or p.shape[1] < 2 or p.requires_grad or p.dtype not in (torch.float32, torch.float64):
        return p.topk(2, dim=1).values
    return _cpu_top_two(p)


def _cpu_top_two(p: torch.Tensor) -> torch.Tensor:
    c = p.shape[1]
    part = np.partition(p.numpy(), c - 2, axis=1)  # [c-2]: the second largest; after it only the largest
    return torch.from_numpy(np.ascontiguousarray(part[:, [c - 1, c - 2]]))


def score_rows(score: Callable[[torch.Tensor], torch.Tensor], p: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """``score(p[rows])`` for a row-wise ``score`` (each row's value depends on that row only).

    When ``rows`` are at least half of ``p``, every row is scored and the scores are indexed instead: the same
    values without gathering a copy of ``p`` (at 1M × 65 the copy took about as long as scoring it).
    """
    if 2 * len(rows) >= len(p):
        return score(p)[torch.as_tensor(rows, device=p.device)]
    return score(p[torch.as_tensor(rows, device=p.device)])

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
    top2 = top_two(p, nonnegative=True).double()
    return 1.0 - (top2[:, 0] - top2[:, 1])


#: entries of x per block of rows in `top_two` on the CPU (8 MiB of float32: the block and its two temporaries
#: stay in a large last-level cache; smaller blocks pay more per-call overhead than they save)
TOP_TWO_BLOCK = 2**21


def top_two(x: torch.Tensor, nonnegative: bool = False) -> torch.Tensor:
    """(N, 2): the largest and the second-largest entry of each row of finite ``x`` (equal when the top is tied).

    Exact (the entries themselves, no arithmetic on their values), without sort or host copy, so it runs on any
    device: a few full-width passes (`_top_two`), each one vectorised elementwise op or row reduction; with
    ``nonnegative=True`` (probabilities) one pass instead of three for pushing the top down. On the CPU by blocks
    of rows. On 1 thread, 65 columns (AMD EPYC, AVX2 kernels): 1.1 ms at 20k rows, 15 ms at 200k, 71 ms at 1M,
    against 2.2, 23 and 117 ms for the pairwise max/min tournament it replaced and 4.0 ms at 20k for a numpy
    partition; ``topk(2, dim=1)`` takes 14 ms at 20k. ``topk`` where autograd needs the graph.
    """
    if x.requires_grad or x.shape[1] < 2:
        return x.topk(2, dim=1).values
    rows = max(1, TOP_TWO_BLOCK // x.shape[1])
    if x.device.type != "cpu" or len(x) <= rows:
        return _top_two(x, nonnegative)
    return torch.cat([_top_two(x[i:i + rows], nonnegative) for i in range(0, len(x), rows)])


def _top_two(x: torch.Tensor, nonnegative: bool) -> torch.Tensor:
    """`top_two` of one block: the top t = max_c x_c; below_c = sign(t − x_c), 1 where x_c < t and 0 where
    x_c = t (a difference of two floats is 0 only when they are equal); the second = max_c of x with the entries
    equal to t pushed below every other (times 0 when ``nonnegative``, else minus the dtype's largest value), or
    t itself when two or more entries equal t."""
    top = x.amax(1, keepdim=True)
    below = torch.sub(top, x).sign_()
    n_below = below.sum(1, dtype=torch.float32 if x.element_size() < 4 else None)  # (a count exact in float32)
    if nonnegative:
        second = below.mul_(x).amax(1)
    else:
        second = below.sub_(1).mul_(torch.finfo(x.dtype).max).add_(x).amax(1)
    top = top[:, 0]
    return torch.stack([top, torch.where(n_below <= x.shape[1] - 2, top, second)], 1)


def score_rows(score: Callable[[torch.Tensor], torch.Tensor], p: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
    """``score(p[rows])`` for a row-wise ``score`` (each row's value depends on that row only).

    When ``rows`` are at least half of ``p``, every row is scored and the scores are indexed instead: the same
    values without gathering a copy of ``p`` (at 1M × 65 the copy took about as long as scoring it).
    """
    if 2 * len(rows) >= len(p):
        return score(p)[torch.as_tensor(rows, device=p.device)]
    return score(p[torch.as_tensor(rows, device=p.device)])

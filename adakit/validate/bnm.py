"""Batch nuclear-norm validator."""

from __future__ import annotations

import numpy as np

from adakit.registry import register_validator
from adakit.validate.base import Validator


@register_validator("bnm")
class BatchNuclearNorm(Validator):
    """Batch nuclear-norm ‖P‖_* / N of the target pool's (N, C) probability matrix (Cui et al. 2020, Eq. 8).

    Higher is better: confident and diverse predictions. Divided by N as in the paper's loss and pytorch-adapt's
    BNMValidator (some reimplementations take the mean singular value, ‖P‖_* / min(N, C): for one pool a constant
    factor, the same ranking). Certain predictions give 1/√N all in one class and √(C/N) spread evenly over C ≤ N
    classes; uniform ones give the minimum, 1/√(N·C). The singular values come from the C×C matrix PᵀP
    (σ_k = √λ_k), so the cost is O(N·C²) and no N×N matrix is formed.
    """

    needs = ("probs",)

    def score(self, *, probs: np.ndarray, **_) -> float:
        p = np.asarray(probs, dtype=np.float64)
        eig = np.linalg.eigvalsh(p.T @ p)
        return float(np.sqrt(np.clip(eig, 0, None)).sum() / len(p))

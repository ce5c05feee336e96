"""Soft neighbourhood density validator, computed in row blocks (never an N×N matrix)."""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field

from adakit.params import Params
from adakit.registry import register_validator
from adakit.validate.base import Validator

#: elements of one block of similarities (rows × N): 2^24 float32 = 64 MiB
BLOCK_ELEMENTS = 1 << 24


class SNDParams(Params):
    temperature: float = Field(0.05, ge=0.005, description="temperature τ of the softmax over similarities")


def soft_neighbourhood_density(probs: np.ndarray | torch.Tensor, temperature: float = 0.05,
                               block_elements: int = BLOCK_ELEMENTS, device: torch.device | str | None = None) -> float:
    """(1/N)·Σ_i H(softmax_j≠i(s_ij)), s_ij = ⟨p̂_i, p̂_j⟩ / τ, p̂ = p/‖p‖, streamed over square tiles.

    With s' = s − 1/τ (≤ 0: 1/τ is the largest possible s, so no row maximum is needed), e = exp(s'), e_ii = 0,
    Z_i = Σ_j e_ij and S_i = Σ_j e_ij·s'_ij, the entropy is H_i = log Z_i − S_i / Z_i. Z and S are accumulated
    over tiles of at most ``block_elements`` similarities (nothing N×N is held); s is symmetric, so only tiles on
    or above the diagonal are computed and each adds to the sums of its rows and of its columns: N²/2
    similarities, one exp each. ``device``: where to compute (the run's device; default CPU).
    """
    dtype = torch.float32 if 2 / temperature < 80 else torch.float64  # exp(−2/τ) must not underflow
    p = (probs if isinstance(probs, torch.Tensor) else torch.as_tensor(np.asarray(probs))).to(device or "cpu", dtype)
    n = len(p)
    if n < 2:
        return 0.0
    pn = torch.nn.functional.normalize(p, dim=1)
    c = 1.0 / temperature
    t = max(1, min(n, math.isqrt(block_elements)))
    z = torch.zeros(n, dtype=torch.float64, device=p.device)
    s_sum = torch.zeros(n, dtype=torch.float64, device=p.device)
    bias = torch.full((1, 1), -c, dtype=dtype, device=p.device)
    for a in range(0, n, t):
        rows = pn[a:a + t]
        for b in range(a, n, t):
            sim = torch.addmm(bias, rows, pn[b:b + t].T, alpha=c)  # s' = s − 1/τ
            e = sim.exp()
            if a == b:
                e.fill_diagonal_(0)  # a sample is not its own neighbour
            z[a:a + t] += e.sum(1)
            if a != b:
                z[b:b + t] += e.sum(0)
            e.mul_(sim)
            s_sum[a:a + t] += e.sum(1)
            if a != b:
                s_sum[b:b + t] += e.sum(0)
    return float((torch.log(z) - s_sum / z).mean())


@register_validator("snd")
class SoftNeighbourhoodDensity(Validator):
    """Soft neighbourhood density (Saito et al. 2021, Eq. 1–3): mean entropy of each target sample's softmax over
    temperature-scaled cosine similarities (τ = 0.05) of the L2-normalised probability vectors.

    Higher is better (dense neighbourhoods of similar predictions). Degenerate case: a model that predicts nearly
    the same distribution for every sample (e.g. a barely trained one) has all similarities equal and the maximal
    score log(N−1); compare it only between reasonably trained checkpoints. Computed over tiles of the symmetric
    similarity matrix (half of it, one exp per pair), O(N²·C) time and O(tile) memory; the sample itself is
    excluded (weight 0; the paper's code gives it similarity −1/τ, which differs by < 1e-8).
    """

    Params = SNDParams
    needs = ("probs",)
    uses_device = True

    def score(self, *, probs: np.ndarray, device: torch.device | str | None = None, **_) -> float:
        return soft_neighbourhood_density(probs, self.params.temperature, device=device)

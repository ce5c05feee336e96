"""Soft neighbourhood density validator, computed in row blocks (never an N×N matrix)."""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field

from adakit.data.objects import numpy_tensor
from adakit.errors import ConfigError
from adakit.params import Params
from adakit.registry import register_validator
from adakit.validate.base import Validator

#: elements of one block of similarities (rows × N): 2^24 float32 = 64 MiB
BLOCK_ELEMENTS = 1 << 24
#: pools larger than this are scored on a seeded uniform subsample of this many rows (see `SNDParams.max_samples`)
MAX_SAMPLES = 30_000


class SNDParams(Params):
    """SND's parameters. ``max_samples``: the paper's SND (Saito et al. 2021, Eq. 1–3) scores all N target
    samples, which costs O(N²·C): 220 s of CPU time for N = 200k, C = 65 with one thread, where one LAS query on
    that pool costs 17 s. A larger pool is therefore scored on a seeded uniform subsample of ``max_samples``
    rows (`subsample_rows`: the same rows for every checkpoint of a pool, so checkpoints are compared on the
    same subset). 30,000 rows cost 4.7 s of CPU time, and on that 200k pool the score was within 0.001 of the
    exact one. On 10 models of varied quality and on 10 close checkpoints of one run at N = 50k, subsamples of
    20k and 30k rows ranked them exactly as the exact score did (Spearman and Kendall 1.0 for every seed; 5k
    and 10k rows: Spearman ≥ 0.988); see `benchmarks/results/validator_cost.md`. Pools of up to 30k rows
    (every dataset adakit benchmarks) are scored exactly.
    """

    temperature: float = Field(0.05, ge=0.005, description="temperature τ of the softmax over similarities")
    max_samples: int | None = Field(MAX_SAMPLES, ge=2, description="above this pool size, score a seeded uniform "
                                    "subsample of this many rows (the same rows for every checkpoint), O(n²·C) "
                                    "instead of O(N²·C); None = always exact")
    seed: int = Field(0, ge=0, description="seed of the subsample's row choice")


def subsample_rows(n: int, max_samples: int | None, seed: int = 0) -> np.ndarray | None:
    """The sorted rows SND scores when the pool has ``n`` > ``max_samples`` rows (None: all of them): a uniform
    choice without replacement from a generator seeded with ``seed``, so it depends only on (n, max_samples,
    seed) and every checkpoint of a run is scored on the same rows."""
    if max_samples is None or n <= max_samples:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, max_samples, replace=False))


def soft_neighbourhood_density(probs: np.ndarray | torch.Tensor, temperature: float = 0.05,
                               block_elements: int = BLOCK_ELEMENTS, device: torch.device | str | None = None,
                               max_samples: int | None = MAX_SAMPLES, seed: int = 0) -> float:
    """(1/N)·Σ_i H(softmax_j≠i(s_ij)), s_ij = ⟨p̂_i, p̂_j⟩ / τ, p̂ = p/‖p‖, streamed over square tiles.

    With s' = s − 1/τ (≤ 0: 1/τ is the largest possible s, so no row maximum is needed), e = exp(s'), e_ii = 0,
    Z_i = Σ_j e_ij and S_i = Σ_j e_ij·s'_ij, the entropy is H_i = log Z_i − S_i / Z_i. Z and S are accumulated
    over tiles of at most ``block_elements`` similarities (nothing N×N is held); s is symmetric, so only tiles on
    or above the diagonal are computed and each adds to the sums of its rows and of its columns: N²/2
    similarities, one exp each. ``device``: where to compute (the run's device; default CPU).

    A pool of N > ``max_samples`` rows is scored on the n = ``max_samples`` rows `subsample_rows` picks (seeded,
    uniform), which serve as both the samples and their candidate neighbours. This changes each sample's
    neighbourhood set (n − 1 candidates instead of N − 1) and hence the scale: Z_i shrinks by about (n−1)/(N−1)
    on average, so the entropies drop by about log((N−1)/(n−1)). That constant is added back, which keeps the
    score on the full pool's scale (within 0.002 of the exact score for n = 30k of N = 50k, measured) and keeps
    the degenerate maximum at log(N−1). It is the same for every checkpoint of a pool, so rankings are those of
    the subsample.
    """
    if max_samples is not None and max_samples < 2:
        raise ConfigError(f"snd: max_samples={max_samples}; use at least 2 rows, or None for the exact score")
    dtype = torch.float32 if 2 / temperature < 80 else torch.float64  # exp(−2/τ) must not underflow
    p = probs if isinstance(probs, torch.Tensor) else numpy_tensor(probs)
    n_pool = len(p)
    picked = subsample_rows(n_pool, max_samples, seed)
    if picked is not None:
        p = p[torch.from_numpy(picked).to(p.device)]
    p = p.to(device or "cpu", dtype)
    n = len(p)
    if n < 2:
        return 0.0
    rescale = math.log((n_pool - 1) / (n - 1))  # 0 when exact
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
    return float((torch.log(z) - s_sum / z).mean()) + rescale


@register_validator("snd")
class SoftNeighbourhoodDensity(Validator):
    """Soft neighbourhood density (Saito et al. 2021, Eq. 1–3): mean entropy of each target sample's softmax over
    temperature-scaled cosine similarities (τ = 0.05) of the L2-normalised probability vectors.

    Higher is better (dense neighbourhoods of similar predictions). Degenerate case: a model that predicts nearly
    the same distribution for every sample (e.g. a barely trained one) has all similarities equal and the maximal
    score log(N−1); compare it only between reasonably trained checkpoints. Computed over tiles of the symmetric
    similarity matrix (half of it, one exp per pair), O(N²·C) time and O(tile) memory; the sample itself is
    excluded (weight 0; the paper's code gives it similarity −1/τ, which differs by < 1e-8). The entropy is exact,
    Σ −q·log q as in Eq. 3 and pytorch-adapt's SNDValidator; the paper's released code takes log(q + 1e-5), which
    lowers the score by at most log(1 + 1e-5·(N − 1)) (measured on random 31-class predictions: 0.003 for
    N = 795, 0.007 for N = 2,817), so its numbers are slightly below adakit's on larger pools. With one or two
    samples the score is 0 (no candidate neighbour, or one). Pools of more than ``max_samples`` (30,000) rows are
    scored on a seeded uniform subsample, rescaled to the pool's size (`soft_neighbourhood_density`, `SNDParams`):
    the paper scores all N samples, so this is an approximation.
    """

    Params = SNDParams
    needs = ("probs",)
    uses_device = True

    def score(self, *, probs: np.ndarray, device: torch.device | str | None = None, **_) -> float:
        return soft_neighbourhood_density(probs, self.params.temperature, device=device,
                                          max_samples=self.params.max_samples, seed=self.params.seed)

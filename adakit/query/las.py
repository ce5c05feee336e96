"""LAS: local context-aware sampling (LADA)."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from adakit.params import Params
from adakit.query._algorithms import kmeans_select, knn
from adakit.query.base import Selection, Strategy, top_k
from adakit.registry import register_strategy


class LasParams(Params):
    k: int = Field(10, ge=1, description="neighbourhood size K, set per benchmark as LADA §4.1: 10 for Office-Home, "
                                         "VisDA and DomainNet (the default), 5 for Office-31 (every domain, Amazon "
                                         "included: set k: 5 in Office-31 configs)")
    budget_ratio: float = Field(0.05, gt=0, le=1, description="total budget B as a fraction of the pool, used only "
                                "for the oversampling ratio M = ⌈0.55/B − 1⌉; unless given, a run sets it to "
                                "budget.total (a fraction) or to the count over the pool size (a count)")
    oversample: int | None = Field(None, ge=0, description="the oversampling ratio M itself (overrides "
                                                           "budget_ratio; LADA halves it on VisDA)")
    neighbours: Literal["unlabelled", "pool"] = Field(
        "unlabelled", description="where neighbours come from: the unlabelled pool (the released code) or the "
                                  "whole pool")
    n_init: int = Field(1, ge=1, description="k-means restarts for the diverse pick among candidates")
    max_iter: int = Field(300, ge=1, description="k-means Lloyd iterations for the diverse pick among candidates")
    search: Literal["auto", "exact", "ivf"] = Field(
        "auto", description="neighbour search: exact (faiss IndexFlatIP on CPU tensors, blocked torch on a GPU or "
                            "without faiss), ivf (approximate "
                            "inverted file, nprobe clusters), or auto: exact up to 50,000 samples, ivf above")
    nprobe: int = Field(8, ge=1, description="ivf neighbour search: how many nearest clusters' rows each "
                                             "cluster's rows are compared with (recall@10 on real features about "
                                             "0.92 at 8, 0.97 at 16, 0.99 at 32)")
    kmeans: Literal["auto", "sklearn", "faiss", "torch"] = Field(
        "auto", description="k-means among candidates: sklearn, faiss (greedy k-means++ seeding on 8·budget draws, "
                            "then faiss_iter iterations, on the CPU), torch (the same on the pool's device), or "
                            "auto: sklearn while candidates × budget ≤ 1e7; above, torch for a GPU pool, else "
                            "faiss (torch without faiss)")
    faiss_iter: int = Field(8, ge=1, description="Lloyd iterations of the faiss or torch k-means")


def oversampling_ratio(budget_ratio: float) -> int:
    """M = ⌈0.55/B − 1⌉ (LADA §4.1; 10 at B = 5%, 5 at 10%), rounded to 9 decimals before the ceiling."""
    return max(0, math.ceil(round(0.55 / budget_ratio - 1.0, 9)))


#: rows whose largest entry lies below this are scaled up by a power of two before they are normalised
TINY_ROW = 2.0 ** -30


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """The rows of ``x`` scaled to unit norm, as ``F.normalize(x.float(), dim=1)``, also rows of norm below its
    eps = 1e-12 (which it leaves almost as they are, so their cosines are ~0): rows whose largest entry is below
    `TINY_ROW` are first multiplied by a power of two (exact) that brings it into [0.5, 1). Other rows are
    normalised exactly as by ``F.normalize``; zero rows stay zero."""
    x = x.float()
    top = x.abs().amax(dim=1) if x.numel() else x.new_zeros(len(x))
    rows = torch.nonzero((top < TINY_ROW) & (top > 0)).flatten()
    if len(rows):
        _, exp = torch.frexp(top[rows])
        x = x.clone()
        x[rows] = (x[rows].double() * torch.exp2(-exp.double())[:, None]).float()  # (float64: 2^149 fits)
    return F.normalize(x, dim=1)


def local_inconsistency(emb: torch.Tensor, probs: torch.Tensor, k: int, *, block: int | None = None,
                        backend: str = "auto", nprobe: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """LI and its smoothed form Q of every row (LADA, Eq. 1-2 as in the released code).

    e = normalised embeddings (`unit_rows`, also rows of tiny norm); x_k the K nearest neighbours by cosine
    (self excluded); w_k = sim_k / Σ_k sim_k; LI(x) = −Σ_k w_k·p(x_k)ᵀp(x); Q(x) = LI(x) + Σ_k w_k·LI(x_k).
    The paper's 1/K factors are dropped, as in the released code (docs/methods.md). Rows whose similarities sum
    to 0 get uniform weights. Memory O(N·(K + C)); neighbours by `knn` (never N×N; ``backend``: "auto" is
    exact up to 50,000 rows and the approximate inverted file above, ``nprobe`` clusters per cluster).
    Returns (LI, Q), both (N,).
    """
    e = unit_rows(emb)
    sims, nn = knn(e, k, exclude_self=True, normalize=False, block=block, backend=backend,  # type: ignore[arg-type]
                   nprobe=nprobe)
    sims = sims.double()
    total = sims.sum(dim=1, keepdim=True)
    w = torch.where(total.abs() > 1e-12, sims / total, torch.full_like(sims, 1.0 / k))
    p = probs.double().to(e.device)
    li = torch.zeros(len(p), dtype=torch.float64, device=e.device)
    for j in range(k):  # K ≤ ~10 passes of (N, C), instead of an (N, K, C) tensor
        li -= w[:, j] * (p[nn[:, j]] * p).sum(dim=1)
    q = li + (w * li[nn]).sum(dim=1)
    return li, q


@register_strategy("las")
class LocalContextAwareSampling(Strategy):
    """Local context-aware sampling, LAS (Sun et al., LADA, §3.1, Eq. 1-2).

    Scores Q = smoothed local inconsistency (`local_inconsistency`: Eq. 1 then Eq. 2, no 1/K factor as in
    the released code). Candidates: the top b·(1 + M) unlabelled samples by Q (ties by rng), M = ⌈0.55/B − 1⌉
    from the total budget fraction B (``budget_ratio``, 5% → M = 10) or ``oversample``; then k-means with b
    clusters on the candidates' normalised embeddings (as the code) and the candidate nearest each centroid,
    without duplicates (collapsed clusters are filled with the next nearest free candidate).
    Neighbours come from the unlabelled pool by default, as the released code (it embeds only the
    unlabelled target); ``neighbours: pool`` uses every pool sample (labelled ones then smooth Q but are
    never picked). K (``k``) is set per benchmark, not by pool size (LADA §4.1): 10 by default (Office-Home,
    VisDA, DomainNet), 5 for Office-31 (every domain, Amazon's 2,817 samples included); capped at the
    number of other samples. Large pools: neighbours from an approximate inverted file above 50,000
    samples and faiss's k-means above candidates × budget = 1e7 (``search``, ``kmeans``; recall and
    agreement with the exact path in benchmarks/results/query_speed.md). Scores: Q of the picks.
    """

    Params = LasParams

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        cand = view.unlabelled_indices
        budget = min(int(budget), len(cand))
        if budget <= 0:
            return Selection(np.empty(0, np.int64), np.empty(0))
        use_pool = self.params.neighbours == "pool"
        subset = np.arange(len(view)) if use_pool else cand
        k = min(self.params.k, len(subset) - 1)
        feats = view.embeddings
        dev = feats.device  # Q is computed and ranked there
        if k >= 1:
            idx = torch.as_tensor(subset, device=dev)
            _, q_all = local_inconsistency(feats[idx], view.probs[idx.to(view.probs.device)], k,
                                           backend=self.params.search, nprobe=self.params.nprobe)
            q = q_all[torch.as_tensor(cand, device=dev)] if use_pool else q_all
        else:  # a single sample: no neighbours
            q = torch.zeros(len(cand), dtype=torch.float64, device=dev)
        m = self.params.oversample if self.params.oversample is not None else oversampling_ratio(
            self.params.budget_ratio)
        top = top_k(q, np.arange(len(cand)), budget * (1 + m), rng).indices  # positions in cand
        emb = unit_rows(feats[torch.as_tensor(cand[top], device=dev)])
        # k-means: scikit-learn / faiss on a CPU copy of the candidates, torch on dev; the nearest pick runs on dev
        picks = top[kmeans_select(emb, budget, rng, n_init=self.params.n_init, max_iter=self.params.max_iter,
                                  backend=self.params.kmeans, faiss_iter=self.params.faiss_iter)]
        return Selection(cand[picks], q[torch.as_tensor(picks, device=dev)])

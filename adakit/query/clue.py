"""CLUE: clustering uncertainty-weighted embeddings."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field

from adakit.params import Params
from adakit.query._algorithms import centred, kmeans_select
from adakit.query.base import Selection, Strategy
from adakit.registry import register_strategy

#: the released CLUE code's floor inside the entropy's log: H = −Σ (p + ε)·log(p + ε)
ENTROPY_FLOOR = 1e-8


class ClueParams(Params):
    temperature: float = Field(0.1, gt=0, description="softmax temperature T of the uncertainty weights "
                                                       "−Σ (p + 1e-8)·log(p + 1e-8), p = softmax(z / T) (the CLUE "
                                                       "code's default 0.1 and entropy floor)")
    n_init: int = Field(1, ge=1, description="k-means restarts (each backend; the best objective is kept)")
    max_iter: int = Field(300, ge=1, description="k-means Lloyd iterations (scikit-learn KMeans)")
    kmeans: Literal["auto", "sklearn", "faiss", "torch"] = Field(
        "auto", description="k-means implementation: sklearn (k-means++ init, to convergence), faiss "
                            "(greedy k-means++ seeding on a weighted sample of 8·budget draws, then faiss_iter Lloyd "
                            "iterations on the CPU; pip install 'adakit[faiss]'), torch (the same seeding and "
                            "iterations in torch, on the pool's device), or auto: sklearn while pool size × budget "
                            "≤ 1e7; above, torch for a GPU pool, else faiss (torch without faiss)")
    faiss_iter: int = Field(8, ge=1, description="Lloyd iterations of the faiss or torch k-means")


def clue_weights(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """w = −Σ_c (p_c + ε)·log(p_c + ε), p = softmax(z / T), ε = 1e-8, in float64 (CLUE's released code).

    The floor ε keeps every weight above 0, also on saturated logits (p one-hot): such a sample weighs
    ≈ (C − 1)·ε·log(1/ε) (1.2e-5 for C = 65) instead of exactly 0, so a pool of confident predictions is
    still clustered as a whole (near-uniform weights) rather than on its few uncertain samples only.
    """
    p = torch.softmax(logits.double() / temperature, dim=1) + ENTROPY_FLOOR
    return -(p * torch.log(p)).sum(dim=1)


@register_strategy("clue")
class Clue(Strategy):
    """Clustering Uncertainty-weighted Embeddings (Prabhu et al., ICCV 2021, Eq. 5-6).

    Weighted k-means with b clusters over the unlabelled embeddings f, each sample weighted by its
    uncertainty H(softmax(z / T)) (T = 0.1 as in the released code; the paper's Eq. 6 writes H(Y|x)), then
    the sample nearest each centroid (Euclidean), without duplicates (a centroid whose nearest sample is
    taken by a closer centroid takes its next nearest). The entropy carries the released code's floor,
    −Σ (p + 1e-8)·log(p + 1e-8) (`clue_weights`): on saturated logits weights stay finite and above 0 and
    the selection is the code's. k-means is scikit-learn's KMeans (k-means++ init, ``n_init`` restarts,
    seeded from the rng) up to pool × budget = 1e7; above, ``faiss_iter`` weighted Lloyd iterations from a
    greedy k-means++ seeding, faiss's on the CPU or torch's on a GPU pool (``kmeans``). Scores: the picks'
    weights.
    """

    Params = ClueParams

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        cand = view.unlabelled_indices
        if budget <= 0 or len(cand) == 0:
            return Selection(np.empty(0, np.int64), np.empty(0))
        logits, feats = view.logits, view.embeddings
        w = clue_weights(logits[torch.as_tensor(cand, device=logits.device)], self.params.temperature)
        # k-means: scikit-learn / faiss on a CPU copy of the embeddings, torch on their device; the nearest-sample
        # pick runs on the embeddings' device
        x, = centred(feats[torch.as_tensor(cand, device=feats.device)].float())  # (features with a large offset)
        picks = kmeans_select(x, budget, rng, weights=w,
                              n_init=self.params.n_init, max_iter=self.params.max_iter, backend=self.params.kmeans,
                              faiss_iter=self.params.faiss_iter)
        return Selection(cand[picks], w[torch.as_tensor(picks, device=w.device)])

"""BADGE: k-means++ seeding on gradient embeddings, with factorised distances."""

from __future__ import annotations

import numpy as np
import torch

from adakit.params import Params
from adakit.query._algorithms import OuterProductPoints, argmax_random, kmeans_pp
from adakit.query.base import Selection, Strategy
from adakit.registry import register_strategy


class BadgeParams(Params):
    pass


def gradient_embedding_factors(probs: torch.Tensor, feats: torch.Tensor) -> OuterProductPoints:
    """BADGE's hallucinated last-layer gradients g_x = (onehot(ŷ) − p) ⊗ f as factors (never materialised).

    Ash et al., ICLR 2020, Eq. 1: (g_x)_c = (1[ŷ = c] − p_c)·f with ŷ = argmax p (sign irrelevant for
    distances). ``OuterProductPoints(a, f)`` holds a = onehot(ŷ) − p (N, C) and f (N, m).
    """
    a = -probs.clone()
    a[torch.arange(len(a), device=a.device), probs.argmax(dim=1)] += 1.0
    return OuterProductPoints(a, feats)


@register_strategy("badge")
class Badge(Strategy):
    """Diverse gradient embeddings: k-means++ seeding on (onehot(ŷ) − p) ⊗ f (Ash et al., ICLR 2020, Alg. 1).

    Embeddings g_x = (onehot(ŷ) − p) ⊗ f of the unlabelled samples (Eq. 1, cross-entropy gradient w.r.t. the
    last layer at the predicted label). First pick: the largest ||g_x|| (as the authors' code), then D²
    sampling without replacement (k-MEANS++ seeding, §3). Distances are factorised:
    ||a⊗x − b⊗y||² = |a|²|x|² + |b|²|y|² − 2(a·b)(x·y), so memory stays O(N·(C + m)) and time O(b·N·(C + m)).
    The head's bias gradient is not part of the embedding (as in the paper). Scores: D² at pick time
    (||g||² for the first pick).
    """

    Params = BadgeParams

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        cand = view.unlabelled_indices
        if budget <= 0 or len(cand) == 0:
            return Selection(np.empty(0, np.int64), np.empty(0))
        probs = view.probs.float()  # computed on its device
        # factors of the whole pool (the labelled rows are no candidates): no gathered copy of the embeddings
        pts = gradient_embedding_factors(probs, view.embeddings.float().to(probs.device))
        first = int(cand[argmax_random(pts.sq_norms[torch.as_tensor(cand, device=probs.device)], rng)])
        picks, d2 = kmeans_pp(pts, budget, rng, first=first, candidates=cand)
        d2[0] = float(pts.sq_norms[first])
        return Selection(picks, d2)

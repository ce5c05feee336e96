"""CLUE: clustering uncertainty-weighted embeddings."""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from adakit.params import Params
from adakit.query._algorithms import kmeans_select
from adakit.query.base import Selection, Strategy
from adakit.query.uncertainty import entropy
from adakit.registry import register_strategy


class ClueParams(Params):
    #: softmax temperature of the uncertainty weights H(softmax(z / T)) (the CLUE code's default 0.1)
    temperature: float = Field(0.1, gt=0)
    #: k-means restarts and Lloyd iterations (scikit-learn KMeans)
    n_init: int = Field(1, ge=1)
    max_iter: int = Field(300, ge=1)


@register_strategy("clue")
class Clue(Strategy):
    """Clustering Uncertainty-weighted Embeddings (Prabhu et al., ICCV 2021, Eq. 5-6).

    Weighted k-means with b clusters over the unlabelled embeddings f, each sample weighted by its
    uncertainty H(softmax(z / T)) (T = 0.1 as in the released code; the paper's Eq. 6 writes H(Y|x)), then
    the sample nearest each centroid (Euclidean), without duplicates (a centroid whose nearest sample is
    taken by a closer centroid takes its next nearest). k-means is scikit-learn's KMeans (k-means++ init,
    ``n_init`` restarts, seeded from the rng). Scores: the picks' weights H(softmax(z / T)).
    When every weight is 0 the clustering is unweighted.
    """

    Params = ClueParams

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        cand = view.unlabelled_indices
        if budget <= 0 or len(cand) == 0:
            return Selection(np.empty(0, np.int64), np.empty(0))
        idx = torch.as_tensor(cand)
        w = entropy(torch.softmax(view.logits[idx].double() / self.params.temperature, dim=1))
        picks = kmeans_select(view.embeddings[idx].float(), budget, rng, weights=w, n_init=self.params.n_init,
                              max_iter=self.params.max_iter)
        return Selection(cand[picks], w.numpy()[picks])

"""Importance-weighted accuracy on a round's queried batch."""

from __future__ import annotations

import numpy as np

from adakit.registry import register_validator
from adakit.validate.base import Validator
from adakit.validate.queried_acc import queried_correct


@register_validator("queried_acc_iw")
class WeightedQueriedBatchAccuracy(Validator):
    """Queried-batch accuracy weighted by inverse inclusion probabilities, Σ(c_i/π_i)/Σ(1/π_i): the self-normalised
    (Hájek) form of the Horvitz–Thompson estimate of the unlabelled pool's accuracy (importance-weighted
    evaluation of actively chosen samples, as in Kossen et al. 2021, active testing).

    Higher is better. It needs π_i, the true probability that the strategy selected sample i, and even then it is
    consistent rather than exactly unbiased: a ratio of two estimates, its bias shrinks as 1/b (three samples kept
    independently with π = 0.9, 0.5, 0.2, correct 1, 0, 1: 0.691 expected over the non-empty batches, the pool's
    accuracy is 0.667). The unbiased
    Horvitz–Thompson form (1/N)·Σ c_i/π_i needs the pool size N and can exceed 1. With equal π the two agree with
    the plain batch accuracy, which is unbiased under uniform sampling. adakit
    records it for ``random`` sampling (π = b / unlabelled). Top-k strategies (margin, entropy, LAS, ...) pick
    deterministically: their scores are not selection probabilities, so no proper weight exists; BADGE's
    k-means++ seeding samples, but its inclusion probabilities have no closed form. Runs record it for random only,
    where every sample of a round has the same π: the weights cancel and it equals ``queried_acc`` (each round,
    and so a sweep's mean over rounds). It differs on arrays with unequal π (e.g. your own stochastic sampler).
    """

    needs = ("queried_probs", "queried_labels", "queried_inclusion")
    alternatives = {"queried_probs": "queried_pred"}
    previous_round = True

    def score(self, *, queried_labels: np.ndarray, queried_inclusion: np.ndarray,
              queried_probs: np.ndarray | None = None, queried_pred: np.ndarray | None = None, **_) -> float:
        w = 1.0 / np.asarray(queried_inclusion, dtype=np.float64)
        return float((w * queried_correct(queried_labels, queried_probs, queried_pred)).sum() / w.sum())

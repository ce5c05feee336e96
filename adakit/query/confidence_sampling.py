"""Least-confidence sampling."""

from __future__ import annotations

import numpy as np

from adakit.query.base import Selection, Strategy, top_k
from adakit.query.uncertainty import least_confidence, score_rows
from adakit.registry import register_strategy


@register_strategy("confidence")
class ConfidenceSampling(Strategy):
    """Lowest top-class probability, score 1 − p1 (Lewis & Gale, SIGIR 1994)."""

    probs_only = True

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        cand = view.unlabelled_indices
        return top_k(score_rows(least_confidence, view.probs, cand), cand, budget, rng)  # ranked on the probs' device

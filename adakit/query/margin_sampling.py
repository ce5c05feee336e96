"""Margin sampling."""

from __future__ import annotations

import numpy as np

from adakit.query.base import Selection, Strategy, top_k
from adakit.query.uncertainty import margin, score_rows
from adakit.registry import register_strategy


@register_strategy("margin")
class MarginSampling(Strategy):
    """Smallest gap between the two most probable classes, score 1 − (p1 − p2) (Scheffer et al. 2001)."""

    probs_only = True

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        cand = view.unlabelled_indices
        return top_k(score_rows(margin, view.probs, cand), cand, budget, rng)  # ranked on the probs' device

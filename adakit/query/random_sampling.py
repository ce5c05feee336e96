"""Uniform random sampling."""

from __future__ import annotations

import numpy as np

from adakit.query.base import Selection, Strategy
from adakit.registry import register_strategy


@register_strategy("random")
class RandomSampling(Strategy):
    """Uniformly random unlabelled target samples (the baseline every paper reports)."""

    probs_only = True

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        cand = view.unlabelled_indices
        pick = rng.permutation(len(cand))[: min(budget, len(cand))]
        return Selection(cand[pick], np.zeros(len(pick)))

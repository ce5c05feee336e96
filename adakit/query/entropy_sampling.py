"""Maximum-entropy sampling."""

from __future__ import annotations

import numpy as np

from adakit.query.base import Selection, Strategy, top_k
from adakit.query.uncertainty import entropy, score_rows
from adakit.registry import register_strategy


@register_strategy("entropy")
class EntropySampling(Strategy):
    """Highest predictive entropy H(p) (Wang & Shang, IJCNN 2014)."""

    probs_only = True

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        cand = view.unlabelled_indices
        return top_k(score_rows(entropy, view.probs, cand), cand, budget, rng)  # ranked on the probs' device

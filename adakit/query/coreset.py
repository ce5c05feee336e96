"""CoreSet: k-center greedy over embeddings."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from adakit.params import Params
from adakit.query._algorithms import centred, farthest_first, min_sq_dist
from adakit.query.base import Selection, Strategy
from adakit.registry import register_strategy


class CoreSetParams(Params):
    use_source: bool = Field(False, description="also use the source embeddings as initial centres (not in the "
                                                "paper, which has no source domain)")


@register_strategy("coreset")
class CoreSet(Strategy):
    """k-center greedy over embeddings from the labelled set (Sener & Savarese, ICLR 2018, Alg. 1).

    Active learning as core-set selection: pick u = argmax_{i ∈ U} min_{j ∈ s} ||f_i − f_j|| and add it to s,
    b times, s starting as the labelled target samples (plus the source samples with ``use_source``).
    Euclidean distance on ``view.embeddings`` (the features f, the head's input), as in the paper's code.
    The greedy 2-approximation only: the paper's robust MIP refinement (Eq. 6, outlier-tolerant) is not
    implemented. With no centre at all the first pick is uniform (rng); ties are broken by the rng.
    Scores: distance of each pick to its nearest centre at pick time (+inf for a first pick without centres).
    Cost O(b·N·m) time, O(N) extra memory (no N×N matrix); source centres in blocks.
    """

    Params = CoreSetParams

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        src = view.source_embeddings.float() if self.params.use_source else None
        x, *shifted = centred(view.embeddings.float(), *([src] if src is not None else []))  # (large offsets)
        extra = min_sq_dist(x, shifted[0]) if src is not None else None
        picks, d2 = farthest_first(x, budget, rng=rng, initial=view.labelled_indices, centre_sq_dist=extra,
                                   candidates=view.unlabelled_indices)
        return Selection(picks, np.sqrt(d2))

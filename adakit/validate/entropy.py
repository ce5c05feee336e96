"""Target entropy validator."""

from __future__ import annotations

import numpy as np

from adakit.registry import register_validator
from adakit.validate.base import Validator, row_entropy


@register_validator("entropy")
class Entropy(Validator):
    """−mean prediction entropy on the target pool, −(1/N)·Σ H(p_i) (Morerio et al. 2018; Musgrave et al. 2022).

    Higher is better (the negated entropy, in nats, not divided by log C): confident target predictions. Blind to
    collapse onto few classes.
    """

    needs = ("probs",)

    def score(self, *, probs: np.ndarray, **_) -> float:
        return float(-row_entropy(probs).mean())

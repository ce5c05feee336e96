"""Information maximisation validator."""

from __future__ import annotations

import numpy as np

from adakit.registry import register_validator
from adakit.validate.base import Validator, row_entropy


@register_validator("im")
class InformationMaximization(Validator):
    """Information maximisation H(mean p) − mean H(p) on the target pool (Shi & Sha 2012; Musgrave et al. 2022).

    Higher is better: confident predictions (low mean entropy) that still use every class (high entropy of the
    mean prediction), i.e. the mutual information between inputs and predicted classes. In nats, both terms
    weighted 1 (pytorch-adapt's IMValidator: its entropy and diversity validators summed); 0 for one sample.
    """

    needs = ("probs",)

    def score(self, *, probs: np.ndarray, **_) -> float:
        p = np.asarray(probs, dtype=np.float64)
        return float(row_entropy(p.mean(0, keepdims=True))[0] - row_entropy(p).mean())

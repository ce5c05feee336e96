"""Source validation accuracy."""

from __future__ import annotations

import numpy as np

from adakit.registry import register_validator
from adakit.validate.base import Validator


@register_validator("source_acc")
class SourceAccuracy(Validator):
    """Accuracy on a held-out stratified source split (``data.source_val``), the standard baseline (as benchmarked
    by Musgrave et al. 2022, "Three new validators and a large-scale benchmark ranking for UDA").

    Higher is better. Ignores the shift: it rewards fitting the source, not adapting to the target.
    """

    needs = ("source_probs", "source_labels")

    def score(self, *, source_probs: np.ndarray, source_labels: np.ndarray, **_) -> float:
        return float((np.asarray(source_probs).argmax(1) == np.asarray(source_labels)).mean())

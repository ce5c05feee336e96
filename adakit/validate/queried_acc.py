"""Accuracy on each round's newly queried batch, before training on it."""

from __future__ import annotations

import numpy as np

from adakit.registry import register_validator
from adakit.validate.base import Validator


def queried_correct(queried_labels: np.ndarray, queried_probs: np.ndarray | None = None,
                    queried_pred: np.ndarray | None = None) -> np.ndarray:
    pred = np.asarray(queried_pred) if queried_pred is not None else np.asarray(queried_probs).argmax(1)
    return (pred.astype(np.int64) == np.asarray(queried_labels, dtype=np.int64)).astype(np.float64)


@register_validator("queried_acc")
class QueriedBatchAccuracy(Validator):
    """Accuracy of the model on a round's newly queried target batch before it trains on them (active runs).

    Higher is better. An honest held-out estimate (the model has not seen these labels) that uses only labels the
    user paid for, but biased: strategies query hard samples, so it underestimates pool accuracy, and the more
    so the better the strategy. In a run it is recorded on round r (its batch) and scores round r−1's model.
    """

    needs = ("queried_probs", "queried_labels")
    alternatives = {"queried_probs": "queried_pred"}
    previous_round = True

    def score(self, *, queried_labels: np.ndarray, queried_probs: np.ndarray | None = None,
              queried_pred: np.ndarray | None = None, **_) -> float:
        return float(queried_correct(queried_labels, queried_probs, queried_pred).mean())

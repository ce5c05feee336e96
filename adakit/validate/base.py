"""`Validator`: a score of a trained model computed without target labels (higher is better).

Each validator reads some of the named arrays of `INPUTS` (numpy arrays, checked by `check_inputs`, in the dtype
they were given: convert them, e.g. to float64, in ``score``) and returns one float.
The convention everywhere is **higher is better**: validators whose paper quantity is a loss or an entropy
return its negation, so a sweep always picks the maximum.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from adakit.params import Params

#: every array a validator may read, and what it is
INPUTS = {
    "probs": "class probabilities of the unlabelled target pool, shape (N, C)",
    "embeddings": "features of the target pool (the classifier head's input), shape (N, m)",
    "source_probs": "class probabilities of held-out labelled source samples (data.source_val), shape (Ns, C)",
    "source_labels": "labels of those source samples, shape (Ns,)",
    "source_embeddings": "features of those source samples, shape (Ns, m)",
    "queried_probs": "probabilities the model gave a queried batch before training on it, shape (b, C) "
                     "(or queried_pred=, the predicted classes, shape (b,))",
    "queried_pred": "predicted classes of a queried batch before training on it, shape (b,)",
    "queried_labels": "the labels the oracle gave that batch, shape (b,)",
    "queried_inclusion": "each queried sample's probability of having been selected, shape (b,)",
}


def probs_atol(x: Any) -> float:
    """How far a row of probabilities ``x`` may sum from 1: 1e-3, or the machine epsilon of a half-precision
    input (bfloat16 keeps 3 significant digits: the rows of a bfloat16 softmax sum to 1 ± 0.004)."""
    dtype = str(getattr(x, "dtype", "")).removeprefix("torch.")
    return max(1e-3, {"bfloat16": 2.0**-7, "float16": 2.0**-10}.get(dtype, 0.0))


class Validator:
    """Base validator. Subclasses set ``needs`` (names of `INPUTS`), ``Params`` and implement
    ``score(*, <inputs>, **_) -> float`` (all inputs given are passed as keywords; higher must be better).

    ``previous_round``: the score is about the model *before* the round's training (queried-batch validators),
    so a sweep credits it to the previous checkpoint.
    """

    Params = Params
    needs: ClassVar[tuple[str, ...]] = ()
    alternatives: ClassVar[dict[str, str]] = {}  #: an input that another one can replace (queried_probs -> _pred)
    previous_round: ClassVar[bool] = False
    uses_device: ClassVar[bool] = False  #: `score` takes ``device=`` (the run's torch device)
    name: ClassVar[str]

    def __init__(self, params: Params | None = None):
        self.params = params if params is not None else self.Params()

    def missing(self, given: dict[str, Any]) -> list[str]:
        """The inputs this validator needs that ``given`` lacks (None counts as absent)."""
        out = []
        for k in self.needs:
            alt = self.alternatives.get(k)
            if given.get(k) is None and (alt is None or given.get(alt) is None):
                out.append(k)
        return out

    def score(self, **inputs: np.ndarray) -> float:
        raise NotImplementedError

    def why_no_score(self, **inputs: np.ndarray) -> str:
        """Why ``score`` gives NaN on these inputs, in words (what `adakit.validate` warns with); "" if it cannot."""
        return ""


def row_entropy(p: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of a probability matrix, with 0·log 0 = 0."""
    p = np.asarray(p, dtype=np.float64)
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(1)

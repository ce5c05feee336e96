"""Strategy interface: ``select(view, budget, rng) -> Selection`` over the unlabelled pool."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from adakit.errors import ConfigError
from adakit.params import Params


@dataclass
class Selection:
    """Pool indices chosen for labelling (in pick order) and their strategy scores."""

    indices: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float64)


class Strategy:
    """Base strategy. Subclasses set ``Params`` and implement `select`.

    ``needs`` names what the objective must provide (e.g. ``"domain_discriminator"``); asking for a
    strategy whose needs are not met is a config error before training starts.
    """

    Params = Params
    needs: frozenset[str] = frozenset()

    def __init__(self, params: Params):
        self.params = params

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        raise NotImplementedError

    def provided(self, view, need: str):
        """The module the objective provides under ``need`` (e.g. its domain discriminator), or a clear error."""
        module = getattr(view.objective, need, None)
        if module is None:
            raise ConfigError(f"query.strategy={self.name!r} needs an objective that provides a {need}; "
                              "`adakit methods` lists the objectives (e.g. dann for a domain_discriminator, "
                              "tsf for a class_discriminator)")
        return module


def top_k(scores: np.ndarray, candidates: np.ndarray, k: int, rng: np.random.Generator) -> Selection:
    """The k candidates with the highest scores, ties broken at random by ``rng``.

    ``scores`` are aligned with ``candidates`` (pool indices).
    """
    scores = np.asarray(scores, dtype=np.float64)
    k = min(k, len(candidates))
    tiebreak = rng.random(len(candidates))
    order = np.lexsort((tiebreak, -scores))[:k]
    return Selection(candidates[order], scores[order])

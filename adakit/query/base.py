"""Strategy interface: ``select(view, budget, rng) -> Selection`` over the unlabelled pool."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adakit.errors import ConfigError
from adakit.params import Params


def _host(x):
    """A tensor (any device) as a numpy array; anything else as is."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x


@dataclass
class Selection:
    """Pool indices chosen for labelling (in pick order) and their strategy scores.

    Always numpy (int64 indices, float64 scores), whatever device the strategy computed on: tensors given
    here are copied to the host.
    """

    indices: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.indices = np.asarray(_host(self.indices), dtype=np.int64)
        self.scores = np.asarray(_host(self.scores), dtype=np.float64)


class Strategy:
    """Base strategy. Subclasses set ``Params`` and implement `select`.

    ``needs`` names what the objective must provide (e.g. ``"domain_discriminator"``); asking for a
    strategy whose needs are not met is a config error before training starts.
    """

    Params = Params
    needs: frozenset[str] = frozenset()
    #: the selection reads nothing of the pool but ``probs`` (so ``query.probs_from: probe`` may replace them)
    probs_only: bool = False

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


def top_k(scores: np.ndarray | torch.Tensor, candidates: np.ndarray, k: int, rng: np.random.Generator) -> Selection:
    """The k candidates with the highest scores, ties broken at random by ``rng``.

    ``scores`` (numpy, or a tensor on any device) are aligned with ``candidates`` (pool indices, numpy).
    A tensor is ranked on its own device (only the k picks reach the host); the tie-break keys are drawn on
    the CPU from ``rng``, so a seed picks the same candidates on every device.
    """
    k = min(k, len(candidates))
    tiebreak = rng.random(len(candidates))
    if isinstance(scores, torch.Tensor):
        s = scores.detach().double()
        tb = torch.from_numpy(tiebreak).to(s.device)
        # only scores ≥ the k-th largest can be picked: sort those (same order, less work); with NaN scores
        # (ranked last by numpy, first by topk) sort everything
        if 0 < k < len(s) and not bool(torch.isnan(s).any()):
            keep = torch.nonzero(s >= torch.topk(s, k).values[-1]).flatten()  # ascending: ties keep numpy's order
            order = keep[_lexsort_desc(s[keep], tb[keep])[:k]]
            return Selection(candidates[order.cpu().numpy()], s[order])
        order = _lexsort_desc(s, tb)[:k]
        return Selection(candidates[order.cpu().numpy()], s[order])
    scores = np.asarray(scores, dtype=np.float64)
    order = np.lexsort((tiebreak, -scores))[:k]
    return Selection(candidates[order], scores[order])


def _lexsort_desc(scores: torch.Tensor, tiebreak: torch.Tensor) -> torch.Tensor:
    """``np.lexsort((tiebreak, -scores))`` in torch: by descending score, ties by ascending ``tiebreak``.

    Two stable sorts (the secondary key first), so the order equals numpy's on every device.
    """
    order = torch.argsort(tiebreak, stable=True)
    return order[torch.argsort(-scores[order], stable=True)]

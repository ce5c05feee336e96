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


def check_selection(sel: object, taken: np.ndarray, budget: int, who: str) -> Selection:
    """``sel`` as a strategy's `Strategy.select` must return it, or a `ConfigError` naming the rule it breaks.

    ``taken``: the pool samples no selection may hold (labelled, dropped, excluded). A built-in strategy
    always passes; the check is for strategies people write (`adakit.register_strategy`)."""
    if not isinstance(sel, Selection):
        raise ConfigError(f"{who}: invalid selection: select() returned {type(sel).__name__}, not an "
                          "adakit.Selection(indices, scores)")
    idx, n = sel.indices, len(taken)
    expected = min(budget, int((~taken).sum()))
    problem = ("indices must be one-dimensional" if idx.ndim != 1 else
               f"{len(sel.scores)} scores for {len(idx)} indices" if sel.scores.shape != idx.shape else
               f"index {idx[(idx < 0) | (idx >= n)][0]} outside the pool of {n}" if ((idx < 0) | (idx >= n)).any() else
               f"index {_first_repeat(idx)} picked twice" if len(np.unique(idx)) != len(idx) else
               f"index {idx[taken[idx]][0]} is labelled, dropped or excluded" if taken[idx].any() else
               f"{len(idx)} indices, expected {expected} (the budget, or every unlabelled sample when fewer)"
               if len(idx) != expected else None)
    if problem is not None:
        raise ConfigError(f"{who}: invalid selection: {problem}; pick from view.unlabelled_indices (which leaves "
                          "out labelled, dropped and excluded samples), each at most once, min(budget, their "
                          "number) of them")
    return sel


def _first_repeat(idx: np.ndarray) -> int:
    values, counts = np.unique(idx, return_counts=True)
    return int(values[counts > 1][0])


class Strategy:
    """Base strategy. Subclasses set ``Params`` and implement `select`.

    ``needs`` names what the objective must provide (e.g. ``"domain_discriminator"``); asking for a
    strategy whose needs are not met is a config error before training starts.
    """

    Params = Params
    #: what a registered subclass must define (`adakit.register_strategy` checks it)
    must_implement: tuple[str, ...] = ("select",)
    needs: frozenset[str] = frozenset()
    #: the selection reads nothing of the pool but ``probs`` (so ``query.probs_from: probe`` may replace them)
    probs_only: bool = False

    def __init__(self, params: Params):
        self.params = params

    def select(self, view, budget: int, rng: np.random.Generator) -> Selection:
        """Pick ``budget`` samples among ``view.unlabelled_indices`` (a `adakit.pool.PoolView` or
        `adakit.pool.ArrayView`), drawing any randomness from ``rng``: exactly ``min(budget, len(candidates))``
        distinct candidates, in pick order, with their scores (`top_k` builds that from per-candidate scores)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement select(view, budget, rng)")

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

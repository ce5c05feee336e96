"""Validators: scores of a trained model that need no target labels, for choosing settings and checkpoints.

``adakit.validate(name, probs=..., ...)`` computes one validator on arrays; `compute_all` every validator the
given arrays allow (what a run records as ``val/<name>``). Convention: **higher is better** for every validator.
``adakit methods`` lists them; each is one module of this package, registered with `register_validator`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np

from adakit.errors import ConfigError, DataError
from adakit.validate.base import INPUTS, Validator

__all__ = ["INPUTS", "Validator", "compute_all", "validate"]


def _array(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        a = np.asarray(x)
    except (TypeError, ValueError) as e:
        raise DataError(f"adakit.validate: {name}= must be a numpy array or torch tensor ({e})") from None
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise DataError(f"adakit.validate: {name}= must hold numbers (got dtype {a.dtype})")
    ndim = 2 if name in ("probs", "embeddings", "source_probs", "source_embeddings", "queried_probs") else 1
    if a.ndim != ndim:
        raise DataError(f"adakit.validate: {name}= must have {ndim} dimension(s) ({INPUTS[name]}), got shape "
                        f"{a.shape}")
    if not np.isfinite(a.astype(np.float64, copy=False)).all():
        raise DataError(f"adakit.validate: {name}= holds NaN or infinite values")
    return a


def _inputs(given: dict[str, Any]) -> dict[str, np.ndarray]:
    unknown = sorted(set(given) - set(INPUTS))
    if unknown:
        raise ConfigError(f"adakit.validate: unknown input(s) {unknown}; inputs: {', '.join(INPUTS)}")
    return {k: _array(v, k) for k, v in given.items() if v is not None}


def make_validator(name: str | Validator, params: dict[str, Any] | None = None) -> Validator:
    from adakit.registry import VALIDATORS

    if isinstance(name, Validator):
        return name
    cls = VALIDATORS.get(name)
    return cls(cls.Params.validated(params or {}, f"validator {name}"))


def validate(name: str | Validator, *, params: dict[str, Any] | None = None, **inputs: Any) -> float:
    """Validator ``name`` (see ``adakit methods``) on arrays: ``probs`` (N, C) target probabilities, and as the
    validator needs ``embeddings``, ``source_probs``/``source_labels``/``source_embeddings`` (a held-out labelled
    source split), ``queried_probs``/``queried_labels``/``queried_inclusion`` (a queried batch). Higher is better.
    """
    v = make_validator(name, params)
    arrays = _inputs(inputs)
    missing = v.missing(arrays)
    if missing:
        raise ConfigError(f"validator {v.name!r} needs {', '.join(m + '=' for m in missing)} "
                          f"({'; '.join(INPUTS[m] for m in missing)})")
    return v.score(**arrays)


def _finite(x: Any) -> bool:
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return not np.issubdtype(a.dtype, np.floating) or bool(np.isfinite(a).all())


def compute_all(inputs: dict[str, Any], skip: tuple[str, ...] = (), device: Any = None) -> dict[str, float]:
    """``{name: score}`` for every registered validator whose inputs are all in ``inputs`` (None = absent);
    ``device``: a torch device for the validators that use one (SND).

    An input holding NaN or infinite values (a diverged model) counts as absent and a non-finite score is left
    out, so a run records what is meaningful instead of failing.
    """
    from adakit.registry import VALIDATORS

    arrays = {k: v for k, v in inputs.items() if v is not None and _finite(v)}
    out = {}
    for name in VALIDATORS.names():
        if name in skip:
            continue
        v = make_validator(name)
        if not v.missing(arrays):
            score = v.score(**arrays, device=device) if v.uses_device else v.score(**arrays)
            if np.isfinite(score):
                out[name] = float(score)
    return out


class _CallableModule(types.ModuleType):
    """``adakit.validate`` is this package and, called, the `validate` function."""

    def __call__(self, name: str | Validator, **kwargs: Any) -> float:
        return validate(name, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
_module = sys.modules[__name__]  # what ``adakit.validate`` resolves to (adakit/__init__.py)

"""Validators: scores of a trained model that need no target labels, for choosing settings and checkpoints.

``adakit.validate(name, probs=..., ...)`` computes one validator on arrays; `compute_all` every validator the
given arrays allow (what a run records as ``val/<name>``). Convention: **higher is better** for every validator.
``adakit methods`` lists them; each is one module of this package, registered with `register_validator`.
"""

from __future__ import annotations

import sys
import types
import warnings
from typing import Any

import numpy as np

from adakit.errors import ConfigError, DataError
from adakit.validate.base import INPUTS, Validator, probs_atol

__all__ = ["INPUTS", "Validator", "check_inputs", "compute_all", "validate"]


def _np(a: Any) -> np.ndarray:
    """A numpy array of ``a`` (a tensor on any device is copied to the host; bfloat16, which numpy lacks, as
    float32)."""
    if not hasattr(a, "detach"):
        return np.asarray(a)
    import torch  # (a tensor was given: torch is loaded)

    t = a.detach().cpu()
    return (t.float() if t.dtype == torch.bfloat16 else t).numpy()


def _array(x: Any, name: str) -> np.ndarray:
    try:
        a = _np(x)
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


#: inputs that describe the same samples (one row each), by group
_GROUPS = (("probs", "embeddings"), ("source_probs", "source_labels", "source_embeddings"),
           ("queried_probs", "queried_pred", "queried_labels", "queried_inclusion"))
_PROBS = ("probs", "source_probs", "queried_probs")
_CLASSES = ("source_labels", "queried_labels", "queried_pred")


def check_inputs(arrays: dict[str, Any], who: str = "adakit.validate",
                 atol: dict[str, float] | None = None) -> dict[str, Any]:
    """Raise `DataError` unless the given inputs (numpy arrays or tensors, finite) fit together: probabilities
    are rows of ≥ 2 classes, non-negative and summing to 1 (± 1e-3, or ``atol[name]``), with the same classes
    in every group; the inputs of a group (`_GROUPS`: the pool, the held-out source, a queried batch) have one
    row per sample and none is empty; both embeddings have the same width; labels and predictions are class
    indices in [0, C); inclusion probabilities lie in (0, 1]. Returns ``arrays``."""
    classes = {}
    for k in _PROBS:
        if k not in arrays:
            continue
        a = arrays[k]
        if a.shape[1] < 2:
            raise DataError(f"{who}: {k}= must have one column per class and at least 2 classes, got shape "
                            f"{tuple(a.shape)}")
        if len(a) and (float(a.min()) < 0 or float(abs(a.sum(1) - 1).max()) > (atol or {}).get(k, 1e-3)):
            raise DataError(f"{who}: {k}= rows must be probabilities (non-negative, summing to 1); apply a "
                            "softmax to logits first")
        classes[k] = a.shape[1]
    if len(set(classes.values())) > 1:
        raise DataError(f"{who}: the probabilities disagree on the number of classes: "
                        + ", ".join(f"{k}= has {v}" for k, v in classes.items()))
    for group in _GROUPS:
        sizes = {k: len(arrays[k]) for k in group if k in arrays}
        if len(set(sizes.values())) > 1:
            raise DataError(f"{who}: " + ", ".join(f"{k}= has {v} rows" for k, v in sizes.items())
                            + ": they must describe the same samples, one row each")
        if 0 in sizes.values():
            raise DataError(f"{who}: {', '.join(k + '=' for k in sizes)} hold no samples")
    for k in ("embeddings", "source_embeddings"):
        if k in arrays and arrays[k].ndim == 2 and arrays[k].shape[1] == 0:
            raise DataError(f"{who}: {k}= has shape {tuple(arrays[k].shape)}: no feature per sample; pass the "
                            "features (N, m) with m >= 1")
    if "embeddings" in arrays and "source_embeddings" in arrays \
            and arrays["embeddings"].shape[1] != arrays["source_embeddings"].shape[1]:
        raise DataError(f"{who}: embeddings= has {arrays['embeddings'].shape[1]} features per sample, "
                        f"source_embeddings= {arrays['source_embeddings'].shape[1]}: the same model must embed both")
    c = next(iter(classes.values()), None)
    for k in _CLASSES:
        if k not in arrays:
            continue
        a = _np(arrays[k])
        frac = a[a != np.round(a)] if a.dtype != bool else a
        if len(frac):
            raise DataError(f"{who}: {k}= must hold class indices (integers), got {a.dtype} values such as {frac[0]}")
        if a.min() < 0 or (c is not None and a.max() >= c):
            raise DataError(f"{who}: {k}= must hold class indices in [0, {c if c is not None else 'C'}), got values "
                            f"from {a.min()} to {a.max()}" + ("" if a.min() >= 0 else
                                                               " (unknown labels, e.g. -1, cannot be scored: leave "
                                                               "those samples out)"))
    if "queried_probs" in arrays and "queried_pred" in arrays:
        disagree = np.flatnonzero(_np(arrays["queried_probs"]).argmax(1) != _np(arrays["queried_pred"]))
        if len(disagree):
            raise DataError(f"{who}: queried_pred= disagrees with the argmax of queried_probs= on {len(disagree)} "
                            f"row(s) (e.g. row {disagree[0]}); give one of them")
    if "queried_inclusion" in arrays:
        a = _np(arrays["queried_inclusion"])
        if not ((a > 0) & (a <= 1)).all():
            raise DataError(f"{who}: queried_inclusion= must hold selection probabilities in (0, 1], got values from "
                            f"{a.min()} to {a.max()}")
    return arrays


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
    ``params``: the validator's parameters (``adakit methods NAME`` lists them; unknown keys are errors). Inputs are
    numpy arrays or tensors on any device; bad or mismatched ones are a `DataError`, a missing one a `ConfigError`.
    A validator without a score for the inputs (``dev`` with fewer than 2 held-out source or target samples) returns
    NaN with a `RuntimeWarning` saying why.
    """
    v = make_validator(name, params)
    arrays = check_inputs(_inputs(inputs), atol={k: probs_atol(v) for k, v in inputs.items()})
    missing = v.missing(arrays)
    if missing:
        raise ConfigError(f"validator {v.name!r} needs {', '.join(m + '=' for m in missing)} "
                          f"({'; '.join(INPUTS[m] for m in missing)})")
    score = v.score(**arrays)
    if not np.isfinite(score):  # (a run leaves such a score out: `compute_all`)
        why = v.why_no_score(**arrays)
        warnings.warn(f"validator {v.name!r} has no score for these inputs ({score})" + (f": {why}" if why else "")
                      + "; a run does not record it", RuntimeWarning, stacklevel=3)
    return score


def _finite(x: Any) -> bool:
    a = _np(x)
    return not np.issubdtype(a.dtype, np.floating) or bool(np.isfinite(a).all())


def compute_all(inputs: dict[str, Any], skip: tuple[str, ...] = (), device: Any = None) -> dict[str, float]:
    """``{name: score}`` for every registered validator whose inputs are all in ``inputs`` (None = absent);
    ``device``: a torch device for the validators that use one (SND).

    An input holding NaN or infinite values (a diverged model) counts as absent and a non-finite score is left
    out, so a run records what is meaningful instead of failing; inputs that do not fit together raise
    `DataError` (`check_inputs`).
    """
    from adakit.registry import VALIDATORS

    given = {k: v for k, v in inputs.items() if v is not None and _finite(v)}
    arrays = check_inputs(given, "compute_all", atol={k: probs_atol(v) for k, v in given.items()})
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

    def __call__(self, name: str | Validator, *args: Any, **kwargs: Any) -> float:
        """`validate` (``adakit.validate(name, probs=..., ...)``)."""
        if args:
            raise TypeError(f"adakit.validate({name!r}, ...): pass the arrays as keywords, e.g. "
                            f"adakit.validate({name!r}, probs=...); inputs: {', '.join(INPUTS)}")
        return validate(name, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
_module = sys.modules[__name__]  # what ``adakit.validate`` resolves to (adakit/__init__.py)

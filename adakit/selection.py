"""`adakit.select`: any registered strategy as a function of arrays (no model, no config, no run folder).

The arrays become an `adakit.pool.ArrayView`, the same interface the loop's `PoolView` gives strategies,
so a selection made here equals the loop's selection on the same outputs and seed.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn

from adakit.data.objects import is_sparse, numpy_tensor
from adakit.devices import check_device
from adakit.errors import ConfigError, DataError
from adakit.params import whole_number
from adakit.pool import ArrayView, CallableModule
from adakit.query.base import Selection, Strategy, _host, check_selection
from adakit.validate.base import probs_atol

ArrayLike = Any  # numpy array, torch tensor (any device), scipy sparse matrix or nested lists

#: the keywords that supply what a strategy's ``needs`` asks of an objective
NEED_KEYWORDS = {
    "domain_discriminator": "domain_discriminator= (a module or callable mapping features (N, m) to domain logits "
                            "(N, 1), sigmoid = P(source)), or domain_probs= / domain_logits= (per pool sample, "
                            "shape (N,))",
    "class_discriminator": "class_discriminator= (a module or callable mapping features (N, m) to class-level "
                           "domain logits (N, C), as TSF's discriminator; its gradients are taken, so outputs "
                           "alone are not enough)",
}


class _Provided:
    """What strategies read from ``view.objective``: the keywords given, else the ``objective`` object's attributes."""

    def __init__(self, objective: Any, given: dict[str, Any]):
        self._objective = objective
        self._given = {k: v for k, v in given.items() if v is not None}

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        if name in self._given:
            return self._given[name]
        return getattr(self._objective, name)  # AttributeError when absent, as for an objective without it


def _as_tensor(x: ArrayLike, name: str, ndim: int, device: torch.device, check_finite: bool = True) -> torch.Tensor:
    """``x`` as a contiguous float32 tensor on ``device`` with ``ndim`` dimensions (the loop's dtype), all finite
    (unless ``check_finite`` is False: the caller checks)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        try:
            t = numpy_tensor(x.toarray() if is_sparse(x) else x)  # (a scipy sparse matrix: its dense rows)
        except (TypeError, ValueError) as e:
            raise DataError(f"adakit.select: {name}= must be a numpy array or torch tensor ({e})") from None
    if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64, torch.uint8, torch.int16, torch.int8)):
        raise DataError(f"adakit.select: {name}= must hold numbers (got dtype {t.dtype})")
    given, t = t, t.to(device, torch.float32).contiguous()
    if t.ndim != ndim:
        raise DataError(f"adakit.select: {name}= must have {ndim} dimension(s), got shape {tuple(t.shape)}")
    if check_finite and not all_finite(t):
        if all_finite(given):  # (float64 values beyond float32's range became infinite in the copy)
            raise DataError(f"adakit.select: {name}= holds values up to {float(given.abs().amax()):.3g}, beyond "
                            f"float32's range (3.4e+38), which strategies compute in; rescale them")
        raise DataError(f"adakit.select: {name}= holds NaN or infinite values")
    return t


#: the largest embedding magnitude strategies take: m·x² summed over a few thousand features stays below float32's
#: maximum (3.4e38) with room for sums over candidates
MAX_EMBEDDING = 1e15
#: the smallest largest embedding magnitude strategies take (all-zero embeddings aside): squared distances of such
#: values stay near or above float32's smallest normal number (1.2e-38); far below it (subnormals, 1.4e-45, then 0)
#: they round to a few digits, then to 0 (ties everywhere: CoreSet, BADGE and CLUE picked at random at 1e-24)
MIN_EMBEDDING = 1e-18


def all_finite(t: torch.Tensor) -> bool:
    """Whether every entry is finite. A finite sum proves it (NaN and ±inf propagate into a sum) at the cost of a
    reduction, about 40× cheaper than ``isfinite(t).all()`` on the CPU; only a non-finite sum (a bad entry, or
    finite values whose sum overflows) takes the elementwise check."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _largest_magnitude(x: ArrayLike) -> float:
    """The largest |value| of an array as given, before its float32 copy (where float64 values below 1.4e-45 are
    0); 0 for integers."""
    t = x.detach() if isinstance(x, torch.Tensor) else numpy_tensor(x.toarray() if is_sparse(x) else x)
    return float(t.abs().amax()) if t.numel() and t.is_floating_point() else 0.0


def _check_probs(p: torch.Tensor, who: str, atol: float = 1e-3) -> None:
    """Raise `DataError` unless every row of ``p`` (N, C) is finite, non-negative and sums to 1 (± ``atol``).

    Two passes over ``p``: its row sums (a NaN or ±inf entry makes its row's sum non-finite, so finite sums near 1
    prove every entry finite) and its minimum (a reduction, no (N, C) mask).
    """
    rows = p.sum(1)
    if not bool(torch.isfinite(rows).all()) and not all_finite(p):  # (a finite row may overflow its sum)
        raise DataError("adakit.select: probs= holds NaN or infinite values")
    negative = p.numel() > 0 and bool(p.amin() < 0)
    if negative or not torch.allclose(rows, torch.ones_like(rows), atol=atol):
        low, high = float(rows.min()), float(rows.max())
        if not negative and 0.9 <= low and high <= 1.1:  # probabilities rounded or cut: not logits
            raise DataError(f"{who}: probs= rows must be probabilities summing to 1 (± {atol:g}); they sum to "
                            f"{low:.4g}..{high:.4g}: rounded or truncated? Renormalise them (p / p.sum(1, "
                            "keepdims=True)) or pass the classifier's raw outputs as logits=")
        raise DataError(f"{who}: probs= rows must be probabilities (non-negative, summing to 1); pass raw "
                        "classifier outputs as logits=")


def _check_logits(z: torch.Tensor, who: str) -> None:
    """Raise `DataError` when every row of ``logits=`` is a probability vector (non-negative, summing to 1): softmax
    would be applied to probabilities, which flattens them (0.998 becomes 0.23 over 10 classes) and changes the
    picks of every strategy that reads probabilities."""
    if len(z) < 2 or bool(z.amin() < 0):
        return
    rows = z.sum(1)
    if torch.allclose(rows, torch.ones_like(rows), atol=1e-3):
        raise DataError(f"{who}: every row of logits= is non-negative and sums to 1: these are probabilities; pass "
                        "them as probs= (logits are the pre-softmax outputs; if they really are logits, pass "
                        "probs=softmax(logits) with them)")


def _as_module(fn: Any, name: str) -> nn.Module | None:
    if fn is None or isinstance(fn, nn.Module):
        return fn
    if not callable(fn):
        raise ConfigError(f"adakit.select: {name}= must be a torch module or a callable on a (N, m) tensor")
    return CallableModule(fn)


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """``module`` in eval mode for the block (a BatchNorm's running statistics stay as they are), its mode restored
    afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _rows_for(module: nn.Module, f: torch.Tensor, n: int) -> torch.Tensor:
    """The first ``n`` rows of the embeddings on ``module``'s device, in its floating dtype (float64 modules get
    float64 rows)."""
    param = next(module.parameters(), None)
    x = f[:n]
    return x if param is None else x.to(param.device, param.dtype if param.is_floating_point() else x.dtype)


def _check_module(module: nn.Module | None, f: torch.Tensor, name: str, width: int | None, who: str,
                  differentiable: bool = False) -> None:
    """Call ``module`` on a few rows of the embeddings (up to 16, in the module's floating dtype) before any work:
    it must return a tensor (N, ``width``) (None: any width; 1: also (N,)), whose gradient with respect to its
    input exists and is not zero when ``differentiable`` (SAGE and SDM-G differentiate it: a function under
    ``torch.no_grad`` or returning detached outputs gave zero gradients, hence arbitrary picks), or its failure
    is a `DataError` naming the keyword."""
    if module is None:
        return
    x = _rows_for(module, f, 16)
    shape = "(N,) or (N, 1)" if width == 1 else f"(N, {width or 'C'})"
    expect = f"a tensor of shape {shape} on (N, {f.shape[1]}) float32 embeddings"
    try:
        with _eval_mode(module), torch.no_grad():
            y, again = module(x), module(x)
    except Exception as e:  # noqa: BLE001 - the user's module: any failure is reported with its own message
        raise DataError(f"{who}: {name}= failed on {len(x)} rows of the embeddings (shape {tuple(x.shape)}, "
                        f"{x.dtype}): {type(e).__name__}: {str(e)[:200]}; it must return {expect}") from None
    if not isinstance(y, torch.Tensor):
        raise DataError(f"{who}: {name}= returned a {type(y).__name__}; it must return {expect}")
    shapes = [(len(x),), (len(x), 1)] if width == 1 else [(len(x), width)]
    if tuple(y.shape) not in shapes and not (width is None and y.dim() == 2 and len(y) == len(x)):
        raise DataError(f"{who}: {name}= returned shape {tuple(y.shape)} for {len(x)} rows; it must return {expect}")
    if differentiable:
        _check_gradient(module, x, name, who)
    if not (isinstance(again, torch.Tensor) and again.shape == y.shape
            and torch.allclose(again.float(), y.float(), rtol=1e-4, atol=1e-6, equal_nan=True)):
        warnings.warn(f"{who}: {name}= gave other outputs for the same rows when called twice (dropout or other "
                      "randomness: a function that calls a module in training mode?); the picks will not be "
                      "reproducible. Call .eval() on the modules it uses, or pass the module itself",
                      RuntimeWarning, stacklevel=3)


def _check_gradient(module: nn.Module, x: torch.Tensor, name: str, who: str) -> None:
    """`DataError` unless ``module``'s outputs have a non-zero gradient with respect to its input on ``x``."""
    with _eval_mode(module), torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        y = module(xg)
        grad = torch.autograd.grad(y.float().sum(), xg, allow_unused=True)[0] if y.requires_grad else None
    if grad is None or not bool(grad.abs().sum() > 0):
        raise DataError(f"{who}: {name}= gives outputs with no gradient with respect to its input (a function "
                        "under torch.no_grad, or returning .detach()ed or numpy outputs?); the strategy "
                        "differentiates it, so pass the module itself or a differentiable function")


def _warn_if_probabilities(disc: Any, given: torch.Tensor | None, f: torch.Tensor | None, who: str) -> None:
    """A warning when your domain discriminator (``domain_discriminator=``) or its outputs (``domain_logits=``)
    give only values in [0, 1] on 16 or more pool rows: probabilities (a discriminator ending in a sigmoid) read
    as logits give AADA the wrong weights. (Not for adakit's own discriminators, whose logits may all lie in
    [0, 1] before they have trained.)"""
    out = given
    if type(disc).__module__.startswith("adakit."):  # adakit's own discriminators: logits by construction
        return
    if out is None and disc is not None and f is not None:
        module = _as_module(disc, "domain_discriminator")
        with _eval_mode(module), torch.no_grad():
            out = module(_rows_for(module, f, 256))
    if out is not None and out.numel() >= 16 and bool(out.amin() >= 0) and bool(out.amax() <= 1):
        name = "domain_logits=" if given is not None else "domain_discriminator="
        warnings.warn(f"{who}: every value of {name} on the pool lies in [0, 1]: probabilities (a discriminator "
                      "ending in a sigmoid?) read as logits give AADA the wrong weights; give the logits (drop the "
                      "sigmoid) or the probabilities as domain_probs=", UserWarning, stacklevel=3)


def _device(device: torch.device | str | None, arrays: tuple[ArrayLike | None, ...], who: str) -> torch.device:
    """The device strategies compute on: ``device`` (checked: `adakit.devices.check_device`), else that of the
    first tensor in ``arrays``, else the CPU."""
    if device is None:
        return next((a.device for a in arrays if isinstance(a, torch.Tensor)), torch.device("cpu"))
    return check_device(device, f"{who}: device")


def _numpy(x: ArrayLike) -> np.ndarray:
    return np.asarray(_host(x))


def _pool_mask(given: ArrayLike | None, n: int, name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(boolean mask over the pool, the index array when ``given`` is one) from a mask or an index array."""
    mask = np.zeros(n, dtype=bool)
    if given is None:
        return mask, None
    arr = _numpy(given)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise DataError(f"adakit.select: {name}= as a boolean mask must have shape ({n},) (one entry per "
                            f"pool sample), got {arr.shape}")
        return arr.copy(), None
    if arr.size == 0 or np.issubdtype(arr.dtype, np.integer):
        if arr.ndim > 1 and arr.size:  # (an (N, 1) column or a (2, k) pair: flattening would hide a mistake)
            raise DataError(f"adakit.select: {name}= as indices must be one-dimensional, got shape {arr.shape}; "
                            f"pass np.ravel({name}) if those are the pool indices")
        index = arr.astype(np.int64).reshape(-1)
        if index.shape == (n,) and index.size and index.min() >= 0 and index.max() <= 1 \
                and (n > 2 or len(np.unique(index)) < n):  # ([0, 1] on a pool of two are both samples)
            raise DataError(f"adakit.select: {name}= is an integer array of 0s and 1s, one per pool sample: a mask "
                            f"written as integers, not indices (which would repeat 0 and 1); pass it as a boolean "
                            f"mask ({name}=mask.astype(bool)) or as indices (np.flatnonzero(mask))")
        if index.size and (index.min() < 0 or index.max() >= n):
            raise DataError(f"adakit.select: {name}= indices must lie in [0, {n}), got {index.min()}..{index.max()}")
        mask[index] = True
        return mask, index
    raise DataError(f"adakit.select: {name}= must be a boolean mask or an integer index array, got dtype {arr.dtype}")


def _mask(labelled: ArrayLike | None, labels: ArrayLike | None, n: int,
          n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(boolean mask over the pool, labels over the pool with -1 where unknown) from a mask or an index array."""
    mask, index = _pool_mask(labelled, n, "labelled")
    full = np.full(n, -1, dtype=np.int64)
    if labels is not None:
        y = _numpy(labels).reshape(-1)
        if y.dtype.kind == "f" and np.isnan(y).any():
            at = int(np.flatnonzero(np.isnan(y))[0])
            raise DataError(f"adakit.select: labels= holds NaN (e.g. at position {at}); mark unknown labels with -1")
        if y.size and not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating)
                                                                   and np.isfinite(y).all()
                                                                   and (y == np.round(y)).all())):
            raise DataError(f"adakit.select: labels= must hold class indices (integers, -1 for unknown), got "
                            f"dtype {y.dtype}" + (f" (e.g. {y[0].item()!r}); map class names to their indices first"
                                                 if y.dtype.kind in "USO" else ""))
        y = y.astype(np.int64)
        if y.size and (y.min() < -1 or y.max() >= n_classes):
            raise DataError(f"adakit.select: labels= must hold class indices in [0, {n_classes}) or -1 for unknown, "
                            f"got values from {y.min()} to {y.max()}")
        given = index if index is not None else np.flatnonzero(mask)
        if len(y) == n:
            full = y
            if labelled is None:
                mask = full >= 0  # the samples with a label are the labelled ones
        elif labelled is not None and len(y) == len(given):
            order = np.argsort(given, kind="stable")
            g, yg = given[order], y[order]
            clash = g[1:][(g[1:] == g[:-1]) & (yg[1:] != yg[:-1])]
            if clash.size:
                raise DataError(f"adakit.select: labelled= names sample {clash[0]} more than once with different "
                                "labels in labels=")
            full[given] = y
        else:
            where = f" or one per sample in labelled= ({len(given)})" if labelled is not None else \
                " (or pass labelled= and one label per sample in it)"
            raise DataError(f"adakit.select: labels= must have one entry per pool sample ({n}){where}, got {len(y)}")
        outside = np.flatnonzero((full >= 0) & ~mask)
        if outside.size:
            raise DataError(f"adakit.select: labels= gives a label to {outside.size} sample(s) that labelled= does "
                            f"not name (e.g. sample {outside[0]}); add them to labelled= or give them -1")
    return mask, full


def make_strategy(strategy: str | Strategy | type[Strategy], params: dict[str, Any]) -> Strategy:
    """A strategy by registered name or class with ``params`` validated by its ``Params``, or the instance given."""
    from adakit.registry import STRATEGIES

    if isinstance(strategy, Strategy):
        if params:
            raise ConfigError(f"adakit.select: parameters {sorted(params)} given with a {type(strategy).__name__} "
                              "instance; set them on the instance, or pass the strategy by name")
        return strategy
    cls = STRATEGIES.resolve(strategy, "adakit.select", also=" or instance")
    name = getattr(cls, "name", cls.__name__)
    return cls(cls.Params.validated(params, f"select({name!r})"))


def select(strategy: str | Strategy | type[Strategy], *, probs: ArrayLike | None = None,
           logits: ArrayLike | None = None, embeddings: ArrayLike | None = None,
           budget: int | np.integer | torch.Tensor, labelled: ArrayLike | None = None, labels: ArrayLike | None = None,
           seed: int | Sequence[int] | np.random.SeedSequence | np.random.Generator = 0,
           source_embeddings: ArrayLike | None = None,
           head: nn.Module | Callable | None = None, head_weight: ArrayLike | None = None,
           domain_discriminator: nn.Module | Callable | None = None, domain_probs: ArrayLike | None = None,
           domain_logits: ArrayLike | None = None, class_discriminator: nn.Module | Callable | None = None,
           sdm_loss_form: dict | None = None, objective: Any = None, device: torch.device | str | None = None,
           exclude: ArrayLike | None = None, **params: Any) -> Selection:
    """Pick ``budget`` unlabelled pool samples with a strategy, from the model outputs you computed.

    Args:
        strategy: a registered name (``adakit methods`` lists them), a `Strategy` subclass or instance.
        probs, logits: class probabilities / pre-softmax outputs (N, C) of the pool; probs = softmax(logits)
            when only logits are given. CLUE and SDM-G need ``logits``.
        embeddings: features f (N, m) of the pool, the classifier head's input (BADGE, CoreSet, CLUE, LAS,
            AADA, SAGE).
        budget: how many samples to pick (fewer when fewer are unlabelled): an int, a numpy integer or a 0-d
            integer tensor.
        labelled: samples already labelled (never picked; CoreSet's initial centres): a boolean mask (N,) or
            an index array. ``labels``: their labels, per pool sample (-1 unknown) or per index given.
        exclude: unlabelled samples never to pick, without counting as labelled (a mask or index array):
            queries still out with annotators, samples nobody could label.
        seed: what `numpy.random.default_rng` takes: an int, a sequence of ints, a ``SeedSequence`` or a
            `numpy.random.Generator` (the loop passes ``np.random.default_rng([seed, round])``).
        source_embeddings: source features (N_s, m) (CoreSet with ``use_source=True``).
        head, head_weight: the classifier head (module or callable f → z), or the (C, m) weight of a linear
            head (SDM-G; a non-linear head also needs ``embeddings``). BADGE needs neither.
        domain_discriminator, domain_probs, domain_logits: AADA's domain discriminator f → logit
            (sigmoid = P(source)), or its per-sample output on the pool as P(source) or as a logit (N,).
        class_discriminator: SAGE's class-level discriminator f → (N, C) logits (TSF); its gradients are used.
        sdm_loss_form: SDM-G's training loss settings (`adakit.query._gradients.MarginLossForm` fields);
            default the released SDM code's loss.
        objective: any object whose attributes strategies may read instead (e.g. a trained adakit objective
            providing ``domain_discriminator``); explicit keywords win.
        device: where the strategy computes (``"cpu"``, ``"cuda"``, ``"cuda:1"``, a `torch.device`). Default
            None: the device of the first torch tensor among ``probs``, ``logits``, ``embeddings`` (in that
            order), else the CPU.
        **params: the strategy's parameters (``adakit methods NAME`` lists them).

    Returns:
        `Selection` with numpy ``indices`` (int64 pool positions, in pick order) and ``scores`` (float64), on
        every device.

    Numpy arrays and tensors on any device are accepted; the pool arrays are copied to float32 tensors on
    ``device`` and the strategy's tensor code runs there (scikit-learn / faiss steps, e.g. CLUE's and LAS's
    k-means, copy their inputs to the CPU). Random draws come from the CPU generator seeded by ``seed``, so a
    seed draws the same on every device (selections agree across devices up to floating-point rounding of the
    scores). Discriminators and heads stay on their own device: features are copied to them and their outputs
    back. Bad input raises `ConfigError` (keywords, parameters, device) or `DataError` (arrays) before any
    selection work.
    """
    strat = make_strategy(strategy, params)
    who = f"adakit.select({getattr(strat, 'name', type(strat).__name__)!r})"
    count = whole_number(budget)  # (an int, a numpy integer, or a 0-d integer tensor: a count computed in torch)
    if count is None or count < 0:
        raise ConfigError(f"{who}: budget= must be a non-negative integer, got {budget!r}")
    budget = count
    dev = _device(device, (probs, logits, embeddings), who)

    # probs: finiteness follows from the row sums checked below (one pass over (N, C) less)
    arrays = {k: None if v is None else _as_tensor(v, k, d, dev, k != "probs") for k, v, d in (
        ("probs", probs, 2), ("logits", logits, 2), ("embeddings", embeddings, 2),
        ("source_embeddings", source_embeddings, 2), ("head_weight", head_weight, 2),
        ("domain_probs", domain_probs, 1), ("domain_logits", domain_logits, 1))}
    sizes = {k: len(arrays[k]) for k in ("probs", "logits", "embeddings", "domain_probs", "domain_logits")
             if arrays[k] is not None}
    if not sizes:
        raise ConfigError(f"{who} needs the pool's outputs: probs= or logits= (N, C), and embeddings= (N, m) for "
                          "strategies that use features")
    if len(set(sizes.values())) > 1:
        raise DataError(f"{who}: the pool arrays disagree on the number of samples: "
                        + ", ".join(f"{k} has {v}" for k, v in sizes.items()))
    n = next(iter(sizes.values()))
    p, z, f = arrays["probs"], arrays["logits"], arrays["embeddings"]
    out = p if p is not None else z
    if out is not None and out.shape[1] < 2:  # (margin's top two, and a classifier, need 2 classes)
        raise DataError(f"{who}: probs=/logits= must have one column per class and at least 2 classes, got shape "
                        f"{tuple(out.shape)}")
    if p is not None and z is not None and p.shape != z.shape:
        raise DataError(f"{who}: probs= {tuple(p.shape)} and logits= {tuple(z.shape)} must have the same shape")
    if p is not None:
        _check_probs(p, who, probs_atol(probs))  # (the tolerance of the dtype given)
    elif z is not None:
        _check_logits(z, who)
    for name in ("embeddings", "source_embeddings"):  # squared distances must stay finite in float32
        e = arrays[name]
        if e is not None and e.shape[1] == 0:
            raise DataError(f"{who}: {name}= has shape {tuple(e.shape)}: no feature per sample; pass the features "
                            "(N, m) with m >= 1, the classifier head's input")
        top = float(e.abs().amax()) if e is not None and e.numel() else 0.0
        if top == 0.0 and e is not None and e.numel():  # zero, or float64 values below float32's range (now zero)
            top = _largest_magnitude(embeddings if name == "embeddings" else source_embeddings)
        if top > MAX_EMBEDDING:
            raise DataError(f"{who}: {name}= holds values up to {top:.3g}, whose squared distances "
                            f"overflow float32; rescale the features (e.g. divide by their largest value)")
        if 0.0 < top < MIN_EMBEDDING:
            raise DataError(f"{who}: {name}= holds values of magnitude at most {top:.3g}, whose squared distances "
                            f"underflow float32; rescale the features (e.g. divide by their largest value)")
    src = arrays["source_embeddings"]
    if src is not None and getattr(getattr(strat, "params", None), "use_source", None) is False:
        warnings.warn(f"{who}: source_embeddings= is read only with use_source=True (the source as initial "
                      "centres); it is ignored here", UserWarning, stacklevel=2)
    if f is not None and src is not None and src.shape[1] != f.shape[1]:
        raise DataError(f"{who}: source_embeddings= has {src.shape[1]} features per sample, embeddings= "
                        f"{f.shape[1]}")

    if head is not None and head_weight is not None:
        raise ConfigError(f"{who}: pass head= or head_weight=, not both")
    head_module = _as_module(head, "head")
    head_w = getattr(head, "weight", None)
    if isinstance(head_w, torch.Tensor) and head_w.dim() == 2 and out is not None and head_w.shape[0] != out.shape[1]:
        raise DataError(f"{who}: head= has a {tuple(head_w.shape)} weight, one row per class, but logits= have "
                        f"{out.shape[1]} classes; pass the head that computed them")  # (also without embeddings=)
    if arrays["head_weight"] is not None:
        w = arrays["head_weight"]
        c = out.shape[1] if out is not None else w.shape[0]
        m = f.shape[1] if f is not None else w.shape[1]
        if tuple(w.shape) != (c, m):
            if f is None:  # (m unknown: only the class count can be wrong)
                raise DataError(f"{who}: head_weight= must be (C, m) with C = {c} rows (one per class of "
                                f"probs=/logits=), got {tuple(w.shape)}: a transposed weight?")
            raise DataError(f"{who}: head_weight= must be (C, m) = ({c}, {m}) (one row per class of "
                            f"probs=/logits=, one column per embedding feature), got {tuple(w.shape)}")
        head_module = nn.Linear(w.shape[1], w.shape[0], bias=False, device=dev)
        with torch.no_grad():
            head_module.weight.copy_(w)
    if domain_probs is not None and domain_logits is not None:
        raise ConfigError(f"{who}: pass domain_probs= or domain_logits=, not both")
    d_logits = arrays["domain_logits"]
    if arrays["domain_probs"] is not None:
        d = arrays["domain_probs"].double()
        if ((d < 0) | (d > 1)).any():
            raise DataError(f"{who}: domain_probs= must be probabilities P(source) in [0, 1]")
        d_logits = (torch.log(d) - torch.log1p(-d)).float()  # sigmoid(l) = d; ±inf at 0 / 1, clamped by AADA
    form = sdm_loss_form
    if form is not None:
        from adakit.query._gradients import MarginLossForm

        if dataclasses.is_dataclass(form):
            form = dataclasses.asdict(form)
        try:
            MarginLossForm(**form)
        except TypeError as e:
            raise ConfigError(f"{who}: sdm_loss_form= must name MarginLossForm fields "
                              f"({', '.join(f.name for f in dataclasses.fields(MarginLossForm))}): {e}") from None
    provided = _Provided(objective, {
        "domain_discriminator": _as_module(domain_discriminator, "domain_discriminator"),
        "class_discriminator": _as_module(class_discriminator, "class_discriminator"),
        "sdm_loss_form": form})
    if f is not None and len(f):
        c = out.shape[1] if out is not None else None
        head_name = "head" if head is not None else "head_weight"
        for name, module, width, grad in (
                ("domain_discriminator", getattr(provided, "domain_discriminator", None), 1, False),
                ("class_discriminator", getattr(provided, "class_discriminator", None), c, True),
                (head_name, head_module, c, head is not None)):  # (head_weight= is linear: nothing to check)
            _check_module(module, f, name, width, who, grad)
    _warn_if_probabilities(domain_discriminator, arrays["domain_logits"], f, who)
    for need in sorted(getattr(strat, "needs", ())):
        if getattr(provided, need, None) is None and not (need == "domain_discriminator" and d_logits is not None):
            raise ConfigError(f"{who} needs {NEED_KEYWORDS.get(need, f'{need}= (or objective= providing it)')}")

    mask, full_labels = _mask(labelled, labels, n, out.shape[1] if out is not None else np.iinfo(np.int64).max)
    try:
        rng = np.random.default_rng(seed)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{who}: seed= must be what numpy.random.default_rng takes (an int ≥ 0, a sequence of "
                          f"them, a SeedSequence or a Generator), got {seed!r} ({e})") from None
    unavailable = _pool_mask(exclude, n, "exclude")[0]
    view = ArrayView(mask, full_labels, who=who, probs=p, logits=z, embeddings=f, source_embeddings=src,
                     head=head_module, objective=provided, domain_logits=d_logits, unavailable=unavailable)
    taken = mask | unavailable
    return check_selection(strat.select(view, int(budget), rng), taken, int(budget), who)

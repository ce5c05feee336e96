"""Domains and how an experiment's source, target pool and target test sets are built."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from adakit.data.domain import Domain, TensorDomain, check_same_classes
from adakit.data.registry import LOADERS
from adakit.errors import ConfigError, DataError

__all__ = ["Domain", "TensorDomain", "Domains", "check_same_inputs", "load_domain", "load_domains", "split_target"]


def _load_formats() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if mod.name not in ("domain", "registry") and not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


@dataclass
class Domains:
    """Source, target pool (labels hidden from strategies) and target test set."""

    source: Domain
    pool: Domain
    test: Domain
    protocol: str
    #: `adakit.data.objects.fingerprint` of the source and target as loaded (before any split or standardisation),
    #: so a resumed run can refuse data that changed under it (None: not computed)
    fingerprint: dict | None = None

    def __post_init__(self) -> None:
        if len(self.source.classes) < 2:
            raise DataError(f"domain {self.source.name!r}: {len(self.source.classes)} class(es) "
                            f"({', '.join(map(str, self.source.classes)) or 'none'}); a classifier needs at least 2 "
                            "(pass the full class list, e.g. classes=[...], or check the labels)")
        present = np.unique(np.asarray(self.source.y)[np.asarray(self.source.y) >= 0])
        if len(present) < 2 and len(self.source) >= 2:  # (the class list may come from the target's labels too)
            shown = ", ".join(repr(str(self.source.classes[int(c)])) for c in present) or "none"
            raise DataError(f"source domain {self.source.name!r} has samples of {len(present)} class ({shown}) of "
                            f"the {len(self.source.classes)} in the class list; training needs labelled source "
                            "samples of at least 2 classes: check the source's labels")

    @property
    def classes(self) -> list[str]:
        return self.source.classes


def load_domain(fmt: str, name: str, root: str | None, pattern: str | None = None, cfg=None) -> Domain:
    """Load one domain by format and name (see `DataConfig.pattern`).

    Loaders that take a ``cfg`` keyword (image and digit formats) receive the `DataConfig` for image
    size, channels and the source/target pair; the others get ``(path, name)`` only.
    """
    from adakit.config import DEFAULT_PATTERNS
    from adakit.paths import expand, pattern_root

    _load_formats()
    if fmt == "objects":
        raise ConfigError("data.format=objects: this run's data were Python objects (arrays or Datasets), which "
                          "adakit does not store; work on it from Python with the same objects, e.g. "
                          "ActiveLoop.resume(run_dir, source=..., target=...)")
    if fmt not in LOADERS:
        raise ConfigError(f"data.format: unknown format {fmt!r}; choose one of: {', '.join(sorted(LOADERS))}")
    if fmt == "demo":
        return LOADERS[fmt](None, name)  # type: ignore[arg-type]
    text = pattern or DEFAULT_PATTERNS[fmt]
    path = expand(text.format(root=pattern_root(root, text), domain=name))
    loader = LOADERS[fmt]
    if cfg is not None and "cfg" in inspect.signature(loader).parameters:
        return loader(path, name, cfg=cfg)
    return loader(path, name)


def split_target(target: Domain, test_fraction: float, seed: int) -> tuple[Domain, Domain]:
    """Inductive protocol: a stratified (when labels are known) seeded split into pool and test."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(target))
    strat = None
    if target.has_labels:
        counts = np.bincount(target.y)
        single = np.flatnonzero(counts == 1)  # (an empty class folder, counts 0, does not stop the stratification)
        if len(single):
            warnings.warn(f"data.protocol=inductive: class(es) {[target.classes[i] for i in single[:5]]} of target "
                          f"{target.name!r} have one sample, so the pool/test split is not stratified", UserWarning,
                          stacklevel=2)
        else:
            strat = target.y
    _check_split(target, test_fraction, strat is not None)
    pool_idx, test_idx = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=strat)
    return (target.subset(np.sort(pool_idx), f"{target.name}-pool"),
            target.subset(np.sort(test_idx), f"{target.name}-test"))


def _check_split(target: Domain, test_fraction: float, stratified: bool) -> None:
    """The checks scikit-learn's `train_test_split` would fail on, as a `ConfigError` saying how to fix them."""
    n = len(target)
    n_test = int(np.ceil(test_fraction * n))
    n_pool = n - n_test
    need = len(np.unique(target.y)) if stratified else 1
    if n_test < need or n_pool < need:
        what = f"{need} (one per class, the split is stratified)" if stratified else "1"
        raise ConfigError(
            f"data.protocol=inductive: data.test_fraction={test_fraction} splits target {target.name!r} "
            f"({n} samples) into {n_pool} pool and {n_test} test samples; each part needs at least {what}. "
            + (f"Choose data.test_fraction between {need / n:.3g} and {1 - need / n:.3g}, use a larger target, "
               if 2 * need <= n else f"No data.test_fraction can: use a larger target (at least {2 * need} samples) ")
            + "or data.protocol=transductive")


def check_same_inputs(source: Domain, target: Domain) -> None:
    """Source and target samples must have the same shape (feature size, or channels × height × width)."""
    a, b = tuple(source.input_shape), tuple(target.input_shape)
    if a != b:
        raise DataError(f"source domain {source.name!r} has samples of shape {a} but target domain "
                        f"{target.name!r} has {b}; both must come from the same feature extractor (same "
                        "feature size) or use the same image size and channels")


def _standardize(source: Domain, others: list[Domain]) -> None:
    bad = next((d for d in [source, *others] if not (isinstance(d, TensorDomain) and d.is_features)), None)
    if bad is not None:
        what = "a torch Dataset" if type(bad).__name__ == "DatasetDomain" else \
            "images" if len(bad.input_shape) == 3 else "data"
        raise ConfigError(f"data.standardize applies to feature rows (N, d) held in memory (feature files, arrays); "
                          f"domain {bad.name!r} is {what} with samples of shape {tuple(bad.input_shape)}: set "
                          "data.standardize=false (a Dataset can standardise in its own transform), or pass feature "
                          "rows as arrays (X, y)")
    mean = source.x.mean(0, keepdim=True)  # type: ignore[attr-defined]
    std = source.x.std(0, keepdim=True)  # type: ignore[attr-defined]
    # a dimension (nearly) constant on the source is centred, not scaled (as scikit-learn's StandardScaler):
    # dividing by ~0 would blow a target value there up to ~1e6 (border pixels, dead CNN units)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    for d in [source, *others]:
        d.x = (d.x - mean) / std  # type: ignore[attr-defined]
        d.standardized_with = (mean.flatten(), std.flatten())  # type: ignore[attr-defined]  # for load_run


def load_domains(cfg, seed: int) -> Domains:
    """Build source, pool and test for a `DataConfig`; checks class lists and target labels."""
    source = load_domain(cfg.format, cfg.source, cfg.root, cfg.pattern, cfg=cfg)
    target = load_domain(cfg.format, cfg.target, cfg.root, cfg.pattern, cfg=cfg)
    if not source.has_labels:
        flat = " (it has no class list: put its images in one sub-folder per class)" if not source.classes else ""
        raise DataError(f"source domain {source.name!r} has unlabelled samples; every source sample needs a "
                        f"label{flat}")
    if not target.classes and not (target.y >= 0).any():  # unlabelled photos without class folders
        target.classes = list(source.classes)
    check_same_classes(source, target)
    check_same_inputs(source, target)  # before any training (the warm-up would fail only at its first batch)
    if cfg.format == "npz":
        from adakit.data.features import check_same_extractor

        check_same_extractor(cfg)
    from adakit.data.objects import fingerprint

    # rows in memory (feature files, digits) are identified by their position: hash their values too
    prints = {k: fingerprint(d, values=isinstance(d, TensorDomain))
              for k, d in (("source", source), ("target", target))}
    if cfg.protocol == "inductive":
        pool, test = split_target(target, cfg.test_fraction, seed)
    else:
        pool, test = target, target
    if cfg.standardize:
        _standardize(source, [pool] if pool is test else [pool, test])
    return Domains(source=source, pool=pool, test=test, protocol=cfg.protocol,
                   fingerprint=prints)

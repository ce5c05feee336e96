"""adakit: active and unsupervised domain adaptation for classification."""

from __future__ import annotations

import importlib
from typing import Any

from adakit.errors import AdakitError, ConfigError, DataError

__version__ = "0.1.0"

#: public names imported on first use (``import adakit`` stays cheap: no torch until needed)
_LAZY = {
    "select": "adakit.selection:select",
    "Selection": "adakit.query.base:Selection",
    "Strategy": "adakit.query.base:Strategy",
    "Objective": "adakit.adapt.base:Objective",
    "objective": "adakit.adapt.factory:objective",
    "register_strategy": "adakit.registry:register_strategy",
    "register_objective": "adakit.registry:register_objective",
    "ActiveLoop": "adakit.loop:ActiveLoop",
    "load_run": "adakit.run_model:load_run",
    "validate": "adakit.validate:_module",  # the package, callable as adakit.validate(name, probs=...)
    "register_validator": "adakit.registry:register_validator",
    "DROP": "adakit.ledger:DROP",  # what a labelling function returns for a sample nobody can label
}

__all__ = ["AdakitError", "ConfigError", "DataError", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'adakit' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

"""Registries by name, so configs and the CLI reach every method.

Each registered class has a ``Params`` pydantic model (its config keys) and a docstring whose first
line is what ``adakit methods`` prints. Modules of a method package are imported on first lookup, so
adding a method is adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from adakit.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str):
        self.kind = kind
        self.package = package
        self._items: dict[str, type[T]] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def deco(cls: type[T]) -> type[T]:
            if name in self._items and self._items[name] is not cls:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            cls.name = name  # type: ignore[attr-defined]
            self._items[name] = cls
            return cls

        return deco

    def _load(self) -> None:
        if self._loaded:
            return
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.package}.{mod.name}")
        self._loaded = True

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def get(self, name: str) -> type[T]:
        self._load()
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._items[name]

    def describe(self) -> list[tuple[str, str]]:
        """(name, first paragraph of the class docstring on one line) per registered method."""
        return [(n, " ".join((self._items[n].__doc__ or "").strip().split("\n\n")[0].split()))
                for n in self.names()]

    def build(self, name: str, params: dict[str, Any], key: str, **kwargs: Any) -> T:
        cls = self.get(name)
        return cls(cls.Params.validated(params, key), **kwargs)  # type: ignore[attr-defined]


STRATEGIES: Registry = Registry("strategy", "adakit.query")
OBJECTIVES: Registry = Registry("objective", "adakit.adapt")
register_strategy = STRATEGIES.register
register_objective = OBJECTIVES.register

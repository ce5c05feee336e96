"""Registries by name, so configs and the CLI reach every method.

Each registered class has a ``Params`` pydantic model (its config keys) and a docstring whose first
line is what ``adakit methods`` prints. Modules of a method package are imported on first lookup, so
adding a method is adding one file.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings
from collections.abc import Callable
from types import UnionType
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin

from adakit.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes by name. ``base`` ("module:Class") is the class every registered one must subclass."""

    def __init__(self, kind: str, package: str, base: str):
        self.kind = kind
        self.package = package
        self.base = base
        self._items: dict[str, type[T]] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: make ``cls`` reachable as ``name`` (configs, `adakit.select`, ``adakit methods``).

        Works from user code: the built-in methods are loaded first, so a user class never takes a built-in
        name. Registering the same class again (also a re-run notebook cell redefining it) is allowed; another
        class under a taken name is a `ConfigError`.
        """
        if not isinstance(name, str) or not name:
            raise ConfigError(f"register_{self.kind}: the name must be a non-empty string, got {name!r}")

        def deco(cls: type[T]) -> type[T]:
            if not getattr(cls, "__module__", "").startswith(self.package + "."):
                self._load()  # a user registration: built-ins first, so a clash with one shows here
            self._check_class(name, cls)
            old = self._items.get(name)
            if old is not None and old is not cls and _qualified(old) != _qualified(cls):
                raise ConfigError(f"{self.kind} {name!r} is already registered by {_qualified(old)}; "
                                  f"choose another name for {_qualified(cls)}")
            cls.name = name  # type: ignore[attr-defined]
            self._items[name] = cls
            return cls

        return deco

    def _check_class(self, name: str, cls: Any) -> None:
        from adakit.params import Params

        mod, _, attr = self.base.partition(":")
        base = getattr(importlib.import_module(mod), attr)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise ConfigError(f"register_{self.kind}({name!r}): {cls!r} must be a subclass of {mod}.{attr}")
        missing = [m for m in getattr(base, "must_implement", ()) if getattr(cls, m) is getattr(base, m)]
        if missing:
            raise ConfigError(f"register_{self.kind}({name!r}): {cls.__name__} must implement "
                              f"{', '.join(f'{m}()' for m in missing)} (see {mod}.{attr})")
        need = base.Params if issubclass(base.Params, Params) else Params
        if not (isinstance(cls.Params, type) and issubclass(cls.Params, need)):
            raise ConfigError(f"register_{self.kind}({name!r}): {cls.__name__}.Params must subclass "
                              f"{need.__module__}.{need.__qualname__} (typed keys; unknown keys are errors)")

    def _load(self) -> None:
        if self._loaded:
            return
        pkg = importlib.import_module(self.package)
        for mod in pkgutil.iter_modules(pkg.__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{self.package}.{mod.name}")
        self._loaded = True
        load_plugins()

    def names(self) -> list[str]:
        self._load()
        return sorted(self._items)

    def get(self, name: str) -> type[T]:
        self._load()
        if name not in self._items:
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}")
        return self._items[name]

    def resolve(self, value: Any, who: str, also: str = "") -> type[T]:
        """The class of a registered name, or ``value`` itself when it is a subclass of the base class; anything
        else is a `ConfigError` from ``who`` listing the names (``also``: what else the caller accepts)."""
        if isinstance(value, str):
            return self.get(value)
        mod, _, attr = self.base.partition(":")
        if isinstance(value, type) and issubclass(value, getattr(importlib.import_module(mod), attr)):
            return value
        raise ConfigError(f"{who}: the {self.kind} must be a registered name ({', '.join(self.names())}) or a "
                          f"subclass of {attr}{also}; got {value!r}")

    def describe(self) -> list[tuple[str, str]]:
        """(name, first paragraph of the class docstring on one line) per registered method."""
        return [(n, " ".join((self._items[n].__doc__ or "").strip().split("\n\n")[0].split()))
                for n in self.names()]

    def parameters(self, name: str) -> list[tuple[str, str, str, str]]:
        """(key, type, default, description) of every parameter of method ``name`` (its ``Params`` fields)."""
        rows = []
        for key, field in self.get(name).Params.model_fields.items():  # type: ignore[attr-defined]
            if field.is_required():
                default = "(required)"
            elif field.default_factory is not None:
                default = repr(field.default_factory())  # type: ignore[call-arg]
            else:
                default = repr(field.default)
            rows.append((key, _type_name(field.annotation), default, " ".join((field.description or "").split())))
        return rows

    def build(self, name: str, params: dict[str, Any], key: str, **kwargs: Any) -> T:
        cls = self.get(name)
        return cls(cls.Params.validated(params, key), **kwargs)  # type: ignore[attr-defined]


#: entry-point group of installed packages that register methods (``adakit methods`` and ``adakit run`` see them)
PLUGIN_GROUP = "adakit.methods"
_plugins_loaded = False


def load_plugins() -> None:
    """Import, once, every module declared under the ``adakit.methods`` entry-point group of installed packages.

    A package declares e.g. ``[project.entry-points."adakit.methods"] mine = "mypkg.methods"``; importing
    that module runs its `register_strategy` / `register_objective` decorators. One that fails to import is
    a warning naming it (runs that do not use it go on).
    """
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()
        except Exception as e:  # a broken plugin must not stop runs that do not use it: warn, naming it
            warnings.warn(f"the {PLUGIN_GROUP} entry point {ep.name!r} = {ep.value!r} failed to load "
                          f"({type(e).__name__}: {e}); its methods are unavailable. Fix or uninstall the package "
                          "that declares it", stacklevel=2)


def _type_name(annotation: Any) -> str:
    """``int``, ``int | None``, ``'a' | 'b'`` (a Literal's values) for a field annotation."""
    if get_origin(annotation) is Literal:
        return " | ".join(repr(a) for a in get_args(annotation))
    if get_origin(annotation) in (Union, UnionType):
        return " | ".join(_type_name(a) for a in get_args(annotation))
    if annotation is type(None):
        return "None"
    return annotation.__name__ if isinstance(annotation, type) else str(annotation).replace("typing.", "")


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


STRATEGIES: Registry = Registry("strategy", "adakit.query", "adakit.query.base:Strategy")
OBJECTIVES: Registry = Registry("objective", "adakit.adapt", "adakit.adapt.base:Objective")
register_strategy = STRATEGIES.register
register_objective = OBJECTIVES.register
VALIDATORS: Registry = Registry("validator", "adakit.validate", "adakit.validate.base:Validator")
register_validator = VALIDATORS.register

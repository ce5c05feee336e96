"""Typed parameter models with error messages that name the config key and the allowed values."""

from __future__ import annotations

import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from adakit.errors import ConfigError


def whole_number(value: Any) -> int | None:
    """``value`` as an int when it is a whole number given as one (an int, a numpy integer, a 0-d integer tensor),
    else None (a bool, a float such as 2.5, a string, ...): for counts and sizes passed from Python."""
    import operator

    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def format_validation_error(err: ValidationError, prefix: str, model: type[BaseModel],
                            section_keys: Iterable[str] = ()) -> str:
    """One line per error, each naming its key path (``prefix.key``) and what is allowed. ``section_keys``: keys
    the section under ``prefix`` holds besides ``model``'s (``query.strategy`` beside a strategy's parameters)."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = sorted({*_allowed_keys(model, e["loc"][:-1]), *(section_keys if len(e["loc"]) == 1 else ())})
            msg = f"unknown key; allowed keys: {', '.join(allowed) or '(none)'}"
        elif "input" in e and e["type"] not in ("missing",):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{loc}: {msg}")
    return "invalid config:\n  " + "\n  ".join(lines)


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    m: Any = model
    for part in loc:
        field = getattr(m, "model_fields", {}).get(part)
        if field is None or not isinstance(field.annotation, type):
            return []
        m = field.annotation
    return sorted(getattr(m, "model_fields", {}))


def _types(annotation: Any) -> set:
    """The plain types an annotation admits, those of its items and Literal values included (``int | None`` ->
    {int, NoneType}; ``list[int]`` -> {int}; ``Literal[1, 3]`` -> {int})."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is typing.Literal:
        return {type(a) for a in args}
    return {annotation} if not args else set().union(*(_types(a) for a in args))


def _plain(v: Any, types: set) -> Any:
    if isinstance(v, bool) and bool not in types and types & {int, float}:
        raise ValueError("expected a number, not true/false")
    if isinstance(v, int | float) and not isinstance(v, bool) and str in types and types <= {str, type(None)}:
        return str(v)  # (a name: not where a number or a yes/no is meant too, e.g. log.tensorboard: bool | str)
    return v


class PlainTypes(BaseModel):
    """Settings read from YAML: a yes/no is not a number (``seed: true`` was read as seed 1), also in a list or
    where the values are listed (``data.channels: true`` was channels 1), and a number where a name is expected
    is that name (``--set data.source=123``, a domain named 123; `read_yaml` keeps ``01`` or ``1e3`` as written)."""

    @field_validator("*", mode="before")
    @classmethod
    def _plain_types(cls, v: Any, info: ValidationInfo) -> Any:
        types = _types(cls.model_fields[info.field_name].annotation)
        return [_plain(x, types) for x in v] if isinstance(v, list) else _plain(v, types)


class Params(PlainTypes):
    """Base for a method's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def validated(cls, values: dict[str, Any] | None, key: str, section_keys: Iterable[str] = ()):
        """``values`` as this model; a mistake is a `ConfigError` naming ``key``.KEY (``section_keys``: the other
        keys of the config section, listed with the parameters when a key is unknown)."""
        try:
            return cls.model_validate(values or {})
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, key, cls, section_keys)) from None

"""Typed parameter models with error messages that name the config key and the allowed values."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from adakit.errors import ConfigError


def format_validation_error(err: ValidationError, prefix: str, model: type[BaseModel]) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, e["loc"][:-1])
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
    """The plain types an annotation admits (``int | None`` -> {int, NoneType}; Literal values are not types)."""
    args = typing.get_args(annotation)
    return {annotation} if not args else set().union(*(_types(a) for a in args))


class PlainTypes(BaseModel):
    """Settings read from YAML: a yes/no is not a number (``seed: true`` was read as seed 1), and a number where a
    name is expected is that name (``--set data.source=123``, a domain named 123)."""

    @field_validator("*", mode="before")
    @classmethod
    def _plain_types(cls, v: Any, info: ValidationInfo) -> Any:
        types = _types(cls.model_fields[info.field_name].annotation)
        if isinstance(v, bool) and bool not in types and types & {int, float}:
            raise ValueError("expected a number, not true/false")
        if isinstance(v, int | float) and not isinstance(v, bool) and str in types and types <= {str, type(None)}:
            return str(v)  # (a name: not where a number or a yes/no is meant too, e.g. log.tensorboard: bool | str)
        return v


class Params(PlainTypes):
    """Base for a method's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @classmethod
    def validated(cls, values: dict[str, Any] | None, key: str):
        try:
            return cls.model_validate(values or {})
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, key, cls)) from None

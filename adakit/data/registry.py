"""Loaders by data format: each turns (path, domain name) into a `Domain`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from adakit.data.domain import Domain

Loader = Callable[[Path, str], Domain]
LOADERS: dict[str, Loader] = {}


def register_loader(fmt: str) -> Callable[[Loader], Loader]:
    def deco(fn: Loader) -> Loader:
        LOADERS[fmt] = fn
        return fn

    return deco

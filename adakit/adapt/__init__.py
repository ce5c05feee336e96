"""Training objectives, one file per method, registered by name (see `adakit.registry`)."""

from adakit.adapt.base import Batch, Objective

__all__ = ["Batch", "Objective"]

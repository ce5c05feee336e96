"""Selection strategies, one file per strategy, registered by name (see `adakit.registry`)."""

from adakit.query.base import Selection, Strategy, top_k

__all__ = ["Selection", "Strategy", "top_k"]

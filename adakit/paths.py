"""Where real datasets live: the folder named by ``$ADAKIT_DATA`` (what `adakit data prepare` fills)."""

from __future__ import annotations

import os
from pathlib import Path

from adakit.errors import DataError

ENV_VAR = "ADAKIT_DATA"


def data_root(required: bool = True) -> Path | None:
    """Return the data root; raise a `DataError` saying how to set it when it is missing."""
    env = os.environ.get(ENV_VAR)
    if env and Path(env).expanduser().is_dir():
        return Path(env).expanduser().resolve()
    if not required:
        return None
    where = f"{ENV_VAR}={env} is not a folder" if env else f"{ENV_VAR} is not set"
    raise DataError(
        f"data root not found: {where}. Set {ENV_VAR}=/path/to/data (the folder holding office31/, digits/, "
        f"models/; `adakit data prepare NAME` writes there), or pass data.root in the config."
    )


def pattern_root(root: str | None, pattern: str) -> Path | None:
    """The folder ``{root}`` stands for in ``pattern``: ``data.root``, else the data root (`data_root`, an error
    saying how to set it when missing). None when the pattern does not use ``{root}`` (``feats/{domain}.npz``): such
    a pattern needs no data root."""
    import string

    if root:
        return expand(root)
    if not any(f == "root" for _, f, _, _ in string.Formatter().parse(pattern)):
        return None
    return data_root()


def expand(path: str | os.PathLike, root: Path | None = None) -> Path:
    """Expand ``~``, environment variables and ``${ADAKIT_DATA}`` in a path."""
    text = str(path)
    if "${ADAKIT_DATA}" in text or "$ADAKIT_DATA" in text:
        base = str(root if root is not None else data_root())
        text = text.replace("${ADAKIT_DATA}", base).replace("$ADAKIT_DATA", base)
    return Path(os.path.expandvars(os.path.expanduser(text)))

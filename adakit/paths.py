"""Where shared data lives: ``$ADAKIT_DATA``, else ``../shared/data`` next to the working directory."""

from __future__ import annotations

import os
from pathlib import Path

from adakit.errors import DataError

ENV_VAR = "ADAKIT_DATA"


def data_root(required: bool = True) -> Path | None:
    """Return the data root; raise a `DataError` saying how to set it when it is missing."""
    candidates = []
    if os.environ.get(ENV_VAR):
        candidates.append(Path(os.environ[ENV_VAR]).expanduser())
    else:
        candidates.append(Path.cwd().parent / "shared" / "data")
        candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    if not required:
        return None
    raise DataError(
        f"data root not found (looked in: {', '.join(str(c) for c in candidates)}). "
        f"Set {ENV_VAR}=/path/to/data (the folder holding office31/, digits/, models/), "
        "or pass data.root in the config."
    )


def expand(path: str | os.PathLike, root: Path | None = None) -> Path:
    """Expand ``~``, environment variables and ``${ADAKIT_DATA}`` in a path."""
    text = str(path)
    if "${ADAKIT_DATA}" in text or "$ADAKIT_DATA" in text:
        base = str(root if root is not None else data_root())
        text = text.replace("${ADAKIT_DATA}", base).replace("$ADAKIT_DATA", base)
    return Path(os.path.expandvars(os.path.expanduser(text)))

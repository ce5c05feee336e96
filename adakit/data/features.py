"""Feature-file domains: ``.npz`` (feat/y/classes), ``.mat`` and svmlight."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from adakit.data.domain import TensorDomain
from adakit.data.registry import register_loader
from adakit.errors import DataError

_MAT_X = ("feat", "feas", "fts", "X", "x", "features", "data")
_MAT_Y = ("y", "label", "labels", "Y", "gnd")


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"feature file not found: {path}. Check data.root / data.pattern or set ADAKIT_DATA.")
    return path


def _classes(values: np.ndarray | None, y: np.ndarray) -> list[str]:
    if values is not None:
        return [str(c) for c in np.asarray(values).tolist()]
    return [str(c) for c in range(int(y.max()) + 1)]


@register_loader("npz")
def load_npz(path: Path, name: str) -> TensorDomain:
    """``.npz`` with ``feat`` (N, d), ``y`` (N,) and optional ``classes`` (C,).

    ``adakit features`` also writes ``ids`` (image paths relative to the image folder) and
    ``image_root``; with both, each row knows its image file (`TensorDomain.paths`, shown by
    `adakit label`). Sample ids stay ``name/index`` either way. A relative ``image_root`` is taken
    from the ``.npz``'s folder.
    """
    try:
        with np.load(_require(path), allow_pickle=False) as z:
            missing = [k for k in ("feat", "y") if k not in z.files]
            if missing:
                raise DataError(f"{path}: missing arrays {missing}; found {z.files}. Expected feat, y[, classes]")
            x = z["feat"].astype(np.float32)
            y = z["y"].astype(np.int64)
            classes = _classes(z["classes"] if "classes" in z.files else None, y)
            paths = None
            if "ids" in z.files and "image_root" in z.files:
                root = path.parent / str(z["image_root"])  # an absolute image_root replaces the folder
                paths = np.char.add(f"{root}/", np.asarray(z["ids"]).astype(str))
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: cannot read as .npz ({err})") from None
    return _features(name, x, y, classes, path, paths)


@register_loader("mat")
def load_mat(path: Path, name: str) -> TensorDomain:
    """MATLAB ``.mat`` with a feature matrix (N, d) and a label vector; labels 1..C become 0..C-1."""
    import scipy.io

    try:
        m = scipy.io.loadmat(_require(path))
    except (OSError, ValueError, NotImplementedError) as err:
        raise DataError(f"{path}: cannot read as .mat ({err})") from None
    xk = next((k for k in _MAT_X if k in m), None)
    yk = next((k for k in _MAT_Y if k in m), None)
    if xk is None or yk is None:
        keys = [k for k in m if not k.startswith("__")]
        raise DataError(f"{path}: need a feature matrix ({'/'.join(_MAT_X)}) and labels "
                        f"({'/'.join(_MAT_Y)}); found {keys}")
    x = np.asarray(m[xk], dtype=np.float32)
    y = np.asarray(m[yk]).ravel().astype(np.int64)
    if x.shape[0] != len(y) and x.shape[1] == len(y):
        x = x.T
    if y.min() == 1:
        y = y - 1
    return _features(name, x, y, _classes(None, y), path)


@register_loader("svmlight")
def load_svmlight(path: Path, name: str) -> TensorDomain:
    """svmlight / libsvm text format (``label idx:value ...``)."""
    from sklearn.datasets import load_svmlight_file

    try:
        x, y = load_svmlight_file(str(_require(path)))
    except ValueError as err:
        raise DataError(f"{path}: not a valid svmlight file ({err})") from None
    y = y.astype(np.int64)
    if y.min() == 1:
        y = y - 1
    return _features(name, x.toarray().astype(np.float32), y, _classes(None, y), path)


def _features(name: str, x: np.ndarray, y: np.ndarray, classes: list[str], path: Path,
              paths: np.ndarray | None = None) -> TensorDomain:
    if x.ndim != 2:
        raise DataError(f"{path}: features must be a 2-d array (N, d), got shape {x.shape}")
    ids = np.char.add(f"{name}/", np.arange(len(y)).astype(str))
    try:
        return TensorDomain(name=name, classes=classes, ids=ids, y=y, x=x, paths=paths)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None

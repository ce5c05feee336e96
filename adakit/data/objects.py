"""Domains from Python objects: ``(X, y)`` arrays (numpy or torch) or a torch ``Dataset``.

`as_domain` turns what a user hands to ``ActiveLoop(source=..., target=...)`` or ``load_run(...).predict``
into a `Domain` (ids ``name/i``); `fingerprint` summarises a domain (sizes, sample shape and a hash of a
fixed sample of rows) so that resuming a run started from objects can check it got the same data again.
"""

from __future__ import annotations

import hashlib
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from adakit.data.domain import Domain, TensorDomain, labels_from_names
from adakit.errors import DataError

__all__ = ["DatasetDomain", "as_domain", "fingerprint", "fingerprint_diff", "infer_classes", "is_sparse"]

#: rows hashed by `fingerprint` (evenly spaced over the domain, first and last included)
FINGERPRINT_ROWS = 256


def numpy_tensor(x: Any) -> torch.Tensor:
    """``np.asarray(x)`` as a CPU tensor, shared when it can be; a read-only array (a PIL image's view, pandas'
    copy-on-write values, ``np.broadcast_to``) is copied, which torch would otherwise warn about."""
    a = np.asarray(x)
    return torch.as_tensor(a if a.flags.writeable else a.copy())


def is_sparse(x: Any) -> bool:
    """A scipy sparse matrix or array (without importing scipy for the check)."""
    return type(x).__module__.startswith("scipy.sparse")


def _to_tensor(x: Any, what: str) -> torch.Tensor:
    """``x`` (a tensor, numpy array, scipy sparse matrix, nested lists, DataFrame, ...) as a real-valued CPU tensor,
    or a `DataError` naming ``what``: complex values (casting would drop their imaginary part) and values that are
    not numbers."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu()
    else:
        if is_sparse(x):  # (as load_svmlight_file returns features): its dense rows
            x = x.toarray()
        try:
            a = np.asarray(x)
        except (TypeError, ValueError) as e:
            raise DataError(f"{what}: expected a numpy array or torch tensor, got {type(x).__name__} ({e})") from None
        try:
            # numbers held as Python objects (a DataFrame of mixed columns) are numbers
            t = numpy_tensor(a.astype(np.float64) if a.dtype == object else a)
        except (TypeError, ValueError) as e:
            raise DataError(f"{what}: must hold numbers, got dtype {a.dtype} ({str(e)[:120]}); convert the samples to "
                            "a numeric array first (e.g. np.asarray(X, dtype=np.float32))") from None
    if t.is_complex():
        raise DataError(f"{what}: complex values ({t.dtype}); give real numbers (e.g. X.real, or abs(X) for "
                        "magnitudes): converting would drop the imaginary parts")
    return t


def _is_dataset(obj: Any) -> bool:
    """A torch Dataset, or another indexable sized object that is not array-like: a pandas DataFrame (or anything
    with ``__array__`` / ``to_numpy``) or a scipy sparse matrix is an array of rows, though ``df[i]`` would give its
    column i."""
    if isinstance(obj, torch.utils.data.Dataset):
        return True
    if isinstance(obj, (np.ndarray, torch.Tensor, tuple, list)) or hasattr(obj, "__array__") or \
            hasattr(obj, "to_numpy") or is_sparse(obj):
        return False
    return hasattr(obj, "__getitem__") and hasattr(obj, "__len__")


def _item_x(item: Any, where: str) -> Any:
    if isinstance(item, Mapping):
        raise _mapping_item(item, where)
    return item[0] if isinstance(item, (tuple, list)) else item


def _mapping_item(item: Mapping, where: str) -> DataError:
    keys = ", ".join(repr(k) for k in list(item)[:6])
    return DataError(f"{where}: dataset items are dicts (keys {keys}); adakit reads items as (x, y) or x alone. "
                     "Wrap the dataset so that __getitem__ returns (input, label), e.g. "
                     "(item['pixel_values'], item['label'])")


@dataclass
class DatasetDomain(Domain):
    """A torch ``Dataset`` whose items are ``(x, y)`` or ``x``; batches are ``dataset[i]`` stacked.

    ``rows`` maps this domain's samples to dataset indices (a subset after the inductive split).
    uint8 samples are scaled to [0, 1] as in `TensorDomain`. PIL images (a torchvision ``ImageFolder`` without a
    transform) are read as adakit reads image files: RGB, then the training or evaluation transform at
    ``image_size`` / ``resize`` (`image_transform`).
    """

    dataset: Any = field(default=None, repr=False)
    rows: np.ndarray | None = None
    image_size: int | None = None
    resize: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rows is None:
            self.rows = np.arange(len(self.ids))
        self._shape: tuple[int, ...] | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        if self._shape is None:
            self._shape = tuple(self.load(np.array([0])).shape[1:])
        return self._shape

    def load(self, idx: np.ndarray, train: bool = False) -> torch.Tensor:
        rows = self.rows[np.asarray(idx, dtype=np.int64)]
        try:
            where = f"domain {self.name!r}"
            xs = [self._tensor(_item_x(self.dataset[int(i)], where), train, f"{where} item {int(i)}") for i in rows]
            x = torch.stack(xs)
        except RuntimeError as e:  # torch.stack: items of different shapes
            raise DataError(f"domain {self.name!r}: dataset items have different shapes ({e}); make "
                            "__getitem__ return tensors of one shape (e.g. resize images)") from None
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    def _tensor(self, x: Any, train: bool, what: str) -> torch.Tensor:
        from PIL import Image

        if isinstance(x, Image.Image):
            from adakit.data.images import _sizes, to_rgb
            from adakit.data.transforms import image_transform

            return image_transform(bool(train), *_sizes(self))(to_rgb(x))  # (data.resize < image_size: named)
        return _to_tensor(x, what)

    def subset(self, idx: np.ndarray, name: str | None = None) -> DatasetDomain:
        idx = np.asarray(idx)
        return DatasetDomain(name=name or self.name, classes=self.classes, ids=self.ids[idx], y=self.y[idx],
                             dataset=self.dataset, rows=self.rows[idx], image_size=self.image_size,
                             resize=self.resize)


def _labels(y: Any, n: int, classes: Sequence[str] | None, where: str) -> np.ndarray:
    if y is None:
        return np.full(n, -1, dtype=np.int64)
    arr = y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    if arr.dtype == object and arr.ndim == 1 and len(arr) == n and any(v is None for v in arr):
        unknown = np.array([v is None for v in arr])  # items (x, None): unknown labels
        known = _labels(np.array([_plain(v) for v in arr[~unknown]]), int((~unknown).sum()), classes, where)
        out = np.full(n, -1, dtype=np.int64)
        out[~unknown] = known
        return out
    if arr.ndim != 1 or len(arr) != n:
        raise DataError(f"{where}: labels must be one per sample, shape ({n},); got shape {arr.shape}")
    if arr.dtype.kind in "US O".replace(" ", ""):
        if classes is None:
            raise DataError(f"{where}: labels are class names; pass classes=[...] (the class list, in order)")
        return labels_from_names([str(v) for v in arr], list(classes), where)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise DataError(f"{where}: labels must be integer class indices (or -1 for unknown); got "
                            f"non-integer values such as {arr[arr != np.round(arr)][:3].tolist()}")
    elif arr.dtype.kind not in "iub":
        raise DataError(f"{where}: labels must be integer class indices; got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _dataset_labels(ds: Any, where: str) -> Any:
    """Labels of a Dataset: its ``targets`` / ``labels`` attribute when it has one (passed through the dataset's
    ``target_transform``, as its items are, and checked against a few items), else one pass over items."""
    first = ds[0]
    if isinstance(first, Mapping):
        raise _mapping_item(first, where)
    for attr in ("targets", "labels"):
        if hasattr(ds, attr) and len(getattr(ds, attr)) == len(ds):
            labels = getattr(ds, attr)
            transform = getattr(ds, "target_transform", None)
            if transform is not None:  # (torchvision's ImageFolder: .targets are the folder indices before it)
                labels = [transform(_plain(t)) for t in labels]  # (as items give it: MNIST's int(targets[i]))
            _check_item_labels(ds, labels, attr, where)
            return labels
    if not isinstance(first, (tuple, list)) or len(first) == 1:  # x alone, or (x,) as TensorDataset(X) gives
        return None
    if len(first) != 2:
        raise DataError(f"{where}: dataset items must be (x, y), (x,) or x alone; got a {len(first)}-tuple (return "
                        "(x, y) from __getitem__, or give the dataset a .targets list of its labels)")
    return [ds[i][1] for i in range(len(ds))]


def _check_item_labels(ds: Any, labels: Any, attr: str, where: str, checks: int = 5) -> None:
    """The labels of a few evenly spaced items agree with ``labels`` (read from ``ds.<attr>``), or a `DataError`."""
    n = len(ds)
    for i in np.unique(np.linspace(0, n - 1, min(n, checks)).astype(int)).tolist():
        item = ds[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            return
        given, listed = _plain(item[1]), _plain(labels[i])
        if given is not None and given != listed and str(given) != str(listed):
            raise DataError(f"{where}: dataset.{attr}[{i}] is {listed!r} but dataset[{i}] gives the label {given!r}; "
                            f"adakit reads the labels from .{attr} (a pass over the items would load every "
                            f"sample): make the two agree, or delete the dataset's .{attr} attribute")


def _plain(v: Any) -> Any:
    """A label as a plain Python value (0-d tensors and numpy scalars unwrapped)."""
    if isinstance(v, torch.Tensor) and v.dim() == 0:
        return v.item()
    return v.item() if isinstance(v, np.generic) else v


def _class_list(classes: Sequence[str] | None, y: np.ndarray) -> list[str]:
    if classes is not None:
        return [str(c) for c in classes]
    return [str(i) for i in range(int(y.max()) + 1)] if len(y) else []


def as_domain(obj: Any, name: str, classes: Sequence[str] | None = None, *, labelled: bool = False,
              image_size: int | None = None, resize: int | None = None) -> Domain:
    """A `Domain` named ``name`` (ids ``name/i``) from ``(X, y)``, ``(X, None)``, ``X`` or a torch Dataset.

    ``X`` holds feature rows (N, d) or images (N, C, H, W) (uint8 images are scaled to [0, 1]); ``y`` holds
    class indices in ``[0, len(classes))``, -1 for unknown, or class names from ``classes``. ``labelled``
    (the source) requires every label. A Dataset of PIL images is read at ``image_size`` / ``resize``
    (`DatasetDomain`).
    """
    if isinstance(obj, Domain):
        return obj
    where = f"{name}"
    if _is_dataset(obj):
        if len(obj) == 0:
            raise DataError(f"{where}: the dataset is empty")
        y = _labels(_dataset_labels(obj, where), len(obj), classes, where)
        ids = np.char.add(f"{name}/", np.arange(len(obj)).astype(str))
        dom: Domain = DatasetDomain(name=name, classes=_class_list(classes, y), ids=ids, y=y, dataset=obj,
                                    image_size=image_size, resize=resize)
    else:
        if isinstance(obj, (tuple, list)):
            if len(obj) != 2:
                raise DataError(f"{where}: expected (X, y) with X of shape (N, ...) and y of shape (N,); got a "
                                f"{type(obj).__name__} of {len(obj)} items")
            x_raw, y_raw = obj
        else:
            x_raw, y_raw = obj, None
        x = _to_tensor(x_raw, f"{where} X")
        if x.dim() < 2:
            raise DataError(f"{where}: X must have shape (N, d) or (N, C, H, W); got shape {tuple(x.shape)}")
        if 0 in x.shape[1:]:
            raise DataError(f"{where}: X has shape {tuple(x.shape)}: its samples hold no values; give feature rows "
                            "(N, d) with d >= 1 or images (N, C, H, W)")
        if not (x.is_floating_point() or x.dtype == torch.uint8):
            x = x.float()
        y = _labels(y_raw, len(x), classes, where)
        ids = np.char.add(f"{name}/", np.arange(len(x)).astype(str))
        dom = TensorDomain(name=name, classes=_class_list(classes, y), ids=ids, y=y, x=x)
    if labelled and not dom.has_labels:
        n = int((dom.y < 0).sum())
        raise DataError(f"{where}: {n} of {len(dom)} samples have no label; every source sample needs one")
    return dom


def infer_classes(*labels: np.ndarray) -> list[str]:
    """``["0", ..., "C-1"]`` with C one more than the largest label seen."""
    top = max((int(y.max()) for y in labels if len(y)), default=-1)
    if top < 0:
        raise DataError("no labels to infer the class list from; pass classes=[...]")
    return [str(i) for i in range(top + 1)]


def fingerprint_rows(n: int) -> np.ndarray:
    """The fixed rows hashed by `fingerprint`: up to 256 evenly spaced indices, first and last included."""
    return np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_ROWS)).round().astype(np.int64))


@contextmanager
def _fixed_randomness(seed: int = 0) -> Iterator[None]:
    """torch's, numpy's and Python's global random generators seeded with ``seed`` for the block, then restored."""
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def fingerprint(domain: Domain, values: bool = True) -> dict:
    """Size, sample shape, a hash of all labels and a sha256 of a fixed sample of rows (as float32); with
    ``values`` False (image files, whose ids are their paths) a hash of the sample ids instead of the rows."""
    labels = np.ascontiguousarray(domain.y, dtype=np.int64)
    out = {"size": len(domain), "shape": list(domain.input_shape),
           "labels": hashlib.sha256(labels.tobytes()).hexdigest()[:16]}
    if values:
        rows = fingerprint_rows(len(domain))
        with _fixed_randomness():  # a Dataset's random augmentation draws alike each time (resume compares them)
            x = domain.load(rows).float().contiguous().numpy()
        with _fixed_randomness():
            again = domain.load(rows[:2]).float().contiguous().numpy()
        if np.array_equal(again, x[:2], equal_nan=True):  # (NaN in the data is not a change)
            out["rows"] = hashlib.sha256(x.tobytes()).hexdigest()[:16]
        else:  # (a transform with a random generator of its own): only size, shape and labels can be compared
            warnings.warn(f"{domain.name}: the dataset gives other values each time a sample is read, even with "
                          "torch's, numpy's and Python's random generators fixed (a transform with a generator of "
                          "its own?); a resumed run checks only its size, shape and labels", UserWarning,
                          stacklevel=4)
    else:
        out["ids"] = hashlib.sha256("\n".join(map(str, domain.ids)).encode()).hexdigest()[:16]
    return out


def fingerprint_diff(stored: dict, now: dict) -> str | None:
    """What differs between two fingerprints of one domain, in words (None when they agree)."""
    if stored["size"] != now["size"]:
        return f"{now['size']} samples instead of {stored['size']}"
    if stored["shape"] != now["shape"]:
        return f"sample shape {tuple(now['shape'])} instead of {tuple(stored['shape'])}"
    if stored["labels"] != now["labels"]:
        return "different labels"
    if "ids" in stored and "ids" in now and stored["ids"] != now["ids"]:
        return "different sample ids (files added, removed or renamed)"
    if "rows" in stored and "rows" in now and stored["rows"] != now["rows"]:
        return f"different values (hash of {min(now['size'], FINGERPRINT_ROWS)} sampled rows)"
    return None

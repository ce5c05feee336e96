"""`Domain`: the samples of one domain, their labels (-1 where unknown) and the class list."""

from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from adakit.errors import DataError


@dataclass
class Domain:
    """Samples of one domain, loaded by batches of indices.

    ``ids`` are stable sample ids (relative path or ``domain/index``) used by the ledger;
    ``y`` holds int64 labels in ``[0, C)`` or -1 where unknown. Subclasses define `load`.
    """

    name: str
    classes: list[str]
    ids: np.ndarray
    y: np.ndarray

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids).astype(str)
        self.y = np.asarray(self.y, dtype=np.int64)
        if len(self.ids) != len(self.y):
            raise DataError(f"domain {self.name!r}: {len(self.ids)} samples but {len(self.y)} labels")
        if len(self.ids) == 0:
            raise DataError(f"domain {self.name!r} has no samples")
        names, counts = np.unique(np.asarray([str(c) for c in self.classes]), return_counts=True)
        if (counts > 1).any():
            dup = names[counts > 1].tolist()
            raise DataError(f"domain {self.name!r}: class names listed more than once: {dup[:10]}; each class "
                            "needs a distinct name (fix the class list, e.g. classes.txt or the file's classes)")
        bad = (self.y < -1) | (self.y >= len(self.classes))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(
                f"domain {self.name!r}: sample {str(self.ids[i])!r} has label {int(self.y[i])}, outside the "
                f"class list 0..{len(self.classes) - 1} ({len(self.classes)} classes)"
            )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def has_labels(self) -> bool:
        return bool((self.y >= 0).all())

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample as the model sees it: (d,) for features, (C, H, W) for images."""
        raise NotImplementedError

    def load(self, idx: np.ndarray, train: bool = False) -> torch.Tensor:
        """Batch of samples ``idx`` as a float tensor (training augmentation when ``train``)."""
        raise NotImplementedError

    def load_strong(self, idx: np.ndarray) -> torch.Tensor:
        """A strongly augmented view of samples ``idx`` (LADA's PAA mixes it with the plain view)."""
        raise DataError(f"domain {self.name!r} ({type(self).__name__}) has no strong augmentation; "
                        "anchor augmentation (anchor.kind raa/laa) is not available for it")

    def subset(self, idx: np.ndarray, name: str | None = None) -> Domain:
        raise NotImplementedError

    def describe(self, i: int) -> str:
        """A human-readable locator for sample i (file path or row index)."""
        return str(self.ids[i])

    def image_path(self, i: int) -> str | None:
        """The image file sample i was made from, when the domain knows it (else None)."""
        return None


#: a float64 feature column whose spread is below this fraction of its magnitude keeps too few of its digits in
#: float32 (about 7 significant digits): at 1e-5 about 170 distinct steps are left; timestamps ~1.7e9 that vary
#: by ~1 become one value
FLOAT32_SPREAD = 1e-5


def _warn_float32_precision(name: str, x: torch.Tensor) -> None:
    """Warn when float64 feature rows lose their variation in the cast to float32 (adakit computes in float32):
    columns with a large shared offset, which the model (and ``data.standardize``, applied after the cast) then
    sees as (nearly) constant."""
    if x.dim() != 2 or len(x) < 2:
        return
    std, offset = x.std(0), x.mean(0).abs()  # (a column with NaN / inf compares False: refused after the cast)
    lost = torch.nonzero((std > 0) & (std < FLOAT32_SPREAD * offset)).flatten()
    if len(lost):
        j = int(lost[0])
        warnings.warn(f"domain {name!r}: {len(lost)} of {x.shape[1]} float64 feature columns vary too little for "
                      f"their size to survive adakit's float32 (column {j}: values around {float(offset[j]):.6g}, "
                      f"spread {float(std[j]):.3g}); they become (nearly) constant. Subtract one offset from source "
                      "and target before passing them (e.g. X - X_source.mean(0)), or scale those columns",
                      UserWarning, stacklevel=4)


@dataclass
class TensorDomain(Domain):
    """Samples held in memory: feature rows ``(N, d)`` or images ``(N, C, H, W)``.

    ``augment`` (images only) is applied to training batches. ``paths`` (optional, one per row) names
    the image file each feature row was extracted from; it never replaces ``ids`` (the ledger's ids).
    ``pixel_shape`` (optional, ``(C, H, W)``): the feature rows are the pixels of images of this shape, so
    people labelling them are shown the images (the labelling page, Label Studio export).
    ``standardized_with`` (``data.standardize``): the source (mean, std) the rows were standardised with, kept by
    subsets (a held-out source split, the inductive pool and test) so that `adakit.load_run` stores them.
    """

    x: torch.Tensor = field(default=None)  # type: ignore[assignment]
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    paths: np.ndarray | None = None
    pixel_shape: tuple[int, int, int] | None = None
    standardized_with: tuple[torch.Tensor, torch.Tensor] | None = field(default=None, repr=False)
    _feature_std: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.x, torch.Tensor):
            self.x = torch.as_tensor(np.asarray(self.x))
        if self.x.is_floating_point():
            if self.x.dtype == torch.float64:
                _warn_float32_precision(self.name, self.x)
            self.x = self.x.float()
            finite = torch.isfinite(self.x.reshape(len(self.x), -1)).all(dim=1)
            if not bool(finite.all()):
                rows = torch.nonzero(~finite).flatten()[:5].tolist()
                raise DataError(
                    f"domain {self.name!r}: NaN or inf values in rows {rows} "
                    f"({int((~finite).sum())} rows in all); clean or drop those rows first"
                )
        if len(self.x) != len(self.ids):
            raise DataError(f"domain {self.name!r}: {len(self.x)} rows but {len(self.ids)} ids")
        if self.pixel_shape is not None and int(np.prod(self.pixel_shape)) != self.x[0].numel():
            raise DataError(f"domain {self.name!r}: pixel_shape {tuple(self.pixel_shape)} does not hold the "
                            f"{self.x[0].numel()} values of a sample")
        if self.paths is not None:
            self.paths = np.asarray(self.paths).astype(str)
            if len(self.paths) != len(self.ids):
                raise DataError(f"domain {self.name!r}: {len(self.paths)} image paths but {len(self.ids)} ids")

    @property
    def is_features(self) -> bool:
        return self.x.dim() == 2

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def load(self, idx: np.ndarray, train: bool = False) -> torch.Tensor:
        x = self.x[torch.as_tensor(np.asarray(idx), dtype=torch.long)]
        if not x.is_floating_point():
            x = x.float() / 255.0
        if train and self.augment is not None:
            x = self.augment(x)
        return x

    def load_strong(self, idx: np.ndarray) -> torch.Tensor:
        """Images: RandAugment(n=1, m=2) on uint8 pixels (LADA's strong view). Feature vectors: the
        feature-space analogue adakit uses — feature dropout (p=0.1) and Gaussian noise of 0.1 × the
        per-dimension std of this domain."""
        x = self.x[torch.as_tensor(np.asarray(idx), dtype=torch.long)]
        if self.is_features:
            if self._feature_std is None:
                self._feature_std = self.x.std(0, keepdim=True)
            keep = (torch.rand_like(x) >= 0.1).to(x.dtype)
            return x * keep + 0.1 * self._feature_std * torch.randn_like(x)
        from torchvision.transforms import v2

        raw = x if not x.is_floating_point() else (x.clamp(0, 1) * 255).to(torch.uint8)
        out = torch.stack([v2.RandAugment(num_ops=1, magnitude=2)(img) for img in raw])
        return out.float() / 255.0

    def subset(self, idx: np.ndarray, name: str | None = None) -> TensorDomain:
        idx = np.asarray(idx)
        return TensorDomain(
            name=name or self.name, classes=self.classes, ids=self.ids[idx], y=self.y[idx],
            x=self.x[torch.as_tensor(idx, dtype=torch.long)], augment=self.augment,
            paths=None if self.paths is None else self.paths[idx], pixel_shape=self.pixel_shape,
            standardized_with=self.standardized_with,
        )

    def image_path(self, i: int) -> str | None:
        return None if self.paths is None else str(self.paths[i])

    def describe(self, i: int) -> str:
        """The image file a feature row was extracted from when the file records it (``ids``), else the row id."""
        return self.image_path(i) or str(self.ids[i])


def check_same_classes(a: Domain, b: Domain) -> None:
    """Source and target must share one class list, in the same order."""
    if list(a.classes) == list(b.classes):
        return
    only_a = sorted(set(a.classes) - set(b.classes))
    only_b = sorted(set(b.classes) - set(a.classes))
    detail = f"only in {a.name!r}: {only_a[:10]}; only in {b.name!r}: {only_b[:10]}"
    if not only_a and not only_b:
        detail = "same names in a different order"
    hints = []
    folded = {unicodedata.normalize("NFC", c).casefold(): c for c in only_a}
    pairs = [(folded[k], c) for c in only_b if (k := unicodedata.normalize("NFC", c).casefold()) in folded]
    if pairs:  # "Cat" vs "cat", or the same accented name in two Unicode forms
        hints.append("names that differ only in case or Unicode form: "
                     + ", ".join(f"{x!r} / {y!r}" for x, y in pairs[:5]) + "; rename one of each")
    if only_a and not only_b or only_b and not only_a:
        hints.append("a class without samples in one domain still needs its entry there: an empty class folder, "
                     "or a classes.txt beside an image list")
    raise DataError(
        f"class lists differ between domains {a.name!r} ({len(a.classes)} classes) and "
        f"{b.name!r} ({len(b.classes)} classes): {detail}. Both domains must use the same classes"
        + (f" ({'; '.join(hints)})." if hints else ".")
    )


def labels_from_names(names: Sequence[str], classes: Sequence[str], where: str) -> np.ndarray:
    """Map class names to indices, naming the first unknown one."""
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(names), dtype=np.int64)
    for i, n in enumerate(names):
        if n not in index:
            raise DataError(f"{where}: label {n!r} is not in the class list ({len(classes)} classes)")
        out[i] = index[n]
    return out

"""The built-in demo domains: scikit-learn's 1,797 real 8x8 digits and a shifted copy.

Source (``digits``): the even-indexed digits as they are. Target (``digits-shifted``): the odd-indexed
digits with a fixed, deterministic shift: strokes thickened (grey dilation, 2x2), rotated by 20 degrees,
and contrast inverted (16 - x). ``digits-rotated`` is the same target without the inversion.
Pixels are scaled to [0, 1] and flattened to 64-d rows.

The inversion makes a source-trained MLP score below chance (its logits on an inverted image are
roughly the negated source logits), which target labels fix quickly but unsupervised alignment cannot:
marginal and class-conditional alignment are blind to such a permutation of the clusters. Use
``digits-rotated`` to try UDA objectives on the demo data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from adakit.data.domain import TensorDomain
from adakit.data.registry import register_loader
from adakit.errors import DataError

ROTATION_DEG = 20.0


def shift(images: np.ndarray, invert: bool = True) -> np.ndarray:
    """Thicken, rotate and (optionally) invert (N, 8, 8) digit images with values in [0, 16]."""
    thick = ndimage.grey_dilation(images, size=(1, 2, 2))
    rot = np.clip(ndimage.rotate(thick, ROTATION_DEG, axes=(1, 2), reshape=False, order=1, mode="constant"), 0, 16)
    return 16.0 - rot if invert else rot


@register_loader("demo")
def load_demo(path: Path, name: str) -> TensorDomain:
    """``digits`` (source), ``digits-shifted`` (target) or ``digits-rotated`` (target, not inverted)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images, y = d.images.astype(np.float32), d.target.astype(np.int64)
    if name in ("digits-shifted", "digits-rotated"):
        idx = np.arange(1, len(y), 2)
        x = shift(images[idx], invert=name == "digits-shifted")
    elif name == "digits":
        idx = np.arange(0, len(y), 2)
        x = images[idx]
    else:
        raise DataError(f"demo domain {name!r} does not exist; use digits, digits-shifted or digits-rotated")
    x = (x / 16.0).reshape(len(idx), -1).astype(np.float32)
    ids = np.char.add(f"{name}/", idx.astype(str))
    return TensorDomain(name=name, classes=[str(c) for c in range(10)], ids=ids, y=y[idx], x=x)

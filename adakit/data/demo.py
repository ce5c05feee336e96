"""The built-in demo domains: scikit-learn's 1,797 real 8x8 digits and a shifted copy.

Source: the even-indexed digits as they are. Target: the odd-indexed digits with a fixed,
deterministic shift: strokes thickened (grey dilation, 2x2), rotated by 20 degrees, and contrast
inverted (16 - x). Pixels are scaled to [0, 1] and flattened to 64-d rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from adakit.data.domain import TensorDomain
from adakit.data.registry import register_loader

ROTATION_DEG = 20.0


def shift(images: np.ndarray) -> np.ndarray:
    """Thicken, rotate and invert (N, 8, 8) digit images with values in [0, 16]."""
    thick = ndimage.grey_dilation(images, size=(1, 2, 2))
    rot = ndimage.rotate(thick, ROTATION_DEG, axes=(1, 2), reshape=False, order=1, mode="constant")
    return 16.0 - np.clip(rot, 0, 16)


@register_loader("demo")
def load_demo(path: Path, name: str) -> TensorDomain:
    """``digits`` (source) or ``digits-shifted`` (target)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images, y = d.images.astype(np.float32), d.target.astype(np.int64)
    if name in ("digits-shifted", "target"):
        idx = np.arange(1, len(y), 2)
        x = shift(images[idx])
    else:
        idx = np.arange(0, len(y), 2)
        x = images[idx]
    x = (x / 16.0).reshape(len(idx), -1).astype(np.float32)
    ids = np.char.add(f"{name}/", idx.astype(str))
    return TensorDomain(name=name, classes=[str(c) for c in range(10)], ids=ids, y=y[idx], x=x)

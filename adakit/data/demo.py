"""The built-in demo domains: scikit-learn's 1,797 real 8x8 digits and shifted copies of them.

Source (``digits``): the even-indexed digits as they are. Targets: the odd-indexed digits with a fixed,
deterministic shift; pixels are scaled to [0, 1] and flattened to 64-d rows.

- ``digits-mixed`` (`DEMO_TARGET`, used by ``adakit demo``): a third of the target digits (every third
  one) come from a "new device": strokes thickened (grey dilation, 2x2) and tilted by 30 degrees
  (`tilt`); the rest look like the source. A source-trained MLP reads the unchanged digits (≈97 %) but
  few of the tilted ones (≈15 %), ≈70 % overall (chance: 10 %). Its errors sit where it is unsure, so
  margin sampling spends the labels on tilted digits, while random sampling spends two thirds of them on
  digits the model already reads: margin ≥ random in every round (on average over 41 seeds; see the
  README's demo section).
- ``digits-rotated``: strokes thickened (grey dilation, 2x2) and rotated by 20 degrees.
- ``digits-shifted``: ``digits-rotated`` with inverted contrast (16 - x). A source-trained MLP scores
  *below* chance on it (its logits on an inverted image are roughly the negated source logits, so the
  true class tends to rank last), which target labels fix quickly but unsupervised alignment cannot:
  marginal and class-conditional alignment are blind to such a permutation of the clusters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

from adakit.data.domain import TensorDomain
from adakit.data.registry import register_loader
from adakit.errors import DataError

ROTATION_DEG = 20.0
DEMO_TARGET = "digits-mixed"
TILT_DEG = 30.0
SHIFT_DESCRIPTION = f"every third digit drawn thicker and tilted {TILT_DEG:.0f}°, the rest unchanged"
TARGETS = ("digits-mixed", "digits-rotated", "digits-shifted")


def shift(images: np.ndarray, invert: bool = True) -> np.ndarray:
    """Thicken, rotate and (optionally) invert (N, 8, 8) digit images with values in [0, 16]."""
    thick = ndimage.grey_dilation(images, size=(1, 2, 2))
    rot = np.clip(ndimage.rotate(thick, ROTATION_DEG, axes=(1, 2), reshape=False, order=1, mode="constant"), 0, 16)
    return 16.0 - rot if invert else rot


def tilt(images: np.ndarray) -> np.ndarray:
    """The "new device" of the demo: (N, 8, 8) digits in [0, 16] thickened (2x2 grey dilation) and rotated
    by `TILT_DEG` (bilinear, zero padding)."""
    thick = ndimage.grey_dilation(images, size=(1, 2, 2))
    return np.clip(ndimage.rotate(thick, TILT_DEG, axes=(1, 2), reshape=False, order=1, mode="constant"), 0, 16)


def shifted_mask(n: int) -> np.ndarray:
    """Which of the ``n`` ``digits-mixed`` samples are tilted: every third one, starting with the first."""
    return np.arange(n) % 3 == 0


def mixed(images: np.ndarray) -> np.ndarray:
    """``digits-mixed``: `tilt` on the samples of `shifted_mask`, the others unchanged."""
    out = images.copy()
    mask = shifted_mask(len(images))
    out[mask] = tilt(images[mask])
    return out


@register_loader("demo")
def load_demo(path: Path, name: str) -> TensorDomain:
    """``digits`` (source) or a target: ``digits-mixed``, ``digits-rotated``, ``digits-shifted``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images, y = d.images.astype(np.float32), d.target.astype(np.int64)
    if name in TARGETS:
        idx = np.arange(1, len(y), 2)
        x = mixed(images[idx]) if name == "digits-mixed" else shift(images[idx], invert=name == "digits-shifted")
    elif name == "digits":
        idx = np.arange(0, len(y), 2)
        x = images[idx]
    else:
        raise DataError(f"demo domain {name!r} does not exist; use digits (source) or one of {', '.join(TARGETS)}")
    x = (x / 16.0).reshape(len(idx), -1).astype(np.float32)
    ids = np.char.add(f"{name}/", idx.astype(str))
    return TensorDomain(name=name, classes=[str(c) for c in range(10)], ids=ids, y=y[idx], x=x, pixel_shape=(1, 8, 8))

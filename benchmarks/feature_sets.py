"""Feature datasets built from the project's data, for checking the feature-mode defaults beyond the MobileNetV2
features of Office-31. Each set is a folder of ``<domain>.npz`` files (``feat``, ``y``,
``classes``) that ``data.format: npz`` reads:

- ``office31-logits``: Office-31 through the same ImageNet MobileNetV2, but its 1,000 ImageNet logits instead of
  the 1,280-d pooled features (a different representation: no offline weights of another backbone exist here);
- ``digits-jda``: the JDA-protocol MNIST (2,000) / USPS (1,800) pair, 16×16 pixels in [0, 1] (256-d);
- ``digits16``: MNIST t10k (10,000), USPS train+test (9,298) and MNIST-M test (9,001), all grey 16×16 pixels in
  [0, 1] (256-d; MNIST-M by luma), so MNIST→MNIST-M is a pixel-space shift of another kind.

Usage::

    ADAKIT_DATA=/path/to/data python benchmarks/feature_sets.py --out runs/feature-sets
"""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import numpy as np

DIGITS = [str(d) for d in range(10)]


def _save(path: Path, feat: np.ndarray, y: np.ndarray, classes: list[str] | np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, feat=np.ascontiguousarray(feat, dtype=np.float32), y=np.asarray(y, dtype=np.int16),
             classes=np.asarray(classes))


def office31_logits(data: Path, out: Path) -> None:
    for d in ("amazon", "dslr", "webcam"):
        z = np.load(data / "office31" / "features-mobilenetv2" / f"{d}.npz")
        _save(out / "office31-logits" / f"{d}.npz", z["imagenet_logits"], z["y"], z["classes"])


def digits_jda(data: Path, out: Path) -> None:
    from scipy.io import loadmat

    m = loadmat(data / "digits" / "MNIST_vs_USPS.mat")
    for name, x, y in (("mnist", m["X_src"], m["Y_src"]), ("usps", m["X_tar"], m["Y_tar"])):
        _save(out / "digits-jda" / f"{name}.npz", x.T, y.ravel().astype(np.int64) - 1, DIGITS)  # label − 1 = digit


def digits16(data: Path, out: Path) -> None:
    from adakit.data.digits import load_digits

    for name in ("mnist", "usps", "mnistm"):
        shape = SimpleNamespace(source=name, target=name, channels=1, image_size=16)
        dom = load_digits(data, name, shape)
        x = dom.x.reshape(len(dom.x), -1).float().numpy() / 255.0
        _save(out / "digits16" / f"{name}.npz", x, np.asarray(dom.y), DIGITS)


BUILDERS = {"office31-logits": office31_logits, "digits-jda": digits_jda, "digits16": digits16}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=None, help="data folder (default: $ADAKIT_DATA)")
    ap.add_argument("--only", action="append", choices=list(BUILDERS))
    a = ap.parse_args()
    if a.data is None:
        from adakit.paths import data_root

        a.data = data_root()  # a named error when $ADAKIT_DATA is unset
    for name in a.only or BUILDERS:
        BUILDERS[name](a.data, a.out)
        print(f"{a.out / name}: {sorted(p.name for p in (a.out / name).glob('*.npz'))}")


if __name__ == "__main__":
    main()

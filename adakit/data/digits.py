"""Digit domains: MNIST, USPS and MNIST-M as in-memory uint8 images (N, C, S, S), values in [0, 255].

Domain names (files under ``<data.root>/digits/`` or ``<data.root>/``):

- ``mnist``: MNIST test split, ``t10k-{images-idx3,labels-idx1}-ubyte.gz`` (10,000 digits, 28×28)
  (``mnist-train``: ``train-*-ubyte.gz`` when present);
- ``usps``: ``zip.train.gz`` + ``zip.test.gz`` (7,291 + 2,007 digits, 16×16, values in [−1, 1] mapped to
  [0, 1]); ``usps-train`` / ``usps-test`` for one file;
- ``mnistm``: ``mnistm_test.npz`` (9,001 colour digits, 32×32; ``mnistm-train``: ``mnistm_train.npz``).

Both domains of a pair get one shape. By default MNIST↔USPS is 1×28×28 (USPS upsampled 16→28) and
any pair with MNIST-M is 3×32×32 (grey digits replicated to 3 channels, resized 28→32); ``data.channels``
and ``data.image_size`` override. Resizing is bilinear (antialiased when shrinking); colour→grey uses
ITU-R 601 luma weights. `TensorDomain.load` scales uint8 to [0, 1].
"""

from __future__ import annotations

import gzip
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from adakit.data.domain import TensorDomain
from adakit.data.registry import register_loader
from adakit.errors import ConfigError, DataError

CLASSES = [str(d) for d in range(10)]
DOMAINS = {
    "mnist": [("idx", "t10k")],
    "mnist-train": [("idx", "train")],
    "usps": [("usps", "zip.train.gz"), ("usps", "zip.test.gz")],
    "usps-train": [("usps", "zip.train.gz")],
    "usps-test": [("usps", "zip.test.gz")],
    "mnistm": [("npz", "mnistm_test.npz")],
    "mnistm-train": [("npz", "mnistm_train.npz")],
}
_LUMA = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)


def _need(folder: Path, file: str, name: str) -> Path:
    p = folder / file
    if not p.is_file():
        raise DataError(f"digits file not found: {p} (domain {name!r}). Put the digit files under "
                        f"$ADAKIT_DATA/digits/ or point data.root at their folder.")
    return p


def _read_idx(folder: Path, split: str, name: str) -> tuple[np.ndarray, np.ndarray, str]:
    ip = _need(folder, f"{split}-images-idx3-ubyte.gz", name)
    lp = _need(folder, f"{split}-labels-idx1-ubyte.gz", name)
    try:
        raw = gzip.decompress(ip.read_bytes())
        lab = gzip.decompress(lp.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"cannot read {ip} / {lp}: {err}") from None
    short = [(f, len(b)) for f, b, least in ((ip, raw, 16), (lp, lab, 8)) if len(b) < least]
    if short:
        raise DataError(f"{short[0][0]}: too short for an idx file ({short[0][1]} bytes after decompression); "
                        "download it again (`adakit data prepare mnist`)")
    magic, n, rows, cols = np.frombuffer(raw[:16], dtype=">i4")
    if magic != 2051 or len(raw) != 16 + n * rows * cols:
        raise DataError(f"{ip}: not an idx3 image file (magic {magic}, {len(raw)} bytes)")
    lmagic, ln = np.frombuffer(lab[:8], dtype=">i4")
    if lmagic != 2049 or ln != n or len(lab) != 8 + n:
        raise DataError(f"{lp}: not an idx1 label file for {n} images (magic {lmagic}, {ln} labels)")
    x = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, 1, rows, cols)
    return x, np.frombuffer(lab, dtype=np.uint8, offset=8).astype(np.int64), split


def _read_usps(folder: Path, file: str, name: str) -> tuple[np.ndarray, np.ndarray, str]:
    p = _need(folder, file, name)
    try:
        text = gzip.decompress(p.read_bytes()).decode("ascii")
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)  # raised when a token is not a number
            flat = np.fromstring(text, dtype=np.float32, sep=" ")
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError, DeprecationWarning) as err:
        raise DataError(f"{p}: not a USPS text file (label then 256 values per line): {err}") from None
    lines = sum(1 for line in text.splitlines() if line.strip())
    if flat.size != lines * 257 or lines == 0:
        raise DataError(f"{p}: expected 257 numbers per line (label + 16×16 pixels) on {lines} lines, "
                        f"found {flat.size} numbers")
    arr = flat.reshape(lines, 257)
    x = np.clip((arr[:, 1:] + 1.0) / 2.0, 0.0, 1.0)  # [-1, 1] -> [0, 1]
    x = np.round(x * 255.0).astype(np.uint8).reshape(-1, 1, 16, 16)
    return x, arr[:, 0].astype(np.int64), Path(file).name.split(".")[1]


def _read_npz(folder: Path, file: str, name: str) -> tuple[np.ndarray, np.ndarray, str]:
    p = _need(folder, file, name)
    try:
        with np.load(p, allow_pickle=False) as z:
            if "X" not in z.files or "y" not in z.files:
                raise DataError(f"{p}: expected arrays X (N, H, W, 3) and y; found {z.files}")
            x, y = z["X"], z["y"].astype(np.int64).ravel()
    except (OSError, ValueError) as err:
        raise DataError(f"{p}: cannot read as .npz ({err})") from None
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise DataError(f"{p}: X must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y, Path(file).stem.split("_")[-1]


_READERS = {"idx": _read_idx, "usps": _read_usps, "npz": _read_npz}


def pair_shape(names: list[str], channels: int | None = None, size: int | None = None) -> tuple[int, int]:
    """(channels, side) shared by the domains ``names``: 3×32 with MNIST-M in the pair, else 1×28."""
    colour = any(n.startswith("mnistm") for n in names)
    return channels or (3 if colour else 1), size or (32 if colour else 28)


def to_shape(x: np.ndarray, channels: int, size: int) -> np.ndarray:
    """uint8 (N, C, H, W) -> uint8 (N, channels, size, size): replicate / luma, bilinear resize."""
    if x.shape[1] == channels and x.shape[2] == size and x.shape[3] == size:
        return x
    t = torch.tensor(x, dtype=torch.float32)
    if t.shape[1] == 3 and channels == 1:
        t = (t * _LUMA).sum(1, keepdim=True)
    if t.shape[2] != size or t.shape[3] != size:
        shrink = size < max(t.shape[2], t.shape[3])
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
    t = t.round().clamp(0, 255).to(torch.uint8)
    if t.shape[1] == 1 and channels == 3:
        t = t.expand(-1, 3, -1, -1)
    return t.contiguous().numpy()


@register_loader("digits")
def load_digits(path: Path, name: str, cfg=None) -> TensorDomain:
    """Digit domain ``name`` (mnist, usps, mnistm, ...) shaped for its pair (see the module docstring)."""
    if name not in DOMAINS:
        raise ConfigError(f"data.source/data.target: unknown digits domain {name!r}; choose one of: "
                          f"{', '.join(DOMAINS)}")
    path = Path(path)
    folder = path / "digits" if (path / "digits").is_dir() else path
    if not folder.is_dir():
        raise DataError(f"digits folder not found: {folder}. Set ADAKIT_DATA (the folder holding digits/) "
                        "or point data.root at the folder of the digit files.")
    names = [cfg.source, cfg.target] if cfg is not None else [name]
    channels, size = pair_shape(names, getattr(cfg, "channels", None), getattr(cfg, "image_size", None))
    xs, ys, ids = [], [], []
    for kind, arg in DOMAINS[name]:
        x, y, split = _READERS[kind](folder, arg, name)
        if len(x) != len(y):
            raise DataError(f"{folder / arg}: {len(x)} images but {len(y)} labels")
        xs.append(to_shape(x, channels, size))
        ys.append(y)
        ids.append(np.char.add(f"{name}/{split}/", np.arange(len(y)).astype(str)))
    return TensorDomain(name=name, classes=CLASSES, ids=np.concatenate(ids), y=np.concatenate(ys),
                        x=torch.from_numpy(np.concatenate(xs)))

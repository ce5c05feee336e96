"""Small fake releases with the real archive layouts (a few tiny images each) for the prepare tests."""

from __future__ import annotations

import bz2
import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def image_bytes(fmt: str = "JPEG", size: int = 6, value: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, 2 * value % 256, 40)).save(buf, format=fmt)
    return buf.getvalue()


def write_tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def office31_members(counts: dict[str, dict[str, int]]) -> dict[str, bytes]:
    """domain_adaptation_images.tar.gz: <domain>/images/<class>/frame_NNNN.jpg."""
    return {f"{d}/images/{c}/frame_{i:04d}.jpg": image_bytes(value=i)
            for d, per in counts.items() for c, n in per.items() for i in range(n)}


def idx_files(folder: Path, split: str, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    ip = folder / f"{split}-images-idx3-ubyte.gz"
    lp = folder / f"{split}-labels-idx1-ubyte.gz"
    ip.write_bytes(gzip.compress(np.array([2051, n, 28, 28], ">i4").tobytes() + imgs.tobytes()))
    lp.write_bytes(gzip.compress(np.array([2049, n], ">i4").tobytes() + labels.tobytes()))
    return [ip, lp]


def usps_text(n: int) -> bytes:
    rng = np.random.default_rng(1)
    rows = np.column_stack([np.arange(n) % 10, rng.uniform(-1, 1, size=(n, 256))])
    lines = [" ".join([str(int(r[0]))] + [f"{v:.4f}" for v in r[1:]]) for r in rows]
    return gzip.compress(("\n".join(lines) + "\n").encode("ascii"))


def usps_libsvm(n: int) -> bytes:
    rng = np.random.default_rng(2)
    vals = rng.uniform(-1, 1, size=(n, 256))
    lines = [f"{i % 10 + 1} " + " ".join(f"{j + 1}:{v:.6f}" for j, v in enumerate(row)) for i, row in enumerate(vals)]
    return bz2.compress(("\n".join(lines) + "\n").encode("ascii"))


def mnistm_members(n_train: int, n_test: int) -> dict[str, bytes]:
    """mnist_m.tar.gz: mnist_m/mnist_m_{train,test}/NNNNNNNN.png + mnist_m_{split}_labels.txt."""
    out: dict[str, bytes] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        for i in range(n):
            out[f"mnist_m/mnist_m_{split}/{i:08d}.png"] = image_bytes("PNG", 32, i)
        out[f"mnist_m/mnist_m_{split}_labels.txt"] = "".join(f"{i:08d}.png {i % 10}\n" for i in range(n)).encode()
    return out

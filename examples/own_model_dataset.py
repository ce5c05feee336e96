"""Your own torch model and torch Dataset through adakit's full loop: DANN training + LAS queries.

adakit takes the objects as they are: the source and target are `torch.utils.data.Dataset`s returning
``(image, label)`` (the target's labels only answer the simulated oracle), the backbone is your own
``nn.Module`` mapping an image batch to feature vectors (adakit finds its feature size with one dry
forward and adds its bottleneck and classifier head). Everything else -- the ledger, checkpoints, resume,
``report.md`` -- works as for a config run.

Data: scikit-learn's bundled 8x8 digits (no download) as 1x8x8 images; the target is shifted by one pixel
and has lower contrast plus noise.

    python examples/own_model_dataset.py            # 5 rounds of 20 labels
    python examples/own_model_dataset.py --small    # a few seconds (what CI runs)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import Dataset

from adakit import ActiveLoop


class DigitImages(Dataset):
    """(1x8x8 float image, label) items: any map-style Dataset of this shape works."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = torch.as_tensor(images, dtype=torch.float32).unsqueeze(1)
        self.targets = torch.as_tensor(labels)  # optional: adakit reads labels from .targets without loading images

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.images[i], int(self.targets[i])


class SmallCNN(nn.Module):
    """Your backbone: images (N, 1, 8, 8) -> features (N, 128)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_datasets(seed: int = 0) -> tuple[DigitImages, DigitImages]:
    digits = load_digits()
    images, y = digits.images / 16.0, digits.target
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    src, tgt = order[: len(y) // 2], order[len(y) // 2:]
    shifted = 0.6 * np.roll(images[tgt], 1, axis=2) + 0.15 * rng.random(images[tgt].shape)
    return DigitImages(images[src], y[src]), DigitImages(shifted, y[tgt])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a few seconds: 2 rounds, few iterations")
    ap.add_argument("--out", default=None, help="run folder (default: adakit-example-own-model[-small])")
    args = ap.parse_args()
    args.out = args.out or "adakit-example-own-model" + ("-small" if args.small else "")  # the two sizes are two runs

    source, target = make_datasets()
    torch.manual_seed(0)
    config = {
        "seed": 0,
        "budget": {"total": 20 if args.small else 100, "rounds": 2 if args.small else 5},
        "model": {"bottleneck_dim": 64},
        "train": {"warmup_iters": 30 if args.small else 600, "round_iters": 15 if args.small else 300,
                  "batch_size": 32, "backbone_lr_mult": 1.0},  # the CNN trains from scratch: full learning rate
    }
    loop = ActiveLoop(config, args.out, source=source, target=target, model=SmallCNN(),
                      objective=("dann", {"hidden": 256}), strategy="las", show_progress=not args.small)
    summary = loop.run()
    print("dann + las: target accuracy per round")
    for r in summary["rounds"]:
        print(f"  round {r['round']}: {r['labels']:3d} labels, {100 * r['accuracy']:.1f}%")
    print(f"run folder: {args.out} (ledger.sqlite, checkpoints, report.md)")
    # a killed run continues with the same objects: ActiveLoop.resume(args.out, source=..., target=..., model=...)


if __name__ == "__main__":
    main()

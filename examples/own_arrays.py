"""adakit strategies on your own arrays, inside your own training loop.

You keep your data, model and training; adakit only answers "which target samples should be labelled next?"
via `adakit.select(strategy, logits=..., embeddings=..., labelled=..., budget=...)`.

Data: scikit-learn's bundled 8x8 digits (no download). Source: half of them; target: the other half shifted
by one pixel to the right and with lower contrast plus noise (a domain shift). Each round trains a small torch
model on source + labelled target, computes the target pool's logits and features, asks margin sampling,
BADGE and LAS for the next batch, and "labels" it from the known target labels (your annotators in practice).

    python examples/own_arrays.py            # 6 rounds of 20 labels per strategy
    python examples/own_arrays.py --small    # a few seconds (what CI runs)
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn

import adakit


def make_domains(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source (X_s, y_s) and a shifted target (X_t, y_t) from the digits, pixels in [0, 1], 64 columns."""
    digits = load_digits()
    images, y = digits.images / 16.0, digits.target
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    src, tgt = order[: len(y) // 2], order[len(y) // 2:]
    shifted = 0.6 * np.roll(images[tgt], 1, axis=2) + 0.15 * rng.random(images[tgt].shape)
    return (images[src].reshape(len(src), -1), y[src], shifted.reshape(len(tgt), -1), y[tgt])


class Net(nn.Module):
    """features f = body(x), logits z = head(f): what the feature-based strategies need."""

    def __init__(self, d: int = 64, m: int = 32, c: int = 10):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, 64), nn.ReLU(), nn.Linear(64, m), nn.ReLU())
        self.head = nn.Linear(m, c)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.body(x)
        return f, self.head(f)


def train(model: Net, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=gen).split(64):
            loss = nn.functional.cross_entropy(model(x[idx])[1], y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()


def run(strategy: str, rounds: int, budget: int, epochs: int, seed: int = 0, **params) -> list[float]:
    xs, ys, xt, yt = (torch.as_tensor(a, dtype=torch.float32 if a.dtype.kind == "f" else torch.long)
                      for a in make_domains(seed))
    if strategy == "las":  # LAS's oversampling depends on the total budget as a fraction of the pool
        params.setdefault("budget_ratio", rounds * budget / len(xt))
    torch.manual_seed(seed)
    model = Net()
    labelled = np.zeros(len(xt), dtype=bool)  # target samples with a label so far
    accuracies = []
    for r in range(rounds + 1):
        mask = torch.as_tensor(labelled)
        train(model, torch.cat([xs, xt[mask]]), torch.cat([ys, yt[mask]]), epochs, seed + r)
        model.eval()
        with torch.no_grad():
            feats, logits = model(xt)
        accuracies.append(float((logits.argmax(1) == yt).float().mean()))
        if r == rounds:
            break
        sel = adakit.select(strategy, logits=logits, embeddings=feats, labelled=labelled, budget=budget,
                            seed=np.random.default_rng([seed, r]), **params)
        labelled[sel.indices] = True  # your annotators label xt[sel.indices] here
    return accuracies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="tiny run (seconds), as CI runs it")
    args = ap.parse_args()
    rounds, budget, epochs = (2, 10, 2) if args.small else (6, 20, 15)
    for strategy in ("random", "margin", "badge", "las"):
        acc = run(strategy, rounds, budget, epochs)
        print(f"{strategy:>7}: target accuracy per round " + " ".join(f"{100 * a:5.1f}" for a in acc))


if __name__ == "__main__":
    main()

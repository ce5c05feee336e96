"""adakit objectives and strategies inside your own torch training loop.

You keep your data, model, optimizer and loop; adakit gives each step's adaptation loss terms
(`adakit.objective(name, ...).losses(...)`) and, between rounds, the next target samples to label
(`adakit.select`).

Data: scikit-learn's bundled 8x8 digits (no download), split and shifted as in `own_arrays.py`: the source is
half of the digits, the target the other half moved one pixel right, with lower contrast and noise. Each
objective trains the same small network from the same initial weights for the same steps; after the
unsupervised warm-up, rounds of margin sampling add labelled target rows (your annotators in practice)
that the objective's ``labelled_*`` inputs train on.

    python examples/own_training_loop.py            # finetune, dann, mstn: 3 seeds, 3 rounds of 20 labels
    python examples/own_training_loop.py --small    # a few seconds (what CI runs)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import adakit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from own_arrays import Net, make_domains  # noqa: E402  (the same data and network as that example)


def fit(model: Net, objective: adakit.Objective, xs, ys, xt, labelled: np.ndarray, yt_known: torch.Tensor,
        steps: int, seed: int) -> dict[str, float]:
    """``steps`` SGD steps of your loop: a source batch, an unlabelled target batch and, once some target rows are
    labelled, a batch of those; the loss is the sum of the objective's terms. Returns the mean of each term."""
    gen = torch.Generator().manual_seed(seed)
    params = [*model.parameters(), *objective.parameters()]  # the discriminators train with the model
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=5e-4)
    lab = torch.as_tensor(np.flatnonzero(labelled))
    unl = torch.as_tensor(np.flatnonzero(~labelled))
    model.train()
    objective.train()
    sums: dict[str, float] = {}
    for step in range(steps):
        i_s = torch.randint(len(xs), (32,), generator=gen)
        i_u = unl[torch.randint(len(unl), (32,), generator=gen)]
        fs, zs = model(xs[i_s])
        fu, zu = model(xt[i_u])
        parts = {}
        if len(lab):
            i_l = lab[torch.randint(len(lab), (32,), generator=gen)]
            fl, zl = model(xt[i_l])
            parts = {"labelled_features": fl, "labelled_logits": zl, "labelled_labels": yt_known[i_l]}
        terms = objective.losses(source_features=fs, source_logits=zs, source_labels=ys[i_s],
                                 target_features=fu, target_logits=zu, target_indices=i_u,
                                 progress=step / steps, head=model.head, **parts)
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) / steps
    return sums


def run(name: str, seed: int, warmup: int, rounds: int, budget: int, steps: int) -> list[float]:
    """Target accuracy after the warm-up (no target label) and after each round of margin sampling."""
    xs, ys, xt, yt = (torch.as_tensor(a, dtype=torch.float32 if a.dtype.kind == "f" else torch.long)
                      for a in make_domains(seed))
    torch.manual_seed(seed)
    model = Net()
    objective = adakit.objective(name, feature_dim=32, num_classes=10, pool_size=len(xt))
    labelled = np.zeros(len(xt), dtype=bool)
    known = torch.full_like(yt, -1)  # the labels your annotators gave so far (-1: not asked)
    accuracies = []
    for r in range(rounds + 1):
        fit(model, objective, xs, ys, xt, labelled, known, warmup if r == 0 else steps, seed + r)
        model.eval()
        with torch.no_grad():
            feats, logits = model(xt)
        accuracies.append(float((logits.argmax(1) == yt).float().mean()))
        if r < rounds:
            sel = adakit.select("margin", logits=logits, labelled=labelled, budget=budget,
                                seed=np.random.default_rng([seed, r]))
            labelled[sel.indices] = True
            known[sel.indices] = yt[sel.indices]  # your annotators label xt[sel.indices] here
    return accuracies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="tiny run (seconds), as CI runs it")
    args = ap.parse_args()
    seeds, warmup, rounds, budget, steps = ((0,), 60, 1, 10, 30) if args.small else ((0, 1, 2), 1500, 3, 20, 500)
    for name in ("finetune", "dann", "mstn"):
        acc = np.array([run(name, s, warmup, rounds, budget, steps) for s in seeds])
        mean = " ".join(f"{100 * a:5.1f}" for a in acc.mean(0))
        print(f"{name:>11}: target accuracy after the warm-up, then per round (mean of {len(seeds)} seeds) {mean}")


if __name__ == "__main__":
    main()

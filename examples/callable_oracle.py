"""A run answered by your own labelling function, then the finished run used as a model.

``oracle=labels_for`` makes adakit call ``labels_for(indices)`` each round with the target-pool indices it
selected (row numbers of the target you passed) and record the answers in the run's ledger. Here the
function looks the labels up in a table you hold back from adakit -- in practice it would ask people, a
database or a labelling service. The target is given without labels (``(X, None)``); a separate labelled
``test=`` set measures accuracy. Afterwards ``adakit.load_run`` rebuilds the model from the run folder
alone and predicts on new rows.

    python examples/callable_oracle.py            # 4 rounds of 25 labels
    python examples/callable_oracle.py --small    # a few seconds (what CI runs)
"""

from __future__ import annotations

import argparse

import numpy as np
from sklearn.datasets import load_digits

import adakit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="a few seconds: 2 rounds, few iterations")
    ap.add_argument("--out", default=None, help="run folder (default: adakit-example-callable-oracle[-small])")
    args = ap.parse_args()
    args.out = args.out or "adakit-example-callable-oracle" + ("-small" if args.small else "")  # two sizes, two runs

    digits = load_digits()
    x, y = (digits.data / 16.0).astype(np.float32), digits.target
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    src, pool, test, new = np.array_split(order, [700, 1300, 1600])
    shift = lambda a: (0.6 * a + 0.2 * rng.random(a.shape)).astype(np.float32)  # noqa: E731 - the target's shift
    x_pool, x_test, x_new = shift(x[pool]), shift(x[test]), shift(x[new])
    hidden = y[pool]  # known only to the "annotator"
    names = [f"digit-{d}" for d in range(10)]
    asked = []

    def labels_for(indices: np.ndarray) -> list[str]:
        """Your annotator: one label (class index or class name) per pool index, in the same order."""
        asked.append(len(indices))
        return [names[v] for v in hidden[indices]]

    config = {
        "seed": 0,
        "budget": {"total": 20 if args.small else 100, "rounds": 2 if args.small else 4},
        "model": {"backbone": "mlp", "hidden_dim": 128, "bottleneck_dim": 64},
        "train": {"warmup_iters": 40 if args.small else 500, "round_iters": 20 if args.small else 250},
    }
    loop = adakit.ActiveLoop(config, args.out, source=(x[src], y[src]), target=(x_pool, None),
                             test=(x_test, y[test]), classes=names, objective="finetune", strategy="margin",
                             oracle=labels_for, show_progress=not args.small)
    summary = loop.run()
    if asked:
        print(f"oracle answered {sum(asked)} queries in {len(asked)} rounds; final test accuracy "
              f"{100 * summary['final_accuracy']:.1f}%")
    else:  # the run in args.out had finished before: its labels are in its ledger, nothing was asked again
        print(f"{args.out} holds this finished run (nothing asked again); final test accuracy "
              f"{100 * summary['final_accuracy']:.1f}%")

    model = adakit.load_run(args.out)  # the run folder alone: no data is reloaded
    pred = model.predict(x_new)
    print(f"load_run: predicted {len(pred)} new rows, accuracy {100 * (pred == y[new]).mean():.1f}%; "
          f"first: {[model.classes[p] for p in pred[:3]]}")
    first = model.labels[0]
    print(f"labels in the ledger: {len(model.labels)}, e.g. {first['sample_id']} = {first['class']}")


if __name__ == "__main__":
    main()

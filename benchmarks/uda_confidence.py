"""How many target samples GSDA's class/group discriminators see, and how right their pseudo-labels are.

GSDA (Hu et al., CVPR 2020, Eq. 7-9) conditions its class- and group-wise discriminators on target samples whose
confidence max p reaches ``threshold`` (0.9), using the argmax as their pseudo-label. For each finished run of
`benchmarks/uda.py` this restores the final checkpoint and reports, over the whole target, the accuracy, the
share of samples at or above the threshold and the pseudo-label precision among them (mean over seeds):

    python benchmarks/uda_confidence.py --out runs/uda --methods "gsda global" gsda dann source_only
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ADAKIT_DATA", str(REPO.parent / "shared" / "data"))

from uda import OFFICE31_PAIRS  # noqa: E402  (benchmarks/uda.py, beside this script)

from adakit.bench import slug  # noqa: E402
from adakit.loop import ActiveLoop  # noqa: E402


def confidence_stats(run_dir: Path, threshold: float) -> tuple[float, float, float]:
    """(accuracy, share with max p ≥ threshold, precision of the argmax there) on the whole target pool."""
    loop = ActiveLoop.resume(run_dir, show_progress=False)
    if loop.restore() is None:
        raise SystemExit(f"{run_dir}: no checkpoint")
    pool = loop.domains.pool
    conf, pred = loop.pool_probabilities(np.arange(len(pool))).max(1)
    right = pred.numpy() == pool.y
    sure = (conf >= threshold).numpy()
    return float(right.mean()), float(sure.mean()), float(right[sure].mean()) if sure.any() else float("nan")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/uda", help="run folders of benchmarks/uda.py")
    ap.add_argument("--methods", nargs="+",
                    default=["source_only", "dann", "gsda global", "gsda +class", "gsda +class+group", "gsda"])
    ap.add_argument("--pairs", nargs="+", default=OFFICE31_PAIRS, help="pair folders under --out")
    ap.add_argument("--threshold", type=float, default=0.9)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for pair in args.pairs:
        for label in args.methods:
            for run in sorted((Path(args.out) / pair / slug(label)).glob("seed-*")):
                if (run / "summary.json").is_file():
                    rows[label].append(confidence_stats(run, args.threshold))
    print(f"Whole target, final checkpoint, mean over all finished runs in {args.out} ({', '.join(args.pairs)}).\n")
    print(f"| method | runs | accuracy | max p ≥ {args.threshold} | pseudo-label precision there |")
    print("|---|---:|---:|---:|---:|")
    for label in args.methods:
        if rows[label]:
            acc, share, prec = (100 * np.nanmean(c) for c in zip(*rows[label]))
            print(f"| {label} | {len(rows[label])} | {acc:.1f} | {share:.1f} % | {prec:.1f} |")


if __name__ == "__main__":
    main()

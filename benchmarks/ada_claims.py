"""Check the papers' claimed orderings on an ADA bench folder: prints a markdown table.

Reads every finished run under OUT (``OUT/<pair>/<method>/seed-<k>/summary.json``, as `adakit bench` writes
them), takes the final target accuracy, averages it over seeds per pair, and for each claimed comparison
reports both methods' average over pairs, the difference and on how many pairs the ordering holds.
"≈" holds when the two differ by at most ``--tolerance`` points (default 1.0); for ">" the pairs where both
are equal (to 0.05 points, e.g. both at 100% on W→D) are counted as tied, not as holding.

    python benchmarks/ada_claims.py runs/ada-office31 > claims.md
    python benchmarks/ada_claims.py runs/ada-office31 --plot curve.png   # + mean curve over pairs

``--plot`` draws, for a few main methods, accuracy against the share of the target labelled (rounds are
equal shares of the budget, so pairs of different sizes line up), averaged over seeds and pairs.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adakit.report import load_summary, pair_label, run_label  # noqa: E402

# (source of the claim, better, relation, worse); method names as in benchmarks/ada-office31.yaml
CLAIMS = [
    ("LADA Tab. 3", "FT + las", ">", "FT + margin"),
    ("LADA Tab. 3", "FT + las", ">", "FT + entropy"),
    ("LADA Tab. 3", "FT + margin", "≈", "FT + entropy"),
    ("LADA Tab. 3", "FT + margin", ">", "FT + random"),
    ("LADA Tab. 3", "FT + entropy", ">", "FT + random"),
    ("LADA Tab. 3 (with MME)", "MME + las", ">", "MME + margin"),
    ("LADA Tab. 3 (with MME)", "MME + margin", ">", "MME + random"),
    ("SDM Tab. 3", "SDM-AG", "≥", "SDM-G"),
    ("SDM Tab. 3", "SDM-A", "≥", "SDM"),
    ("SDM Tab. 3", "SDM", "≥", "FT + margin"),
    ("SDM Tab. 3", "SDM-G", "≥", "SDM"),
    ("SAGE Fig. 4", "TSF + SAGE", ">", "TSF + SAGE w/o POP"),
    ("LADA Tab. 6", "LAS + RAA", ">", "FT + las"),
    ("LADA Tab. 6", "LAS + LAA", ">", "FT + las"),
    ("LADA Tab. 6", "LAS + LAA", "≥", "LAS + RAA"),
]


PLOT_METHODS = ["FT + random", "FT + entropy", "FT + margin", "FT + las", "LAS + LAA", "MME + las", "SDM-AG",
                "TSF + SAGE", "DANN + aada"]


def load_runs(out: Path) -> list[dict]:
    return [load_summary(f.parent) for f in sorted(out.glob("*/*/seed-*/summary.json"))]


def plot_mean_curves(runs: list[dict], path: Path, methods: list[str] = PLOT_METHODS) -> None:
    """Accuracy (%) vs % of the target pool labelled, mean over seeds then pairs, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by: dict[str, dict[str, list[list[float]]]] = defaultdict(lambda: defaultdict(list))
    budget = {}
    for s in runs:
        by[run_label(s)][pair_label(s)].append([100 * r["accuracy"] for r in s["rounds"]])
        budget[run_label(s)] = (s["budget"]["total"], s["budget"]["rounds"])
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for m in [m for m in methods if m in by]:
        curves = np.mean([np.mean(v, axis=0) for v in by[m].values()], axis=0)
        total, rounds = budget[m]
        x = 100 * total * np.arange(rounds + 1) / rounds
        ax.plot(x, curves, marker="o", label=f"{m} ({len(by[m])} pairs)")
    ax.set_xlabel("% of the target labelled")
    ax.set_ylabel("target accuracy (%), mean over pairs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def per_pair_means(out: Path) -> dict[str, dict[str, float]]:
    """{method: {pair: mean final accuracy (%) over seeds}} for every finished run under ``out``."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in load_runs(out):
        acc[(run_label(s), pair_label(s))].append(100 * s["final_accuracy"])
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for (m, p), v in acc.items():
        table[m][p] = float(np.mean(v))
    return table


def holds(a: float, rel: str, b: float, tol: float) -> bool:
    return {">": a > b, "≥": a >= b, "≈": abs(a - b) <= tol}[rel]


def claims_table(table: dict[str, dict[str, float]], tol: float = 1.0) -> str:
    lines = ["| claim | ordering | avg left | avg right | difference | holds on average | pairs where it holds |",
             "|---|---|---:|---:|---:|---|---:|"]
    for src, a, rel, b in CLAIMS:
        if a not in table or b not in table:
            lines.append(f"| {src} | {a} {rel} {b} | – | – | – | not run | – |")
            continue
        pairs = sorted(set(table[a]) & set(table[b]))
        va, vb = np.mean([table[a][p] for p in pairs]), np.mean([table[b][p] for p in pairs])
        k = sum(holds(table[a][p], rel, table[b][p], tol) for p in pairs)
        ties = sum(abs(table[a][p] - table[b][p]) < 0.05 for p in pairs) if rel == ">" else 0
        ok = "yes" if holds(va, rel, vb, tol) else "**no**"
        tie_note = f" ({ties} tied)" if ties else ""
        lines.append(f"| {src} | {a} {rel} {b} | {va:.1f} | {vb:.1f} | {va - vb:+.1f} | {ok} | "
                     f"{k}/{len(pairs)}{tie_note} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the bench folder (adakit bench --out)")
    ap.add_argument("--tolerance", type=float, default=1.0, help="points within which '≈' holds")
    ap.add_argument("--plot", type=Path, help="also write the mean curves of the main methods to this PNG")
    args = ap.parse_args()
    table = per_pair_means(args.out)
    if not table:
        sys.exit(f"{args.out}: no finished runs (no */*/seed-*/summary.json)")
    sys.stdout.write(claims_table(table, args.tolerance))
    if args.plot:
        plot_mean_curves(load_runs(args.out), args.plot)


if __name__ == "__main__":
    main()

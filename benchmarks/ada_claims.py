"""Check the seed papers' claimed orderings on an ADA bench folder (issue #5): prints a markdown table.

Reads every finished run under OUT (``OUT/<pair>/<method>/seed-<k>/summary.json``, as `adakit bench` writes
them), takes the final target accuracy, averages it over seeds per pair, and for each claimed comparison
reports both methods' average over pairs, the difference and on how many pairs the ordering holds.
"≈" holds when the two differ by at most ``--tolerance`` points (default 1.0).

    python benchmarks/ada_claims.py runs/ada-office31 > claims.md
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


def per_pair_means(out: Path) -> dict[str, dict[str, float]]:
    """{method: {pair: mean final accuracy (%) over seeds}} for every finished run under ``out``."""
    acc: dict[tuple[str, str], list[float]] = defaultdict(list)
    for f in sorted(out.glob("*/*/seed-*/summary.json")):
        s = load_summary(f.parent)
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
        ok = "yes" if holds(va, rel, vb, tol) else "**no**"
        lines.append(f"| {src} | {a} {rel} {b} | {va:.1f} | {vb:.1f} | {va - vb:+.1f} | {ok} | {k}/{len(pairs)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the bench folder (adakit bench --out)")
    ap.add_argument("--tolerance", type=float, default=1.0, help="points within which '≈' holds")
    args = ap.parse_args()
    table = per_pair_means(args.out)
    if not table:
        sys.exit(f"{args.out}: no finished runs (no */*/seed-*/summary.json)")
    sys.stdout.write(claims_table(table, args.tolerance))


if __name__ == "__main__":
    main()

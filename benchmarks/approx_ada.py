"""Do the approximate large-pool paths change ADA accuracy?

Above 50,000 samples LAS searches neighbours with an inverted file (`query.search: ivf`) and runs faiss k-means
among its candidates, and CLUE runs faiss k-means with a bounded number of iterations (`query.kmeans: faiss`);
SAGE projects each class block of its embedding to k dimensions once N·C·m floats exceed `max_embedding_mb`
(k = 20 per class at 200,000 samples and 65 classes, 4 at 1,000,000). Office-31 pools are far smaller, so the
benchmark forces these paths on it and compares the final accuracy with the exact paths (scikit-learn k-means,
exact neighbours, the full embedding), same seeds, same everything else::

    export OMP_NUM_THREADS=1 ADAKIT_DATA=/path/to/data
    adakit bench benchmarks/ada-office31.yaml --out runs/ada-approx-las --only "FT + las" \\
        --set query.search=ivf --set query.kmeans=faiss
    adakit bench benchmarks/ada-office31.yaml --out runs/ada-approx-clue --only "FT + clue" --set query.kmeans=faiss
    adakit bench benchmarks/ada-office31.yaml --out runs/ada-approx-sage --only "TSF + SAGE" \\
        --set query.max_embedding_mb=1.4
    adakit bench benchmarks/ada-office31.yaml --out runs/ada-exact --only "FT + las" --only "FT + clue"
    adakit bench benchmarks/ada-office31.yaml --out runs/ada-office31 --only "TSF + SAGE"
    python benchmarks/approx_ada.py --exact runs/ada-exact runs/ada-office31 \\
        --approx runs/ada-approx-las runs/ada-approx-clue runs/ada-approx-sage --md benchmarks/results/approx-ada.md

A pair counts as *within the seed spread* when |Δ mean| ≤ the larger of the two standard deviations over seeds.
``--md`` replaces only the file's generated section (from "Written ..." to the paired differences, between the
``<!-- generated: begin -->`` / ``<!-- generated: end -->`` lines) and keeps the hand-written reading around it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import write_section  # noqa: E402

ROWS = {"FT_+_las": ("FT + las", "IVF neighbours (nprobe 8) + faiss k-means (greedy seeding, 8 it.)"),
        "FT_+_clue": ("FT + clue", "faiss k-means (greedy seeding, 8 it.)"),
        "TSF_+_SAGE": ("TSF + SAGE", "S projected to k per class (max_embedding_mb 1.4: k = 4 on Amazon, 14–15 on "
                                     "Webcam, 23–24 on DSLR)")}


def collect(roots: list[Path]) -> dict[tuple[str, str], list[float]]:
    """(method folder, pair) -> final accuracies (%) of every finished seed, over all ``roots``."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for root in roots:
        for p in root.glob("*/*/seed-*/summary.json"):
            method, pair = p.parts[-3], p.parts[-4]
            if method in ROWS:
                out.setdefault((method, pair), {})[p.parts[-2]] = 100 * json.loads(p.read_text())["final_accuracy"]
    return {k: [v[s] for s in sorted(v)] for k, v in out.items()}


def table(exact: dict, approx: dict) -> str:
    lines = ["| method | approximate path | pair | exact (%) | approximate (%) | Δ | within seed spread |",
             "|---|---|---|---:|---:|---:|---|"]
    paired: list[str] = []
    for method, (label, path) in ROWS.items():
        means_e, means_a, within = [], [], 0
        pairs = sorted(p for m, p in exact if m == method and (m, p) in approx)
        for pair in pairs:
            e, a = exact[(method, pair)], approx[(method, pair)]
            me, ma = statistics.fmean(e), statistics.fmean(a)
            spread = max(statistics.pstdev(e), statistics.pstdev(a))
            ok = abs(ma - me) <= spread
            within += ok
            means_e.append(me)
            means_a.append(ma)
            lines.append(f"| {label} | {path} | {pair.replace('-', '→')} | {me:.1f} ± {statistics.pstdev(e):.1f} "
                         f"(n={len(e)}) | {ma:.1f} ± {statistics.pstdev(a):.1f} (n={len(a)}) | {ma - me:+.1f} | "
                         f"{'yes' if ok else 'no'} |")
        if pairs:
            diffs = [a - e for p in pairs for e, a in zip(exact[(method, p)], approx[(method, p)])]
            paired.append(f"{label}: mean Δ over {len(diffs)} (pair, seed) runs {statistics.fmean(diffs):+.2f} points, "
                          f"95% interval ±{1.96 * statistics.stdev(diffs) / len(diffs) ** 0.5:.2f} "
                          "(a seed fixes the warm-up model both paths start from)")
            avg_e, avg_a = statistics.fmean(means_e), statistics.fmean(means_a)
            lines.append(f"| **{label}** | | **average of {len(pairs)} pairs** | **{avg_e:.1f}** | **{avg_a:.1f}** | "
                         f"**{avg_a - avg_e:+.1f}** | **{within}/{len(pairs)} pairs** |")
    return "\n".join(lines) + "\n\nPaired by seed:\n\n" + "".join(f"- {x}\n" for x in paired)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exact", type=Path, nargs="+", required=True, help="bench folders of the exact runs")
    ap.add_argument("--approx", type=Path, nargs="+", required=True, help="bench folders of the approximate runs")
    ap.add_argument("--md", type=Path, help="results file: its generated section (the usage and the table) is "
                                             "replaced, the rest of the file kept")
    a = ap.parse_args()
    text = table(collect(a.exact), collect(a.approx))
    print(text)
    if a.md:
        usage = __doc__.split("::")[1].split("A pair counts")[0].rstrip()
        write_section(a.md, head="# Approximate large-pool paths on the ADA benchmark\n\n", body=(
            f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `benchmarks/approx_ada.py` from the runs "
            "of the commands below (Office-31 features, `benchmarks/ada-office31.yaml`: fine-tuning, 5% budget in 5 "
            "rounds, LAS with K = 5, 3 seeds; one torch thread per process). Final target accuracy after the last "
            "round, mean ± std over seeds. A pair is *within the seed spread* when |Δ| ≤ the larger of the two "
            "standard deviations.\n\n```bash\n" + textwrap.dedent(usage).strip("\n") + "\n```\n\n" + text))


if __name__ == "__main__":
    main()

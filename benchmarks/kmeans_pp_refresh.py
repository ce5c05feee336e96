"""When k-means++ (BADGE) refreshes its D² bounds: the committed rule against a fixed schedule.

`adakit.query._algorithms.kmeans_pp` draws by rejection from upper bounds of D² and refreshes every bound (one
matrix product against the picks since the last refresh) only when the work that stale bounds wasted would pay
for a refresh. Its cost constants were measured on one CPU thread, then the proposal-side ones doubled (cost
scale 1 below is the committed rule; 0.5 uses the measured constants as they are, 2 doubles them again). This
script times, on BADGE's factorised gradient embeddings of `benchmarks/query_speed.py`'s synthetic pools:

- *every 32 picks*: the schedule before the rule (``refresh=32``);
- *rule ×0.5 / ×1 / ×2*: the rule with its proposal-side costs scaled.

Each cell: mean over seeds (5, or 2 at N = 200k) of the fastest of 3 calls (1 at 200k), schedules interleaved
within each seed, one thread. The law of the picks is the same for every schedule (tests/query/test_algorithms.py),
the random stream is not.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/kmeans_pp_refresh.py   # writes results/kmeans_pp_refresh.md

``--out`` (default: results/kmeans_pp_refresh.md) replaces only the file's generated section (the conditions and
the table, between the ``<!-- generated: begin -->`` / ``<!-- generated: end -->`` lines) and keeps the text
around it; a new file gets a title, that section and the paragraph that says how to read it.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _results import check_sections, write_section  # noqa: E402
from query_speed import SyntheticPool  # noqa: E402

from adakit.query import _algorithms as alg  # noqa: E402
from adakit.query.badge import gradient_embedding_factors  # noqa: E402

CASES = [(2000, 20), (2000, 200), (20000, 20), (20000, 200), (20000, 2000), (200000, 2000)]
SCALES = [0.5, 1.0, 2.0]
COSTS = ("_SCAN", "_PROPOSAL", "_UPDATE", "_STALE")


def _time_case(n: int, b: int) -> dict[str, float]:
    pool = SyntheticPool(n)
    cand = torch.as_tensor(np.flatnonzero(~pool.labelled))
    pts = gradient_embedding_factors(torch.as_tensor(pool.probs)[cand].float(),
                                     torch.as_tensor(pool.embeddings)[cand].float())
    first = alg.argmax_random(pts.sq_norms, np.random.default_rng(0))
    base = {c: getattr(alg, c) for c in COSTS}
    schedules = [("every 32 picks", 32, 1.0)] + [(f"rule ×{s:g}", None, s) for s in SCALES]
    seeds, reps = (2, 1) if n >= 200000 else (5, 3)
    out: dict[str, list[float]] = {name: [] for name, _, _ in schedules}
    try:
        for seed in range(seeds):
            for name, refresh, scale in schedules:
                for c in COSTS:
                    setattr(alg, c, int(base[c] * scale))
                best = float("inf")
                for _ in range(reps):
                    t0 = time.perf_counter()
                    alg.kmeans_pp(pts, b, np.random.default_rng(seed), first=first, refresh=refresh)
                    best = min(best, time.perf_counter() - t0)
                out[name].append(best)
    finally:
        for c in COSTS:
            setattr(alg, c, base[c])
    return {name: float(np.mean(v)) for name, v in out.items()}


def _fmt(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.2f} s"


#: how to read the table; written below the generated section of a new results file
READING = """The rule refreshes when the work wasted by stale bounds since the last refresh (rejected draws, distance
updates) would pay for a refresh, and so would this pick's own rejections or the picks still to make at the
rate seen so far; its proposal-side costs are scaled by 0.5, 1 (committed) or 2. On large pools most samples
are never proposed, so most of the N × b distance products of a fixed schedule are never computed. On small
pools with large budgets (N = 2,000, b = 10%) the fixed schedule can be a few milliseconds faster.
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "kmeans_pp_refresh.md",
                    help="results file: its generated section is replaced, the rest kept (default: %(default)s)")
    args = ap.parse_args(argv)
    check_sections(args.out)  # before the measurement: a file without the markers is refused
    torch.set_num_threads(1)
    start = datetime.datetime.now(datetime.timezone.utc)
    load0 = os.getloadavg()[0]
    rows = []
    for n, b in CASES:
        res = _time_case(n, b)
        print(n, b, {k: _fmt(v) for k, v in res.items()}, flush=True)
        old = res["every 32 picks"]
        cells = [_fmt(old)] + [f"{_fmt(res[f'rule ×{s:g}'])} ({old / res[f'rule ×{s:g}']:.1f}×)" for s in SCALES]
        rows.append(f"| {n:,} | {b:,} ({100 * b / n:g}%) | " + " | ".join(cells) + " |")
    end = datetime.datetime.now(datetime.timezone.utc)
    head = ("| N | b | every 32 picks (before) | rule ×0.5 | rule ×1 (committed) | rule ×2 |\n"
            "|---:|---:|---:|---:|---:|---:|")
    text = f"""Measured {start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC with `benchmarks/kmeans_pp_refresh.py` on
{platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, one thread, 1-minute load average
{load0:.1f} → {os.getloadavg()[0]:.1f}. What is timed: `kmeans_pp` alone (b picks) on BADGE's factorised
gradient embeddings (C = 65, m = 256) of the synthetic pools of `benchmarks/query_speed.py` (1% labelled);
mean over seeds (5; 2 at N = 200k) of the fastest of 3 calls (1 at 200k), the schedules interleaved within
each seed. In brackets: how many times faster than refreshing every 32 picks. The picks follow the same D²
law under every schedule; the random streams differ.

{head}
""" + "\n".join(rows) + "\n"
    print(write_section(args.out, text, head="# k-means++ (BADGE): when to refresh the D² bounds\n\n",
                        tail="\n" + READING))


if __name__ == "__main__":
    main()

"""Query speed: wall time and peak memory of one selection per registered strategy (issue #3).

Synthetic pools of N = 2k, 20k, 200k samples with m = 256-d embeddings and C = 65 classes (Office-Home's
class count), 1% of the pool already labelled, a budget of b = 1% of the pool. Each measurement runs in a
fresh subprocess: wall time of ``strategy.select(view, b, rng)`` (time.perf_counter) and peak memory as
the rise of the process's peak resident set size during the call (Linux: /proc/self/clear_refs resets
VmHWM to the current RSS before the call; the peak is read from VmHWM after), so torch, numpy, faiss and
scikit-learn allocations all count. Strategies needing a discriminator get small random ones
(``DomainDiscriminator`` / ``ClassDiscriminator``, 256 hidden units). Next to each fast implementation a
straightforward reference (materialised BADGE embeddings, N×N matrices for CoreSet/LAS, the CLUE code's
full centroid-distance argsort, per-sample Python loops for the scores) is timed where its estimated
memory fits in 40% of the available memory.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/query_speed.py            # writes results/query_speed.md
    .venv/bin/python benchmarks/query_speed.py --sizes 2000 --strategies badge las
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

M_DIM, N_CLASSES, SEED = 256, 65, 0
HERE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------------------------- the view


class SyntheticView:
    """Stand-in for `adakit.pool.PoolView` with precomputed tensors (same attribute names)."""

    def __init__(self, n: int, m: int = M_DIM, c: int = N_CLASSES, labelled_frac: float = 0.01, seed: int = SEED):
        g = torch.Generator().manual_seed(seed)
        centres = torch.randn(c, m, generator=g)  # |centre| ≈ √m ≈ |noise|: overlapping classes
        y = torch.randint(c, (n,), generator=g)
        self.embeddings = centres[y] + torch.randn(n, m, generator=g)
        self.head = nn.Linear(m, c)
        with torch.no_grad():
            self.head.weight.copy_(F.normalize(centres, dim=1) * 0.25)  # logit gap ≈ 4: p1 ≈ 0.4 on average
            self.head.bias.zero_()
            self.logits = self.head(self.embeddings)
        self.probs = torch.softmax(self.logits, dim=1)
        rng = np.random.default_rng(seed)
        self.labelled = np.zeros(n, dtype=bool)
        self.labelled[rng.permutation(n)[: int(labelled_frac * n)]] = True
        self.labelled_indices = np.flatnonzero(self.labelled)
        self.unlabelled_indices = np.flatnonzero(~self.labelled)
        self.labels = np.where(self.labelled, y.numpy(), -1)
        self.num_classes = c
        self.source_embeddings = centres[torch.randint(c, (2000,), generator=g)] + torch.randn(2000, m, generator=g)
        self.model = nn.Module()
        self.model.head = self.head
        self.head_weight = self.head.weight.detach()
        self.objective = _objective(m, c)

    def __len__(self) -> int:
        return len(self.labelled)


def _objective(m: int, c: int) -> nn.Module:
    from adakit.models.discriminators import ClassDiscriminator, DomainDiscriminator

    torch.manual_seed(SEED)
    obj = nn.Module()
    obj.domain_discriminator = DomainDiscriminator(m, hidden=256).eval()
    obj.class_discriminator = ClassDiscriminator(m, c, hidden=256).eval()
    obj.provides = frozenset({"domain_discriminator", "class_discriminator"})
    return obj


# ------------------------------------------------------------------------------------------- references


def _loop_scores(p: np.ndarray, kind: str) -> np.ndarray:
    out = np.empty(len(p))
    for i in range(len(p)):  # deliberately per sample: the "straightforward" reference
        row = p[i]
        if kind == "entropy":
            out[i] = -sum(float(v) * math.log(float(v)) for v in row if v > 0)
        elif kind == "confidence":
            out[i] = 1.0 - float(row.max())
        else:
            s = np.sort(row)
            out[i] = 1.0 - (float(s[-1]) - float(s[-2]))
    return out


def ref_uncertainty(kind):
    def run(view, b, rng):
        cand = view.unlabelled_indices
        s = _loop_scores(view.probs[torch.as_tensor(cand)].numpy(), kind)
        return cand[np.argsort(-s, kind="stable")[:b]]
    return run


def ref_badge(view, b, rng):
    from adakit.query._algorithms import DensePoints, kmeans_pp

    cand = torch.as_tensor(view.unlabelled_indices)
    p, f = view.probs[cand], view.embeddings[cand]
    a = -p.clone()
    a[torch.arange(len(a)), p.argmax(1)] += 1.0
    g = (a.unsqueeze(2) * f.unsqueeze(1)).reshape(len(a), -1)  # N × C·m, materialised
    first = int((g * g).sum(1).argmax())
    picks, _ = kmeans_pp(DensePoints(g), b, rng, first=first)
    return view.unlabelled_indices[picks]


def ref_coreset(view, b, rng):
    x = view.embeddings
    d = torch.cdist(x, x)  # N × N
    min_d = d[:, torch.as_tensor(view.labelled_indices)].min(1).values
    min_d[torch.as_tensor(view.labelled_indices)] = -1
    picks = []
    for _ in range(b):
        j = int(min_d.argmax())
        picks.append(j)
        min_d = torch.minimum(min_d, d[:, j])
        min_d[j] = -1
    return np.array(picks)


def ref_las(view, b, rng):
    """The released LADA code's computation (full N×N similarity, (N, K, C) gather, argsort fill-up)."""
    from sklearn.cluster import KMeans
    from sklearn.metrics.pairwise import euclidean_distances

    from adakit.query.las import oversampling_ratio

    cand = view.unlabelled_indices
    idx = torch.as_tensor(cand)
    probs, e = view.probs[idx], F.normalize(view.embeddings[idx], dim=1)
    k = 5 if len(view) < 1000 else 10
    sim = e @ e.T
    sim_topk, topk = torch.topk(sim, k=k + 1, dim=1)
    sim_topk, topk = sim_topk[:, 1:], topk[:, 1:]
    w = sim_topk / sim_topk.sum(dim=1, keepdim=True)
    q = -((probs[topk] * probs.unsqueeze(1)).sum(-1) * w).sum(-1)
    q = q + (w * q[topk]).sum(-1)
    m_idxs = q.sort(descending=True)[1]
    m_top = m_idxs[: b * (1 + oversampling_ratio(0.05))]
    km = KMeans(n_clusters=b, n_init=1, random_state=int(rng.integers(2**31 - 1))).fit(e[m_top].numpy())
    return cand[m_idxs[_fill(euclidean_distances(km.cluster_centers_, e[m_top].numpy()), b)].numpy()]


def _fill(dists: np.ndarray, n: int) -> list[int]:
    sort_idxs = dists.argsort(axis=1)
    q_idxs: list[int] = []
    ax, rem = 0, n
    while rem > 0:
        q_idxs.extend(list(sort_idxs[:, ax][:rem]))
        q_idxs = list(set(q_idxs))
        rem = n - len(q_idxs)
        ax += 1
    return q_idxs


def ref_clue(view, b, rng):
    """The CLUE code's computation: weighted KMeans, then a full b × N distance matrix + argsort fill-up."""
    from sklearn.cluster import KMeans
    from sklearn.metrics.pairwise import euclidean_distances

    cand = view.unlabelled_indices
    idx = torch.as_tensor(cand)
    x = view.embeddings[idx].numpy()
    p = torch.softmax(view.logits[idx] / 0.1, dim=1)
    w = (-(p * torch.log(p.clamp_min(1e-12))).sum(1)).numpy()
    km = KMeans(n_clusters=b, n_init=1, random_state=int(rng.integers(2**31 - 1))).fit(x, sample_weight=w)
    return cand[_fill(euclidean_distances(km.cluster_centers_, x), b)]


def ref_aada(view, b, rng):
    disc = view.objective.domain_discriminator
    cand = view.unlabelled_indices
    s = np.empty(len(cand))
    with torch.no_grad():
        for t, i in enumerate(cand):  # one forward per sample
            d = float(torch.sigmoid(disc(view.embeddings[i : i + 1]))[0, 0])
            p = view.probs[i]
            h = float(-(p * torch.log(p.clamp_min(1e-12))).sum())
            s[t] = h * (1 - d) / d
    return cand[np.argsort(-s, kind="stable")[:b]]


REFERENCES = {
    "entropy": (ref_uncertainty("entropy"), "per-sample Python loop", lambda n: 0),
    "confidence": (ref_uncertainty("confidence"), "per-sample Python loop", lambda n: 0),
    "margin": (ref_uncertainty("margin"), "per-sample Python loop", lambda n: 0),
    "sdm": (ref_uncertainty("margin"), "per-sample Python loop", lambda n: 0),
    "badge": (ref_badge, "materialised N×C·m embeddings", lambda n: 4.0 * n * N_CLASSES * M_DIM * 2),
    "coreset": (ref_coreset, "N×N distance matrix", lambda n: 4.0 * n * n * 1.5),
    "las": (ref_las, "released code: N×N similarity", lambda n: 4.0 * n * n * 1.5),
    "clue": (ref_clue, "CLUE code: b×N distances + argsort", lambda n: 16.0 * n * n / 100 * 1.5 + 8e8),
    "aada": (ref_aada, "one discriminator call per sample", lambda n: 0),
}


# --------------------------------------------------------------------------------------------- measuring


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def child(kind: str, name: str, n: int) -> dict:
    import sklearn.cluster  # noqa: F401  (imports outside the timed call)

    from adakit.query import _algorithms
    from adakit.registry import STRATEGIES

    _algorithms._faiss()
    cls = STRATEGIES.get(name)
    strategy = cls(cls.Params.validated({}, "query"))
    if kind == "fast":
        def fn(v, b, r):
            return strategy.select(v, b, r).indices
    elif kind == "baseline":  # read the probabilities of the unlabelled pool once
        def fn(v, b, r):
            return v.probs[torch.as_tensor(v.unlabelled_indices)].sum(dim=1)
    else:
        fn = REFERENCES[name][0]
    fn(SyntheticView(300, seed=1), 3, np.random.default_rng(0))  # warm-up: lazy imports, thread pools
    view = SyntheticView(n)
    b = max(1, n // 100)
    rss0 = _status("VmRSS")
    reset = _reset_peak()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(view, b, np.random.default_rng(SEED))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _status("VmHWM") - rss0 if reset else float("nan")
    if wall < 1.0:  # short calls: median of 5 (the first call alone is at the mercy of other load)
        times, cpus = [wall], [cpu]
        for _ in range(4):
            t0, c0 = time.perf_counter(), time.process_time()
            fn(view, b, np.random.default_rng(SEED))
            times.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        wall, cpu = float(np.median(times)), float(np.median(cpus))
    if kind != "baseline":
        out = np.asarray(out)
        assert len(out) == b and len(np.unique(out)) == b and not view.labelled[out].any(), name
    return {"wall": wall, "cpu": cpu, "peak_mb": peak / 2**20, "b": b}


def run_one(kind: str, name: str, n: int, timeout: float) -> dict:
    load = os.getloadavg()[0]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, name, str(n)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"> {timeout:.0f} s (timed out)", "load": load}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": f"failed: {tail[0][:120]}", "load": load}
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["load"] = load
    return res


def _mem_available() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024.0
    return float("inf")


def _fmt_t(r: dict | None) -> str:
    if r is None:
        return "—"
    if "error" in r:
        return r["error"]
    w = r["wall"]
    return f"{w * 1e3:.1f} ms" if w < 1 else f"{w:.2f} s"


def _fmt_c(r: dict | None) -> str:
    if r is None or "error" in r:
        return "—"
    return f"{r['cpu']:.2f} s"


def _fmt_m(r: dict | None) -> str:
    if r is None or "error" in r:
        return "—"
    return f"{r['peak_mb']:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    ap.add_argument("--strategies", nargs="+", default=None)
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "query_speed.md")
    ap.add_argument("--child", nargs=3, metavar=("KIND", "NAME", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, name, n = args.child
        print(json.dumps(child(kind, name, int(n))))
        return

    from adakit.registry import STRATEGIES

    names = args.strategies or STRATEGIES.names()
    rows = []
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for n in args.sizes:
        base = run_one("baseline", "random", n, args.timeout)
        rows.append(("read probs once", n, base, None, "—"))
        print(f"N={n} baseline {_fmt_t(base)}", flush=True)
        for name in names:
            fast = run_one("fast", name, n, args.timeout)
            ref, ref_name = None, "—"
            if name in REFERENCES and not args.no_reference:
                _, ref_name, est = REFERENCES[name]
                if est(n) < 0.4 * _mem_available():
                    ref = run_one("ref", name, n, args.timeout)
                else:
                    ref = {"error": f"skipped (needs ≈{est(n) / 2**30:.0f} GiB)", "load": os.getloadavg()[0]}
            rows.append((name, n, fast, ref, ref_name))
            print(f"N={n} {name}: {_fmt_t(fast)} {_fmt_m(fast)} | ref {_fmt_t(ref)} {_fmt_m(ref)}", flush=True)
            write_table(args.out, rows, started)
    print(f"wrote {args.out}")


def write_table(out: Path, rows: list, started: str) -> None:
    lines = [
        "# Query speed (issue #3)",
        "",
        f"Run {started} on {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores "
        f"(shared machine), OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, torch "
        f"{torch.__version__}, CPU only. One selection per cell, b = 1% of the pool, 1% already labelled, "
        f"m = {M_DIM}, C = {N_CLASSES}, synthetic clustered embeddings (`benchmarks/query_speed.py`).",
        "",
        "*time*: wall-clock of one `select` (data already in memory; the median of 5 calls where one call "
        "takes under 1 s, else a single call). *peak*: rise of the process's peak "
        "resident set size during the call (VmHWM after resetting it through /proc/self/clear_refs), so it "
        "counts torch, numpy, faiss and scikit-learn buffers alike. *load*: 1-minute load average when the "
        "measurement started (2 cores; above 2 other work shared the CPU and wall times are inflated). "
        "*CPU*: process CPU time of the call (user + system, all threads; less sensitive to other load, but "
        "inflated by threads spinning while they wait). *ratio*: reference time / fast time. References are "
        "skipped where their estimated memory exceeds 40% of the free memory.",
        "",
        "| strategy | N | time | CPU | peak | load | reference | ref. time | ref. CPU | ref. peak | ratio |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, n, fast, ref, ref_name in rows:
        ratio = "—"
        if ref and fast and "wall" in ref and "wall" in fast and fast["wall"] > 0:
            ratio = f"{ref['wall'] / fast['wall']:.1f}×"
        lines.append(f"| {name} | {n:,} | {_fmt_t(fast)} | {_fmt_c(fast)} | {_fmt_m(fast)} "
                     f"| {fast.get('load', float('nan')):.1f} | {ref_name if ref else '—'} | {_fmt_t(ref)} "
                     f"| {_fmt_c(ref)} | {_fmt_m(ref)} | {ratio} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

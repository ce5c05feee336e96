"""Query speed: wall time, CPU time and peak memory of one selection per registered strategy.

Synthetic pools of N = 2k, 20k, 200k (1M on request) samples with m = 256-d embeddings and C = 65 classes
(Office-Home's class count), 1% of the pool already labelled, a budget of b = 1% of the pool (at most 2,000:
b = 2,000 at 200k and 1M, as the speed targets are stated). The pool is
a set of arrays handed to `adakit.select` (the library entry point; it wraps them in `adakit.pool.ArrayView`,
the interface the training loop's `PoolView` gives strategies); the references read the same `ArrayView`.

Each (threads, N, strategy) cell runs in a fresh subprocess with OMP_NUM_THREADS and torch's thread count set
to 1 or 2. Inside it, adakit and the reference (where one exists) are timed *interleaved*: adakit, reference,
adakit, reference, ... so that other load on the machine hits both alike. Per call: wall time
(time.perf_counter) and process CPU time (time.process_time, all threads); calls under 1 s are repeated until
≥ 1 s of calls or 25 repetitions (when the reference's call takes a second or more, adakit's alone, after the
interleaved first round: *×r alone*), and the median is reported with the spread (max/min − 1); a median under
5 ms or a spread above 50% is marked *noise*. Peak memory: the rise of the process's peak resident set size
over the first call (Linux /proc/self/clear_refs resets VmHWM). The 1-minute load average is read at the
start and at the end of each cell.

    .venv/bin/python benchmarks/query_speed.py --threads 1 2                 # measure, update the JSON + table
    .venv/bin/python benchmarks/query_speed.py --sizes 2000 --strategies badge las --threads 1
    .venv/bin/python benchmarks/query_speed.py --agreement                   # approximate vs exact paths
    .venv/bin/python benchmarks/query_speed.py --render                      # table from the JSON only
    .venv/bin/python benchmarks/query_speed.py --device cuda --sizes 1000000 --budget 2000 --no-reference

``--device cuda`` puts the pool arrays (and the discriminators) on the GPU, so `adakit.select` runs the
strategies there; such cells record ``device``, the GPU's name (``gpu``) and its peak allocated memory
(``adakit_gpu_peak_mb``). Their key holds the device, so they sit beside the CPU cells of the same
(threads, N, strategy) instead of replacing them, and they are rendered in their own section, *On the GPU*.

Results accumulate in results/query_speed.json (one record per cell, the newest wins, except that a failed or
timed-out cell never replaces a good one) and are rendered to
results/query_speed.md; cells never measured are written as "not measured". A cell that failed or timed out
makes the script exit with status 1 after writing the table, naming the cells. The *peer code* column and
section are rendered from results/peer_code.json (measured by `benchmarks/peer_code.py`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
JSON_OUT = HERE / "results" / "query_speed.json"
MD_OUT = HERE / "results" / "query_speed.md"
PEER_JSON = HERE / "results" / "peer_code.json"  # written by benchmarks/peer_code.py
SIZES = [2000, 20000, 200000, 1000000]


# --------------------------------------------------------------------------------------------- the pool


class SyntheticPool:
    """The arrays of a synthetic pool: clustered embeddings, a linear head, 1% labelled, discriminators."""

    def __init__(self, n: int, m: int = M_DIM, c: int = N_CLASSES, labelled_frac: float = 0.01, seed: int = SEED):
        g = torch.Generator().manual_seed(seed)
        centres = torch.randn(c, m, generator=g)  # |centre| ≈ √m ≈ |noise|: overlapping classes
        y = torch.randint(c, (n,), generator=g)
        self.embeddings = centres[y] + torch.randn(n, m, generator=g)
        self.head = nn.Linear(m, c)
        with torch.no_grad():
            self.head.weight.copy_(F.normalize(centres, dim=1) * 0.25)  # logit gap ≈ 4: p1 ≈ 0.4 on average
            self.head.bias.zero_()
            self.logits = torch.cat([self.head(b) for b in self.embeddings.split(65536)])
        self.probs = torch.softmax(self.logits, dim=1)
        rng = np.random.default_rng(seed)
        self.labelled = np.zeros(n, dtype=bool)
        self.labelled[rng.permutation(n)[: int(labelled_frac * n)]] = True
        self.labels = np.where(self.labelled, y.numpy(), -1)
        self.source_embeddings = centres[torch.randint(c, (2000,), generator=g)] + torch.randn(2000, m, generator=g)
        self.objective = _objective(m, c)

    def __len__(self) -> int:
        return len(self.labelled)

    def to(self, device: str) -> SyntheticPool:
        """The arrays and modules moved to ``device`` (strategies then compute there); returns self."""
        for k in ("embeddings", "logits", "probs", "source_embeddings"):
            setattr(self, k, getattr(self, k).to(device))
        self.head.to(device)
        self.objective.to(device)
        return self

    def select(self, name: str, budget: int, rng: np.random.Generator, **params):
        """`adakit.select` on the arrays the strategy reads (what the speed targets are measured through).

        Only those arrays are passed, as a user would: `adakit.select` checks every array it is given
        (finite values, probabilities summing to 1), which costs time in proportion to their size.
        """
        from adakit import select

        given = {"probs": self.probs, "logits": self.logits, "embeddings": self.embeddings, "head": self.head,
                 "source_embeddings": self.source_embeddings, "objective": self.objective}
        keys = NEEDS.get(name, tuple(given))
        return select(name, budget=budget, labelled=self.labelled, labels=self.labels, seed=rng,
                      **{k: given[k] for k in keys}, **params)

    def view(self):
        """The same arrays as an `adakit.pool.ArrayView` (what the references read)."""
        from adakit.pool import ArrayView

        return ArrayView(self.labelled, self.labels, who="query_speed", probs=self.probs, logits=self.logits,
                         embeddings=self.embeddings, source_embeddings=self.source_embeddings, head=self.head,
                         objective=self.objective)


#: the arrays each strategy reads (default parameters); others get everything
NEEDS = {
    "random": ("probs",), "entropy": ("probs",), "confidence": ("probs",), "margin": ("probs",), "sdm": ("probs",),
    "sdm_g": ("logits", "head"), "badge": ("probs", "embeddings"), "coreset": ("probs", "embeddings"),
    "clue": ("logits", "embeddings"), "las": ("probs", "embeddings"), "aada": ("probs", "embeddings", "objective"),
    "sage": ("probs", "embeddings", "objective"),
}


def _objective(m: int, c: int) -> nn.Module:
    from adakit.models.discriminators import ClassDiscriminator, DomainDiscriminator

    torch.manual_seed(SEED)
    obj = nn.Module()
    obj.domain_discriminator = DomainDiscriminator(m, hidden=256).eval()
    obj.class_discriminator = ClassDiscriminator(m, c, hidden=256).eval()
    obj.provides = frozenset({"domain_discriminator", "class_discriminator"})
    return obj


#: the largest default budget: b = 2,000 at N = 200k and 1M, as the speed targets are stated
MAX_BUDGET = 2000


def budget_of(n: int) -> int:
    """b = 1% of the pool, at most MAX_BUDGET, or the --budget given (passed to the cells as QS_BUDGET)."""
    return int(os.environ.get("QS_BUDGET") or max(1, min(n // 100, MAX_BUDGET)))


def backend_of(name: str, n: int) -> str:
    """Which implementation adakit's default parameters use for this strategy at pool size n."""
    from adakit.query._algorithms import kmeans_backend, knn_backend

    b = budget_of(n)
    gpu = os.environ.get("QS_DEVICE", "cpu").startswith("cuda")
    unl = n - n // 100

    def km(points: int) -> str:
        chosen = kmeans_backend(points, b, gpu)
        return "sklearn" if chosen == "sklearn" else f"{chosen} k-means, greedy seeding, 8 it."

    if name == "las":
        knn = {"faiss": "faiss flat (exact)", "torch": "torch exact", "ivf": "IVF, nprobe 8"}[knn_backend(unl, gpu)]
        return f"kNN {knn}; k-means {km(11 * b)}"
    if name == "clue":
        return "sklearn k-means" if km(unl) == "sklearn" else km(unl)
    if name == "coreset":
        return "torch exact, lazy greedy"
    if name == "badge":
        return "torch exact, factorised"
    if name == "sage":
        k = (2**30) // (4 * unl * N_CLASSES)
        return "torch, exact S" if k >= M_DIM else f"torch, S projected to {k}/class, lazy greedy"
    return "torch"


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
    """The released LADA code's computation (full N×N similarity, (N, K, C) gather, argsort fill-up), K = 10."""
    from sklearn.cluster import KMeans
    from sklearn.metrics.pairwise import euclidean_distances

    from adakit.query.las import oversampling_ratio

    cand = view.unlabelled_indices
    idx = torch.as_tensor(cand)
    probs, e = view.probs[idx], F.normalize(view.embeddings[idx], dim=1)
    k = 10
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
    p = torch.softmax(view.logits[idx] / 0.1, dim=1) + 1e-8
    w = (-(p * torch.log(p)).sum(1)).numpy()
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


GIB = 2.0**30
REFERENCES = {  # name: (function, description, estimated peak bytes at pool size n)
    "entropy": (ref_uncertainty("entropy"), "per-sample Python loop", lambda n: 0),
    "confidence": (ref_uncertainty("confidence"), "per-sample Python loop", lambda n: 0),
    "margin": (ref_uncertainty("margin"), "per-sample Python loop", lambda n: 0),
    "sdm": (ref_uncertainty("margin"), "per-sample Python loop", lambda n: 0),
    "badge": (ref_badge, "materialised N×C·m embeddings", lambda n: 4.0 * n * N_CLASSES * M_DIM * 2),
    "coreset": (ref_coreset, "N×N distance matrix", lambda n: 4.0 * n * n * 1.5),
    "las": (ref_las, "LADA code's computation: N×N similarity", lambda n: 4.0 * n * n * 1.5),
    "clue": (ref_clue, "CLUE code's computation: sklearn + b×N argsort", lambda n: 16.0 * n * n / 100 * 1.5 + 8e8),
    "aada": (ref_aada, "one discriminator call per sample", lambda n: 0),
}
#: references whose single call would run for minutes at this size are not run (n → reason)
REF_MAX_N = {"badge": 20000, "coreset": 20000, "las": 20000, "clue": 20000, "aada": 20000}


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


def _timed(fn) -> tuple[float, float, object]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def child(name: str, n: int, with_ref: bool, max_reps: int) -> dict:
    """One cell, in this process: adakit and the reference interleaved."""
    import sklearn.cluster  # noqa: F401  (imports outside the timed calls)

    from adakit.query import _algorithms

    _algorithms._faiss()
    dev = os.environ.get("QS_DEVICE", "cpu")
    warm = SyntheticPool(300, seed=1).to(dev)
    warm.select(name, 3, np.random.default_rng(0))  # warm-up: lazy imports, thread pools (CUDA context, kernels)
    pool = SyntheticPool(n).to(dev)
    b = budget_of(n)
    view = pool.view()
    fns = {"adakit": lambda: pool.select(name, b, np.random.default_rng(SEED)).indices}  # numpy: synchronised
    gpu = torch.device(dev).type == "cuda"
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    if with_ref:
        ref = REFERENCES[name][0]
        REFERENCES[name][0](warm.view(), 3, np.random.default_rng(0))
        fns["ref"] = lambda: ref(view, b, np.random.default_rng(SEED))
    res: dict = {"b": b, "load_start": os.getloadavg()[0]}
    times: dict = {k: ([], []) for k in fns}

    def timed(k: str):
        """One call of fns[k], its wall and CPU time recorded; its output."""
        w, c, out = _timed(fns[k])
        times[k][0].append(w)
        times[k][1].append(c)
        return out

    first_out = {}
    for k in fns:  # first round, with the peak memory of each
        rss0 = _status("VmRSS")
        reset = _reset_peak()
        out = timed(k)
        res[f"{k}_peak_mb"] = (_status("VmHWM") - rss0) / 2**20 if reset else float("nan")
        first_out[k] = np.asarray(out)
    short = max(times["adakit"][0][0], times.get("ref", ([0.0], []))[0][0]) < 1.0
    reps = 1
    while short and reps < max_reps and sum(times["adakit"][0]) < 1.0:
        for k in fns:  # interleaved repetitions
            timed(k)
        reps += 1
    alone = not short and times["adakit"][0][0] < 1.0  # the reference is too slow to repeat: adakit alone
    while alone and len(times["adakit"][0]) < max_reps and sum(times["adakit"][0]) < 1.0:
        timed("adakit")
    for k in fns:
        ws, cs = np.array(times[k][0]), np.array(times[k][1])
        res[k] = {"wall": float(np.median(ws)), "cpu": float(np.median(cs)), "reps": len(ws),
                  "spread": float(ws.max() / max(ws.min(), 1e-9) - 1.0), "alone": alone and k == "adakit"}
    out = first_out["adakit"]
    assert len(out) == b and len(np.unique(out)) == b and not pool.labelled[out].any(), name
    if gpu:
        res["adakit_gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        res["gpu"] = torch.cuda.get_device_name(torch.device(dev))
    res["load_end"] = os.getloadavg()[0]
    return res


def conditions(cells: list[dict], with_cpu: bool = True) -> str:
    """The CPUs the cells were measured on and how loaded the machine was, from the cells themselves.

    The load average counts the benchmark's own process (1 at one thread, up to 2 at two) and lags (a cell that
    follows a two-thread cell starts high): a cell with its start or end load at most its thread count + 0.6
    counts as run on an otherwise idle machine.
    """
    cpus = sorted({f"{r['cpu']} ({r.get('cpu_capability', '?')} kernels)" for r in cells if r.get("cpu")})
    unknown = sum(1 for r in cells if not r.get("cpu"))
    where = "; ".join(cpus) + (f"; {unknown} cell{'s' * (unknown != 1)} on a CPU not recorded" if unknown else "")
    both = [(r["load_start"], r.get("load_end", r["load_start"]), r["threads"]) for r in cells if "load_start" in r]
    busy = sum(1 for a, b, t in both if min(a, b) > t + 0.6)  # the average lags: a cell after a busier one starts high
    lo = min((min(a, b) for a, b, _ in both), default=float("nan"))
    hi = max((max(a, b) for a, b, _ in both), default=float("nan"))
    load = (f"the 1-minute load average over the cells was {lo:.1f}–{hi:.1f} (start→end of each cell in the *load* "
            "column; the benchmark's own process counts 1–2). ")
    if busy:
        load += (f"**{busy} of {len(both)} cells ran beside other work** (load above their thread count + 0.6 at "
                 "both their start and end): their wall times are inflated, CPU times less so.")
    else:
        load += "No other work ran beside any cell (each cell's start or end load ≤ its thread count + 0.6)."
    if not with_cpu:
        return load
    return f"{where or 'CPU not recorded'}, {_recorded(cells, 'cores', 'CPU cores')}; {load}"


def cpu_label(r: dict) -> str:
    """A cell's CPU, short: "Intel Xeon, AVX512" (model name without "(R)" / "Processor", torch's kernel set)."""
    model = " ".join(w for w in str(r.get("cpu", "not recorded")).replace("(R)", "").split() if w != "Processor")
    return f"{model}, {r.get('cpu_capability', '?')}"


def cpu_column(cells: list[dict]) -> bool:
    """Whether a table of these cells needs a *measured on* column: they were measured on more than one CPU."""
    return len({cpu_label(r) for r in cells}) > 1


def _recorded(cells: list[dict], key: str, what: str, before: bool = False) -> str:
    """The values of ``key`` the cells recorded, e.g. "2 CPU cores" ("torch 2.14.1" with ``before``); cells
    measured before it was recorded are counted, never filled in from the rendering machine."""
    vals = " / ".join(sorted({str(r[key]) for r in cells if key in r}))
    missing = sum(1 for r in cells if key not in r)
    text = (f"{what} {vals}" if before else f"{vals} {what}") if vals else f"{what} not recorded"
    return text + (f" ({missing} cells: not recorded)" if vals and missing else "")


def run_cell(name: str, n: int, threads: int, timeout: float, with_ref: bool, max_reps: int) -> dict:
    from adakit.provenance import cpu_info

    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    load = os.getloadavg()[0]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, str(n), str(int(with_ref)),
           str(max_reps)]
    base = {"strategy": name, "n": n, "threads": threads, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "backend": backend_of(name, n), "device": os.environ.get("QS_DEVICE", "cpu"), **cpu_info(),
            "cores": os.cpu_count(), "torch": torch.__version__}
    return run_child(cmd, env, timeout, base, load)


def run_child(cmd: list[str], env: dict, timeout: float, base: dict, load: float, tail_lines: int = 1,
              tail_chars: int = 120) -> dict:
    """Run one measuring child process: ``base`` + the JSON of its last stdout line, or ``base`` + an ``error``
    (time-out, or the last ``tail_lines`` lines of its output) with the load average before and after."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {**base, "error": f"> {timeout:.0f} s (timed out)", "load_start": load, "load_end": os.getloadavg()[0]}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-tail_lines:] or ["?"]
        return {**base, "error": "failed: " + " | ".join(t.strip() for t in tail)[:tail_chars], "load_start": load,
                "load_end": os.getloadavg()[0]}
    return {**base, **json.loads(proc.stdout.strip().splitlines()[-1])}


def _mem_available() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024.0
    return float("inf")


# -------------------------------------------------------------------------------------------- agreement


def agreement() -> list[str]:
    """Approximate paths against the exact ones on the synthetic pools; returns markdown lines."""
    from adakit.query.las import local_inconsistency

    lines = []
    # LAS: IVF neighbours vs exact at N = 50k (exact is still affordable there)
    pool = SyntheticPool(50000)
    lines += ivf_recall_rows("LAS kNN (K = 10), N = 50,000", pool.embeddings, (4, 8, 16))
    _, q_exact = local_inconsistency(pool.embeddings, pool.probs, 10, backend="exact")
    _, q_ivf = local_inconsistency(pool.embeddings, pool.probs, 10, backend="ivf", nprobe=8)
    m = 500 * 11
    top_e = set(torch.argsort(q_exact, descending=True)[:m].tolist())
    top_i = set(torch.argsort(q_ivf, descending=True)[:m].tolist())
    lines.append(f"| LAS candidates (top b·(1+M) = {m:,} by Q), N = 50,000 | IVF nprobe 8 vs exact | overlap "
                 f"{len(top_e & top_i) / m:.4f} | max abs(ΔQ) {float((q_exact - q_ivf).abs().max()):.2e} |")
    lines += las_pick_agreement(pool) + real_knn_agreement()
    # CoreSet: lazy greedy vs eager full update (exact algorithm both)
    pool20 = SyntheticPool(20000)
    view = pool20.view()
    lazy = pool20.select("coreset", 200, np.random.default_rng(0)).indices
    eager = ref_coreset(view, 200, np.random.default_rng(0))
    lines.append(f"| CoreSet picks (b = 200), N = 20,000 | lazy greedy vs N×N eager | identical: "
                 f"{lazy.tolist() == eager.tolist()} ({len(set(lazy) & set(eager))}/200 common) | |")
    return lines + sage_agreement() + clue_agreement()


def _kmeans_objective_row(what: str, x: np.ndarray, w: np.ndarray, k: int) -> str:
    """The faiss k-means path's weighted objective against scikit-learn's on (x, w), 3 seeds each."""
    from sklearn.cluster import KMeans

    from adakit.query import _algorithms as alg

    def objective(c):
        d = alg.min_sq_dist(torch.as_tensor(x), torch.as_tensor(np.asarray(c, dtype=np.float32)))
        return float((torch.as_tensor(w) * d.double()).sum())

    sk = [objective(KMeans(k, n_init=1, random_state=s).fit(x, sample_weight=w).cluster_centers_) for s in range(3)]
    fa = [objective(alg.weighted_kmeans(x, k, np.random.default_rng(s), weights=w, backend="faiss"))
          for s in range(3)]
    return (f"| {what}, b = {k} | faiss 8 it. vs sklearn | faiss {min(fa):.4g}–{max(fa):.4g}, sklearn "
            f"{min(sk):.4g}–{max(sk):.4g} (3 seeds each) | faiss/sklearn mean {np.mean(fa) / np.mean(sk):.4f} |")


def real_features() -> dict[str, np.ndarray]:
    """Real feature matrices under $ADAKIT_DATA (empty when it is not set): Office-31 Amazon's MobileNetV2
    features (2,817 × 1,280) and the MNIST test images as pixels (10,000 × 784)."""
    from adakit.data.digits import load_digits
    from adakit.data.features import load_npz
    from adakit.paths import data_root

    root = data_root(required=False)
    out = {}
    if root is None:
        return out
    feats = root / "office31" / "features-mobilenetv2" / "amazon.npz"
    if feats.exists():
        out["Office-31 Amazon, MobileNetV2 features"] = load_npz(feats, "amazon").x.numpy()
    if (root / "digits" / "t10k-images-idx3-ubyte.gz").exists():
        x = load_digits(root, "mnist").x  # uint8 (10,000, 1, 28, 28)
        out["MNIST test pixels"] = x.reshape(len(x), -1).numpy().astype(np.float32) / 255.0
    return out


def ivf_recall_rows(what: str, x: torch.Tensor, nprobes: tuple[int, ...]) -> list[str]:
    """recall@10 (cosine) of the IVF neighbours of the rows of ``x`` against the exact ones, per nprobe."""
    from adakit.query import _algorithms as alg

    e = F.normalize(x, dim=1)
    t0 = time.process_time()
    _, nn_exact = alg.knn(e, 10, normalize=False, backend="exact")
    t_exact = time.process_time() - t0
    lines = []
    for nprobe in nprobes:
        t0 = time.process_time()
        _, nn_ivf = alg.knn(e, 10, normalize=False, backend="ivf", nprobe=nprobe)
        t_ivf = time.process_time() - t0
        hit = (nn_ivf.unsqueeze(2) == nn_exact.unsqueeze(1)).any(dim=2).float().mean()
        lines.append(f"| {what} | IVF nprobe {nprobe} vs exact flat | recall@10 {float(hit):.4f} | CPU {t_ivf:.2f} s "
                     f"vs {t_exact:.2f} s |")
    return lines


def real_knn_agreement() -> list[str]:
    """LAS's IVF neighbours against exact ones on real features (recall@10, cosine): the synthetic pool's
    well-separated clusters make the inverted file look perfect; real features are harder."""
    return [row for name, x in real_features().items()
            for row in ivf_recall_rows(f"kNN (K = 10), {name} (N = {len(x):,}, {math.ceil(math.sqrt(len(x)))} "
                                       "lists)", torch.from_numpy(x), (8, 16, 32))]


def sage_agreement(n: int = 20000) -> list[str]:
    """SAGE's randomly projected embedding (above ``max_embedding_mb``) against the exact one on a synthetic pool:
    overlap of the picks, and the farthest-first objective of the picks measured in the exact embedding (the
    largest distance from an unlabelled sample to its nearest pick: smaller covers the pool better)."""
    from adakit.query import _algorithms as alg
    from adakit.query.sage import compute_sage

    pool = SyntheticPool(n)
    b = budget_of(n)
    cand = np.flatnonzero(~pool.labelled)
    disc = pool.objective.class_discriminator
    _, exact_rows, _ = compute_sage(disc, pool.embeddings[cand], pool.probs[cand], max_bytes=2.0**40)
    pos = {int(i): j for j, i in enumerate(cand)}

    def radius(picks) -> float:
        at = [pos[int(i)] for i in picks]
        return float(alg.min_sq_dist(exact_rows, exact_rows[at]).max().sqrt())

    ref = pool.select("sage", b, np.random.default_rng(0), max_embedding_mb=2.0**20).indices
    r_ref = radius(ref)
    other = pool.select("sage", b, np.random.default_rng(1), max_embedding_mb=2.0**20).indices
    lines = []
    bytes_per_dim = 4.0 * len(cand) * N_CLASSES
    default_k = int(1024 * 2**20 // bytes_per_dim)  # what max_embedding_mb's default gives at this pool size
    for k in (default_k, 20, 4):
        mb = k * bytes_per_dim / 2**20 + 1e-3
        picks = pool.select("sage", b, np.random.default_rng(0), max_embedding_mb=mb).indices
        lines.append(f"| SAGE picks (b = {b}), N = {n:,} | S projected to k = {k} per class vs exact S (k = {M_DIM}), "
                     f"same seed | overlap {len(set(picks) & set(ref)) / b:.4f}; farthest-first radius in the exact S "
                     f"{radius(picks) / r_ref:.4f} × the exact path's | exact S, seed 1 vs seed 0: overlap "
                     f"{len(set(other) & set(ref)) / b:.4f} (farthest-first is deterministic up to ties) |")
    return lines


def clue_agreement() -> list[str]:
    """CLUE's weighted k-means: the faiss path's objective against scikit-learn's, 3 seeds each; on the
    synthetic pools with CLUE's weights (near-uniform: the pool's predictions are saturated at T = 0.1) and on
    real features with uniform and heavy-tailed weights (exp(1)³: a few samples carry most of the weight, as
    the entropies of a trained model's predictions do), b = 1% and 5% of the samples."""
    from adakit.query.clue import clue_weights

    lines = []
    for n in (20000, 50000):
        p = SyntheticPool(n)
        lines.append(_kmeans_objective_row(f"CLUE weighted k-means objective, synthetic N = {n:,}",
                                           p.embeddings.numpy(), clue_weights(p.logits, 0.1).numpy(), n // 100))
    for name, x in real_features().items():
        skewed = np.random.default_rng(9).exponential(size=len(x)) ** 3
        for frac in (0.01, 0.05):
            for wname, w in (("uniform", np.ones(len(x))), ("exp(1)³", skewed)):
                lines.append(_kmeans_objective_row(f"weighted k-means objective, {name} (N = {len(x):,}), "
                                                   f"{wname} weights", x, w, int(frac * len(x))))
    return lines


def las_pick_agreement(pool: SyntheticPool) -> list[str]:
    """LAS picks with IVF vs exact neighbours, next to the exact path's own spread over seeds."""
    a = pool.select("las", 500, np.random.default_rng(0), search="exact").indices
    b = pool.select("las", 500, np.random.default_rng(0), search="ivf").indices
    c = pool.select("las", 500, np.random.default_rng(1), search="exact").indices
    return [f"| LAS picks (b = 500), N = 50,000 | IVF nprobe 8 vs exact, same seed | overlap "
            f"{len(set(a) & set(b)) / 500:.4f} | exact seed 0 vs exact seed 1: overlap {len(set(a) & set(c)) / 500:.4f}"
            " (k-means among the candidates is seeded; a few Q values differ, which reorders the candidates "
            "k-means sees) |"]


# ---------------------------------------------------------------------------------------------- the table


def _key(r: dict) -> tuple:
    """A cell's key: (threads, N, strategy) on the CPU (the committed records' keys), with the device appended for
    a cell measured with ``--device cuda`` (or cuda:N), so a GPU run never replaces a CPU cell."""
    base = (r["threads"], r["n"], r["strategy"])
    device = r.get("device", "cpu")
    return base if device == "cpu" else (*base, device)


def record_cell(cells: dict, r: dict) -> bool:
    """Store cell ``r`` under its key, unless it failed or timed out (``error``) where a good measurement has the
    same key: a failed run never replaces a good cell. True when stored."""
    old = cells.get(_key(r))
    if "error" in r and old is not None and "error" not in old:
        return False
    cells[_key(r)] = r
    return True


def measuring_device(name: str) -> str:
    """``--device`` checked as adakit checks ``train.device`` (a CUDA device this machine lacks, or a type adakit
    does not run on, is a `ConfigError`) before anything is measured; its canonical name (auto: cuda or cpu)."""
    from adakit.devices import check_device

    return str(check_device(name, "--device"))


def on_cpu(r: dict) -> bool:
    return r.get("device", "cpu") == "cpu"


def load_records() -> dict:
    if not JSON_OUT.exists():
        return {}
    data = json.loads(JSON_OUT.read_text())
    return {"cells": {_key(r): r for r in data.get("cells", [])}, "agreement": data.get("agreement", []),
            "agreement_when": data.get("agreement_when")}


def save_records(rec: dict) -> None:
    JSON_OUT.parent.mkdir(parents=True, exist_ok=True)
    JSON_OUT.write_text(json.dumps({"cells": sorted(rec.get("cells", {}).values(), key=_key),
                                    "agreement": rec.get("agreement", []),
                                    "agreement_when": rec.get("agreement_when")}, indent=1) + "\n")


def _fmt_t(x: float) -> str:
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


def _cell(r: dict | None, k: str) -> tuple[str, str, str]:
    if r is None:
        return "not measured", "—", "—"
    if "error" in r and k == "adakit":
        return r["error"], "—", "—"
    m = r.get(k)
    if not m:
        return r.get(f"{k}_note", "—"), "—", "—"
    noise = m["wall"] < 0.005 or m["spread"] > 0.5
    t = _fmt_t(m["wall"]) + (f" (×{m['reps']}" + (" alone" if m.get("alone") else "")
                              + (", noise)" if noise else ")") if m["reps"] > 1 else "")
    return t, _fmt_t(m["cpu"]), f"{r.get(f'{k}_peak_mb', float('nan')):.0f} MiB"


# ------------------------------------------------------------------------------------- the peer-code results

#: adakit strategy -> the released code that implements it (peer keys as in results/peer_code.json)
PEERS = {"las": ("lada",), "coreset": ("lada",), "badge": ("lada", "skactiveml"), "clue": ("lada", "clue"),
         "margin": ("lada", "sdm"), "sdm": ("sdm",), "sdm_g": ("sdm",)}
#: adakit strategies that run another one's code (the `sdm` query is plain margin sampling): its peer cells
PEER_SAME_AS = {"sdm": "margin"}
PEER_LABELS = {"lada": "LADA", "clue": "CLUE", "sdm": "SDM", "skactiveml": "scikit-activeml"}
#: why a (strategy, peer) ratio at N = 20k is what it is (the verdict itself comes from the JSON)
_CLUE_WHY = "both run scikit-learn's weighted k-means on the pool, which is nearly all of the time"
_MARGIN_WHY = ("both are vectorised: SDM sorts every row of the probabilities, LADA runs its inference pass, a top "
               "two per row and a sort; adakit's whole call is a few ms (the top two per row in five vectorised "
               "passes, then the top b, after the input checks). Measured on the AMD EPYC since that top-two "
               "change (2026-12-05); before it (a max/min tournament) the Intel Xeon cells gave 8.2× (LADA) and "
               "5.8× (SDM), and the AMD EPYC 14.6× and 8.8×")
PEER_WHY = {
    ("coreset", "lada"): "LADA's `furthest_first` updates the N minimum distances in a Python loop per pick",
    ("badge", "skactiveml"): "it materialises the (N, C·m) gradient embeddings in float64 and runs its D² update "
                             "over them",
    ("badge", "lada"): "both compute the same D² sampling on factorised gradient embeddings; LADA updates every "
                       "sample's distance after each pick (N × b distance products), adakit only the sampled ones "
                       "and, when rejections have cost as much, all of them at once (most of the N × b products are "
                       "never computed). Before that change (2026-12-03, 07:30 UTC) this cell was 8.9× on the idle "
                       "machine of the previous table",
    ("sdm_g", "sdm"): "noisy: the ratio moves with the load and the pool size",
    ("las", "lada"): "adakit's exact kNN is the same arithmetic as LADA's N×N similarity (a matrix product and a "
                     "top-K), and both then run k-means on the b·(1+M) candidates; even adakit's approximate "
                     "paths (IVF search and faiss k-means, its default above 50,000 samples) stay below 10× here",
    ("clue", "clue"): _CLUE_WHY,
    ("clue", "lada"): _CLUE_WHY,
    ("margin", "lada"): _MARGIN_WHY,
    ("margin", "sdm"): _MARGIN_WHY,
}


def load_peer_cells(path: Path = PEER_JSON) -> dict:
    """results/peer_code.json (``{"machine": ..., "cells": [...]}``), or no cells when it does not exist."""
    if not path.exists():
        return {"cells": []}
    return json.loads(path.read_text())


def _peer_key(r: dict) -> tuple[str, str]:
    """("lada", "") for "lada"; ("clue", "KMeans n_init=10") for "clue (KMeans n_init=10)"."""
    base, _, variant = r["peer"].partition(" (")
    return base, variant.rstrip(")")


def _adakit_variant(r: dict) -> bool:
    """A cell whose adakit side ran with strategy parameters (peer_code.py --adakit-set), not the defaults."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from peer_code import ADAKIT_VARIANT

    return _peer_key(r)[1].startswith(ADAKIT_VARIANT + " ")


def _ratios(r: dict) -> tuple[float, float] | None:
    """(CPU, wall) ratio peer / adakit of a cell, or None when it has no timings."""
    a, p = r.get("adakit"), r.get("peer_code")
    if not a or not p:
        return None
    return p["cpu"] / max(a["cpu"], 1e-9), p["wall"] / max(a["wall"], 1e-9)


def _x(v: float) -> str:
    return f"{v:.0f}×" if v >= 100 else f"{v:.1f}×"


def peer_column(peer: dict, threads: int, n: int, name: str) -> str:
    """The table's *peer code* cell: each peer's CPU ratio (wall in brackets) at this (threads, N, strategy)."""
    if name not in PEERS:
        return "—"
    strategy = PEER_SAME_AS.get(name, name)
    here = [r for r in peer.get("cells", []) if (r["threads"], r["n"], r["strategy"]) == (threads, n, strategy)]
    parts = []
    for key in PEERS[name]:
        rows = sorted((r for r in here if _peer_key(r)[0] == key), key=lambda r: _peer_key(r)[1])
        if not rows or _peer_key(rows[0])[1]:
            parts.append(f"{PEER_LABELS[key]} not measured")
            continue
        rat = _ratios(rows[0])
        if rat is None:
            parts.append(f"{PEER_LABELS[key]} failed")
            continue
        s = f"{PEER_LABELS[key]} {_x(rat[0])} ({_x(rat[1])} wall"
        for r in rows[1:]:
            if (v := _ratios(r)) is not None:
                s += f"; {_x(v[0])} with {_peer_key(r)[1]}"
        parts.append(s + ")")
    if all(p.endswith(" not measured") for p in parts):
        return "not measured"
    return (f"as {strategy} (same code): " if strategy != name else "") + ", ".join(parts)


def _peer_table(cells: list[dict]) -> list[str]:
    sys.path.insert(0, str(HERE))
    from peer_code import _agree as _peer_agreement  # one formatting for both tables
    from peer_code import _reps as _peer_reps

    by_cpu = cpu_column(cells)
    lines = ["| threads | N | b | strategy | peer | adakit wall / CPU | peer wall / CPU | ratio CPU (wall) | ≥ 10× "
             "| load | agreement |" + " measured on |" * by_cpu,
             "|---:|---:|---:|---|---|---:|---:|---:|---|---|---|" + "---|" * by_cpu]
    for r in sorted(cells, key=lambda r: (r["threads"], r["n"], r["strategy"], r["peer"])):
        cpu = f" {cpu_label(r)} |" * by_cpu
        base, variant = _peer_key(r)
        who = PEER_LABELS.get(base, base) + (f" ({variant})" if variant else "")
        bb = f"{r['b']:,}" if "b" in r else "—"
        load = f"{r['load_start']:.1f}→{r['load_end']:.1f}" if "load_start" in r and "load_end" in r else "—"
        head = f"| {r['threads']} | {r['n']:,} | {bb} | {r['strategy']} | {who} |"
        rat = _ratios(r)
        if rat is None:
            lines.append(f"{head} {r.get('error', 'no timings')} | | | | {load} | |{cpu}")
            continue
        a, p = r["adakit"], r["peer_code"]
        lines.append(f"{head} {_fmt_t(a['wall'])} / {_fmt_t(a['cpu'])}{_peer_reps(a)} | {_fmt_t(p['wall'])} / "
                     f"{_fmt_t(p['cpu'])}{_peer_reps(p)} | {_x(rat[0])} ({_x(rat[1])}) | "
                     f"{'yes' if min(rat) >= 10 else 'no'} | {load} | {_peer_agreement(r)} |{cpu}")
    return lines


def _goal(cells: list[dict], n: int = 20000) -> list[str]:
    """The speed goal, ≥ 10× the peer code at N = 20k (1 thread), per (strategy, peer), from the cells."""
    at = {(r["strategy"], _peer_key(r)[0]): r for r in cells
          if r["n"] == n and r["threads"] == 1 and not _peer_key(r)[1] and _ratios(r)}
    if not at:
        return [f"The ≥ 10× goal at N = {n:,}: not measured."]
    met, missed = [], []
    for (strategy, base), r in sorted(at.items(), key=lambda kv: -min(_ratios(kv[1]))):
        cpu, wall = _ratios(r)
        others = [f"{_x(_ratios(o)[0])} at N = {o['n']:,}" for o in cells
                  if (o["strategy"], _peer_key(o)) == (strategy, (base, "")) and o["n"] != n and o["threads"] == 1
                  and _ratios(o)]
        variants = [o for o in cells if (o["strategy"], _peer_key(o)[0]) == (strategy, base) and _peer_key(o)[1]
                    and o["n"] == n and o["threads"] == 1 and _ratios(o)]
        restarts = [f"{_x(_ratios(o)[0])} ({_x(_ratios(o)[1])} wall) against {_peer_key(o)[1]}" for o in variants
                    if not _adakit_variant(o)]
        approx = [f"{_x(_ratios(o)[0])} CPU ({_x(_ratios(o)[1])} wall) with {_peer_key(o)[1]}" for o in variants
                  if _adakit_variant(o)]
        line = f"{strategy} vs {PEER_LABELS.get(base, base)}: {_x(cpu)} CPU, {_x(wall)} wall"
        line += "".join(f" ({x})" for x in ["; ".join(others)] if x)
        why = PEER_WHY.get((strategy, base))
        line += f" — {why}" if why else ""
        line += "".join(f"; {x}, a scikit-learn version difference, not a faster algorithm" for x in restarts)
        line += "".join(f"; {x} (opt-in approximate path: its agreement with the exact one is measured below; "
                        "`auto` takes it only on larger pools)" for x in approx)
        (met if min(cpu, wall) >= 10 else missed).append(f"- {line}.")
    two = sorted(((min(_ratios(r)), r["strategy"], PEER_LABELS.get(_peer_key(r)[0], _peer_key(r)[0]))
                  for r in cells if r["n"] == n and r["threads"] == 2 and not _peer_key(r)[1] and _ratios(r)),
                 reverse=True)
    at_two = []
    if two:
        yes = [f"{st} vs {who} {_x(v)}" for v, st, who in two if v >= 10]
        no = [f"{st} vs {who} {_x(v)}" for v, st, who in two if v < 10]
        at_two = ["", f"At 2 threads (the smaller of the CPU and wall ratios): ≥ 10× for {', '.join(yes) or 'none'}; "
                  f"below for {', '.join(no) or 'none'}. Calls of a few milliseconds are marked noise in the "
                  "table above: read those ratios as approximate."]
    return [f"**The ≥ 10× goal at N = {n:,}** (the goal: ≥ 10× the peer code for every strategy that has one; "
            "here both the CPU and the wall ratio, 1 thread):", "",
            f"Met ({len(met)}):", "", *(met or ["- none"]), "",
            f"**Not met** ({len(missed)}):", "", *(missed or ["- none"]), *at_two]


def peer_section(peer: dict) -> list[str]:
    """The *Peer code* section of query_speed.md, from results/peer_code.json."""
    cells = peer.get("cells", [])
    lines = ["", "## Peer code", ""]
    if not cells:
        return lines + ["not measured (no results/peer_code.json: run `benchmarks/peer_code.py`, see its docstring)"]
    whens = sorted(r["when"] for r in cells)
    threads = ", ".join(str(t) for t in sorted({r["threads"] for r in cells}))
    repos = {_peer_key(r)[0]: (r["repo"], r["commit"]) for r in cells}
    timed = {(r["strategy"], _peer_key(r)[0]): r["timed"] for r in cells}
    lines += [
        f"Measured {whens[0]} to {whens[-1]} with `benchmarks/peer_code.py` on {conditions(cells)} "
        f"{_recorded(cells, 'versions', '', True).strip()}{_by_cpu_note(cells)}. OMP/MKL/OpenBLAS and torch threads "
        f"= {threads}, on the same synthetic "
        "pool and b as above. Each cell "
        "runs in its own subprocess: after a warm-up of both, `adakit.select` and the peer's own selection call "
        "are timed interleaved (adakit, peer, adakit, peer, ...), median of the repetitions (×r; *noise* = "
        "median under 5 ms or max/min spread above 50%). The CPU-time ratio is the steadier one under load. "
        f"{PEER_RERUN_NOTE} *threads*: the cell's OMP/MKL/OpenBLAS and torch threads; "
        "*ratio*: peer / adakit. *agreement*: "
        "overlap of the two first calls' picks, |A ∩ P| / b; for the seeded methods (k-means, k-means++) the "
        "overlap of adakit with itself between seeds 0 and 1 is given as the scale of seed-to-seed variation.",
        "",
        *_peer_table(cells),
        "",
        "Peer code (not copied into this repository; the script's docstring says how to fetch these versions):",
        "",
        *[f"- {PEER_LABELS.get(k, k)}: {repo}, {'commit' if _is_sha(commit) else 'version'} `{commit}`"
          for k, (repo, commit) in sorted(repos.items())],
        "",
        "What was timed on the peer side: the peers' `query()` methods run a data loader through their network; "
        "here the network is an identity backbone on the pool's embeddings plus the pool's linear head, and the "
        "loader serves the rows as one pre-collated batch, so their inference pass costs a few ms (adakit is "
        "given the probabilities / logits it reads, already computed). LADA's strategies use LADA's defaults "
        "(K = 10, M = 10, one propagation step).",
        "",
        *[f"- {s} vs {PEER_LABELS.get(k, k)}: {t}" for (s, k), t in sorted(timed.items())],
        "",
        "Bugs found in the peer code (read at the commits above):",
        "",
        *_peer_bugs(cells),
        "",
        *_goal(cells),
    ]
    return lines


def _is_sha(s: str) -> bool:
    return len(s) == 40 and all(ch in "0123456789abcdef" for ch in s)


def _peer_bugs(cells: list[dict]) -> list[str]:
    core = [r for r in cells if r["strategy"] == "coreset" and (r.get("agreement") or {}).get("unfixed_wrong_picks")
            is not None]
    unfixed = "; ".join(dict.fromkeys(  # once per N: the picks do not depend on the thread count
        f"at N = {r['n']:,}, {r['agreement']['unfixed_wrong_picks']} of {r['b']} picks named the "
        f"wrong sample ({r['agreement']['unfixed_labelled_picks']} of them already labelled)"
        for r in sorted(core, key=lambda r: r["n"])))
    fixed = all(r["agreement"].get("same_order") for r in core)
    restarts = [r for r in cells if _peer_key(r)[1] and not _adakit_variant(r) and _ratios(r)]
    restart_text = "; ".join(
        f"{r['strategy']} vs {PEER_LABELS.get(_peer_key(r)[0])} at N = {r['n']:,}: {_x(_ratios(r)[0])} CPU "
        f"({_x(_ratios(r)[1])} wall), against {_x(_ratios(d)[0])} with 1 restart"
        for r in sorted(restarts, key=lambda r: (r["n"], r["strategy"], r["peer"]))
        for d in cells if (d["strategy"], d["n"], d["threads"], d["peer"]) ==
        (r["strategy"], r["n"], r["threads"], _peer_key(r)[0]) and _ratios(d))
    n20 = 20000 - 20000 // 100
    return [
        "- **LADA CoreSet returns wrong indices** whenever anything is labelled: `CoreSetSampling.query` calls "
        "`self.pred(idxs=np.arange(N))`, so its `idxs_unlabeled` is every pool index, while `furthest_first` "
        "returns positions among the unlabelled rows; `idxs_unlabeled[q_idxs]` hands those positions back as "
        "pool indices. " + (f"Unfixed, {unfixed}. " if unfixed else "") + "The adapter maps the positions back "
        "(`np.flatnonzero(~labelled)[picks]`, `fix_lada_coreset` in `benchmarks/peer_code.py`)"
        + (", after which its picks equal adakit's CoreSet in the same order. " if core and fixed else ". ")
        + "Its `furthest_first` also updates the N minimum distances in a Python loop per pick.",
        "- **Shared RandomState in k-means++** (`kmeans_plus_plus_opt`, BADGE in LADA and in the CLUE repo): "
        "`random_state=np.random.RandomState(1234)` is a default argument, one generator shared by every call, "
        "so a query's picks depend on how many queries ran before it in the process. The benchmark reseeds it "
        "before every call.",
        "- **KMeans `n_init` depends on the scikit-learn version** (LADA's LAS and CLUE, the CLUE repo): `KMeans(n)` "
        "without `n_init` ran 10 restarts with the scikit-learn the code was released for (< 1.4; CLUE pins "
        "0.22.2) and runs 1 with today's. The table times today's behaviour (the same k-means as adakit's)"
        + (f"; with the original 10 restarts (`--kmeans-n-init 10`): {restart_text}." if restart_text else "."),
        "- **scikit-activeml 1.0.1 `Badge` keeps the origin as a centre** (upstream issue #588; the fix, PR #590, "
        "is not in 1.0.1): its D² update `np.minimum(d_latest, dist²)` starts from ||g||², the distance to the "
        "origin, so for the whole batch samples with small gradient embeddings (confident ones) are held down; "
        "its picks are therefore not those of BADGE's k-means++, whatever the seed.",
        "- **scikit-activeml 1.0.1 `Badge` materialises the (N, C·m) float64 gradient embeddings** (upstream "
        f"#589): {n20 * N_CLASSES * M_DIM * 8 / 1e9:.1f} GB at N = 20k, which is where most of its time goes.",
        "- Smaller ones: the CLUE repo's `query()` hard-codes the embedding width (500 for LeNet, 512 for "
        "ResNet34; the adapter passes m) and `num_workers=4`; SDM's `predict_prob2` hard-codes a 256-wide "
        "feature buffer and grows its outputs with `torch.cat` per batch.",
    ]


#: cells of results/peer_code.json measured again (the JSON keeps the newest); what the first run gave
PEER_RERUN_NOTE = (
    "The three rows of adakit's opt-in approximate paths (`kmeans=faiss`, `search=ivf`) at N = 20,000, 1 thread, "
    "were measured again on 2026-12-04 08:59–09:29 UTC on an idle machine (load 0.3–0.6, nothing else running): "
    "their peers' calls took 2.1–2.7 s instead of 2.9 s, adakit's 0.24–0.37 s instead of 0.31–0.48 s; the ratios "
    "moved from 9.2×, 8.9×, 6.0× to 9.1×, 8.8×, 7.3× (those rows show the re-run), so the conclusion (below 10× "
    "even on the approximate paths) holds.")


def _by_cpu_note(cells: list[dict]) -> str:
    """When the cells span CPUs: which ones the table's *measured on* column names, and when each was measured."""
    if not cpu_column(cells):
        return ""
    spans = []
    for label in sorted({cpu_label(r) for r in cells}):
        whens = sorted(r["when"] for r in cells if cpu_label(r) == label)
        spans.append(f"{label} kernels: {len(whens)} cells, {whens[0]} to {whens[-1]}")
    return (" (**two machines**: the *measured on* column says which measured each row; " + "; ".join(spans)
            + "; a ratio is always peer / adakit on one machine, in one process)")


def gpu_section(cells: list[dict], names: list[str]) -> list[str]:
    """The *On the GPU* section of query_speed.md: the cells measured with ``--device`` (none: no section)."""
    if not cells:
        return []
    loads = [v for r in cells for v in (r.get("load_start"), r.get("load_end")) if v is not None]
    whens = sorted(r["when"] for r in cells)
    gpus = sorted({r["gpu"] for r in cells if r.get("gpu")})
    lines = [
        "", "## On the GPU", "",
        f"Measured {whens[0]} to {whens[-1]} with `benchmarks/query_speed.py --device ...` on "
        f"{', '.join(gpus) or 'a GPU (name not recorded)'}, {_recorded(cells, 'cores', 'host CPU cores')}, "
        f"{_recorded(cells, 'torch', 'torch', True)}; host load average {min(loads, default=float('nan')):.1f}"
        f"–{max(loads, default=float('nan')):.1f}. The pool arrays and discriminators live on the device and "
        "`adakit.select` runs the strategy there, CLUE's and LAS's bounded k-means included (torch backend; "
        "scikit-learn's exact k-means, used on small pools, runs on the host). "
        "*time*: wall-clock median of one call, until its picks are back on the host as numpy (so the GPU work is "
        "finished); *host CPU*: process CPU time of the call (the host's share of the work only); *GPU peak*: peak "
        "allocated GPU memory of the process (pool arrays included); *host peak*: rise of the peak resident set "
        "size during the first call. No reference implementations are timed on the GPU.",
        "",
        "| device | threads | N | b | strategy | backend | time | host CPU | GPU peak | host peak | load |",
        "|---|---:|---:|---:|---|---|---:|---:|---:|---:|---|",
    ]
    order = {name: i for i, name in enumerate(names)}
    for r in sorted(cells, key=lambda r: (r.get("device", ""), r["threads"], r["n"],
                                          order.get(r["strategy"], len(order)), r["strategy"])):
        time_s, cpu_s, peak = _cell(r, "adakit")
        gpu_peak = f"{r['adakit_gpu_peak_mb']:.0f} MiB" if "adakit_gpu_peak_mb" in r else "—"
        load = f"{r['load_start']:.1f}→{r['load_end']:.1f}" if "load_start" in r else "—"
        bb = f"{r['b']:,}" if "b" in r else "—"
        lines.append(f"| {r.get('device', '?')} | {r['threads']} | {r['n']:,} | {bb} | {r['strategy']} | "
                     f"{r.get('backend', '—')} | {time_s} | {cpu_s} | {gpu_peak} | {peak} | {load} |")
    return lines


def render(rec: dict, names: list[str]) -> None:
    all_cells = rec.get("cells", {})
    cells = {k: r for k, r in all_cells.items() if on_cpu(r)}  # the main table; GPU cells: `gpu_section`
    peer_cells = load_peer_cells()
    whens = sorted(r["when"] for r in cells.values())
    by_cpu = cpu_column(list(cells.values()))
    where = "CPU only" + (" (the cells measured on a GPU: section *On the GPU* below)"
                          if len(cells) < len(all_cells) else "")
    lines = [
        "# Query speed",
        "",
        f"Measured {whens[0] if whens else '—'} to {whens[-1] if whens else '—'} on "
        f"{conditions(list(cells.values()))} {_recorded(list(cells.values()), 'torch', 'torch', True)}, {where}, with "
        f"`benchmarks/query_speed.py`{_by_cpu_note(list(cells.values()))}.",
        "",
        "Pool: synthetic clustered embeddings (m = 256, C = 65), 1% labelled, b as given (1% of N, at most 2,000, "
        "unless set), "
        "passed to `adakit.select` as arrays, only those the strategy reads (the references read the same "
        "arrays through `ArrayView`). "
        "*time*: wall-clock median of one `adakit.select` call, its input checks included; (×r) = median of r "
        "interleaved repetitions (calls under "
        "1 s; *×r alone*: the reference took a second or more, so after one interleaved round adakit's call was "
        "repeated alone), *noise* = median under 5 ms or max/min spread above 50%. *CPU*: process CPU time of "
        "the call, all threads. *peak*: rise of the peak resident set size during the first call. *ratio*: reference "
        "wall time / adakit wall time, same process, interleaved. *backend*: what adakit's defaults used. "
        "*peer code*: the released code of the methods' authors (LADA, CLUE, SDM) and scikit-activeml 1.0.1, timed "
        "interleaved with `adakit.select` in one process by `benchmarks/peer_code.py`, a separate run with its own "
        "adakit timings (section *Peer code* below): peer CPU time / adakit CPU time (wall-time ratio in "
        "brackets); — = no released peer code for this "
        "strategy; *not measured* = peer code exists but was not timed at this N / thread count.",
        "",
        "**2 threads, calls of tens of milliseconds**: such a call's time depends on what ran just before it in "
        "the process (likely the thread pools of scikit-learn, faiss and torch waking or still spinning; not "
        "traced). Checked 2026-12-03 on the idle machine of the previous table "
        "(`OMP_NUM_THREADS=2 python benchmarks/query_speed.py "
        "--interleaving-check las 2000`, four processes), LAS at N = 2,000, 2 threads, 15 calls each: adakit "
        "18.4–31.2 ms alone, 36.3–45.2 ms interleaved with its reference; the reference 48.0–55.7 ms alone, "
        "43.5–48.7 ms interleaved. At 1 thread the same check moves little (30.0–30.2 vs 30.1–31.1 ms). Read the "
        "2-thread ratios at N = 2,000 as good to a factor of about 2.",
        "",
        "Before the lazy / approximate paths (the previous table, 2 threads, under load, N = 200k, b = 2,000): "
        "CLUE did not finish in 600 s, BADGE 351 s, LAS 202 s, SAGE 174 s, CoreSet 56 s.",
        "",
        "| threads | N | b | strategy | backend | time | CPU | peak | load | reference | ref. time | ref. CPU "
        "| ratio | peer code |" + " measured on |" * by_cpu,
        "|---:|---:|---:|---|---|---:|---:|---:|---|---|---:|---:|---:|---|" + "---|" * by_cpu,
    ]
    threads = sorted({r["threads"] for r in cells.values()} | {1, 2})
    for t in threads:
        for n in SIZES:
            for name in names:
                r = cells.get((t, n, name))
                time_s, cpu_s, peak = _cell(r, "adakit")
                rt, rc, _ = _cell(r, "ref") if r else ("—", "—", "—")
                ref_name = REFERENCES[name][1] if name in REFERENCES else "—"
                ratio = "—"
                if r and r.get("ref") and r.get("adakit"):
                    ratio = f"{r['ref']['wall'] / max(r['adakit']['wall'], 1e-9):.1f}×"
                load = f"{r['load_start']:.1f}→{r['load_end']:.1f}" if r and "load_start" in r else "—"
                backend = r["backend"] if r else backend_of(name, n)
                peer = peer_column(peer_cells, t, n, name)
                bb = f"{r['b']:,}" if r and "b" in r else f"{max(1, n // 100):,}"
                lines.append(f"| {t} | {n:,} | {bb} | {name} | {backend} | {time_s} | {cpu_s} | {peak} | {load} | "
                             f"{ref_name if name in REFERENCES else '—'} | {rt} | {rc} | {ratio} | {peer} |"
                             + (f" {cpu_label(r) if r else '—'} |" if by_cpu else ""))
    lines += gpu_section([r for r in all_cells.values() if not on_cpu(r)], names)
    lines += peer_section(peer_cells)
    lines += ["", "## Agreement of the approximate paths with the exact ones", ""]
    if rec.get("agreement"):
        lines += [f"Measured {rec.get('agreement_when')} (`--agreement`), 1 thread, same synthetic pools; the "
                  "k-means rows also on real features (`real_features`: Office-31 MobileNetV2 features and MNIST "
                  "pixels from $ADAKIT_DATA).", "",
                  "| what | compared | agreement | note |", "|---|---|---|---|", *rec["agreement"]]
    else:
        lines.append("not measured")
    lines += ["", "On the ADA benchmark (Office-31, FT + las and FT + clue, 6 pairs, 3 seeds, the approximate paths "
              "forced on the small pools) the final accuracy with the approximate paths against the exact ones: "
              "`results/approx-ada.md` (made by `benchmarks/approx_ada.py`)."]
    MD_OUT.write_text("\n".join(lines) + "\n")


def interleaving_check(name: str, n: int, reps: int = 15) -> str:
    """Median wall time of adakit's call and of its reference, each timed alone (``reps`` calls in a row) and then
    interleaved (adakit, reference, ...), in this process: how much the interleaving itself moves a cell. Run it
    with OMP_NUM_THREADS set (the table header quotes 2 threads, N = 2,000, LAS)."""
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    pool = SyntheticPool(n)
    b, view = budget_of(n), pool.view()
    ref = REFERENCES[name][0]

    def ours():
        return pool.select(name, b, np.random.default_rng(SEED))

    def theirs():
        return ref(view, b, np.random.default_rng(SEED))

    ours(), theirs()  # warm-up
    alone = [_timed(ours)[0] for _ in range(reps)]
    ref_alone = [_timed(theirs)[0] for _ in range(reps)]
    inter, ref_inter = [], []
    for _ in range(reps):
        inter.append(_timed(ours)[0])
        ref_inter.append(_timed(theirs)[0])
    ms = [1e3 * float(np.median(x)) for x in (alone, inter, ref_alone, ref_inter)]
    return (f"{name}, N = {n:,}, {torch.get_num_threads()} thread(s), {reps} calls each: adakit {ms[0]:.1f} ms "
            f"alone, {ms[1]:.1f} ms interleaved; reference {ms[2]:.1f} ms alone, {ms[3]:.1f} ms interleaved")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 200000])
    ap.add_argument("--strategies", nargs="+", default=None)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per cell")
    ap.add_argument("--max-reps", type=int, default=25)
    ap.add_argument("--budget", type=int, default=None, help="fixed b instead of 1%% of the pool (e.g. 2000 at 1M)")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--device", default="cpu", help="where the pool arrays live and the strategies compute "
                                                    "(cpu, cuda, cuda:N, auto; checked before measuring: no such "
                                                    "device exits with status 2); references run only with cpu")
    ap.add_argument("--agreement", action="store_true", help="measure approximate vs exact paths")
    ap.add_argument("--render", action="store_true", help="only re-render the table from the JSON")
    ap.add_argument("--interleaving-check", nargs=2, metavar=("STRATEGY", "N"),
                    help="time one strategy and its reference alone and interleaved (see the table header)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.interleaving_check:
        print(interleaving_check(args.interleaving_check[0], int(args.interleaving_check[1])))
        return
    if args.child:
        name, n, with_ref, reps = args.child
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        print(json.dumps(child(name, int(n), bool(int(with_ref)), int(reps))))
        return

    from adakit.errors import ConfigError
    from adakit.registry import STRATEGIES

    if not (args.render or args.agreement):
        try:
            args.device = measuring_device(args.device)
        except ConfigError as e:
            ap.error(f"{e} (nothing measured or written)")
    names = args.strategies or STRATEGIES.names()
    every = STRATEGIES.names()  # the table always shows every strategy's recorded cells, not just this run's
    os.environ["QS_DEVICE"] = args.device
    if args.budget:
        os.environ["QS_BUDGET"] = str(args.budget)
    rec = load_records() or {"cells": {}}
    rec.setdefault("cells", {})
    if args.agreement:
        torch.set_num_threads(1)
        rec["agreement"] = agreement()
        rec["agreement_when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        save_records(rec)
    failed: list[str] = []
    if not args.render and not args.agreement:
        for threads in args.threads:
            for n in args.sizes:
                for name in names:
                    with_ref = (name in REFERENCES and not args.no_reference and args.device == "cpu"
                                and n <= REF_MAX_N.get(name, 10**9)
                                and REFERENCES[name][2](n) < 0.4 * _mem_available())
                    r = run_cell(name, n, threads, args.timeout, with_ref, args.max_reps)
                    if "error" in r:
                        failed.append(f"threads={threads} N={n} {name}: {r['error']}")
                    if name in REFERENCES and not with_ref:
                        r["ref_note"] = "not run at this size (minutes per call or too much memory)"
                    kept = not record_cell(rec["cells"], r)
                    a = r.get("adakit") or {}
                    print(f"threads={threads} N={n} {name}: {a.get('wall', r.get('error'))} s | "
                          f"ref {(r.get('ref') or {}).get('wall', '—')}"
                          + (f" (not recorded: the good cell of {rec['cells'][_key(r)]['when']} is kept)"
                             if kept else ""), flush=True)
                    if not kept:
                        save_records(rec)
                        render(rec, every)
    render(rec, every)
    print(f"wrote {MD_OUT}")
    if failed:  # (a script such as gpu_check.sh must see it: the table alone says "failed" in a cell)
        print(f"{len(failed)} cell(s) failed or timed out:", *failed, sep="\n  ", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

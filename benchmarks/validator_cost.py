"""Validator cost and SND subsample agreement.

**Cost** (``--cost``): CPU time (time.process_time) and wall time (time.perf_counter) of one evaluation of each
registered validator, with one thread, on a synthetic pool built like `benchmarks/query_speed.py`'s 200k pool:
N = 200,000 clustered 256-d embeddings, C = 65 classes, probabilities from a linear head (p1 ≈ 0.4 on
average), float32 as a run passes them; a held-out source split of 2,000 samples (DEV, source accuracy) and a
queried batch of 2,000 (queried_acc, queried_acc_iw). Each validator is timed through ``Validator.score`` (what
a run pays in `compute_all`); calls under 1 s are repeated 5 times and the median is reported.
``--exact-snd`` also times SND with ``max_samples=None`` (minutes); without it the last exact-SND row is kept,
marked with its date and machine.

**Agreement** (``--agreement``): on a pool of N = 50,000 (exact SND affordable), the exact SND of 10 models and
its value on seeded subsamples of n rows, for two families of models: *heads*, 10 linear heads of varied quality
(centres plus noise of growing size, three confidence scales), and *checkpoints*, 10 checkpoints of one training
run of a linear head on shifted labelled source data. Reported: the mean |subsampled − exact| (raw, and after
adding log((N−1)/(n−1)), the expected shift of log Z), its spread over subsample seeds, and the Spearman and
Kendall correlations between the exact and subsampled scores across the 10 models, per seed. ``--agreement-real``:
the same on real data, the 10,000 MNIST test digits with 10 logistic regressions (needs $ADAKIT_DATA).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/validator_cost.py --cost [--exact-snd]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/validator_cost.py --agreement [--agreement-real]
    .venv/bin/python benchmarks/validator_cost.py --render

Raw results go to results/validator_cost.json (each mode replaces its own part) and are rendered to
results/validator_cost.md.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = Path(__file__).resolve().parent
JSON_OUT = HERE / "results" / "validator_cost.json"
MD_OUT = HERE / "results" / "validator_cost.md"
QUERY_SPEED_JSON = HERE / "results" / "query_speed.json"  # the LAS query the cost table is compared with
M_DIM, N_CLASSES, SEED = 256, 65, 0
SUB_SIZES = (5_000, 10_000, 20_000, 30_000)
REAL_SUB_SIZES = (1_000, 2_000, 5_000)
SUB_SEEDS = (0, 1, 2)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _env() -> dict:
    from adakit.provenance import cpu_info

    cpu = cpu_info()
    return {"date": _now(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "machine": f"{cpu['cpu']} ({cpu['cpu_capability']} kernels, {platform.machine()}), {os.cpu_count()} CPU "
                       "cores", "load_start": os.getloadavg()[0]}


def synthetic(n: int, n_source: int = 2000, scale: float = 0.25, centre_scale: float = 1.0,
              seed: int = SEED) -> dict[str, np.ndarray]:
    """query_speed.py's pool recipe: class centres ~ N(0, centre_scale²·I_m), x = centre[y] + N(0, I_m), a linear
    head (normalised centres × ``scale``) gives the probabilities; plus a held-out source split of the same law.
    centre_scale = 1 (query_speed's pool) separates the classes almost perfectly; 0.25 gives overlapping ones."""
    g = torch.Generator().manual_seed(seed)
    centres = centre_scale * torch.randn(N_CLASSES, M_DIM, generator=g)
    y = torch.randint(N_CLASSES, (n,), generator=g)
    x = centres[y] + torch.randn(n, M_DIM, generator=g)
    w = F.normalize(centres, dim=1) * scale
    ys = torch.randint(N_CLASSES, (n_source,), generator=g)
    xs = centres[ys] + torch.randn(n_source, M_DIM, generator=g)
    return {"embeddings": x.numpy(), "probs": torch.softmax(x @ w.T, 1).numpy(), "labels": y.numpy(),
            "source_embeddings": xs.numpy(), "source_probs": torch.softmax(xs @ w.T, 1).numpy(),
            "source_labels": ys.numpy(), "centres": centres.numpy()}


def _time(fn, repeat_below: float = 1.0, repeats: int = 5) -> tuple[float, float, int]:
    """(median wall s, median CPU s, calls) of fn(); repeated when one call takes under ``repeat_below`` s."""
    walls, cpus = [], []
    while True:
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        if walls[0] >= repeat_below or len(walls) >= repeats:
            return statistics.median(walls), statistics.median(cpus), len(walls)


def measure_cost(exact_snd: bool, previous: dict | None = None) -> dict:
    """Every validator's cost; exact SND too with ``exact_snd``, else the exact-SND row of ``previous`` (the last
    results) is kept, marked with the date and machine it was measured on."""
    from adakit.registry import VALIDATORS
    from adakit.validate import make_validator
    from adakit.validate.snd import soft_neighbourhood_density

    torch.set_num_threads(1)
    env = _env()
    d = synthetic(200_000)
    b = 2000
    inputs = {"probs": d["probs"], "embeddings": d["embeddings"], "source_probs": d["source_probs"],
              "source_labels": d["source_labels"], "source_embeddings": d["source_embeddings"],
              "queried_probs": d["probs"][:b], "queried_labels": d["labels"][:b],
              "queried_inclusion": np.full(b, b / len(d["probs"]))}
    rows = []
    for name in VALIDATORS.names():
        v = make_validator(name)
        load0 = os.getloadavg()[0]
        wall, cpu, calls = _time(lambda v=v: v.score(**inputs))
        rows.append({"validator": name, "params": v.params.model_dump(), "wall": wall, "cpu": cpu, "calls": calls,
                     "load": [load0, os.getloadavg()[0]], "score": v.score(**inputs) if cpu < 30 else None})
        print(rows[-1], flush=True)
    if exact_snd:
        load0 = os.getloadavg()[0]
        box = []
        wall, cpu, calls = _time(lambda: box.append(soft_neighbourhood_density(d["probs"], max_samples=None)))
        rows.append({"validator": "snd", "params": {"max_samples": None}, "wall": wall, "cpu": cpu, "calls": calls,
                     "load": [load0, os.getloadavg()[0]], "score": box[0]})
        print(rows[-1], flush=True)
    else:
        when = f"{previous['date']} on {previous['machine']}" if previous else ""
        rows += [{**r, "measured": r.get("measured", when)} for r in (previous or {}).get("rows", ())
                 if r["validator"] == "snd" and r["params"].get("max_samples", 0) is None]
    return {**env, "load_end": os.getloadavg()[0], "n": 200_000, "rows": rows}


def heads(d: dict, n_models: int = 10) -> tuple[list[np.ndarray], list[float]]:
    """10 linear heads of varied quality: normalised (ĉ + σ·u), ĉ the unit centres, u ~ N(0, I/m), σ from 0.2 to
    1.5, times a logit scale cycling through 1, 2, 4 (confidence)."""
    g = torch.Generator().manual_seed(1)
    x, c = torch.from_numpy(d["embeddings"]), F.normalize(torch.from_numpy(d["centres"]), dim=1)
    probs, acc = [], []
    for k, sigma in enumerate(np.linspace(0.2, 1.5, n_models)):
        u = torch.randn(c.shape, generator=g) / math.sqrt(M_DIM)
        w = F.normalize(c + float(sigma) * u, dim=1) * (1.0, 2.0, 4.0)[k % 3]
        p = torch.softmax(x @ w.T, 1)
        probs.append(p.numpy())
        acc.append(float((p.argmax(1).numpy() == d["labels"]).mean()))
    return probs, acc


def checkpoints(d: dict, n_models: int = 10) -> tuple[list[np.ndarray], list[float]]:
    """10 checkpoints (every 20 Adam steps after 60 steps, lr 3e-3) of a linear head trained on 5,000 labelled
    source samples whose class centres are shifted from the target's (x_s = centre[y] + shift[y] + noise),
    evaluated on the target pool: close scores, the hard case for a ranking."""
    g = torch.Generator().manual_seed(2)
    c = torch.from_numpy(d["centres"])
    ys = torch.randint(N_CLASSES, (5000,), generator=g)
    shift = 0.6 * c.std() * torch.randn(c.shape, generator=g)
    xs = c[ys] + shift[ys] + torch.randn(5000, M_DIM, generator=g)
    head = torch.nn.Linear(M_DIM, N_CLASSES)
    torch.manual_seed(2)
    head.reset_parameters()
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    x = torch.from_numpy(d["embeddings"])
    probs, acc = [], []
    for k in range(n_models):
        for _ in range(60 if k == 0 else 20):
            opt.zero_grad()
            F.cross_entropy(head(xs), ys).backward()
            opt.step()
        with torch.no_grad():
            p = torch.softmax(head(x), 1)
        probs.append(p.numpy())
        acc.append(float((p.argmax(1).numpy() == d["labels"]).mean()))
    return probs, acc


def mnist_models(n_models: int = 10) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    """Real data: the 10,000 MNIST test digits (``$ADAKIT_DATA/digits``) as the pool, and 10 logistic regressions
    trained on 20 to 2,560 labelled pool digits (C = 1; two more with C = 0.01, less confident)."""
    from sklearn.linear_model import LogisticRegression

    from adakit.data.digits import load_digits

    root = Path(os.environ.get("ADAKIT_DATA", HERE.parent.parent / "shared" / "data")) / "digits"
    dom = load_digits(root, "mnist")  # uint8 (10,000, 1, 28, 28) and the labels
    x = dom.x.reshape(len(dom.x), -1).numpy() / 255.0
    y = np.asarray(dom.y)
    rng = np.random.default_rng(3)
    settings = [(k, 1.0) for k in (20, 40, 80, 160, 320, 640, 1280, 2560)] + [(160, 0.01), (1280, 0.01)]
    probs, acc = [], []
    for k, c in settings[:n_models]:
        idx = rng.choice(len(x), k, replace=False)
        while len(np.unique(y[idx])) < 10:  # every class labelled at least once
            idx = rng.choice(len(x), k, replace=False)
        clf = LogisticRegression(C=c, max_iter=300).fit(x[idx], y[idx])
        p = clf.predict_proba(x)
        probs.append(p)
        acc.append(float((p.argmax(1) == y).mean()))
    return x, probs, acc


def measure_agreement(n: int = 50_000, real: bool = False) -> dict:
    from adakit.validate.snd import soft_neighbourhood_density

    torch.set_num_threads(1)
    env = _env()
    if real:
        _, mnist_probs, mnist_acc = mnist_models()
        n, sizes, families = len(mnist_probs[0]), REAL_SUB_SIZES, {"mnist": lambda _: (mnist_probs, mnist_acc)}
        d = None
    else:
        d, sizes, families = synthetic(n, centre_scale=0.25), SUB_SIZES, {"heads": heads, "checkpoints": checkpoints}
    out = {**env, "n": n, "sizes": list(sizes), "families": {},
           "rescaled": True}  # subsampled values include + log((N−1)/(n−1))
    for fam, make in families.items():
        probs, acc = make(d)
        rec = {"accuracy": acc, "exact": [], "exact_cpu": [], "sub": {}}
        for p in probs:
            c0 = time.process_time()
            rec["exact"].append(soft_neighbourhood_density(p, max_samples=None))
            rec["exact_cpu"].append(time.process_time() - c0)
        print(fam, "exact", rec["exact"], flush=True)
        for m in sizes:
            for s in SUB_SEEDS:
                vals, cpus = [], []
                for p in probs:
                    c0 = time.process_time()
                    vals.append(soft_neighbourhood_density(p, max_samples=m, seed=s))
                    cpus.append(time.process_time() - c0)
                rec["sub"][f"{m}/{s}"] = {"values": vals, "cpu": cpus}
            print(fam, m, flush=True)
        out["families"][fam] = rec
    out["load_end"] = os.getloadavg()[0]
    return out


def _fmt_s(x: float) -> str:
    if x < 0.001:
        return "< 1 ms"
    return f"{x * 1000:.0f} ms" if x < 1 else f"{x:.2f} s" if x < 10 else f"{x:.1f} s"


def _las_query_cost(path: Path = QUERY_SPEED_JSON) -> str:
    """The sentence comparing with one LAS query at N = 200,000, 1 thread, on the CPU, from the query-speed records
    (empty when they hold no such cell)."""
    cells = json.loads(path.read_text()).get("cells", []) if path.exists() else []
    las = [r for r in cells if r.get("adakit")
           and (r["strategy"], r["n"], r["threads"], r.get("device", "cpu")) == ("las", 200_000, 1, "cpu")]
    if not las:
        return ""
    return (" One LAS query on the same pool (`benchmarks/results/query_speed.md`, 1 thread, measured "
            f"{las[0]['when']}) costs {las[0]['adakit']['cpu']:.2f} s of CPU time.")


def render(res: dict) -> str:
    lines = ["# Validator cost and SND subsample agreement", "",
             "Made with `benchmarks/validator_cost.py` (its docstring says how each number is measured). The "
             "machine was shared with other jobs: wall times are inflated by the load, CPU times much less.", "",
             "`snd` scores pools of more than `max_samples` = 30,000 rows (its default) on a seeded uniform subsample "
             "of that many rows, the same rows for every checkpoint, plus log((N−1)/(n−1)) to stay on the pool's "
             "scale; the agreement sections below measure what that costs in accuracy and in ranking.", ""]
    cost = res.get("cost")
    if cost:
        lines += ["## Cost of one evaluation (N = 200,000 × C = 65, 256-d embeddings, 2k held-out source, "
                  "queried batch of 2,000)", "",
                  f"Measured {cost['date']} on {cost['machine']}, torch {cost['torch']}, {cost['threads']} thread, "
                  f"1-minute load average {cost['load_start']:.2f} → {cost['load_end']:.2f}. Median of 5 calls "
                  "for calls under 1 s.", "",
                  "| validator | parameters | CPU | wall | load | score |", "|---|---|---:|---:|---|---:|"]
        for r in cost["rows"]:
            params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "—"
            score = "—" if r.get("score") is None else f"{r['score']:.4f}"
            when = f" (measured {r['measured']})" if "measured" in r else ""
            lines.append(f"| `{r['validator']}`{when} | {params} | {_fmt_s(r['cpu'])} | {_fmt_s(r['wall'])} "
                         f"| {r['load'][0]:.1f}→{r['load'][1]:.1f} | {score} |")
        lines += ["", "*score*: the validator's value on this pool, for reference only (its classes are almost "
                  "perfectly separable, so the accuracies are 1.0)." + _las_query_cost()]
        snd = [r for r in cost["rows"] if r["validator"] == "snd" and r.get("score") is not None]
        sub = [r for r in snd if r["params"].get("max_samples")]
        exact = [r for r in snd if not r["params"].get("max_samples")]
        if sub and exact:
            a, b = sub[0], exact[0]
            lines += ["", f"SND on this pool: {a['score']:.4f} with the default subsample of "
                      f"{a['params']['max_samples']:,} rows, {b['score']:.4f} exact (difference "
                      f"{a['score'] - b['score']:+.4f}); CPU time {a['cpu']:.1f} s against {b['cpu']:.0f} s."]
        lines.append("")
    for key, what in (("agreement", "synthetic pool"), ("agreement_real", "MNIST test digits")):
        if res.get(key):
            lines += _render_agreement(res[key], what)
    return "\n".join(lines)


def _render_agreement(agr: dict, what: str) -> list[str]:
    from scipy.stats import kendalltau, spearmanr

    lines = []
    if agr:
        n = agr["n"]
        lines += [f"## SND: subsample against exact ({what}, N = {n:,})", "",
                  f"Measured {agr['date']} on {agr['machine']}, torch {agr['torch']}, {agr['threads']} thread, "
                  f"1-minute load average {agr['load_start']:.2f} → {agr['load_end']:.2f}. Seeds "
                  f"{', '.join(map(str, SUB_SEEDS))} of the subsample; each seed picks the same rows for all 10 "
                  "models. *|err| raw*: mean over models and seeds of |subsampled − exact| without rescaling; "
                  "*|err| corr.*: the same after adding log((N−1)/(n−1)), what `snd` returns; *seed sd*: mean "
                  "over models of the standard deviation "
                  "over seeds; *ρ*, *τ*: Spearman and Kendall correlation of the subsampled with the exact "
                  "scores across the 10 models (min and mean over seeds); *pick*: seeds whose best model is "
                  "the exact score's best.", ""]
        for fam, rec in agr["families"].items():
            ex = np.array(rec["exact"])
            gaps = np.diff(np.sort(ex))
            lines += [f"### {fam}", "",
                      f"Accuracy of the 10 models: {min(rec['accuracy']):.3f}–{max(rec['accuracy']):.3f}. Exact "
                      f"SND: {ex.min():.4f}–{ex.max():.4f}, smallest gap between two models {gaps.min():.4f}; "
                      f"exact cost {statistics.median(rec['exact_cpu']):.1f} s CPU per model (median). Spearman "
                      f"of exact SND with accuracy: {spearmanr(ex, rec['accuracy'])[0]:+.2f}.", "",
                      "| n | CPU / model | \\|err\\| raw | \\|err\\| corr. | seed sd | ρ min / mean | τ min / mean "
                      "| pick |", "|---:|---:|---:|---:|---:|---|---|---:|"]
            for m in agr.get("sizes", SUB_SIZES):
                subs = [rec["sub"].get(f"{m}/{s}") for s in SUB_SEEDS]
                if not all(subs):
                    continue
                vals = np.array([s["values"] for s in subs])  # seeds × models
                corr = math.log((n - 1) / (m - 1))
                if agr.get("rescaled"):  # stored values include the rescaling: back to the subsample's own scale
                    vals = vals - corr
                rho = [spearmanr(ex, v)[0] for v in vals]
                tau = [kendalltau(ex, v)[0] for v in vals]
                picks = sum(int(np.argmax(v) == np.argmax(ex)) for v in vals)
                cpu = statistics.median(c for s in subs for c in s["cpu"])
                lines.append(f"| {m:,} | {_fmt_s(cpu)} | {np.abs(vals - ex).mean():.4f} | "
                             f"{np.abs(vals + corr - ex).mean():.4f} | {vals.std(0, ddof=1).mean():.4f} | "
                             f"{min(rho):.3f} / {np.mean(rho):.3f} | {min(tau):.3f} / {np.mean(tau):.3f} | "
                             f"{picks}/{len(vals)} |")
            lines.append("")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cost", action="store_true")
    ap.add_argument("--exact-snd", action="store_true", help="with --cost: also time exact SND (minutes)")
    ap.add_argument("--agreement", action="store_true")
    ap.add_argument("--agreement-real", action="store_true", help="the same on the MNIST test digits (N = 10k)")
    ap.add_argument("--render", action="store_true")
    args = ap.parse_args()
    res = json.loads(JSON_OUT.read_text()) if JSON_OUT.exists() else {}
    if args.cost:
        res["cost"] = measure_cost(args.exact_snd, res.get("cost"))
    if args.agreement:
        res["agreement"] = measure_agreement()
    if args.agreement_real:
        res["agreement_real"] = measure_agreement(real=True)
    if args.cost or args.agreement or args.agreement_real:
        JSON_OUT.write_text(json.dumps(res, indent=1))
    MD_OUT.write_text(render(res) + "\n")
    print(MD_OUT.read_text())


if __name__ == "__main__":
    main()

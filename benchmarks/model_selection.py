"""Benchmark of the validators: how well does each one pick a setting and a checkpoint without
target labels?

For every method, domain pair and seed it runs an ``adakit sweep`` (learning rate × the method's main trade-off
weight, 3 × 3, each run recording every validator at 3 checkpoints), then scores every validator by

- **regret**: oracle accuracy of the oracle-best (setting, checkpoint) minus that of the validator's pick (when
  several checkpoints tie for the highest score, the mean accuracy of the tied ones: the expected pick);
- **pick − default**: the pick's oracle accuracy minus the config default's (its own values, last checkpoint);
- **Spearman ρ** between the validator and oracle accuracy over all (setting, checkpoint) pairs.

Target labels are read only to score the picks, never to make them. Usage::

    export OMP_NUM_THREADS=1 ADAKIT_DATA=/path/to/data
    python benchmarks/model_selection.py run --out runs/model-selection --method DANN --pair amazon-webcam
    python benchmarks/model_selection.py table runs/model-selection --json scores.json

``run`` is resumable (finished runs are skipped); split the grid over processes with ``--pair``/``--method``.
``table`` reads run folders and/or JSON files of per-sweep scores (its own ``--json`` output), so sweeps run at
different times or on different machines combine without their run folders.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from adakit.registry import register_validator
from adakit.validate.dev import DeepEmbeddedValidation, dev_risk

ROOT = Path(__file__).resolve().parent.parent
OFFICE31 = ROOT / "configs" / "office31-features.yaml"
DIGITS = ROOT / "configs" / "digits-mnist-usps.yaml"
PAIRS = ["amazon-webcam", "amazon-dslr", "webcam-amazon", "webcam-dslr", "dslr-amazon", "dslr-webcam"]
LRS = "train.lr=0.003,0.01,0.03"
#: method -> (overrides, the trade-off grid); the learning-rate grid is LRS for all
METHODS: dict[str, tuple[list[str], str]] = {
    "DANN": (["objective.name=dann"], "objective.trade_off=0.3,1,3"),
    "CDAN+E": (["objective.name=cdan_e"], "objective.trade_off=0.3,1,3"),
    "MME": (["objective.name=mme"], "objective.entropy_weight=0.03,0.1,0.3"),
    "BIWAA": (["objective.name=biwaa"], "objective.trade_off=0.3,1,3"),
    "GSDA": (["objective.name=gsda"], "objective.grl_max=0.3,1,3"),
}
#: the MLP width these tables were measured with (the default is 1024 since 2026-12-02)
MLP_WIDTH = "model.hidden_dim=512"
#: every UDA run: warm-up only, 3 checkpoints (steps 333, 667, 1000), a 10% held-out source split for
#: source_acc and DEV, one thread
UDA_SET = ["budget.rounds=0", "train.eval_checkpoints=2", "data.source_val=0.1", "train.threads=1", MLP_WIDTH]
#: ADA pipelines: learning rate × the pipeline's main knob, the config's budget (5% in 5 rounds).
#: A setting is judged by its last round, the model a user keeps: pool validators (BNM, IM, ...) on that round's
#: model, queried-batch validators (the labels a user has bought) as their mean over rounds
ADA_METHODS: dict[str, tuple[list[str], str]] = {
    "FT + margin": (["query.strategy=margin"], "train.round_iters=125,250,500"),
    "LAS + LAA": (["query.strategy=las", "query.k=5", "anchor.kind=laa", "anchor.k=5"], "anchor.tau=0.8,0.9,0.95"),
    "TSF + SAGE": (["objective.name=tsf", "query.strategy=sage"], "objective.trade_off=0.3,1,3"),
}
ADA_SET = ["data.source_val=0.1", "train.threads=1", MLP_WIDTH]
SELECT = "source_acc"  # the sweep's own pick is not used here: every validator is scored from sweep.csv
NOT_VALIDATORS = {"setting", "checkpoint", "labels", "accuracy_oracle", "marks", "run_dir"}


class InSampleDEV(DeepEmbeddedValidation):
    """DEV as adakit computed it until 2026-12-05, recorded beside `dev` in the sweeps run since, to compare the
    two on the same candidates: the logistic-regression domain classifier (C = 1, fixed) fitted on the very
    held-out source samples it weights (in-sample weights, far below 1 on small splits without any shift)."""

    def score(self, *, source_probs, source_labels, source_embeddings, embeddings, **_) -> float:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        p = np.asarray(source_probs, dtype=np.float64)
        loss = -np.log(np.clip(p[np.arange(len(p)), np.asarray(source_labels, dtype=np.int64)], 1e-12, None))
        xs, xt = np.asarray(source_embeddings, dtype=np.float64), np.asarray(embeddings, dtype=np.float64)
        if len(xt) > self.params.max_target:
            xt = xt[np.random.default_rng(0).choice(len(xt), self.params.max_target, replace=False)]
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
        clf.fit(np.concatenate([xs, xt]), np.r_[np.zeros(len(xs)), np.ones(len(xt))])
        pt = np.clip(clf.predict_proba(xs)[:, 1], 1e-6, 1 - 1e-6)
        return -dev_risk(pt / (1 - pt) * len(xs) / len(xt), loss)


def register_dev_insample() -> None:
    """Register `InSampleDEV` as ``dev_insample``, so the sweeps `run` starts record it. Not at import: a
    registered validator is scored by every run of the process (the test suite imports this file)."""
    register_validator("dev_insample")(InSampleDEV)


def run(out: Path, methods: list[str], pairs: list[str], seeds: list[int], digits: bool) -> None:
    from adakit.sweep import run_sweep

    register_dev_insample()
    for method in methods:
        overrides, trade_off = {**METHODS, **ADA_METHODS}[method]
        for pair in pairs:
            src, tgt = pair.split("-")
            config = DIGITS if digits else OFFICE31
            for seed in seeds:
                folder = out / method / pair / f"seed-{seed}"
                if (folder / "sweep.csv").is_file():
                    continue
                t0 = time.perf_counter()
                extra = [*(ADA_SET if method in ADA_METHODS else UDA_SET), *overrides, f"seed={seed}"]
                if not digits:
                    extra += [f"data.source={src}", f"data.target={tgt}"]
                run_sweep(config, [LRS, trade_off], SELECT, folder, extra)
                print(f"{method} {pair} seed {seed}: {time.perf_counter() - t0:.0f} s", flush=True)


def _ada_rows(rows: list[dict]) -> list[dict]:
    """One row per setting of an active sweep: its last round's accuracy and pool validators, and the mean over
    rounds of each queried-batch validator (the sweep credits round r's queried batch to round r − 1's model)."""
    from adakit.registry import VALIDATORS

    out = []
    for setting in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == setting]
        last = max(mine, key=lambda r: int(r["labels"]))
        row = dict(last, marks=";".join(m for r in mine for m in r["marks"].split(";") if m))
        names = VALIDATORS.names()  # (a column of no registered validator, dev_insample: a pool validator)
        for v in (k for k in rows[0] if k not in NOT_VALIDATORS and k in names and VALIDATORS.get(k).previous_round):
            xs = [float(r[v]) for r in mine if r[v] != ""]
            row[v] = str(statistics.fmean(xs)) if xs else ""
        out.append(row)
    return out


def score(csv_path: Path) -> dict[str, dict[str, float]]:
    """Per validator: regret, pick − default and Spearman ρ of one sweep (accuracy in points). A UDA sweep's
    candidates are its (setting, checkpoint) pairs; an active sweep's are its settings (see `_ada_rows`)."""
    return score_rows(list(csv.DictReader(csv_path.open())))


def score_rows(rows: list[dict]) -> dict[str, dict[str, float]]:
    """`score` of a sweep's rows (sweep.csv as dicts of strings; other validator columns may be added)."""
    if any(int(r["labels"]) > 0 for r in rows):
        rows = _ada_rows(rows)
    validators = [k for k in rows[0] if k not in NOT_VALIDATORS]
    acc = np.array([float(r["accuracy_oracle"]) for r in rows]) * 100
    default = next(float(r["accuracy_oracle"]) * 100 for r in rows if "default" in r["marks"].split(";"))
    out = {}
    for v in validators:
        vals = np.array([float(r[v]) if r[v] != "" else np.nan for r in rows])
        ok = np.isfinite(vals)
        if ok.sum() < 3:
            continue
        top = ok & (vals == vals[ok].max())  # ties (e.g. source_acc on a small held-out split): their mean
        picked = float(acc[top].mean())
        rho = spearmanr(vals[ok], acc[ok]).statistic
        out[v] = {"regret": float(acc.max() - picked), "vs_default": float(picked - default),
                  "spearman": float(rho) if math.isfinite(rho) else 0.0}
    out["(oracle best)"] = {"regret": 0.0, "vs_default": float(acc.max() - default), "spearman": 1.0}
    out["(config default)"] = {"regret": float(acc.max() - default), "vs_default": 0.0, "spearman": math.nan}
    out["(random pick, expected)"] = {"regret": float(acc.max() - acc.mean()),
                                      "vs_default": float(acc.mean() - default), "spearman": math.nan}
    return out


def _ms(xs: list[float], pct: bool = True) -> str:
    xs = [x for x in xs if math.isfinite(x)]
    if not xs:
        return "–"
    m, s = statistics.fmean(xs), statistics.pstdev(xs)
    return f"{m:.1f} ± {s:.1f}" if pct else f"{m:.2f} ± {s:.2f}"


HEAD = ["| validator | regret (points) | pick − default (points) | Spearman ρ |", "|---|---:|---:|---:|"]


def _map_metrics(scores: dict, f) -> dict:
    """``scores`` (sweep -> validator -> metric -> value) with ``f`` applied to every value."""
    return {k: {v: {m: f(x) for m, x in ms.items()} for v, ms in sw.items()} for k, sw in scores.items()}


def load_scores(sources: list[Path]) -> dict[str, dict[str, dict[str, float]]]:
    """Per-sweep scores keyed ``method/pair/seed-k``, from run folders (their ``*/*/seed-*/sweep.csv``) or from
    JSON files written by ``table --json``; a later source wins for the same sweep."""
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for src in sources:
        if src.suffix == ".json":  # JSON has no NaN: written as null
            scores.update(_map_metrics(json.loads(src.read_text()), lambda x: math.nan if x is None else x))
            continue
        for p in sorted(src.glob("*/*/seed-*/sweep.csv")):
            scores["/".join(p.parts[-4:-1])] = score(p)
    return scores


def table(sources: Path | list[Path], md: Path | None, methods: list[str] | None = None,
          over_seeds: bool = False, json_out: Path | None = None) -> str:
    """One table per method, one per group (UDA objectives, active pipelines) when both are present, and one over
    all methods: each validator's mean ± std over pairs of the per-pair mean over seeds (``over_seeds``: mean ± std
    over the sweeps, each seed of each pair counted once: for a single pair, the spread over seeds). ``sources``:
    run folders and/or JSON files of per-sweep scores (see `load_scores`); ``json_out`` saves the scores used."""
    scores = load_scores([sources] if isinstance(sources, Path) else sources)
    if methods:
        scores = {k: v for k, v in scores.items() if k.split("/")[0] in methods}
    if json_out:
        clean = _map_metrics(dict(sorted(scores.items())), lambda x: None if math.isnan(x) else x)
        json_out.write_text(json.dumps(clean, indent=1) + "\n")
    per: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}  # method -> pair -> validator -> metric
    for key, sweep in sorted(scores.items()):
        method, pair, seed = key.split("/")
        pair = f"{pair}/{seed}" if over_seeds else pair
        for v, m in sweep.items():
            d = per.setdefault(method, {}).setdefault(pair, {}).setdefault(v, {})
            for k, x in m.items():
                d.setdefault(k, []).append(x)
    lines: list[str] = []
    overall: dict[str, dict[str, dict[str, list[float]]]] = {}  # group -> validator -> metric -> pair means
    for method, pairs in sorted(per.items()):
        group = "Active pipelines" if method in ADA_METHODS else "UDA objectives"
        n_seeds = sorted({len(d["regret"]) for vs in pairs.values() for d in vs.values()})
        count = f"{len(pairs)} sweep(s)" if over_seeds else \
            f"{len(pairs)} pair(s), seeds per pair: {'/'.join(map(str, n_seeds))}"
        lines += [f"### {method} ({count})", "", *HEAD]
        validators = sorted({v for vs in pairs.values() for v in vs}, key=lambda v: (v.startswith("("), v))
        for v in validators:
            pair_means = {k: [statistics.fmean(vs[v][k]) for vs in pairs.values() if v in vs]
                          for k in ("regret", "vs_default", "spearman")}
            for g in (group, "All methods"):
                for k, xs in pair_means.items():
                    overall.setdefault(g, {}).setdefault(v, {}).setdefault(k, []).extend(xs)
            lines.append(f"| `{v}` | {_ms(pair_means['regret'])} | {_ms(pair_means['vs_default'])} | "
                         f"{_ms(pair_means['spearman'], False)} |")
        lines.append("")
    groups = [g for g in ("UDA objectives", "Active pipelines") if g in overall]
    summaries = [*groups, "All methods"] if len(groups) > 1 else ["All methods"] * bool(overall)
    for g in summaries:
        lines += [f"### {g} (mean ± std over every method × {'sweep' if over_seeds else 'pair'})", "", *HEAD]
        for v in sorted(overall[g], key=lambda v: (v.startswith("("), statistics.fmean(overall[g][v]["regret"]))):
            o = overall[g][v]
            lines.append(f"| `{v}` | {_ms(o['regret'])} | {_ms(o['vs_default'])} | {_ms(o['spearman'], False)} |")
        lines.append("")
    text = "\n".join(lines).rstrip("\n") + "\n"
    if md:
        md.write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--method", action="append", choices=[*METHODS, *ADA_METHODS])
    r.add_argument("--pair", action="append", choices=PAIRS)
    r.add_argument("--seed", action="append", type=int)
    r.add_argument("--digits", action="store_true", help="MNIST->USPS with LeNet instead of Office-31 features")
    t = sub.add_parser("table")
    t.add_argument("sources", type=Path, nargs="+",
                   help="run folders (method/pair/seed-k/sweep.csv) and/or JSON files of scores (--json)")
    t.add_argument("--md", type=Path)
    t.add_argument("--json", type=Path, help="write the per-sweep scores used (method/pair/seed-k -> validator)")
    t.add_argument("--method", action="append", help="only these methods (default: every method found)")
    t.add_argument("--over-seeds", action="store_true", help="spread over every sweep (seed), not over pairs")
    a = ap.parse_args()
    if a.cmd == "run":
        pairs = ["mnist-usps"] if a.digits else (a.pair or PAIRS)
        run(a.out, a.method or list(METHODS), pairs, a.seed or [0, 1], a.digits)
    else:
        print(table(a.sources, a.md, a.method, a.over_seeds, a.json))


if __name__ == "__main__":
    main()

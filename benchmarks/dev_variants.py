"""DEV's importance weights three ways, on the candidates of the model-selection sweeps (UDA objectives).

- ``dev``: adakit's DEV (the domain classifier cross-fitted on the held-out source split, C by out-of-fold
  log-loss), as each run recorded it;
- ``dev_insample``: adakit's DEV before 2026-12-05 (one classifier, C = 1, fitted on the very held-out samples it
  weights), as `benchmarks/model_selection.py run` recorded it beside ``dev``;
- ``dev_train``: the paper's recipe (You et al. 2019, Algorithm 1 and its released code): the domain classifier is
  fitted on the features of the *training* source against the target's (at most as many source samples as twice
  the target's, as the released code subsamples), its regularisation chosen on a held-out 20% of those features
  (by log-loss here, by accuracy there; a logistic regression here, an MLP there), and the weights are computed
  for the held-out validation samples, which it never saw. It needs a pass over the training source, which a
  run does not record, so this script recomputes every candidate's features from its saved checkpoint.

For every sweep folder of a ``model_selection.py`` run folder (``METHOD/PAIR/seed-K/sweep.csv``, UDA sweeps
only) it loads each (setting, checkpoint) candidate with `adakit.load_run`, recomputes ``dev`` (a check that the
features match what the run saw: the difference is printed) and ``dev_train``, and scores the three like
``model_selection.py table`` (regret, pick − default, Spearman ρ; mean ± std over pairs of the mean over seeds)::

    OMP_NUM_THREADS=1 ADAKIT_DATA=/path/to/data python benchmarks/dev_variants.py runs/model-selection \\
        --method DANN --json dev-variants.json
    python benchmarks/dev_variants.py dev-variants.json --md   # the tables again, from the saved scores
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_selection import HEAD, METHODS, _ms, score_rows  # noqa: E402

VARIANTS = ("dev", "dev_insample", "dev_train")
ROWS = (*VARIANTS, "(config default)", "(oracle best)", "(random pick, expected)")


def train_source_ratio(train_embeddings: np.ndarray, embeddings: np.ndarray, val_embeddings: np.ndarray,
                       Cs=None, seed: int = 0) -> np.ndarray:
    """The paper's weights: a logistic-regression domain classifier (standardised features) fitted on 80% of the
    training source (at most twice as many as the target, subsampled) and target features, C from ``Cs`` by
    log-loss on the other 20%; w = p(target|x)/p(source|x)·ns/nt on the validation features (ns, nt: the samples
    it was fitted on), p clipped to [1e-6, 1 − 1e-6]."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    from adakit.validate.dev import DEFAULT_CS

    rng = np.random.default_rng(seed)
    xs, xt = np.asarray(train_embeddings, np.float64), np.asarray(embeddings, np.float64)
    if len(xs) > 2 * len(xt):  # the released code's random_select_src
        xs = xs[rng.choice(len(xs), 2 * len(xt), replace=False)]
    x, y = np.concatenate([xs, xt]), np.r_[np.zeros(len(xs)), np.ones(len(xt))]
    fit_x, held_x, fit_y, held_y = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    scaler = StandardScaler().fit(fit_x)
    fitted = [LogisticRegression(C=c, max_iter=1000).fit(scaler.transform(fit_x), fit_y) for c in Cs or DEFAULT_CS]
    losses = [log_loss(held_y, m.predict_proba(scaler.transform(held_x))[:, 1], labels=[0, 1]) for m in fitted]
    best = fitted[int(np.argmin(losses))]
    pt = np.clip(best.predict_proba(scaler.transform(np.asarray(val_embeddings, np.float64)))[:, 1], 1e-6, 1 - 1e-6)
    return pt / (1 - pt) * (fit_y == 0).sum() / (fit_y == 1).sum()


def uda_sweeps(folder: Path, methods: list[str] | None = None) -> list[Path]:
    """The ``sweep.csv`` of every UDA sweep (`model_selection.METHODS`) of a ``model_selection.py`` run folder, of
    ``methods`` only when given. An active pipeline's sweep is left out: its settings are judged at their last round,
    and the warm-up candidates (labels 0) compared here carry none of its marks."""
    unknown = [m for m in methods or [] if m not in METHODS]
    if unknown:
        raise SystemExit(f"--method {unknown[0]}: not a UDA method of model_selection.py ({', '.join(METHODS)})")
    return [p for p in sorted(Path(folder).glob("*/*/seed-*/sweep.csv"))
            if p.parts[-4] in METHODS and (not methods or p.parts[-4] in methods)]


def rescore(csv_path: Path) -> tuple[list[dict], float]:
    """The sweep's rows with ``dev`` recomputed (``dev_check``) and ``dev_train`` added; the largest |recomputed −
    recorded dev|."""
    import adakit
    from adakit.data import load_domains
    from adakit.rundir import stored_experiment
    from adakit.validate import validate
    from adakit.validate._run import split_source_val
    from adakit.validate.dev import dev_risk

    rows = [r for r in csv.DictReader(csv_path.open()) if int(r["labels"]) == 0]
    if not rows:  # (a sweep not yet tabulated)
        return [], 0.0
    cfg = stored_experiment(rows[0]["run_dir"])
    domains, val = split_source_val(load_domains(cfg.data, cfg.seed), cfg.data.source_val, cfg.seed)
    xs_train = domains.source.load(np.arange(len(domains.source))).numpy()
    xv, yv = val.load(np.arange(len(val))).numpy(), val.y
    xt = domains.pool.load(np.arange(len(domains.pool))).numpy()
    worst = 0.0
    for r in rows:
        model = adakit.load_run(r["run_dir"], checkpoint=r["checkpoint"])
        f_train, f_val, f_t = model.embed(xs_train), model.embed(xv), model.embed(xt)
        p_val = model.predict_proba(xv)
        again = validate("dev", source_probs=p_val, source_labels=yv, source_embeddings=f_val, embeddings=f_t)
        if r["dev"] != "":
            worst = max(worst, abs(again - float(r["dev"])))
        loss = -np.log(np.clip(p_val[np.arange(len(yv)), yv], 1e-12, None))
        r["dev_train"] = str(-dev_risk(train_source_ratio(f_train, f_t, f_val, seed=cfg.seed), loss))
    return rows, worst


def tables(scores: dict[str, dict]) -> str:
    """One table per method: each variant's mean ± std over pairs of the mean over seeds."""
    out = []
    for method in sorted({k.split("/")[0] for k in scores}):
        mine = {k: v for k, v in scores.items() if k.startswith(method + "/")}
        pairs = sorted({k.split("/")[1] for k in mine})
        out += [f"### {method} ({len(pairs)} pair(s), {len(mine)} sweep(s))", "", *HEAD]
        for v in ROWS:
            cells = []
            for metric, pct in (("regret", True), ("vs_default", True), ("spearman", False)):
                per_pair = [np.mean([s[v][metric] for k, s in mine.items() if k.split("/")[1] == p and v in s])
                            for p in pairs]
                cells.append(_ms([float(x) for x in per_pair], pct) if v[0] != "(" or metric != "spearman" else "–")
            out.append(f"| `{v}` | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path, help="a model_selection.py run folder, or the JSON this script wrote")
    ap.add_argument("--method", action="append", help="only these methods (default: every UDA method found)")
    ap.add_argument("--json", type=Path, help="write the per-sweep scores here")
    ap.add_argument("--md", action="store_true", help="print the tables only")
    a = ap.parse_args()
    if a.source.suffix == ".json":
        scores = json.loads(a.source.read_text())
    else:
        scores = {}
        for p in uda_sweeps(a.source, a.method):
            key = "/".join(p.parts[-4:-1])
            rows, worst = rescore(p)
            if not rows:
                continue
            scored = score_rows(rows)
            scores[key] = {v: scored[v] for v in ROWS if v in scored}
            print(f"{key}: {len(rows)} candidates, |dev recomputed − recorded| ≤ {worst:.2e}", flush=True)
        if a.json:
            a.json.write_text(json.dumps(scores, indent=1))
    print(tables(scores))


if __name__ == "__main__":
    main()

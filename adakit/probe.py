"""The linear-probe baseline: scikit-learn logistic regression retrained each round, with the same strategy.

For feature data (``runner: linear_probe`` in a config, e.g. one method of an ``adakit bench`` grid): round 0 fits
``LogisticRegression`` on the raw source features (``probe.standardize: true``: ``StandardScaler`` first;
``probe.c``: the regularisation C); each round the configured strategy picks from
the probe's pool probabilities (through `adakit.select`, seeded as the loop seeds it), the simulated oracle labels
the picks, and the probe is refitted from scratch on source + labelled target (one pooled training set, each sample
weight 1). Strategies see the probe's probabilities/log-probabilities as probs/logits, the (standardised) features
as embeddings and its (C, m) coefficients as a linear head; strategies that need an adaptation objective's
discriminator cannot run on a probe. The run folder gets config.yaml, metrics.jsonl (with the validators),
summary.json and report.md in the loop's format, so `adakit report` / `adakit bench` compare it with network runs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from adakit.config import ExperimentConfig
from adakit.data import Domains, load_domains
from adakit.errors import ConfigError, DataError
from adakit.provenance import environment
from adakit.rundir import write_atomically


def _fit(x: np.ndarray, y: np.ndarray, c: float, seed: int, standardize: bool, x_more: np.ndarray | None = None,
         y_more: np.ndarray | None = None):
    """The probe fitted on (x, y), plus (x_more, y_more) when given (the labelled target rows)."""
    if x_more is not None:
        x, y = np.concatenate([x, x_more]), np.concatenate([y, np.asarray(y_more)])
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    scale = StandardScaler() if standardize else FunctionTransformer()  # identity: raw features
    return make_pipeline(scale, LogisticRegression(C=c, max_iter=1000, random_state=seed)).fit(x, y)


def _probs(clf, x: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((len(x), n_classes))
    out[:, clf.classes_] = clf.predict_proba(x)  # a class absent from the training set gets probability 0
    return out


def probe_pool_probs(source, pool, labelled: np.ndarray, labels: np.ndarray, c: float = 1.0,
                     standardize: bool = False, seed: int = 0) -> np.ndarray:
    """Class probabilities (N, C) of every pool sample under the probe fitted on the source plus the labelled pool
    samples (``labelled``: pool indices, ``labels``: their classes); ``source``/``pool``: feature domains.

    What ``query.probs_from: probe`` ranks a network run's pool by ("selection via proxy", Coleman et al.,
    ICLR 2020): the network trains as usual, only the strategy's probabilities come from the probe.
    """
    xp = pool.x.numpy()
    clf = _fit(source.x.numpy(), np.asarray(source.y), c, seed, standardize, xp[labelled], labels)
    return _probs(clf, xp, pool.num_classes)


def stored_probe_config(run_dir: str | Path) -> dict | None:
    """The stored config of a linear-probe run folder (config.yaml with ``runner: linear_probe``, no ledger), else
    None."""
    from adakit.rundir import LEDGER_NAME

    path = Path(run_dir) / "config.yaml"
    if not path.is_file() or (Path(run_dir) / LEDGER_NAME).exists():
        return None
    try:
        stored = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return stored if isinstance(stored, dict) and stored.get("runner") == "linear_probe" else None


def run_probe(config: ExperimentConfig | dict | None, run_dir: str | Path, domains: Domains | None = None, *,
              flag: str = "run_dir", source: Any = None, target: Any = None, test: Any = None,
              classes: Any = None) -> dict:
    """Run the linear probe of ``config`` (``runner: linear_probe``; an `ExperimentConfig` or a dict of sections as
    `ActiveLoop` takes) into ``run_dir``; returns its summary (the loop's summary.json format). ``source``,
    ``target``, ``test``, ``classes``: your feature arrays, as `ActiveLoop` takes them, instead of the config's
    data (the probe reads labelled target rows from the target's own labels, as a simulated oracle).

    ``run_dir`` is checked as for a network run before any work: a new or empty folder, or a linear-probe run of
    the same config (a finished one is reported again, on arrays you pass only when they are the same data, compared
    by their fingerprint; an unfinished one, killed before its summary.json, runs again from the start: a probe
    takes seconds); a network
    run or a folder of other files is refused, never overwritten. ``flag`` names the folder in the messages. One
    process (scikit-learn): refused under torchrun.
    """
    from adakit import distributed
    from adakit.config import build_config
    from adakit.errors import AdakitError
    from adakit.loop import _as_config, _with_objects
    from adakit.rundir import check_out_dir, run_lock

    cfg = _as_config(config)
    given = any(x is not None for x in (source, target, test))
    prints = None
    if given:
        cfg, domains, objs = _with_objects(cfg, domains, source, target, test, classes, None, None, None, None)
        prints = objs.fingerprint
    run_dir = Path(run_dir)
    if cfg.runner != "linear_probe":
        raise ConfigError("run_probe: the config's runner is 'network'; set runner: linear_probe (a network run is "
                          "ActiveLoop's)")
    stored = stored_probe_config(run_dir)
    if stored is None and check_out_dir(run_dir, flag):
        raise ConfigError(f"{flag} {run_dir} holds a network run (ledger.sqlite); choose another folder for "
                          "runner=linear_probe")
    if distributed.launched():
        raise ConfigError("runner=linear_probe runs in one process (scikit-learn); start it without torchrun")
    if stored is not None:
        try:
            same = build_config(stored).to_dict() == cfg.to_dict()
        except AdakitError:
            same = False
        if not same:
            raise ConfigError(f"{flag} {run_dir} holds a linear-probe run with a different config; choose another "
                              "folder (or delete it to run again)")
        if (run_dir / "summary.json").is_file():
            done = json.loads((run_dir / "summary.json").read_text())
            if done.get("data_fingerprint") != prints:  # arrays you pass: the same data, or refused
                raise ConfigError(f"{flag} {run_dir} holds a finished linear-probe run on other data (another size, "
                                  "labels or values); choose another folder (or delete it to run again)")
            return done
    checked = _checked_inputs(cfg, domains)  # data, strategy and budget: refused before the folder exists
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(run_dir):
        return _run_probe(cfg, run_dir, checked, prints)


def _checked_inputs(cfg: ExperimentConfig, domains: Domains | None) -> tuple:
    """The probe's domains, held-out source split, round budgets and strategy, or the `ConfigError` / `DataError`
    of what a probe cannot run (image data, a strategy that needs a discriminator, a budget the pool cannot give,
    a target without labels to answer queries from)."""
    from adakit.loop import query_params_for_run, round_budgets
    from adakit.registry import STRATEGIES
    from adakit.validate._run import split_source_val

    d = domains or load_domains(cfg.data, cfg.seed)
    if not getattr(d.source, "is_features", False):
        raise ConfigError("runner=linear_probe needs feature data (vectors, e.g. data.format=npz/mat/svmlight); "
                          f"{cfg.data.format} data {cfg.data.source!r} have samples of shape "
                          f"{tuple(d.source.input_shape)}" + ("" if len(d.source.input_shape) != 3 else " (images)")
                          + "; reshape arrays to rows (N, d), or extract features from images first "
                          "(`adakit features`)")
    strat_cls = STRATEGIES.get(cfg.query.strategy)
    if strat_cls.needs and cfg.budget.rounds:
        raise ConfigError(f"runner=linear_probe: query.strategy={cfg.query.strategy!r} needs "
                          f"{sorted(strat_cls.needs)} of an adaptation objective, which a probe has not")
    val = None
    if cfg.data.source_val > 0:
        d, val = split_source_val(d, cfg.data.source_val, cfg.seed)
    budgets = round_budgets(cfg.budget.total, cfg.budget.rounds, len(d.pool))
    unknown = int((np.asarray(d.pool.y) < 0).sum())
    if sum(budgets) and unknown:
        raise DataError(f"runner=linear_probe labels its picks from the target's own labels (a simulated oracle), "
                        f"but {unknown} of the {len(d.pool)} target samples have none; give the target with its "
                        "labels, or budget.rounds=0 for the source-only probe")
    strategy = strat_cls(query_params_for_run(cfg, budgets, len(d.pool)))
    return d, val, budgets, strategy


def _run_probe(cfg: ExperimentConfig, run_dir: Path, checked: tuple, prints: dict | None = None) -> dict:
    """The probe's rounds into the checked, locked ``run_dir`` (``checked``: `_checked_inputs`)."""
    from adakit.inference import accuracy
    from adakit.report import write_run_report
    from adakit.selection import select
    from adakit.validate import compute_all

    d, val, budgets, strategy = checked
    n_classes = len(d.classes)
    xs, ys = d.source.x.numpy(), np.asarray(d.source.y)
    xp, yp, xt = d.pool.x.numpy(), np.asarray(d.pool.y), d.test.x.numpy()
    c, standardize = cfg.probe.c, cfg.probe.standardize
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(run_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    labelled = np.zeros(len(d.pool), dtype=bool)
    order: list[int] = []
    rounds, query_seconds, fit_seconds = [], [], []
    queried: dict = {}
    for r in range(len(budgets) + 1):
        t0 = time.perf_counter()
        idx = np.array(order, dtype=np.int64)
        clf = _fit(xs, ys, c, cfg.seed, standardize, xp[idx], yp[idx])
        fit_seconds.append(time.perf_counter() - t0)
        pool_p = _probs(clf, xp, n_classes)
        row = {"round": r, "labels": int(labelled.sum())}
        if (d.test.y >= 0).any():
            row.update(accuracy(torch.as_tensor(_probs(clf, xt, n_classes)), d.test.y))
        inputs = {"probs": pool_p, "embeddings": clf[0].transform(xp), **queried}
        if val is not None:
            inputs.update(source_probs=_probs(clf, val.x.numpy(), n_classes), source_labels=np.asarray(val.y),
                          source_embeddings=clf[0].transform(val.x.numpy()))
        row.update({f"val/{k}": v for k, v in compute_all(inputs).items()})
        rounds.append(row)
        if r == len(budgets):
            break
        coef = clf[-1].coef_
        t0 = time.perf_counter()
        sel = select(strategy, probs=pool_p, logits=np.log(np.clip(pool_p, 1e-12, None)),
                     embeddings=inputs["embeddings"], budget=budgets[r], labelled=labelled,
                     labels=np.where(labelled, yp, -1), seed=np.random.default_rng([cfg.seed, r + 1]),
                     head_weight=coef if coef.shape[0] == n_classes else None)
        query_seconds.append(time.perf_counter() - t0)
        picked = np.asarray(sel.indices)
        queried = {"queried_pred": pool_p[picked].argmax(1), "queried_labels": yp[picked]}
        if cfg.query.strategy == "random":
            queried["queried_inclusion"] = np.full(len(picked), len(picked) / (~labelled).sum())
        labelled[picked] = True
        order.extend(picked.tolist())
    summary = {
        "name": cfg.name, "label": cfg.label, "strategy": cfg.query.strategy, "objective": "linear_probe",
        "protocol": d.protocol, "seed": cfg.seed,
        "data": {"format": cfg.data.format, "source": cfg.data.source, "target": cfg.data.target},
        "budget": {"total": cfg.budget.total, "rounds": cfg.budget.rounds, "per_round": budgets},
        "rounds": rounds, "final_accuracy": rounds[-1].get("accuracy"), "warmup_checkpoints": [],
        "train_sec_per_iter": None, "fit_seconds": fit_seconds, "query_seconds": query_seconds,
        "runner": "linear_probe", "environment": environment(),
    }
    if prints is not None:  # a probe on arrays you passed: what a second call must match
        summary["data_fingerprint"] = prints
    write_atomically(run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in rounds))
    write_run_report(run_dir, summary)
    write_atomically(run_dir / "summary.json", json.dumps(summary, indent=1))  # last: marks the run finished
    return summary

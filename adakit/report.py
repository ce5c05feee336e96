"""Tables (markdown) and learning curves (matplotlib) from run folders."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import warnings
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from adakit.errors import ConfigError, DataError, LedgerError
from adakit.rundir import check_writable_folder, replaced_atomically, sh, write_atomically


def load_summary(run_dir: str | Path) -> dict:
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        if not Path(run_dir).is_dir():
            raise ConfigError(f"{run_dir}: run folder not found")
        if (Path(run_dir) / "ledger.sqlite").is_file():
            raise ConfigError(f"{run_dir}: the run has not finished (no summary.json yet): continue it with "
                              f"`adakit resume {sh(run_dir)}`, or leave it out of the comparison")
        raise ConfigError(f"{run_dir}: no summary.json (is it a finished adakit run folder?)")
    again = (f"`adakit resume {sh(run_dir)}` writes it again from the run's ledger"
             if (Path(run_dir) / "ledger.sqlite").is_file() else "run the experiment again into a new folder "
             "(this folder holds no ledger to write it from)")
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:  # (cut short, edited, another file)
        raise ConfigError(f"{path} is not valid JSON ({e}); {again}") from None
    missing = [k for k in SUMMARY_KEYS if k not in summary] if isinstance(summary, dict) else None
    if missing is None or missing:
        what = "not a JSON object" if missing is None else f"no {', '.join(missing)}"
        raise ConfigError(f"{path} is not an adakit run summary ({what}); {again}")
    return summary


#: the keys of summary.json that reports read
SUMMARY_KEYS = ("name", "strategy", "objective", "protocol", "seed", "data", "budget", "rounds", "final_accuracy")


def run_label(s: dict) -> str:
    if s.get("label"):
        return s["label"]
    return f"{s['objective']} + {s['strategy']}" if s["budget"]["rounds"] else s["objective"]


def pair_label(s: dict) -> str:
    return f"{s['data']['source']}→{s['data']['target']}"


def one_line(text: object) -> str:
    """``text`` on one line (its line breaks as spaces), for a markdown heading or table cell."""
    return re.sub(r"\s*[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]+\s*", " ", str(text)).strip()  # (str.splitlines' breaks)


def md_cell(text: object) -> str:
    """``text`` as one markdown table cell: on one line, its pipes escaped (a name holding '|' split its row into
    more columns than the table has)."""
    return one_line(text).replace("|", "\\|")


def _fmt(values: list[float]) -> str:
    a = 100 * np.asarray(values, dtype=float)
    return f"{a.mean():.1f}" if len(a) == 1 else f"{a.mean():.1f} ± {a.std(ddof=0):.1f}"


def _ledger_counts(run_dir: str | Path, *counts: Callable[[Any], int]) -> tuple[int, ...]:
    """Each of ``counts`` (a function of the run's `Ledger`, opened read-only once), or 0 each without a readable
    ledger (a damaged one: `adakit ledger check` names it)."""
    from adakit.ledger import Ledger

    path = Path(run_dir) / "ledger.sqlite"
    if path.is_file():
        try:
            with Ledger.read_only(path) as led:
                return tuple(count(led) for count in counts)
        except (LedgerError, sqlite3.Error):
            pass
    return (0,) * len(counts)


def _late(led) -> int:
    """Label rows (corrections, or answers to queries added later) recorded after the last round was evaluated."""
    return led.conn.execute("SELECT COUNT(*) FROM labels WHERE created > (SELECT MAX(created) FROM metrics)"
                            ).fetchone()[0]


def _dropped(led) -> int:
    """Queries answered "nobody can label this" (dropped)."""
    return len(led.dropped_pool())


def late_answers(run_dir: str | Path) -> int:
    """How many label rows (corrections, or answers to queries added later) the run's ledger recorded after its last
    round was evaluated: no model of the run was trained on them. 0 without a readable ledger."""
    return _ledger_counts(run_dir, _late)[0]


def _late_answers_note(n: int) -> str:
    return (f"{n} answer{'s were' if n > 1 else ' was'} recorded after the last round was trained (corrections, say: "
            "`adakit ledger export --history` lists them); no model of the run was trained on "
            f"{'them' if n > 1 else 'it'}")


def scored_rounds(summary: dict) -> list[dict]:
    """A summary's rounds that have an accuracy (none on a target without labels)."""
    return [m for m in summary.get("rounds") or [] if "accuracy" in m]


def write_run_report(run_dir: str | Path, summary: dict) -> None:
    run_dir = Path(run_dir)
    budget = summary["budget"]
    # rounds asked for with `adakit query` after the configured ones (a UDA run given active rounds, say)
    last = max((m["round"] for m in [*(summary.get("rounds") or []), *(summary.get("unlabelled_rounds") or [])]),
               default=0)
    added = max(last - (budget["rounds"] or 0), 0)
    if not budget["rounds"]:
        spent = ("none (0 rounds: no target label is queried)" if not added else
                 f"0 rounds in the config; {added} round{'s' if added > 1 else ''} added with `adakit query`")
    else:
        per_round = budget.get("per_round")
        spent = f"{budget['total']} in {budget['rounds']} rounds" + (
            f" ({', '.join(map(str, per_round))} a round)" if per_round else "") + (
            f"; {added} more round{'s' if added > 1 else ''} added with `adakit query`" if added else "")
    lines = [one_line(f"# {summary['name']}: {pair_label(summary)}, {run_label(summary)}"), "",
             f"protocol: {summary['protocol']}, seed: {summary['seed']}, budget: {spent}", ""]
    scored = scored_rounds(summary)
    unlabelled = summary.get("unlabelled_rounds") or [m for m in summary["rounds"] if "accuracy" not in m]
    if scored or not unlabelled:  # (a linear probe's rounds on a target without labels have no accuracy)
        lines += ["| round | labels | accuracy | mean class accuracy |", "|---:|---:|---:|---:|"]
        for m in scored:
            lines.append(f"| {m['round']} | {m['labels']} | {100 * m['accuracy']:.2f} | "
                         f"{100 * m.get('mean_class_accuracy', float('nan')):.2f} |")
    else:  # a target without labels: no accuracy, the label-free validators instead
        names = sorted({k for m in unlabelled for k in m if k.startswith("val/")})
        lines += ["No test sample has a label (labels people gave to queried samples train the model), so there is "
                  "no accuracy; the label-free validators of each round (see adakit.validate):", "",
                  "| round | labels | " + " | ".join(map(md_cell, names)) + " |", "|---:|---:|" + "---:|" * len(names)]
        for m in unlabelled:
            lines.append(f"| {m['round']} | {m['labels']} | "
                         + " | ".join(f"{m[k]:.4f}" if k in m else "–" for k in names) + " |")
    n_test, n_known = summary.get("test_samples"), summary.get("test_labelled")
    if scored and n_test and n_known is not None and n_known < n_test:
        lines += ["", f"Note: accuracy counts the {n_known} of the {n_test} test samples that have a label (the other "
                  f"{n_test - n_known} have none)."]
    dropped, late = _ledger_counts(run_dir, _dropped, _late)  # (dropped ones count in no round's labels)
    if dropped:
        lines += ["", f"Note: {dropped} quer{'ies were' if dropped > 1 else 'y was'} dropped (answered that nobody "
                  "can label it): the labels column counts labelled samples only, so it is below the budget spent "
                  "(`adakit ledger export` lists the dropped ones)."]
    if late:
        lines += ["", f"Note: {_late_answers_note(late)}; the accuracies above are of models trained without "
                  f"{'them' if late > 1 else 'it'}."]
    if "environment" in summary:
        lines += ["", f"computed with {machine_label(summary['environment'])}"]
    write_atomically(run_dir / "report.md", "\n".join(lines) + "\n")
    plot_curves({run_label(summary): [summary]}, run_dir / "curve.png", title=pair_label(summary))


def rebuild_run_reports(run_dirs: list[str | Path], summaries: list[dict]) -> list[Path]:
    """Rewrite each run folder's report.md and curve.png (`write_run_report`); a folder that cannot be written
    (read-only storage, say) is left as it is, with a warning: its results are compared all the same. Returns the
    folders rebuilt."""
    done = []
    for d, s in zip(map(Path, run_dirs), summaries):
        why = "the folder is read-only"
        if os.access(d, os.W_OK | os.X_OK):
            try:
                write_run_report(d, s)
                done.append(d)
                continue
            except DataError as e:  # (a full disk, say)
                why = str(e)
        warnings.warn(f"{d}: report.md and curve.png not rebuilt ({why}); its results are in the comparison",
                      stacklevel=2)
    return done


def machine_label(env: dict) -> str:
    """One line naming what changes a run's numbers: versions, CPU and its kernel set, threads, device."""
    v = env.get("versions", {})
    kernels = ", ".join(f"{k}={x}" for k, x in env.get("kernel_env", {}).items())
    dev = env.get("gpu") or env.get("device", "cpu")
    threads = env.get("torch_threads", "?")
    return (f"torch {v.get('torch', '?')}, numpy {v.get('numpy', '?')}, scikit-learn {v.get('scikit-learn', '?')} "
            f"on {env.get('cpu', '?')} ({env.get('cpu_capability', '?')} kernels, {threads} "
            f"torch thread{'' if threads == 1 else 's'}{', ' + kernels if kernels else ''}), device {dev}")


def _literal(text: str) -> str:
    """``text`` as matplotlib draws it literally: a '$' escaped (two of them start TeX math, which can fail)."""
    return text.replace("$", r"\$")


def plot_curves(groups: dict[str, list[dict]], out: Path, title: str = "") -> None:
    """Accuracy vs number of target labels; mean with a ±std band over the runs of each group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, runs in sorted(groups.items()):
        rounds = [scored_rounds(r) for r in runs]
        n = min(map(len, rounds))
        if not n:  # (no target labels: no curve)
            continue
        # the mean label count of each round: seeds with dropped queries (not trained on) hold fewer labels
        x = np.array([np.mean([rs[i]["labels"] for rs in rounds]) for i in range(n)])
        acc = 100 * np.array([[rs[i]["accuracy"] for i in range(n)] for rs in rounds])
        mean, std = acc.mean(0), acc.std(0)
        (line,) = ax.plot(x, mean, marker="o", label=_literal(name))
        if len(runs) > 1:  # in its line's colour (the band's own colour cycle skipped groups of one run)
            ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())
    ax.set_xlabel("labelled target samples")
    ax.set_ylabel("target accuracy (%)")
    ax.set_title(_literal(title))
    ax.grid(alpha=0.3)
    if ax.get_lines():  # (runs without target labels have no curve)
        ax.legend(fontsize=8, title="mean over seeds, band ± std" if ax.collections else None, title_fontsize=8)
    fig.tight_layout()
    try:
        with replaced_atomically(out, binary=True) as fh:
            fig.savefig(fh, format="png", dpi=120)
    finally:
        plt.close(fig)


def curve_file(pair: str) -> str:
    """File name of the learning curves of one domain pair (``pair_label``) written by `compare`."""
    from adakit.bench import slug

    # (domain names may hold '/', spaces, ...; a long pair is cut, with a hash of the whole pair)
    return f"curve-{slug(pair.replace('→', '-to-'), CURVE_NAME_BYTES)}.png"


#: the most bytes of a curve file's name between ``curve-`` and ``.png`` (the whole name stays under 120)
CURVE_NAME_BYTES = 100


def _check_seeds_of_one_experiment(key: tuple[str, str], dirs: list[Path], summaries: list[dict]) -> None:
    """A table cell averages seeds of one experiment: refuse a folder given twice, a seed given twice and runs
    whose configs differ in more than the seed (their config.yaml), naming the folders and the keys."""
    import yaml

    from adakit.rundir import EXECUTION_KEYS, config_changes

    where = f"{key[0]} on {key[1]}"
    resolved = [d.resolve() for d in dirs]
    for i, r in enumerate(resolved):
        if r in resolved[:i]:
            raise ConfigError(f"{dirs[i]} is given twice")
    seeds = [s["seed"] for s in summaries]
    for i, seed in enumerate(seeds):
        if seed in seeds[:i]:
            other = dirs[seeds.index(seed)]
            raise ConfigError(f"{other} and {dirs[i]} ({where}) both have seed {seed}, so they are not seeds of one "
                              "experiment; give them different labels (config `label:`) to compare them side by side")
    configs = []
    for d in dirs:
        path = d / "config.yaml"
        cfg = yaml.safe_load(path.read_text()) if path.is_file() else None
        configs.append({k: v for k, v in cfg.items() if k != "seed"} if isinstance(cfg, dict) else None)
    first = next((i for i, c in enumerate(configs) if c is not None), None)
    for i, c in enumerate(configs):
        changes = config_changes(configs[first], c, ignore=EXECUTION_KEYS) if first is not None and c else ""
        if changes:  # (device, threads and the like may differ)
            raise ConfigError(f"{dirs[first]} and {dirs[i]} ({where}) differ in more than the seed ({changes}); give "
                              "them different labels (config `label:`) to compare them side by side")


def _folders(run_dirs: str | Path | list[str | Path]) -> list[str | Path]:
    """One folder (a str or Path) or a list of them, as a list (a str was iterated letter by letter)."""
    return [run_dirs] if isinstance(run_dirs, (str, Path)) else list(run_dirs)


def results(run_dirs: str | Path | list[str | Path]) -> list[dict]:
    """One row per finished run, ready for ``pandas.DataFrame(results(...))``: ``run_dir``, ``method`` and
    ``pair`` (as `compare` groups them), ``seed``, ``final_accuracy`` (None without target labels) and, per round,
    ``labels`` and ``accuracy`` in ``rounds`` (the summary's per-round metrics)."""
    rows = []
    for d in _folders(run_dirs):
        s = load_summary(d)
        rows.append({"run_dir": str(d), "method": run_label(s), "pair": pair_label(s), "seed": s.get("seed"),
                     "final_accuracy": s.get("final_accuracy"), "rounds": s.get("rounds", [])})
    return rows


def check_report_dir(out_dir: Path) -> None:
    """Refuse a --out for comparison.md that is a file, lies under one or cannot be written (`ConfigError`),
    before anything is written."""
    check_writable_folder(Path(out_dir), "--out", "comparison.md and the curves")


def compare(run_dirs: str | Path | list[str | Path], out_dir: str | Path, note: str = "",
            left_out: list[str] | tuple[str, ...] = ()) -> str:
    """Side-by-side table (mean ± std over seeds) of final accuracy per method and pair, plus curves.

    Writes ``comparison.md`` and one ``curve-<pair>.png`` per pair into ``out_dir``; returns the markdown.
    ``note``: a paragraph printed under the table (what part of a grid it covers, say). ``left_out``: runs of the
    same experiments that are not in the table (`adakit bench --table-only`: those not finished), listed under it,
    so that a cell's smaller n is explained.
    """
    out_dir = Path(out_dir)
    run_dirs = _folders(run_dirs)
    if not run_dirs:
        raise ConfigError("compare: give at least one run folder")
    runs = [load_summary(d) for d in run_dirs]
    by: dict[tuple[str, str], list[dict]] = defaultdict(list)
    folders: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for d, s in zip(run_dirs, runs):
        by[(run_label(s), pair_label(s))].append(s)
        folders[(run_label(s), pair_label(s))].append(Path(d))
    for key, dirs in folders.items():
        _check_seeds_of_one_experiment(key, dirs, by[key])
    check_report_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    methods = sorted({k[0] for k in by})
    pairs = sorted({k[1] for k in by})
    protocols = sorted({s["protocol"] for s in runs})
    mixed = len(protocols) > 1  # (inductive: a held-out half of the target; transductive: all of it)
    lines = [f"Final target accuracy (%) after the last round, mean ± population std (ddof = 0) over the n seeds "
             f"(protocol: {', '.join(protocols)}{'; each cell names its own' if mixed else ''}; –: no run"
             f"{'; avg: the mean of the pair means' if len(pairs) > 1 else ''}).", "",
             "| method | " + " | ".join(map(md_cell, pairs)) + (" | avg |" if len(pairs) > 1 else " |"),
             "|---|" + "---:|" * (len(pairs) + (len(pairs) > 1))]
    for m in methods:
        cells, means = [], []
        for p in pairs:
            rs = by.get((m, p), [])
            if not rs:
                cells.append("–")
                continue
            vals = [r["final_accuracy"] for r in rs if r["final_accuracy"] is not None]  # (None: no target labels)
            unlabelled = len(rs) - len(vals)
            notes = [f"n={len(vals)}"] if vals else []
            if unlabelled:
                notes.append(f"{unlabelled} without target labels" if vals else f"n={unlabelled}")
            if mixed:
                notes.append(", ".join(sorted({r["protocol"] for r in rs})))
            cells.append(f"{_fmt(vals) if vals else 'no target labels'} ({', '.join(notes)})")
            if vals:
                means.append(np.mean(vals))
        avg = f" | {100 * np.mean(means):.1f}" if len(pairs) > 1 and len(means) == len(pairs) else (
            " | –" if len(pairs) > 1 else "")
        lines.append(f"| {md_cell(m)} | " + " | ".join(cells) + avg + " |")
    uneven = []  # cells whose seeds end with different label counts (dropped queries)
    for (m, p), rs in sorted(by.items()):
        counts = sorted({scored[-1]["labels"] for scored in map(scored_rounds, rs) if scored})
        if len(counts) > 1:
            uneven.append(f"- {one_line(m)} on {one_line(p)}: its seeds end with different numbers of labels "
                          f"({', '.join(map(str, counts))})")
    if uneven:
        lines += ["", "Note: dropped queries (nobody could label them) are neither trained on nor counted as labels, "
                  "so these cells average seeds that trained on different numbers of labels:", *uneven]
    for p in pairs:
        groups = {m: by[(m, p)] for m in methods if (m, p) in by and all(map(scored_rounds, by[(m, p)]))}
        plot_curves(groups, out_dir / curve_file(p), title=p)
    late = [(d, n) for d in run_dirs if (n := late_answers(d))]
    if late:
        lines += ["", "Note: these runs' ledgers hold answers recorded after their last round was trained, which "
                  "their accuracies do not reflect:", *(f"- {d}: {_late_answers_note(n)}" for d, n in late)]
    machines = sorted({machine_label(s["environment"]) for s in runs if "environment" in s})
    if len(machines) > 1:  # floating-point kernels differ: per-seed numbers are not comparable bit for bit
        lines += ["", f"Note: these runs were computed in {len(machines)} different environments (another CPU, "
                  "kernel set, library version or thread count can move per-seed numbers by about the seed "
                  "spread):", *(f"- {m}" for m in machines)]
    if left_out:
        lines += ["", f"Note: {len(left_out)} run{'s' if len(left_out) > 1 else ''} of the grid "
                  f"{'are' if len(left_out) > 1 else 'is'} not in the table (the cells' n counts finished seeds only):",
                  *(f"- {one_line(x)}" for x in left_out)]
    if note:
        lines += ["", note]
    md = "\n".join(lines) + "\n"
    write_atomically(out_dir / "comparison.md", md)
    return md

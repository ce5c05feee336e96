"""Feature-mode defaults of fine-tuning: proposed by a validator without target test labels, adopted only if
they do not lose accuracy on held-out feature sets (a gate that reads those sets' target test labels), and
compared with the linear-probe baseline.

Protocol (fixed before any result was seen): FT + margin, 5% of the target pool in 5 rounds, transductive.

1. ``sweep``: on the *tuning* sets (Office-31 MobileNetV2 features, the JDA MNIST/USPS digit pixels), a grid of
   settings per pair and seed (``adakit.sweep.run_sweep``: every run records its validators). Stage A is learning
   rate × steps per round; stage B, at stage A's choice, ``data.standardize`` × dropout × weight decay; stage C,
   learning rate × weight decay at stage B's dropout; stage D, warm-up steps × S+T / S∪T batching of the labelled
   target (for the small-source pairs where the probe wins); stage E, the network's width (hidden layer) × whether
   it has the bottleneck (Linear + BatchNorm + ReLU) at all; stage F, label smoothing × class-balanced source
   batches; stage G, the batch size; stage H, weight averaging (F, G and H at width 1,024:
   ``--fix model.hidden_dim=1024``).
2. ``choose``: each setting's ``queried_acc`` (the accuracy of a round's model on the next round's queried batch,
   *before* training on it: labels the user has bought, biased towards hard samples) as its mean over rounds, then
   over seeds, then over pairs, then over sets (``--per-set``: one choice per set); the highest wins, the current
   default when within ``--tie`` points. What every other validator would have chosen is printed beside it, and
   the oracle accuracy of each setting only to show what the choice cost or gained.
3. ``check``: the defaults, the validators' choice and the linear probe (`adakit.probe`, standardised and raw
   features) on every set, tuning and held-out (``office31-logits``, ``digits16``: see
   ``benchmarks/feature_sets.py``), 3 seeds, through ``adakit bench``. The gate (added after stage C): a choice is
   adopted only if FT with it is not worse than the defaults on average over the held-out pairs, by their final
   accuracy, i.e. with their target test labels. The held-out sets never propose a choice, but they decide whether
   one is adopted, so they are not an independent test of the adopted defaults.

Usage::

    export OMP_NUM_THREADS=1 ADAKIT_DATA=/path/to/data
    python benchmarks/feature_sets.py --out runs/feature-sets
    python benchmarks/feature_defaults.py sweep --stage A --set digits-jda --out runs/feature-defaults
    python benchmarks/feature_defaults.py choose runs/feature-defaults/A "runs/model-selection/FT + margin"
    python benchmarks/feature_defaults.py sweep --stage B --seed 0 --out runs/feature-defaults  # beside A
    python benchmarks/feature_defaults.py sweep --stage C --fix model.dropout=0.5 --seed 0 --out runs/feature-defaults
    python benchmarks/feature_defaults.py check --new model.dropout=0.5 --out runs/feature-defaults/check
    python benchmarks/feature_defaults.py choose runs/feature-defaults/C
    python benchmarks/feature_defaults.py table runs/feature-defaults/check
    python benchmarks/feature_defaults.py sweep --stage D --out runs/feature-defaults
    python benchmarks/feature_defaults.py choose runs/feature-defaults/D
    python benchmarks/feature_defaults.py check --new train.warmup_iters=250 --new train.labelled_target=union \
        --out runs/feature-defaults/check2
    python benchmarks/feature_defaults.py table runs/feature-defaults/check2
    python benchmarks/feature_defaults.py sweep --stage E --out runs/feature-defaults
    python benchmarks/feature_defaults.py choose runs/feature-defaults/E
    python benchmarks/feature_defaults.py check --new model.hidden_dim=1024 --out runs/feature-defaults/check3
    python benchmarks/feature_defaults.py table runs/feature-defaults/check3
    python benchmarks/feature_defaults.py sweep --stage F --fix model.hidden_dim=1024 --out runs/feature-defaults
    python benchmarks/feature_defaults.py choose runs/feature-defaults/F
    python benchmarks/feature_defaults.py sweep --stage G --fix model.hidden_dim=1024 --out runs/feature-defaults
    python benchmarks/feature_defaults.py choose runs/feature-defaults/G
    python benchmarks/feature_defaults.py sweep --stage E --set office31-logits --set digits16 \
        --out runs/feature-defaults/F-heldout                     # the per-set check: stage E's grid on held-out sets
    python benchmarks/feature_defaults.py choose --per-set runs/feature-defaults/E runs/feature-defaults/F-heldout/E
    python benchmarks/feature_defaults.py check --set office31 --defaults model.hidden_dim=1024 \
        --new model.hidden_dim=256 --new model.bottleneck_dim=0 --out runs/feature-defaults/check-perset
    python benchmarks/feature_defaults.py check --set office31-logits --defaults model.hidden_dim=1024 \
        --new model.hidden_dim=256 --out runs/feature-defaults/check-perset
    python benchmarks/feature_defaults.py table runs/feature-defaults/check-perset
    python benchmarks/feature_defaults.py probe runs/feature-defaults/check3     # the probe's standardisation
    adakit bench benchmarks/probe-resampled.yaml --out runs/feature-defaults/resampled
    python benchmarks/feature_defaults.py paired runs/feature-defaults/resampled  # FT vs probe, resampled source
"""

from __future__ import annotations

import argparse
import csv
import json
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy (model_selection): its BLAS reads it once, at import

import statistics  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import yaml  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import model_selection  # noqa: E402  (the active-sweep reader: one row per setting)
from _results import write_section  # noqa: E402

BASE = HERE.parent / "configs" / "office31-features.yaml"
O31 = ["amazon-webcam", "amazon-dslr", "webcam-amazon", "webcam-dslr", "dslr-amazon", "dslr-webcam"]
#: set -> (data.root, pairs, role)
SETS: dict[str, tuple[str, list[str], str]] = {
    "office31": ("${ADAKIT_DATA}/office31/features-mobilenetv2", O31, "tuning"),
    "digits-jda": ("{sets}/digits-jda", ["mnist-usps", "usps-mnist"], "tuning"),
    "office31-logits": ("{sets}/office31-logits", O31, "held-out"),
    "digits16": ("{sets}/digits16", ["mnist-mnistm", "usps-mnist"], "held-out"),
}
STAGES = {"A": ["train.lr=0.003,0.01,0.03", "train.round_iters=125,250,500"],
          "B": ["data.standardize=false,true", "model.dropout=0,0.5", "train.weight_decay=0.0005,0.005"],
          "C": ["train.lr=0.01,0.03", "train.weight_decay=0.0005,0.005"],
          "D": ["train.warmup_iters=250,1000", "train.labelled_target=separate,union"],
          "E": ["model.hidden_dim=256,512,1024", "model.bottleneck_dim=0,256"],
          "F": ["objective.label_smoothing=0,0.1", "train.class_balanced_source=false,true"],
          "G": ["train.batch_size=16,32,64,128"],
          "H": ["train.weight_average=0,0.25,0.5"]}
#: every run: margin sampling, one thread, the MLP width of the defaults the stages compared against (512; stage
#: E's choice, 1024, is the config's default since); sweeps hold out 10% of the source for the source validators
COMMON = ["query.strategy=margin", "train.threads=1", "model.hidden_dim=512"]
SWEEP_COMMON = [*COMMON, "data.source_val=0.1"]
METHODS = ["linear probe + margin", "linear probe (raw features) + margin", "FT + margin (defaults)",
           "FT + margin (validators' choice)"]


def sweep_base(stage: str) -> tuple[object, list[str]]:
    """The base config of ``stage``'s sweeps and the overrides to pass beside its grid: a ``SWEEP_COMMON`` key that
    the grid sets (stage E's ``model.hidden_dim``) goes into the base config, where it is the default setting (a
    sweep refuses a ``--set`` of a grid key, which the grid would override)."""
    from adakit.config import load_config

    gridded = {item.partition("=")[0] for item in STAGES[stage]}
    into_base = [item for item in SWEEP_COMMON if item.partition("=")[0] in gridded]
    extra = [item for item in SWEEP_COMMON if item not in into_base]
    return (load_config(BASE, into_base) if into_base else BASE), extra


def _root(name: str, sets: Path) -> list[str]:
    return ["data.format=npz", "data.root=" + SETS[name][0].replace("{sets}", str(sets.resolve()))]


def _data(name: str, sets: Path, pair: str) -> list[str]:
    src, tgt = pair.split("-")
    return [*_root(name, sets), f"data.source={src}", f"data.target={tgt}"]


def sweep(out: Path, stage: str, names: list[str], sets: Path, fixed: list[str], seeds: list[int]) -> None:
    from adakit.sweep import run_sweep

    base, common = sweep_base(stage)
    for name in names:
        for pair in SETS[name][1]:
            for seed in seeds:
                folder = out / stage / name / pair / f"seed-{seed}"
                if not (folder / "sweep.csv").is_file():
                    extra = [*common, *fixed, *_data(name, sets, pair), f"seed={seed}"]
                    run_sweep(base, STAGES[stage], "queried_acc", folder, extra)
                    print(f"{stage} {name} {pair} seed {seed} done", flush=True)


def _mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def aggregate(roots: list[Path], only: str | None = None) -> dict[str, dict[str, float]]:
    """setting -> {validator or 'accuracy_oracle': mean over seeds, then pairs, then sets} of every sweep.csv below
    ``roots`` (laid out ``<set>/<pair>/seed-k/sweep.csv``; a set found under several roots is one set); ``only``:
    that set alone."""
    per: dict[str, dict[str, dict[str, dict[str, list[float]]]]] = {}  # set -> pair -> setting -> key -> seeds
    for root in roots:
        for p in sorted(root.glob("*/*/seed-*/sweep.csv")):
            name, pair = p.parts[-4], p.parts[-3]
            name = "office31" if name == "FT + margin" else name  # the validator benchmark's Office-31 sweeps
            if only is not None and name != only:
                continue
            for row in model_selection._ada_rows(list(csv.DictReader(p.open()))):
                d = per.setdefault(name, {}).setdefault(pair, {}).setdefault(row["setting"], {})
                for k, v in row.items():
                    if k not in model_selection.NOT_VALIDATORS - {"accuracy_oracle"} and v != "":
                        d.setdefault(k, []).append(float(v))
                d.setdefault("default", []).append(float("default" in row["marks"].split(";")))
    out: dict[str, dict[str, list[float]]] = {}
    for pairs in per.values():
        settings = {s for p in pairs.values() for s in p}
        for s in settings:
            keys = {k for p in pairs.values() for k in p.get(s, {})}
            for k in keys:
                out.setdefault(s, {}).setdefault(k, []).append(
                    _mean([_mean(p[s][k]) for p in pairs.values() if k in p.get(s, {})]))
    return {s: {k: _mean(v) for k, v in d.items()} for s, d in out.items()}


def choose(agg: dict[str, dict[str, float]], by: str = "queried_acc", tie: float = 0.005) -> str:
    """The setting with the highest ``by``; the default setting when it is within ``tie`` of the highest."""
    best = max(agg, key=lambda s: agg[s].get(by, float("-inf")))
    default = next((s for s in agg if agg[s].get("default", 0) > 0), None)
    if default is not None and agg[best][by] - agg[default].get(by, float("-inf")) <= tie:
        return default
    return best


def choose_report(roots: list[Path], tie: float, only: str | None = None) -> str:
    agg = aggregate(roots, only)
    validators = sorted({k for d in agg.values() for k in d} - {"accuracy_oracle", "default"})
    lines = ["| setting | " + " | ".join(f"`{v}`" for v in validators) + " | oracle acc. (%) |",
             "|---|" + "---:|" * (len(validators) + 1)]
    for s in sorted(agg):
        mark = " (default)" if agg[s].get("default", 0) > 0 else ""
        lines.append(f"| {s}{mark} | " + " | ".join(f"{agg[s].get(v, float('nan')):.4f}" for v in validators)
                     + f" | {100 * agg[s]['accuracy_oracle']:.1f} |")
    lines += ["", f"**choice (queried_acc, tie {tie}):** {choose(agg, tie=tie)}", ""]
    for v in validators:
        lines.append(f"- `{v}` would choose: {choose(agg, v, tie=0.0)}")
    lines.append(f"- oracle would choose: {choose(agg, 'accuracy_oracle', tie=0.0)}")
    return "\n".join(lines)


def check(out: Path, names: list[str], sets: Path, new: list[str], seeds: list[int],
          only: list[str] | None = None, defaults: list[str] | None = None) -> None:
    """The defaults (``COMMON`` and then ``defaults``), the validators' choice (the defaults and then ``new``) and
    the two probes on every pair of ``names``, through ``adakit bench``."""
    from adakit.bench import run_bench

    base = list(defaults or [])
    methods = dict(zip(METHODS, [["runner=linear_probe", "probe.standardize=true"],
                                 ["runner=linear_probe", "probe.standardize=false"], base,
                                 [*base, *new]], strict=True))
    for name in names:
        pairs = SETS[name][1]
        spec = {"base": str(BASE), "set": [*COMMON, *_root(name, sets)],
                "pairs": [p.split("-") for p in pairs], "seeds": seeds, "methods": methods}
        (out / name).mkdir(parents=True, exist_ok=True)
        path = out / name / "bench.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        run_bench(path, out / name, only=only)


def probe_report(root: Path) -> str:
    """The choice rule on a check's two probes (standardised, raw): per set, ``queried_acc`` averaged over rounds,
    seeds and pairs, and the oracle accuracy; the rule compares the means over the tuning sets."""
    from adakit.bench import slug
    from adakit.report import load_summary

    lines = ["| probe | set (role) | `queried_acc` | oracle acc. (%) |", "|---|---|---:|---:|"]
    tuning: dict[str, list[float]] = {}
    for method in METHODS[:2]:
        for name, (_, pairs, role) in SETS.items():
            q, acc = [], []
            for pair in pairs:
                runs = [load_summary(r) for r in sorted((root / name / pair / slug(method)).glob("seed-*"))]
                if not runs:
                    continue
                q.append(_mean([_mean([x["val/queried_acc"] for x in s["rounds"] if "val/queried_acc" in x])
                                for s in runs]))
                acc.append(_mean([s["final_accuracy"] for s in runs]))
            if q:
                lines.append(f"| {method} | {name} ({role}) | {_mean(q):.4f} | {100 * _mean(acc):.1f} |")
                if role == "tuning":
                    tuning.setdefault(method, []).append(_mean(q))
    means = {m: _mean(v) for m, v in tuning.items()}
    lines += ["", "tuning sets' mean `queried_acc`: " + ", ".join(f"{m} {v:.4f}" for m, v in means.items())]
    if means:
        lines.append(f"**choice:** {max(means, key=means.__getitem__)}")
    return "\n".join(lines)


def table(root: Path) -> str:
    """Per set and pair: each method's final accuracy mean ± std over seeds; FT minus the better of the two probes
    (per pair: a baseline favoured by the oracle), and the validators' choice minus the defaults."""
    from adakit.bench import slug

    lines = ["| set (role) | pair | probe, standardised | probe, raw features | FT + margin, defaults | FT + margin, "
             "validators' choice | defaults − best probe | choice − best probe | choice − defaults |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    gaps: dict[str, list[tuple[float, float]]] = {}
    for name, (_, pairs, role) in SETS.items():
        for pair in pairs:
            acc: dict[str, list[float]] = {}
            for p in sorted((root / name).glob(f"{pair}/*/seed-*/summary.json")):
                acc.setdefault(p.parts[-3], []).append(100 * json.loads(p.read_text())["final_accuracy"])
            cols = [acc.get(slug(m), []) for m in METHODS]
            if not all(cols):
                continue
            m = [statistics.fmean(c) for c in cols]
            cells = [model_selection._ms(c) for c in cols]
            old_probe, new_probe, new_old = m[2] - max(m[0], m[1]), m[3] - max(m[0], m[1]), m[3] - m[2]
            gaps.setdefault(f"{name} ({role})", []).append((old_probe, new_probe, new_old))
            lines.append(f"| {name} ({role}) | {pair.replace('-', '→')} | {' | '.join(cells)} | {old_probe:+.1f} "
                         f"| {new_probe:+.1f} | {new_old:+.1f} |")
    lines.append("")
    for k, g in gaps.items():
        (a, wa), (b, wb), (c, wc) = ((statistics.fmean(col), min(col)) for col in zip(*g, strict=True))
        lines.append(f"- {k}: defaults − best probe {a:+.1f} on average (worst pair {wa:+.1f}); choice − best probe "
                     f"{b:+.1f} (worst {wb:+.1f}); choice − defaults {c:+.1f} (worst {wc:+.1f})")
    return "\n".join(lines) + "\n"


def paired(root: Path, ft: str = "FT + margin (defaults)",
           probe: str = "linear probe (raw features) + margin") -> str:
    """FT against the probe on an ``adakit bench`` folder whose runs resample the source per seed
    (benchmarks/probe-resampled.yaml): per pair, each method's mean ± std over seeds, the paired difference
    FT − probe (same seed = same source sample) with its standard error and the seeds where FT is not behind, and
    what choosing between the two per seed by ``queried_acc`` (mean over rounds, as `adakit sweep` scores an
    active run) would give: its oracle accuracy and how often it chose the probe."""
    from adakit.bench import slug

    lines = ["| pair | probe, raw features | FT + margin | FT − probe, paired (± s.e.) | seeds FT ≥ probe "
             "| chosen by `queried_acc` (probe chosen) |", "|---|---:|---:|---:|---:|---:|"]
    diffs_all, chosen_all, ft_all = [], [], []
    for pair in sorted(d.name for d in root.iterdir() if d.is_dir()):
        acc: dict[str, dict[str, float]] = {}
        q: dict[str, dict[str, float]] = {}
        for m in (ft, probe):
            for p in sorted((root / pair / slug(m)).glob("seed-*/summary.json")):
                run = json.loads(p.read_text())
                acc.setdefault(m, {})[p.parent.name] = 100 * run["final_accuracy"]
                q.setdefault(m, {})[p.parent.name] = _mean([r["val/queried_acc"] for r in run["rounds"]
                                                            if r.get("val/queried_acc") is not None])
        seeds = sorted(set(acc.get(ft, {})) & set(acc.get(probe, {})))
        if len(seeds) < 2:
            continue
        d = [acc[ft][s] - acc[probe][s] for s in seeds]
        diffs_all.append(statistics.fmean(d))
        se = statistics.stdev(d) / len(d) ** 0.5
        picks = [probe if q[probe][s] > q[ft][s] else ft for s in seeds]
        chosen = [acc[m][s] for m, s in zip(picks, seeds, strict=True)]
        chosen_all.append(statistics.fmean(chosen))
        ft_all.append(statistics.fmean(acc[ft][s] for s in seeds))
        cells = [model_selection._ms([acc[m][s] for s in seeds]) for m in (probe, ft)]
        lines.append(f"| {pair.replace('-', '→')} | {' | '.join(cells)} | {statistics.fmean(d):+.1f} ± {se:.1f} "
                     f"| {sum(x >= 0 for x in d)} / {len(d)} | {statistics.fmean(chosen):.1f} "
                     f"({picks.count(probe)} / {len(seeds)}) |")
    if diffs_all:
        lines += ["", f"mean over pairs: FT − probe {statistics.fmean(diffs_all):+.2f}; chosen by `queried_acc` − FT "
                  f"{statistics.fmean(chosen_all) - statistics.fmean(ft_all):+.2f}"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sets_default = Path("runs/feature-sets")
    s = sub.add_parser("sweep")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--stage", choices=list(STAGES), required=True)
    s.add_argument("--set", dest="names", action="append", choices=list(SETS))
    s.add_argument("--sets", type=Path, default=sets_default, help="folder of benchmarks/feature_sets.py")
    s.add_argument("--fix", action="append", default=[], help="key=value held fixed (stage B: stage A's choice)")
    s.add_argument("--seed", action="append", type=int)
    c = sub.add_parser("choose")
    c.add_argument("roots", type=Path, nargs="+")
    c.add_argument("--tie", type=float, default=0.005)
    c.add_argument("--per-set", action="store_true", help="one choice per set instead of one over all sets")
    k = sub.add_parser("check")
    k.add_argument("--out", type=Path, required=True)
    k.add_argument("--set", dest="names", action="append", choices=list(SETS))
    k.add_argument("--sets", type=Path, default=sets_default)
    k.add_argument("--new", action="append", required=True, help="key=value of the new defaults")
    k.add_argument("--seed", action="append", type=int)
    k.add_argument("--only", action="append", choices=METHODS, help="run only these methods (repeatable)")
    k.add_argument("--defaults", action="append", default=[],
                   help="key=value the defaults (and the choice) run with over COMMON (e.g. model.hidden_dim=1024)")
    sub.add_parser("probe").add_argument("root", type=Path)
    sub.add_parser("paired", help="FT vs the probe on a resampled source").add_argument("root", type=Path)
    t = sub.add_parser("table")
    t.add_argument("root", type=Path)
    t.add_argument("--md", type=Path, help="also write the table into this file: a new file, or one whose "
                   "'<!-- generated: NAME begin/end -->' section (NAME: the check folder's name) it replaces")
    a = ap.parse_args()
    if a.cmd == "sweep":
        names = a.names or [n for n, v in SETS.items() if v[2] == "tuning"]
        sweep(a.out, a.stage, names, a.sets, a.fix, a.seed or [0, 1])
    elif a.cmd == "choose":
        if not a.per_set:
            print(choose_report(a.roots, a.tie))
        else:
            for name in SETS:
                if any(any(r.glob(f"{name}/*/seed-*/sweep.csv")) for r in a.roots):
                    print(f"### {name}\n\n{choose_report(a.roots, a.tie, name)}\n")
    elif a.cmd == "check":
        check(a.out, a.names or list(SETS), a.sets, a.new, a.seed or [0, 1, 2], a.only, a.defaults)
    elif a.cmd == "probe":
        print(probe_report(a.root))
    elif a.cmd == "paired":
        print(paired(a.root))
    else:
        text = table(a.root)
        print(text)
        if a.md:  # (the results file is mostly hand-written: only the check's marked section is replaced)
            write_section(a.md, text, a.root.name)


if __name__ == "__main__":
    main()

"""Unsupervised domain adaptation benchmark: objectives × domain pairs × seeds, through the library.

Office-31 on frozen ImageNet MobileNetV2 features (``configs/office31-features.yaml``: ``data.format: npz``,
root ``$ADAKIT_DATA/office31/features-mobilenetv2``, MLP 1280 → 512 → bottleneck 256 → head), all 6 pairs,
3 seeds, UDA = ``budget.rounds: 0`` (only the warm-up fit, ``train.warmup_iters`` steps; no target label is
used). Optionally (``--digits``) MNIST→USPS and MNIST→MNIST-M images with LeNet from scratch
(``configs/digits-mnist-*.yaml``). Each run is an `ActiveLoop` in its own folder
``OUT/<pair>/<method>/seed-<k>``; finished runs (summary.json) are skipped, so an interrupted benchmark
continues where it stopped. The table reports the final target accuracy (transductive: the whole target,
after the last iteration, never the best one) as mean ± std over seeds per pair and the average over pairs
(`adakit.report.compare`), and seconds per training step (``summary.json: train_sec_per_iter``, the warm-up fit)
relative to source_only in the same invocation.

Methods are ``NAME`` or ``LABEL=NAME:key=value:key=value`` (objective parameters), e.g.
``"gsda global=gsda:use_class=false:use_group=false:use_sync=false"``. The default list covers source_only,
dann, cdan, cdan_e, mstn, mme, tsf, tsf_mme, biwaa, biwaa_i, BIWAA's weighting alone (DANN + weighting),
BIWAA without its inter-class separation terms and gsda with its ablations, keeping those the registry knows.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/uda.py --out runs/uda               # full: 6 pairs × 3 seeds
    .venv/bin/python benchmarks/uda.py --pairs amazon-webcam --seeds 0 --out runs/uda-quick
    .venv/bin/python benchmarks/uda.py --digits --out runs/uda                         # + both digit pairs
    .venv/bin/python benchmarks/uda.py --pairs --digits mnist-usps --out runs/uda      # MNIST→USPS only

The results file (``--results``, default results/uda.md) has one generated section per suite, between
``<!-- generated: office31 begin -->`` / ``<!-- generated: office31 end -->`` (likewise ``digits``): an invocation
rewrites the sections of the suites it ran or collected and keeps everything else (the hand-written header and
discussion, the other suite's section); results/uda.json keeps the other suite's runs the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))
os.environ.setdefault("ADAKIT_DATA", str(REPO.parent / "shared" / "data"))

from _results import check_sections, write_sections  # noqa: E402

from adakit.bench import run_plan, slug  # noqa: E402
from adakit.config import load_config  # noqa: E402
from adakit.data import load_domains  # noqa: E402
from adakit.loop import ActiveLoop  # noqa: E402
from adakit.registry import OBJECTIVES  # noqa: E402
from adakit.report import compare, load_summary  # noqa: E402

OFFICE31_CONFIG = REPO / "configs" / "office31-features.yaml"
#: the MLP width the committed tables were measured with (the config's default is 1024 since 2026-12-02)
MLP_WIDTH = "model.hidden_dim=512"
OFFICE31_PAIRS = ["amazon-webcam", "amazon-dslr", "webcam-amazon", "webcam-dslr", "dslr-amazon", "dslr-webcam"]
DIGIT_CONFIGS = {"mnist-usps": REPO / "configs" / "digits-mnist-usps.yaml",
                 "mnist-mnistm": REPO / "configs" / "digits-mnist-mnistm.yaml"}
DEFAULT_METHODS = [
    "source_only", "dann", "cdan", "cdan_e", "mstn", "mme", "tsf", "tsf_mme", "biwaa", "biwaa_i",
    "biwaa weighting only=biwaa:semantic_weight=0:separation_weight=0",  # the paper's "DANN + weighting"
    "biwaa no separation=biwaa:separation_weight=0",  # BIWAA without the inter-class terms of Eq. 10
    "gsda global=gsda:use_class=false:use_group=false:use_sync=false",
    "gsda +class=gsda:use_group=false:use_sync=false",
    "gsda +class+group=gsda:use_sync=false",
    "gsda",
]
BASELINE = "source_only"
SUITE_TITLES = {"office31": "Office-31 (frozen MobileNetV2 features)", "digits": "Digits (LeNet)"}
WALL_FILE = "wall_seconds.txt"  # wall time of the whole run (all fits of BIWAA-I's restarts, evaluation)


def parse_method(spec: str) -> tuple[str, str, list[str]]:
    """``NAME`` or ``LABEL=NAME:key=value:...`` → (label, objective name, config overrides)."""
    head, *params = spec.split(":")
    label, _, name = head.rpartition("=")
    return (label or name), name, [f"objective.name={name}", *(f"objective.{p}" for p in params)]


def available_methods(specs: list[str]) -> tuple[list[str], list[str]]:
    """Split the specs into those whose objective is registered and those skipped."""
    known = set(OBJECTIVES.names())
    keep, skip = [], []
    for s in specs:
        (keep if parse_method(s)[1] in known else skip).append(s)
    return keep, skip


def plan_runs(args) -> list[tuple[str, str, int, Path, object]]:
    """(pair, label, seed, run_dir, cfg) of every run, each config validated before any training."""
    methods, _ = available_methods(args.methods)
    suites: list[tuple[str, Path, list[str], list[str]]] = []
    common = [f"train.device={args.device}"] + (args.set or [])
    for pair in args.pairs:
        src, tgt = pair.split("-")
        suites.append((pair, OFFICE31_CONFIG, [f"data.source={src}", f"data.target={tgt}",
                                               f"train.warmup_iters={args.iters}", MLP_WIDTH], common))
    if args.digits is not None:
        for pair in args.digits or DIGIT_CONFIGS:
            path = DIGIT_CONFIGS[pair]
            iters = [f"train.warmup_iters={args.digits_iters}"] if args.digits_iters else []
            suites.append((pair, path, iters, common))
    plan = []
    for pair, base, pair_set, extra in suites:
        for spec in methods:
            label, _, sets = parse_method(spec)
            for seed in args.seeds:
                cfg = load_config(base, [*pair_set, "budget.rounds=0", *sets, *extra, f"seed={seed}",
                                         f"label={label}"])
                plan.append((pair, label, seed, Path(args.out) / pair / slug(label) / f"seed-{seed}", cfg))
    return plan


def run_all(plan, log=print) -> None:
    labels = {run_dir: (pair, label, seed) for pair, label, seed, run_dir, _ in plan}

    def on_run(i: int, run_dir: Path, s: dict, seconds: float) -> None:
        (run_dir / WALL_FILE).write_text(f"{seconds:.3f}\n")
        pair, label, seed = labels[run_dir]
        log(f"[{i + 1}/{len(plan)}] {pair} {label} seed {seed}: accuracy {100 * s['final_accuracy']:.1f}, "
            f"{s['train_sec_per_iter'] * 1e3:.1f} ms/step, {seconds:.0f} s")

    run_plan([(cfg, run_dir) for *_, run_dir, cfg in plan], on_run)


def suite_of(pair: str) -> str:
    return "digits" if pair in DIGIT_CONFIGS else "office31"


def timing_table(plan) -> tuple[str, dict]:
    """Mean seconds per training step per method, its ratio to source_only (same invocation), seconds per run."""
    per_suite: dict[tuple[str, str], list[float]] = defaultdict(list)
    wall: dict[tuple[str, str], list[float]] = defaultdict(list)
    for pair, label, _, run_dir, _ in plan:
        kind = suite_of(pair)
        sec = load_summary(run_dir).get("train_sec_per_iter")
        if sec:
            per_suite[(kind, label)].append(sec)
        if (run_dir / WALL_FILE).is_file():
            wall[(kind, label)].append(float((run_dir / WALL_FILE).read_text()))
    kinds = sorted({k for k, _ in per_suite})
    lines = ["| method | " + " | ".join(f"{k}: ms/step | × source_only | s/run" for k in kinds) + " |",
             "|---|" + "---:|---:|---:|" * len(kinds)]
    out = {}
    for label in dict.fromkeys(lbl for _, lbl, _, _, _ in plan):
        cells = []
        for k in kinds:
            vals, base = per_suite.get((k, label)), per_suite.get((k, BASELINE))
            if not vals:
                cells += ["–", "–", "–"]
                continue
            ms = 1e3 * float(np.mean(vals))
            ratio = float(np.mean(vals) / np.mean(base)) if base else float("nan")
            run_s = float(np.mean(wall[(k, label)])) if wall.get((k, label)) else float("nan")
            out[f"{k}/{label}"] = {"ms_per_step": ms, "relative_to_source_only": ratio, "seconds_per_run": run_s}
            cells += [f"{ms:.1f}", f"{ratio:.2f}", f"{run_s:.0f}"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", out


def timing_pass(plan, steps: int, repeats: int, log=print) -> tuple[str, dict]:
    """Interleaved timing of every method on the first suite's pair and seed: ``repeats`` round-robin passes of
    ``steps`` training steps each, minimum ms/step per method and its ratio to source_only. On a shared machine
    the in-run figures drift with the load between runs; round-robin + minimum compares like with like."""
    first = plan[0][0]
    cfgs = {}
    for pair, label, seed, _, cfg in plan:
        if pair == first and seed == plan[0][2]:
            cfgs[label] = cfg.model_copy(update={"train": cfg.train.model_copy(update={"warmup_iters": steps})})
    domains = load_domains(next(iter(cfgs.values())).data, plan[0][2])
    secs: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for label, cfg in cfgs.items():
                s = ActiveLoop(cfg, Path(tmp) / f"{slug(label)}-{r}", show_progress=False, domains=domains).run()
                secs[label].append(s["train_sec_per_iter"])
    base = min(secs[BASELINE]) if BASELINE in secs else float("nan")
    lines = ["| method | ms/step | × source_only |", "|---|---:|---:|"]
    out = {}
    for label, v in secs.items():
        out[label] = {"ms_per_step": 1e3 * min(v), "relative_to_source_only": min(v) / base}
        lines.append(f"| {label} | {1e3 * min(v):.1f} | {min(v) / base:.2f} |")
    log(f"timing pass: {first}, {steps} steps × {repeats} interleaved repeats")
    return "\n".join(lines) + "\n", out


def suites_of(plan) -> list[str]:
    """The suites of a plan, in the results file's order."""
    present = {suite_of(pair) for pair, *_ in plan}
    return [k for k in SUITE_TITLES if k in present]


def suite_section(kind: str, plan, args, wall: float, skipped: list[str], pass_md: str) -> str:
    """The generated section of one suite: what was run, its accuracy table, its cost, the published numbers."""
    out_dir = Path(args.out)
    runs = [p for p in plan if suite_of(p[0]) == kind]
    done = [p for p in runs if (p[3] / "summary.json").is_file()]
    cfg0 = runs[0][4]
    device = torch.cuda.get_device_name(0) if cfg0.train.device != "cpu" and torch.cuda.is_available() else \
        f"CPU ({platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()})"
    seeds = ", ".join(map(str, args.seeds))
    what = (f"Office-31 on frozen ImageNet MobileNetV2 features (1280-d, `configs/office31-features.yaml` with the "
            f"MLP width pinned to 512 as measured: MLP 1280→512→256 bottleneck→linear head, SGD lr 0.01, batch 32), "
            f"{args.iters} training steps" if kind == "office31" else
            f"Digits: LeNet from scratch, `configs/digits-mnist-*.yaml`, {cfg0.train.warmup_iters} training steps "
            f"of batch {cfg0.train.batch_size}")
    with_pass = bool(pass_md) and suite_of(plan[0][0]) == kind
    md = [
        f"## {SUITE_TITLES[kind]}", "",
        f"Generated by `benchmarks/uda.py` ({time.strftime('%Y-%m-%d')}): "
        f"`{shlex.join(['python', 'benchmarks/uda.py', *args.argv])}`.", "",
        f"{what}, no target labels (`budget.rounds: 0`), seeds {seeds}; transductive accuracy on the whole target "
        f"after the last step (not the best step). Device: {device}. "
        + ("Tables written with `--collect` from the finished runs (their wall time is in the cost table)."
           if args.collect else f"Total wall time of this invocation: {wall / 60:.1f} min."), "",
        "### Target accuracy (%)", "",
        compare([d for *_, d, _ in done], out_dir / f"comparison-{kind}").rstrip("\n") if done else
        "No finished runs.", "",
        "### Training cost", "",
        "Milliseconds per training step (mean over this invocation's runs; `train_sec_per_iter` of the warm-up "
        "fit; for biwaa_i the last of its restarts), the ratio to source_only measured in the same invocation, "
        "and wall seconds per whole run (all restarts, evaluation included). Runs that shared the machine with other "
        "work ran slower, so these ratios also measure load"
        + ("; the interleaved pass below compares like with like." if with_pass else "."),
        "", timing_table(done)[0],
    ]
    if with_pass:
        md += [f"Interleaved timing pass ({plan[0][0]}, seed {plan[0][2]}, {args.timing_steps} steps per method, "
               f"{args.timing_repeats} round-robin repeats, minimum): the like-for-like cost ratio.", "", pass_md]
    if skipped:
        md += [f"Not run (objective not registered): {', '.join(skipped)}.", ""]
    if kind == "office31":
        md += ["Papers (ResNet-50 fine-tuned end to end, as the papers report them): Office-31 average DANN 82.2, "
               "DANN + weighting 87.7, BIWAA 89.7 (one run) / 90.5 (10 runs); GSDA ablation global 83.7 → +class "
               "85.6 → +group 87.0 → +sync 89.7. Here the backbone is a frozen MobileNetV2, so expect the ordering, "
               "not the numbers."]
    else:
        md += ["Digits, published LeNet-scale results (trained on the 60,000 MNIST training images; the source here "
               "is MNIST t10k, 10,000 images): MNIST→MNIST-M source-only 52.3, DANN 76.7 (Ganin et al., JMLR 2016, "
               "Table 2); MNIST→USPS CDAN+E 95.6 (Long et al., NeurIPS 2018, Table 4). MNIST-M's digits are MNIST "
               "t10k's on colour backgrounds, so source and target hold the same digit shapes."]
    return "\n".join(md)


def write_results(plan, args, wall: float, skipped: list[str]) -> str:
    """Rewrite the generated sections of the suites in ``plan`` (results file and its .json), keep the rest."""
    kinds = suites_of(plan)
    pass_md, pass_out = timing_pass(plan, args.timing_steps, args.timing_repeats) if args.timing_steps else ("", {})
    results = Path(args.results)
    text = write_sections(results, {k: suite_section(k, plan, args, wall, skipped, pass_md) for k in kinds},
                          head="# Unsupervised domain adaptation\n\n")
    raw = [{"pair": p, "method": lbl, "seed": s, **{k: load_summary(d)[k] for k in
                                                     ("final_accuracy", "train_sec_per_iter")}}
           for p, lbl, s, d, _ in plan if (d / "summary.json").is_file()]
    _, timing = timing_table([p for p in plan if (p[3] / "summary.json").is_file()])
    store = results.with_suffix(".json")
    old = json.loads(store.read_text()) if store.is_file() else {}
    pass_key = {k: "timing_pass" if k == "office31" else f"timing_pass_{k}" for k in kinds}
    data = {"runs": [r for r in old.get("runs", []) if suite_of(r["pair"]) not in kinds] + raw,
            "timing": {**{k: v for k, v in old.get("timing", {}).items() if k.split("/")[0] not in kinds},
                       **timing},
            **{k: v for k, v in old.items() if k.startswith("timing_pass") and k not in pass_key.values()}}
    if pass_out:
        data[pass_key[suite_of(plan[0][0])]] = pass_out
    store.write_text(json.dumps(data, indent=1))
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/uda", help="folder of the run folders (resumable)")
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS,
                    help="NAME or LABEL=NAME:key=value:... (objective parameters)")
    ap.add_argument("--pairs", nargs="*", default=OFFICE31_PAIRS, help="Office-31 pairs SOURCE-TARGET")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--iters", type=int, default=1000, help="training steps per Office-31 run")
    ap.add_argument("--digits", nargs="*", choices=list(DIGIT_CONFIGS), default=None, metavar="PAIR",
                    help="also the digit pairs (LeNet): all of them, or those named (mnist-usps, mnist-mnistm)")
    ap.add_argument("--digits-iters", type=int, default=None, help="training steps per digits run (config: 2000)")
    ap.add_argument("--device", default="auto", help="train.device: auto | cpu | cuda")
    ap.add_argument("--set", nargs="*", help="extra config overrides for every run, e.g. train.batch_size=64")
    ap.add_argument("--timing-steps", type=int, default=150,
                    help="steps per method in the interleaved timing pass after the runs (0: skip it)")
    ap.add_argument("--timing-repeats", type=int, default=2, help="round-robin repeats of the timing pass")
    ap.add_argument("--collect", action="store_true",
                    help="run nothing: write the results of the finished runs of this grid (n per cell shown)")
    ap.add_argument("--results", default=str(HERE / "results" / "uda.md"),
                    help="markdown output (+ .json): the sections of this invocation's suites are rewritten, the "
                         "rest kept")
    args = ap.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)  # the command line the results file quotes
    _, skipped = available_methods(args.methods)
    if skipped:
        print(f"skipping (objective not registered): {', '.join(skipped)}")
    plan = plan_runs(args)
    print(f"{len(plan)} runs into {args.out}")
    check_sections(Path(args.results), tuple(suites_of(plan)))  # refused before any run, not after all of them
    t0 = time.perf_counter()
    if not args.collect:
        run_all(plan)
    print(write_results(plan, args, time.perf_counter() - t0, skipped))


if __name__ == "__main__":
    main()

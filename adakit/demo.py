"""`adakit demo`: a complete active domain adaptation run that needs no download.

Source: the even-indexed half of scikit-learn's bundled real 8x8 digits; target: the other half, every
third one of them drawn thicker and tilted 30° (`adakit.data.demo.DEMO_TARGET`). An MLP is trained on
the source (round 0: the source-only model), then 5 rounds query 5% of the target in all, once with
margin sampling and once with random sampling, for each of `SEEDS`; the table shows the target accuracy
per round as mean ± std over the seeds. Random sampling starts from margin sampling's warm-up checkpoint
(`ActiveLoop.adopt_warmup`: the same source-only model, trained once).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from adakit.config import build_config
from adakit.data import load_domains
from adakit.data.demo import DEMO_TARGET, SHIFT_DESCRIPTION, shifted_mask
from adakit.loop import ActiveLoop
from adakit.report import compare, curve_file, pair_label
from adakit.rundir import apply_checkpoint, check_writable_folder

DEMO_CONFIG = {
    "name": "demo",
    "seed": 0,
    "data": {"format": "demo", "source": "digits", "target": DEMO_TARGET},
    "model": {"backbone": "mlp", "hidden_dim": 128, "bottleneck_dim": 64},
    "objective": {"name": "finetune"},
    "budget": {"total": 0.05, "rounds": 5},
    # one CPU thread: the MLP's matrices are too small for more to help (2 threads: twice the wall time)
    "train": {"warmup_iters": 400, "round_iters": 300, "batch_size": 32, "labelled_target": "separate",
              "device": "cpu", "threads": 1},
}
STRATEGIES = ("margin", "random")
SEEDS = (0, 1, 2, 3, 4)


def _cell(values: np.ndarray) -> str:
    """Mean ± std over seeds in %; a lone seed has no spread to show."""
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * values.mean():.1f} ± {100 * values.std():.1f}"


def _title(seeds: tuple[int, ...]) -> str:
    if len(seeds) == 1:
        return f"target accuracy (%) per round, seed {seeds[0]}"
    return f"target accuracy (%) per round, mean ± std over {len(seeds)} seeds"


def run_demo(out_dir: str | Path, show_progress: bool = True, console: Console | None = None,
             seeds: tuple[int, ...] = SEEDS, overrides: list[str] | None = None, flag: str = "out_dir") -> dict:
    """Run the demo into ``out_dir/<strategy>/seed-<k>``, print the table; returns what it shows. ``flag``: how
    the messages name ``out_dir`` (a file there, or a folder that cannot be written, is refused first).

    The result holds ``accuracy[strategy]`` (seeds × rounds), ``labels`` per round, ``chance`` (1/C),
    ``source_only`` (round-0 accuracy on the unchanged and on the tilted target digits, per seed),
    ``queried_tilted`` (per strategy and seed: the share of queried digits that are tilted),
    ``runs[strategy]`` (run folders), ``comparison`` and ``curve`` (files). ``overrides`` are
    ``--set``-style changes (the tests use fewer iterations).
    """
    check_writable_folder(Path(out_dir), flag, "the demo runs")  # (not each run's folder, named "run_dir")
    threads = torch.get_num_threads()  # train.threads sets torch's global thread count; restored at the end
    try:
        return _run(Path(out_dir), show_progress, console or Console(), seeds, overrides)
    finally:
        torch.set_num_threads(threads)


def _run(out_dir: Path, show_progress: bool, console: Console, seeds: tuple[int, ...],
         overrides: list[str] | None) -> dict:
    acc: dict[str, list[list[float]]] = {s: [] for s in STRATEGIES}
    runs: dict[str, list[Path]] = {s: [] for s in STRATEGIES}
    halves: list[tuple[float, float]] = []
    queried_tilted: dict[str, list[float]] = {s: [] for s in STRATEGIES}
    domains, summary = None, {}
    for seed in seeds:
        for strategy in STRATEGIES:
            cfg = build_config(DEMO_CONFIG, [f"query.strategy={strategy}", f"seed={seed}", *(overrides or [])])
            domains = domains or load_domains(cfg.data, cfg.seed)  # the demo data do not depend on the seed
            if seed == seeds[0] and strategy == STRATEGIES[0]:
                console.print(f"{len(domains.source)} source digits → {len(domains.pool)} target digits "
                              f"({SHIFT_DESCRIPTION}); budget {cfg.budget.total:.0%} of the target in "
                              f"{cfg.budget.rounds} rounds; {' vs '.join(STRATEGIES)}, "
                              f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}", highlight=False)
            run_dir = out_dir / strategy / f"seed-{seed}"
            loop = ActiveLoop(cfg, run_dir, show_progress=show_progress, domains=domains)
            if strategy != STRATEGIES[0]:
                loop.adopt_warmup(out_dir / STRATEGIES[0] / f"seed-{seed}")  # the same source-only model
            else:  # after the warm-up: where the source-only model is right (unchanged vs tilted digits)
                loop.callbacks.append(_after_warmup(loop, halves))
            before = len(halves)
            summary = loop.run()
            if strategy == STRATEGIES[0] and len(halves) == before:  # a run finished earlier (demo run again):
                apply_checkpoint(loop.trainer, run_dir / "checkpoints" / "round-0.pt", 0, run_dir)  # no event
                halves.append(_source_only_halves(loop))
            idx, _ = loop.ledger.labelled_pool()
            if len(idx):
                queried_tilted[strategy].append(float(shifted_mask(len(domains.pool))[np.asarray(idx)].mean()))
            acc[strategy].append([m["accuracy"] for m in summary["rounds"]])
            runs[strategy].append(run_dir)
    labels = [m["labels"] for m in summary["rounds"]]
    arrays = {s: np.asarray(v) for s, v in acc.items()}
    chance = 1.0 / len(domains.classes)
    source_only = np.asarray(halves)

    table = Table(title=_title(tuple(seeds)))
    table.add_column("round", justify="right")
    table.add_column("labels", justify="right")
    for s in STRATEGIES:
        table.add_column(s, justify="right")
    table.add_column(f"{STRATEGIES[0]} − {STRATEGIES[1]}", justify="right")
    for r, n in enumerate(labels):
        diff = arrays[STRATEGIES[0]][:, r] - arrays[STRATEGIES[1]][:, r]
        table.add_row(str(r), str(n), *[_cell(arrays[s][:, r]) for s in STRATEGIES], f"{100 * diff.mean():+.1f}")
    console.print(table)
    round0 = arrays[STRATEGIES[0]][:, 0]
    console.print(f"Round 0 = the source-only model (no target label yet): {100 * round0.mean():.1f}% (chance "
                  f"{100 * chance:.0f}%): {100 * source_only[:, 0].mean():.0f}% of the unchanged digits, "
                  f"{100 * source_only[:, 1].mean():.0f}% of the thick tilted ones.", highlight=False)
    if all(queried_tilted.values()):
        share = {s: 100 * np.mean(v) for s, v in queried_tilted.items()}
        console.print(f"Margin sampling asks for labels where the model is unsure: {share['margin']:.0f}% of its "
                      f"queries were tilted digits, against {share['random']:.0f}% for random sampling, which "
                      "spends most of its labels on digits the model already reads.", highlight=False)
    compare([d for s in STRATEGIES for d in runs[s]], out_dir)
    curve = out_dir / curve_file(pair_label(summary))
    console.print(f"Files: run folders {out_dir}/<strategy>/seed-<k>/ (config, ledger, metrics, report.md), "
                  f"comparison {out_dir / 'comparison.md'}, learning curves {curve}", highlight=False)
    return {"accuracy": arrays, "labels": labels, "chance": chance, "source_only": source_only, "runs": runs,
            "queried_tilted": {s: np.asarray(v) for s, v in queried_tilted.items()},
            "comparison": out_dir / "comparison.md", "curve": curve}


def _after_warmup(loop: ActiveLoop, halves: list):
    """A callback that, once round 0 is trained, records the accuracy on the unchanged and the tilted digits."""

    def on_event(kind: str, info: dict) -> None:
        if kind == "trained" and info.get("round") == 0:
            halves.append(_source_only_halves(loop))

    return on_event


def _source_only_halves(loop: ActiveLoop) -> tuple[float, float]:
    """Accuracy of the loop's current (round-0) model on the unchanged and on the tilted target digits."""
    pool = loop.domains.pool
    pred = loop.pool_probabilities(np.arange(len(pool))).argmax(1).numpy()
    right, tilted = pred == pool.y, shifted_mask(len(pool))
    return float(right[~tilted].mean()), float(right[tilted].mean())

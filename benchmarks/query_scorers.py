"""Which model should make fine-tuning's margin picks? (a diagnosis, not a default choice).

On DSLR→Amazon and Webcam→Amazon (small sources) FT + margin trails the linear probe + margin by about a point
(benchmarks/results/feature-defaults.md, "The probe on a resampled source"). Here the network is trained exactly as
FT + margin trains it (``configs/office31-features.yaml``, 10% of the source held out per seed, as there), and only
the scores that rank the pool for margin sampling change:

- ``query.probs_from: probe`` (an adakit option, run by the bench itself): margins of a scikit-learn logistic
  regression (C = 1, raw features) refitted on source + labelled target each round, the probe baseline's own
  scores ("selection via proxy", Coleman et al., ICLR 2020);
- ``ens``: margins of the mean of the network's and that probe's probabilities (a two-member ensemble);
- ``gap``: the network's logit gap z1 − z2 instead of the probability margin p1 − p2;
- ``T2``: the network's margins at softmax temperature 2.

The oracle accuracy is read only to diagnose; nothing here sets a default. FT + margin, the probe and the
``probs_from`` rows come from the resampled-source bench, whose runs use the same configs and seeds (seed 0 of
FT + margin checked bit-identical); ``run`` adds the other rankings through a benchmark-only strategy.

    export OMP_NUM_THREADS=1 ADAKIT_DATA=/path/to/data
    adakit bench benchmarks/probe-resampled.yaml --out runs/feature-defaults/resampled
    python benchmarks/query_scorers.py run --pair dslr-amazon --out runs/feature-defaults/query-scorers
    python benchmarks/query_scorers.py run --pair webcam-amazon --out runs/feature-defaults/query-scorers
    python benchmarks/query_scorers.py table runs/feature-defaults/query-scorers runs/feature-defaults/resampled
    for s in digits16 digits-jda office31-logits; do   # the held-out sets; specs: benchmarks/probe-probs-*.yaml
        adakit bench benchmarks/probe-probs-$s.yaml --out runs/feature-defaults/probe-probs/$s; done
    python benchmarks/query_scorers.py heldout runs/feature-defaults/probe-probs runs/feature-defaults/check3
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy: its BLAS reads it once, at import

import argparse  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

KINDS = {"ens": "mean of the network's and the probe's", "gap": "the network's logit gap",
         "T2": "the network's at temperature 2"}
#: rows of the resampled-source bench (benchmarks/probe-resampled.yaml): the network's margins (FT + margin), the
#: probe run alone, and the network trained as FT + margin with the pool ranked by the probe (query.probs_from)
BASELINES = {"FT + margin": "FT_+_margin_defaults", "probe + margin": "linear_probe_raw_features_+_margin",
             "the probe's (`query.probs_from: probe`)": "FT_+_margin_probe_s_probabilities"}


def _register() -> None:
    import torch

    import adakit
    from adakit.probe import probe_pool_probs
    from adakit.query.base import Strategy, top_k
    from adakit.query.uncertainty import margin, top_two

    class ScorerParams(Strategy.Params):
        kind: str = "ens"

    @adakit.register_strategy("margin-scorer")
    class MarginScorer(Strategy):
        """Margin sampling with the pool ranked by another scorer (see the module docstring)."""

        Params = ScorerParams

        def select(self, view, budget, rng):
            kind, z = self.params.kind, view.logits.double()
            if kind == "gap":
                top = top_two(z)
                s = -(top[:, 0] - top[:, 1])
            elif kind.startswith("T"):
                s = margin(torch.softmax(z / float(kind[1:]), 1))
            else:  # ens
                li = view.labelled_indices
                p = torch.from_numpy(probe_pool_probs(view.source, view.pool, li, view.labels[li]))
                s = margin((p + torch.softmax(z, 1)) / 2)
            cand = view.unlabelled_indices
            return top_k(s[cand].numpy(), cand, budget, rng)


def run(pair: str, out: Path, kinds: list[str], seeds: list[int]) -> None:
    import adakit
    from adakit.config import load_config

    _register()
    src, tgt = pair.split("-")
    for kind in kinds:
        for seed in seeds:
            rd = out / pair / kind / f"seed-{seed}"
            if (rd / "summary.json").is_file():
                continue
            cfg = load_config(Path(__file__).parents[1] / "configs/office31-features.yaml",
                              [f"data.source={src}", f"data.target={tgt}", "query.strategy=margin",
                               "train.threads=1", "data.source_val=0.1", f"seed={seed}"])
            acc = adakit.ActiveLoop(cfg, rd, strategy=("margin-scorer", {"kind": kind}),
                                    show_progress=False).run()["rounds"][-1]["accuracy"]
            print(pair, kind, seed, f"{100 * acc:.2f}", flush=True)


def _final(run_dir: Path) -> float:
    return 100 * json.loads((run_dir / "summary.json").read_text())["rounds"][-1]["accuracy"]


def _paired(a: np.ndarray, b: np.ndarray) -> str:
    """Mean of the paired differences a − b (same seed) ± its standard error."""
    d = a - b
    return f"{d.mean():+.2f} ± {d.std(ddof=1) / np.sqrt(len(d)):.2f}"


def table(root: Path, resampled: Path) -> str:
    """Per pair of the resampled-source bench: each row's mean final accuracy over the seeds, and its paired
    differences (same seed = same source sample) to FT + margin and to the probe, with standard errors. The
    ``margin-scorer`` rows appear for the pairs ``run`` covered, over the seeds it ran."""
    lines = ["| pair | ranked by | seeds | accuracy | − FT + margin (± s.e.) | − probe (± s.e.) |",
             "|---|---|---:|---:|---:|---:|"]
    for pair in sorted(d.name for d in resampled.iterdir() if d.is_dir()):
        seeds = sorted(int(p.parent.name.split("-")[1])
                       for p in (resampled / pair / BASELINES["FT + margin"]).glob("seed-*/summary.json"))
        rows = {name: [resampled / pair / folder / f"seed-{s}" for s in seeds] for name, folder in BASELINES.items()}
        rows.update({label: [root / pair / k / f"seed-{s}" for s in seeds] for k, label in KINDS.items()
                     if all((root / pair / k / f"seed-{s}" / "summary.json").is_file() for s in seeds)})
        acc = {name: np.array([_final(d) for d in dirs]) for name, dirs in rows.items()
               if all((d / "summary.json").is_file() for d in dirs)}
        base, probe = acc["FT + margin"], acc["probe + margin"]
        for name, a in acc.items():
            lines.append(f"| {pair.replace('-', '→')} | {name} | {len(a)} | {a.mean():.2f} ± {a.std(ddof=1):.2f} | "
                         f"{'–' if a is base else _paired(a, base)} | {'–' if a is probe else _paired(a, probe)} |")
    return "\n".join(lines)


def heldout(root: Path, check: Path) -> str:
    """The option on the held-out feature sets (``root``/SET/PAIR, seeds 0–2) against check 3's runs
    (``check``/SET/PAIR: FT + margin at width 1,024, today's default, and the raw-feature probe), paired by seed.
    Round 0 (before any query) must be the same model in both: a check that only the ranking differs."""
    ft, probe, mine = "FT_+_margin_validators_choice", "linear_probe_raw_features_+_margin", BASELINES[
        "the probe's (`query.probs_from: probe`)"]
    lines = ["| set | pair | FT + margin | probe + margin | FT, probe's ranking | − FT + margin (± s.e.) "
             "| − probe (± s.e.) |", "|---|---|---:|---:|---:|---:|---:|"]
    diffs = []
    for set_dir in sorted(d for d in root.iterdir() if d.is_dir()):
        for pair in sorted(d.name for d in set_dir.iterdir() if d.is_dir()):
            runs = sorted((set_dir / pair / mine).glob("seed-*/summary.json"))
            seeds = [r.parent.name for r in runs]
            if len(seeds) < 2:
                continue
            acc = {}
            for name in (ft, probe, mine):
                base = set_dir if name == mine else check / set_dir.name
                acc[name] = np.array([_final(base / pair / name / s) for s in seeds])
            for s in seeds:
                r0 = [json.loads((b / pair / n / s / "summary.json").read_text())["rounds"][0]["accuracy"]
                      for b, n in ((set_dir, mine), (check / set_dir.name, ft))]
                if r0[0] != r0[1]:
                    raise SystemExit(f"{set_dir.name} {pair} {s}: round 0 differs ({r0}): not the same training")
            diffs.append((acc[mine] - acc[ft]).mean())
            lines.append(f"| {set_dir.name} | {pair.replace('-', '→')} | {acc[ft].mean():.2f} | "
                         f"{acc[probe].mean():.2f} | {acc[mine].mean():.2f} | {_paired(acc[mine], acc[ft])} | "
                         f"{_paired(acc[mine], acc[probe])} |")
    lines += ["", f"mean over the {len(diffs)} pairs, FT with the probe's ranking − FT + margin: "
              f"{np.mean(diffs):+.2f} points"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--pair", required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    t = sub.add_parser("table")
    t.add_argument("root", type=Path)
    t.add_argument("resampled", type=Path)
    h = sub.add_parser("heldout")
    h.add_argument("root", type=Path)
    h.add_argument("check", type=Path)
    a = ap.parse_args()
    if a.cmd == "run":
        run(a.pair, a.out, a.kinds, a.seeds)
    elif a.cmd == "table":
        print(table(a.root, a.resampled))
    else:
        print(heldout(a.root, a.check))


if __name__ == "__main__":
    main()

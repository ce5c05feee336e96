"""benchmarks/feature_defaults.py (choosing feature-mode defaults by a validator) and benchmarks/feature_sets.py."""

import csv
import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


fd = _load("feature_defaults")
HEADER = ["setting", "checkpoint", "labels", "queried_acc", "accuracy_oracle", "marks", "run_dir"]


def _sweep(path: Path, q: dict[str, tuple[float, float]], acc: dict[str, float], default: str = "a") -> None:
    """One active sweep: per setting two rounds whose queried_acc are q[s] (credited to rounds 0, 1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for s, (q0, q1) in q.items():
            w.writerow([s, "round 0", 0, q0, 0.1, "", "x"])
            w.writerow([s, "round 1", 5, q1, 0.1, "", "x"])
            w.writerow([s, "round 2", 10, "", acc[s], "default" if s == default else "", "x"])


def test_aggregate_means_rounds_then_seeds_then_pairs_then_sets(tmp_path):
    acc = {"a": 0.5, "b": 0.6, "c": 0.7}
    # set X, pair p1: seed 0 a=(0.2+0.4)/2=0.3, seed 1 a=0.5 -> 0.4; pair p2: a=0.0 -> set X a=0.2
    _sweep(tmp_path / "X" / "p1" / "seed-0" / "sweep.csv", {"a": (0.2, 0.4), "b": (0, 0), "c": (1, 1)}, acc)
    _sweep(tmp_path / "X" / "p1" / "seed-1" / "sweep.csv", {"a": (0.5, 0.5), "b": (0, 0), "c": (1, 1)}, acc)
    _sweep(tmp_path / "X" / "p2" / "seed-0" / "sweep.csv", {"a": (0.0, 0.0), "b": (0, 0), "c": (1, 1)}, acc)
    # set Y (one pair, one seed): a = 0.8 -> over sets (0.2 + 0.8) / 2 = 0.5 (each set counts once)
    _sweep(tmp_path / "Y" / "q" / "seed-0" / "sweep.csv", {"a": (0.8, 0.8), "b": (0, 0), "c": (0, 0)}, acc)
    agg = fd.aggregate([tmp_path])
    assert agg["a"]["queried_acc"] == pytest.approx(0.5)
    assert agg["c"]["queried_acc"] == pytest.approx(0.5)
    assert agg["b"]["accuracy_oracle"] == pytest.approx(0.6)
    assert agg["a"]["default"] == 1.0 and agg["b"]["default"] == 0.0
    assert fd.choose(agg) == "a"  # c ties a (within 0.005): the default stays
    agg["c"]["queried_acc"] = 0.6
    assert fd.choose(agg) == "c"
    assert fd.choose(agg, tie=0.2) == "a"


def test_feature_sets_keep_labels_and_shapes(tmp_path):
    fs = _load("feature_sets")
    data = Path(os.environ.get("ADAKIT_DATA", ""))
    if not (data / "digits" / "MNIST_vs_USPS.mat").is_file():
        pytest.skip("needs the project's data (ADAKIT_DATA)")
    fs.digits_jda(data, tmp_path)
    fs.office31_logits(data, tmp_path)
    m = np.load(tmp_path / "digits-jda" / "mnist.npz")
    assert m["feat"].shape == (2000, 256) and m["feat"].dtype == np.float32 and set(m["y"]) == set(range(10))
    src = np.load(data / "office31" / "features-mobilenetv2" / "dslr.npz")
    d = np.load(tmp_path / "office31-logits" / "dslr.npz")
    assert d["feat"].shape == (498, 1000) and (d["y"] == src["y"]).all()
    assert np.array_equal(d["feat"], src["imagenet_logits"].astype(np.float32))


@pytest.mark.parametrize("stage", sorted(fd.STAGES))
def test_every_stage_plans_valid_configs_with_the_default_among_them(stage, tmp_path):
    """Each stage's grid, with the overrides every sweep adds, gives valid configs (checked before any run) and
    holds the current defaults (the choice rule falls back to them)."""
    from adakit.sweep import parse_grid, plan_sweep

    grid = parse_grid(fd.STAGES[stage])
    base, common = fd.sweep_base(stage)
    settings = plan_sweep(base, grid, tmp_path, common)
    # the defaults are a grid point (plan_sweep would otherwise add them as one more setting)
    assert len(settings) == math.prod(len(v) for v in grid.values()) >= 3
    assert sum(s.is_default for s in settings) == 1
    assert all(s.config.query.strategy == "margin" for s in settings)
    default = next(s for s in settings if s.is_default).config  # COMMON's hidden_dim=512, also where the grid sets it
    assert default.model.hidden_dim == 512 and default.data.source_val == 0.1


def test_aggregate_of_one_set_ignores_the_others(tmp_path):
    acc = {"a": 0.5, "b": 0.6}
    _sweep(tmp_path / "X" / "p1" / "seed-0" / "sweep.csv", {"a": (0.2, 0.2), "b": (0.6, 0.6)}, acc)
    _sweep(tmp_path / "Y" / "q" / "seed-0" / "sweep.csv", {"a": (0.9, 0.9), "b": (0.0, 0.0)}, acc)
    assert fd.choose(fd.aggregate([tmp_path])) == "a"  # over sets: a 0.55, b 0.3
    assert fd.choose(fd.aggregate([tmp_path], only="X")) == "b"
    assert fd.aggregate([tmp_path], only="X")["a"]["queried_acc"] == pytest.approx(0.2)


def test_check_runs_the_choice_over_the_given_defaults(tmp_path, monkeypatch):
    import yaml

    import adakit.bench

    ran = []
    monkeypatch.setattr(adakit.bench, "run_bench", lambda path, out, only=None: ran.append(path))
    fd.check(tmp_path, ["office31"], tmp_path, ["model.bottleneck_dim=0"], [0], defaults=["model.hidden_dim=1024"])
    spec = yaml.safe_load(ran[0].read_text())
    assert spec["methods"]["FT + margin (defaults)"] == ["model.hidden_dim=1024"]
    assert spec["methods"]["FT + margin (validators' choice)"] == ["model.hidden_dim=1024", "model.bottleneck_dim=0"]
    assert spec["methods"]["linear probe + margin"] == ["runner=linear_probe", "probe.standardize=true"]


def test_probe_report_applies_the_rule_to_the_two_probes(tmp_path):
    import json

    from adakit.bench import slug

    # office31 (tuning), one pair: standardised queried_acc (0.2 + 0.4) / 2 = 0.3, raw 0.5; the held-out set
    # favours the standardised probe but does not count for the choice
    for name, pair, q_std, q_raw in [("office31", "dslr-amazon", (0.2, 0.4), (0.5, 0.5)),
                                     ("office31-logits", "dslr-amazon", (0.9, 0.9), (0.1, 0.1))]:
        for method, qs in [(fd.METHODS[0], q_std), (fd.METHODS[1], q_raw)]:
            run = tmp_path / name / pair / slug(method) / "seed-0"
            run.mkdir(parents=True)
            rows = [{"round": 0}] + [{"round": i + 1, "val/queried_acc": q} for i, q in enumerate(qs)]
            (run / "summary.json").write_text(json.dumps({  # (the keys every run summary holds)
                "name": "x", "strategy": "margin", "objective": "linear_probe", "protocol": "transductive", "seed": 0,
                "data": {}, "budget": {"rounds": 2}, "final_accuracy": 0.5, "rounds": rows}))
    text = fd.probe_report(tmp_path)
    assert "| linear probe + margin | office31 (tuning) | 0.3000 | 50.0 |" in text
    assert text.endswith(f"**choice:** {fd.METHODS[1]}")


def test_paired_compares_ft_and_probe_seed_by_seed(tmp_path):
    import json

    def summary(pair, method, seed, acc, q=(0.5,)):
        d = tmp_path / pair / method / f"seed-{seed}"
        d.mkdir(parents=True)
        rounds = [{"round": 0}] + [{"round": r + 1, "val/queried_acc": v} for r, v in enumerate(q)]
        (d / "summary.json").write_text(json.dumps({"final_accuracy": acc, "rounds": rounds}))

    # pair p: FT − probe per seed = +2, −1, +5 -> mean +2.0, stdev 3.0, s.e. 3/√3 = 1.73; FT not behind on 2 of 3
    # queried_acc (mean over rounds) chooses: seed 0 FT (0.5 vs 0.4), seed 1 probe (0.3 vs 0.6), seed 2 FT
    # -> chosen 80, 71, 90: mean 80.33; one probe pick
    ft_q, probe_q = [(0.5,), (0.2, 0.4), (0.5,)], [(0.3, 0.5), (0.6,), (0.5,)]  # seed 2 ties: FT
    for seed, (ft, probe) in enumerate([(0.80, 0.78), (0.70, 0.71), (0.90, 0.85)]):
        summary("a-b", "FT_+_margin_defaults", seed, ft, ft_q[seed])
        summary("a-b", "linear_probe_raw_features_+_margin", seed, probe, probe_q[seed])
    summary("a-b", "FT_+_margin_defaults", 7, 0.5)  # a seed without its probe run is not paired
    summary("c-d", "FT_+_margin_defaults", 0, 0.5)  # one seed: no standard error, the pair is left out
    summary("c-d", "linear_probe_raw_features_+_margin", 0, 0.5)
    out = fd.paired(tmp_path)
    row = next(line for line in out.splitlines() if line.startswith("| a→b"))
    assert row == "| a→b | 78.0 ± 5.7 | 80.0 ± 8.2 | +2.0 ± 1.7 | 2 / 3 | 80.3 (1 / 3) |"
    assert "c→d" not in out and "FT − probe +2.00; chosen by `queried_acc` − FT +0.33" in out


def test_table_md_replaces_only_the_checks_marked_section(tmp_path, monkeypatch):
    """`table --md FILE` overwrote the whole file: given the committed results file, its prose was lost."""
    monkeypatch.setattr(fd, "table", lambda root: "| new table |")
    md = tmp_path / "feature-defaults.md"
    md.write_text("# hand-written\n\nreading of the numbers\n")
    monkeypatch.setattr(sys, "argv", ["feature_defaults.py", "table", str(tmp_path / "check3"), "--md", str(md)])
    with pytest.raises(SystemExit, match="generated: check3 begin"):
        fd.main()
    assert md.read_text() == "# hand-written\n\nreading of the numbers\n"
    md.write_text("# hand-written\n\n<!-- generated: check3 begin -->\nold\n<!-- generated: check3 end -->\n\ntail\n")
    fd.main()
    assert md.read_text() == ("# hand-written\n\n<!-- generated: check3 begin -->\n\n| new table |\n\n"
                              "<!-- generated: check3 end -->\n\ntail\n")

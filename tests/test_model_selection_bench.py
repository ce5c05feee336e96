"""benchmarks/model_selection.py: regret, pick − default and Spearman ρ of each validator, from sweep.csv files."""

import csv
import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location(
    "model_selection", Path(__file__).resolve().parent.parent / "benchmarks" / "model_selection.py")
ms = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ms)

HEADER = ["setting", "checkpoint", "labels", "snd", "im", "accuracy_oracle", "marks", "run_dir"]


def write_sweep(path: Path, rows: list[tuple]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for setting, ckpt, snd, im, acc, marks in rows:
            w.writerow([setting, ckpt, 0, snd, im, acc, marks, "x"])
    return path


def test_score_by_hand(tmp_path):
    # accuracies 0.70, 0.80, 0.60, 0.75; default = the last row (0.75); best = 0.80
    p = write_sweep(tmp_path / "M" / "a-b" / "seed-0" / "sweep.csv", [
        ("lr=1", "step 1", 3.0, 0.1, 0.70, "pick"),
        ("lr=1", "round 0", 1.0, 0.4, 0.80, "oracle best"),
        ("lr=2", "step 1", 2.0, 0.2, 0.60, ""),
        ("lr=2", "round 0", 0.0, 0.3, 0.75, "default"),
    ])
    s = ms.score(p)
    # snd picks row 0 (0.70): regret 10 points, 5 below the default; ranks 4,2,3,1 vs accuracy ranks 2,4,1,3 -> rho -0.6
    assert s["snd"]["regret"] == pytest.approx(10.0)
    assert s["snd"]["vs_default"] == pytest.approx(-5.0)
    assert s["snd"]["spearman"] == pytest.approx(-0.6)
    # im picks row 1 (the best): regret 0, +5 over the default; ranks 1,4,2,3 vs 2,4,1,3 -> rho 0.8
    assert s["im"]["regret"] == pytest.approx(0.0)
    assert s["im"]["vs_default"] == pytest.approx(5.0)
    assert s["im"]["spearman"] == pytest.approx(0.8)
    assert s["(random pick, expected)"]["regret"] == pytest.approx(80 - 71.25)
    assert s["(config default)"]["regret"] == pytest.approx(5.0)


def test_table_averages_seeds_within_a_pair_then_pairs(tmp_path):
    rows = [("a", "r", 1.0, 1.0, 0.5, "default"), ("b", "r", 0.0, 0.0, 0.9, ""), ("c", "r", 0.5, 0.5, 0.7, "")]
    write_sweep(tmp_path / "M" / "p1" / "seed-0" / "sweep.csv", rows)  # snd, im pick 0.5: regret 40
    rows2 = [("a", "r", 0.0, 0.0, 0.5, "default"), ("b", "r", 1.0, 1.0, 0.9, ""), ("c", "r", 0.5, 0.5, 0.7, "")]
    write_sweep(tmp_path / "M" / "p1" / "seed-1" / "sweep.csv", rows2)  # pick 0.9: regret 0 -> pair mean 20
    write_sweep(tmp_path / "M" / "p2" / "seed-0" / "sweep.csv", rows2)  # regret 0 -> mean over pairs 10 ± 10
    md = ms.table(tmp_path, None, json_out=tmp_path / "scores.json")
    line = next(ln for ln in md.splitlines() if ln.startswith("| `snd` |"))
    assert "| 10.0 ± 10.0 |" in line
    assert "(2 pair(s), seeds per pair: 1/2)" in md
    # the saved per-sweep scores rebuild the same table without the run folders (NaN stored as null)
    assert '"spearman": null' in (tmp_path / "scores.json").read_text()
    assert ms.table(tmp_path / "scores.json", None) == md
    # sources combine, a later one winning for the same sweep: seed 1 of p1 replaced by the seed-0 scores
    other = tmp_path / "other"
    write_sweep(other / "M" / "p1" / "seed-1" / "sweep.csv", rows)
    line = next(ln for ln in ms.table([tmp_path / "scores.json", other], None).splitlines() if "`snd`" in ln)
    assert "| 20.0 ± 20.0 |" in line  # p1: 40 (both seeds), p2: 0


def test_tied_top_scores_count_as_their_mean(tmp_path):
    p = write_sweep(tmp_path / "M" / "a-b" / "seed-0" / "sweep.csv", [
        ("a", "r", 1.0, 0.0, 0.60, "default"), ("b", "r", 1.0, 0.0, 0.80, ""), ("c", "r", 0.5, 1.0, 0.90, "")])
    s = ms.score(p)
    assert s["snd"]["regret"] == pytest.approx(20.0)  # best 90 − mean(60, 80)
    assert s["snd"]["vs_default"] == pytest.approx(10.0)


def test_active_sweep_scores_settings_at_their_last_round(tmp_path):
    """An active sweep: a setting (not a round) is one candidate, judged at its last round; queried_acc
    (credited by the sweep to the round before) counts as its mean over rounds."""
    header = ["setting", "checkpoint", "labels", "im", "queried_acc", "accuracy_oracle", "marks", "run_dir"]
    rows = [  # setting a: last round 0.70, im 0.9 there, queried_acc mean 0.2; b: 0.80, im 0.1, mean 0.5
        ("a", "round 0", 0, 5.0, 0.1, 0.40, ""), ("a", "round 1", 10, 0.0, 0.3, 0.60, ""),
        ("a", "round 2", 20, 0.9, "", 0.70, "default"),
        ("b", "round 0", 0, 0.0, 0.6, 0.50, ""), ("b", "round 1", 10, 9.0, 0.4, 0.90, ""),
        ("b", "round 2", 20, 0.1, "", 0.80, ""),
        ("c", "round 0", 0, 0.0, 0.1, 0.50, ""), ("c", "round 1", 10, 0.0, 0.1, 0.55, ""),
        ("c", "round 2", 20, 0.5, "", 0.60, ""),
    ]
    p = tmp_path / "FT + margin" / "a-b" / "seed-0" / "sweep.csv"
    p.parent.mkdir(parents=True)
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([(*r[:6], r[6], "x") for r in rows])
    s = ms.score(p)
    # im at the last round picks a (0.70; its 5.0 at round 0 and b's 9.0 at round 1 are not candidates)
    assert s["im"]["regret"] == pytest.approx(10.0) and s["im"]["vs_default"] == pytest.approx(0.0)
    # queried_acc: a 0.2, b 0.5 -> picks b (0.80), the oracle best, 10 over the default a
    assert s["queried_acc"]["regret"] == pytest.approx(0.0) and s["queried_acc"]["vs_default"] == pytest.approx(10.0)
    assert s["(random pick, expected)"]["regret"] == pytest.approx(10.0)  # 80 − mean(70, 80, 60)
    assert s["queried_acc"]["spearman"] == pytest.approx(1.0)  # 0.2, 0.5, 0.1 vs 70, 80, 60


def test_table_summarises_uda_objectives_and_active_pipelines_apart(tmp_path):
    good = [("a", "r", 1.0, 1.0, 0.9, "default"), ("b", "r", 0.0, 0.0, 0.5, ""), ("c", "r", 0.5, 0.5, 0.7, "")]
    bad = [("a", "r", 1.0, 1.0, 0.5, "default"), ("b", "r", 0.0, 0.0, 0.9, ""), ("c", "r", 0.5, 0.5, 0.7, "")]
    write_sweep(tmp_path / "DANN" / "p1" / "seed-0" / "sweep.csv", good)  # snd picks 0.9: regret 0
    write_sweep(tmp_path / "FT + margin" / "p1" / "seed-0" / "sweep.csv", bad)  # snd picks 0.5: regret 40
    md = ms.table(tmp_path, None)

    def snd_regret(title: str) -> str:
        block = md.split(f"### {title}")[1]
        return next(ln for ln in block.splitlines() if ln.startswith("| `snd` |")).split("|")[2].strip()

    assert snd_regret("UDA objectives") == "0.0 ± 0.0"
    assert snd_regret("Active pipelines") == "40.0 ± 0.0"
    assert snd_regret("All methods") == "20.0 ± 20.0"
    only_uda = ms.table(tmp_path, None, ["DANN"])  # one group: no group summaries, only "All methods"
    assert "### UDA objectives" not in only_uda and "### All methods" in only_uda


def test_table_over_seeds_spreads_over_the_sweeps_of_one_pair(tmp_path):
    rows = [("a", "r", 1.0, 1.0, 0.5, "default"), ("b", "r", 0.0, 0.0, 0.9, ""), ("c", "r", 0.5, 0.5, 0.7, "")]
    rows2 = [("a", "r", 0.0, 0.0, 0.5, "default"), ("b", "r", 1.0, 1.0, 0.9, ""), ("c", "r", 0.5, 0.5, 0.7, "")]
    write_sweep(tmp_path / "M" / "p1" / "seed-0" / "sweep.csv", rows)  # snd regret 40
    write_sweep(tmp_path / "M" / "p1" / "seed-1" / "sweep.csv", rows2)  # snd regret 0
    line = next(ln for ln in ms.table(tmp_path, None).splitlines() if ln.startswith("| `snd` |"))
    assert "| 20.0 ± 0.0 |" in line  # one pair: the seeds are averaged first
    md = ms.table(tmp_path, None, over_seeds=True)
    assert "### M (2 sweep(s))" in md
    assert "| 20.0 ± 20.0 |" in next(ln for ln in md.splitlines() if ln.startswith("| `snd` |"))


def test_importing_the_benchmark_registers_no_validator():
    """Importing this file (as the test suite does when it collects this module) registered dev_insample for the
    whole process: every run of the suite then scored and recorded it, and the sweep tables listed it
    (tests/test_sweep.py's end-to-end test failed in a full-suite run). `run` registers it for its own sweeps."""
    from adakit.registry import VALIDATORS

    assert "dev_insample" not in VALIDATORS.names()
    try:
        ms.register_dev_insample()
        ms.register_dev_insample()  # (each call of run: the same class again is allowed)
        assert VALIDATORS.get("dev_insample") is ms.InSampleDEV
    finally:
        VALIDATORS._items.pop("dev_insample", None)


def test_dev_variants_paper_weights_average_one_without_shift_and_follow_the_target():
    """benchmarks/dev_variants.py's paper recipe: the domain classifier on training-source features, C on a
    held-out 20%, weights on validation samples it never saw: about 1 without a shift; with a shift, validation
    samples on the target's side weigh more than those away from it."""
    import sys

    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from dev_variants import train_source_ratio

    rng = np.random.default_rng(0)
    w = train_source_ratio(rng.normal(size=(600, 20)), rng.normal(size=(400, 20)), rng.normal(size=(100, 20)))
    assert 0.9 < w.mean() < 1.1 and w.std() < 0.2
    val = np.r_[np.full((1, 2), 1.5), np.full((1, 2), -1.5)]
    w = train_source_ratio(rng.normal(size=(600, 2)), rng.normal(size=(400, 2)) + 1.0, val)
    assert w[0] > 5 * w[1]


def test_dev_variants_rescores_the_uda_sweeps_only(tmp_path):
    """dev_variants.py compares DEV variants on warm-up candidates (labels 0) and says it covers UDA sweeps only, but
    it rescored every sweep.csv of the folder: an active sweep's rows at 0 labels carry no 'default' mark (a setting
    is judged at its last round), so scoring them stopped the script with StopIteration after its earlier sweeps."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import dev_variants

    for method in ("DANN", "MME", "FT + margin", "LAS + LAA"):
        for seed in (0, 1):
            folder = tmp_path / method / "amazon-webcam" / f"seed-{seed}"
            folder.mkdir(parents=True)
            (folder / "sweep.csv").write_text("")
    found = ["/".join(p.parts[-4:-1]) for p in dev_variants.uda_sweeps(tmp_path)]
    assert found == [f"{m}/amazon-webcam/seed-{s}" for m in ("DANN", "MME") for s in (0, 1)]
    assert [p.parts[-4] for p in dev_variants.uda_sweeps(tmp_path, ["MME"])] == ["MME", "MME"]
    with pytest.raises(SystemExit, match=r"--method FT \+ margin: not a UDA method of model_selection.py"):
        dev_variants.uda_sweeps(tmp_path, ["FT + margin"])

import json
import time

import pytest
from typer.testing import CliRunner

from adakit.cli import app

runner = CliRunner()


def _summary(run_dir, strategy, seed, accs, environment=None):
    run_dir.mkdir(parents=True)
    s = {"name": "t", "strategy": strategy, "objective": "finetune", "protocol": "transductive", "seed": seed,
         "data": {"format": "npz", "source": "amazon", "target": "webcam"},
         "budget": {"total": 0.05, "rounds": 2, "per_round": [5, 5]},
         "rounds": [{"round": i, "labels": 5 * i, "accuracy": a, "mean_class_accuracy": a} for i, a in enumerate(accs)],
         "final_accuracy": accs[-1]}
    if environment:
        s["environment"] = environment
    (run_dir / "summary.json").write_text(json.dumps(s))


def test_report_compares_runs_mean_std(tmp_path):
    _summary(tmp_path / "m0", "margin", 0, [0.5, 0.6, 0.8])
    _summary(tmp_path / "m1", "margin", 1, [0.5, 0.6, 0.6])
    _summary(tmp_path / "r0", "random", 0, [0.5, 0.55, 0.65])
    res = runner.invoke(app, ["report", str(tmp_path / "m0"), str(tmp_path / "m1"), str(tmp_path / "r0"),
                              "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert "| finetune + margin | 70.0 ± 10.0 (n=2) |" in md
    assert "| finetune + random | 65.0 (n=1) |" in md
    assert (tmp_path / "cmp" / "curve-amazon-to-webcam.png").stat().st_size > 1000
    assert (tmp_path / "m0" / "report.md").is_file()
    from adakit.report import results  # the same numbers as rows, for a DataFrame

    rows = results([tmp_path / "m0", tmp_path / "m1", tmp_path / "r0"])
    assert [(r["method"], r["pair"], r["seed"], r["final_accuracy"]) for r in rows] == [
        ("finetune + margin", "amazon→webcam", 0, 0.8), ("finetune + margin", "amazon→webcam", 1, 0.6),
        ("finetune + random", "amazon→webcam", 0, 0.65)]
    assert [x["accuracy"] for x in rows[0]["rounds"]] == [0.5, 0.6, 0.8]
    assert results(str(tmp_path / "m0")) == rows[:1] and results(tmp_path / "m0") == rows[:1]  # one folder


def test_report_refuses_a_file_as_out_before_writing_anything(tmp_path):
    _summary(tmp_path / "m0", "margin", 0, [0.5, 0.6, 0.8])
    (tmp_path / "notes.txt").write_text("mine")
    for out in (tmp_path / "notes.txt", tmp_path / "notes.txt" / "sub"):
        res = runner.invoke(app, ["report", str(tmp_path / "m0"), "--out", str(out)])
        assert res.exit_code != 0 and "choose a folder" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m0" / "report.md").exists() and (tmp_path / "notes.txt").read_text() == "mine"


def test_report_says_when_runs_come_from_different_machines(tmp_path):
    from adakit.provenance import environment

    here = environment()
    other = {**here, "cpu": "Some Other CPU", "cpu_capability": "AVX2"}
    _summary(tmp_path / "m0", "margin", 0, [0.5, 0.8], here)
    _summary(tmp_path / "m1", "margin", 1, [0.5, 0.6], here)
    args = ["report", str(tmp_path / "m0"), str(tmp_path / "m1"), "--out"]
    assert runner.invoke(app, [*args, str(tmp_path / "same")]).exit_code == 0
    assert "different environments" not in (tmp_path / "same" / "comparison.md").read_text()
    _summary(tmp_path / "m2", "margin", 2, [0.5, 0.7], other)
    assert runner.invoke(app, [*args[:-1], str(tmp_path / "m2"), "--out", str(tmp_path / "mixed")]).exit_code == 0
    md = (tmp_path / "mixed" / "comparison.md").read_text()
    assert "computed in 2 different environments" in md
    assert "on Some Other CPU (AVX2 kernels" in md and f"({here['cpu_capability']} kernels" in md


def test_report_averages_only_seeds_of_one_experiment(tmp_path):
    _summary(tmp_path / "a", "margin", 0, [0.5, 0.8])
    _summary(tmp_path / "b", "margin", 0, [0.5, 0.6])
    _summary(tmp_path / "c", "margin", 1, [0.5, 0.7])
    res = runner.invoke(app, ["report", str(tmp_path / "a"), str(tmp_path / "a"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "is given twice" in res.output, res.output
    res = runner.invoke(app, ["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "both have seed 0" in res.output and "label:" in res.output, res.output
    (tmp_path / "a" / "config.yaml").write_text("seed: 0\ntrain: {lr: 0.01}\n")
    (tmp_path / "c" / "config.yaml").write_text("seed: 1\ntrain: {lr: 0.1}\n")
    res = runner.invoke(app, ["report", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "differ in more than the seed (train.lr: 0.01 → 0.1)" in res.output, res.output
    (tmp_path / "c" / "config.yaml").write_text("seed: 1\ntrain: {lr: 0.01, device: cuda, threads: 8}\n")
    assert runner.invoke(app, ["report", str(tmp_path / "a"), str(tmp_path / "c"), "--out",
                               str(tmp_path / "o")]).exit_code == 0  # where and how fast it ran: one experiment


def test_report_on_runs_without_target_labels(tmp_path):
    _summary(tmp_path / "u", "margin", 0, [0.5])
    s = json.loads((tmp_path / "u" / "summary.json").read_text())
    s.update(rounds=[], final_accuracy=None)
    (tmp_path / "u" / "summary.json").write_text(json.dumps(s))
    res = runner.invoke(app, ["report", str(tmp_path / "u"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert "| finetune + margin | no target labels (n=1) |" in (tmp_path / "o" / "comparison.md").read_text()


def test_report_on_a_non_run_folder_is_a_clear_error(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 2 and "no summary.json" in res.output


def test_methods_lists_registered_names():
    res = runner.invoke(app, ["methods"])
    assert res.exit_code == 0
    for name in ("finetune", "source_only", "random", "entropy", "confidence", "margin"):
        assert name in res.output


def test_method_descriptions_are_whole_first_paragraphs():
    from adakit.registry import OBJECTIVES, STRATEGIES

    for reg in (OBJECTIVES, STRATEGIES):
        for name, line in reg.describe():
            assert line and "\n" not in line and line.count("(") == line.count(")"), (name, line)
    gsda = dict(OBJECTIVES.describe())["gsda"]  # its first sentence spans two docstring lines
    assert gsda.endswith("(Hu et al., CVPR 2020, Eq. 4-17).")


def test_run_with_bad_override_fails_before_work(tmp_path):
    res = runner.invoke(app, ["run", "configs/office31-features.yaml", "--out", str(tmp_path / "r"),
                              "--set", "query.strategy=nope"])
    assert res.exit_code == 2 and "unknown strategy 'nope'" in res.output
    assert not (tmp_path / "r").exists()


def test_demo_runs_end_to_end(tmp_path):
    res = runner.invoke(app, ["demo", "--out", str(tmp_path), "--quiet", "--seeds", "1"])  # 5 seeds: test_demo
    assert res.exit_code == 0, res.output
    assert "margin" in res.output and "random" in res.output
    for s in ("margin", "random"):
        summary = json.loads((tmp_path / s / "seed-0" / "summary.json").read_text())
        assert len(summary["rounds"]) == 6 and summary["rounds"][-1]["labels"] == 45
        assert summary["final_accuracy"] > summary["rounds"][0]["accuracy"]
    assert (tmp_path / "comparison.md").is_file()


def test_curve_bands_take_their_lines_colour_and_pair_names_make_file_names(tmp_path, monkeypatch):
    """A ±std band took the next colour of its own cycle, so after a group of one run (no band) the band of the
    next group had the first group's colour; a domain named "sub/amazon" made a curve file in a missing folder."""
    import matplotlib
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    from adakit.report import curve_file, plot_curves

    def run(accs):
        return {"rounds": [{"labels": 10 * i, "accuracy": a} for i, a in enumerate(accs)]}

    seen = {}
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: seen.setdefault("ax", fig.axes[0]))
    plot_curves({"a dann": [run([0.5, 0.6])], "b margin": [run([0.4, 0.7]), run([0.5, 0.8])]}, tmp_path / "c.png")
    ax = seen["ax"]
    lines = {ln.get_label(): ln.get_color() for ln in ax.get_lines()}
    (band,) = ax.collections
    assert tuple(band.get_facecolor()[0][:3]) == to_rgba(lines["b margin"])[:3] != to_rgba(lines["a dann"])[:3]
    assert matplotlib.get_backend().lower() == "agg"
    assert curve_file("sub/amazon→sub/webcam") == "curve-sub_amazon-to-sub_webcam.png"
    assert curve_file("amazon→webcam") == "curve-amazon-to-webcam.png"


def test_report_on_a_read_only_run_folder_compares_it_with_a_warning(tmp_path, monkeypatch):
    """Runs on read-only storage (a shared results disk) stopped `adakit report` with a PermissionError traceback
    while rebuilding their report.md; their results are compared and the folder is left as it is, with a warning."""
    import os

    import adakit.report

    _summary(tmp_path / "m0", "margin", 0, [0.5, 0.6, 0.8])
    _summary(tmp_path / "shared-disk", "margin", 1, [0.5, 0.6, 0.6])
    real = os.access
    monkeypatch.setattr(adakit.report.os, "access", lambda p, mode: real(p, mode) and not (
        mode & os.W_OK and "shared-disk" in str(p)))
    res = runner.invoke(app, ["report", str(tmp_path / "m0"), str(tmp_path / "shared-disk"),
                              "--out", str(tmp_path / "cmp")])
    assert res.exit_code == 0, res.output
    assert "| finetune + margin | 70.0 ± 10.0 (n=2) |" in (tmp_path / "cmp" / "comparison.md").read_text()
    assert "1 of the 2 runs had their report.md and curve.png rebuilt (see the warnings)" in res.output
    assert (tmp_path / "m0" / "report.md").is_file() and not (tmp_path / "shared-disk" / "report.md").exists()


def test_report_and_demo_refuse_an_out_folder_that_cannot_be_written(tmp_path, monkeypatch):
    import adakit.rundir

    _summary(tmp_path / "m0", "margin", 0, [0.5, 0.6, 0.8])
    monkeypatch.setattr(adakit.rundir.os, "access", lambda p, mode: not mode & adakit.rundir.os.W_OK)
    res = runner.invoke(app, ["report", str(tmp_path / "m0"), "--out", str(tmp_path / "cmp")])
    assert res.exit_code != 0 and "is not writable; choose a writable folder for comparison.md" in res.output
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "d")])
    assert res.exit_code != 0 and "--out" in res.output and "choose a writable folder for the demo runs" in res.output
    assert not (tmp_path / "m0" / "report.md").exists() and not (tmp_path / "d").exists()


def test_help_shows_flags_without_a_placeholder():
    res = runner.invoke(app, ["run", "--help"], terminal_width=200)
    assert res.exit_code == 0 and "KEY=VALUE" in res.output
    assert not any("--help" in line and "<bool>" in line.lower() for line in res.output.splitlines())


def _cells(row: str) -> list[str]:
    """The cells of one markdown table row, as GitHub splits them (on pipes not escaped by a backslash)."""
    import re

    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def test_names_with_pipes_and_line_breaks_keep_the_tables_columns(tmp_path):
    """A method label or domain name holding '|' split its table row into extra columns (the numbers moved under
    another pair's heading) and a line break in it ended the row: they are escaped, the unicode kept."""
    _summary(tmp_path / "m0", "margin", 0, [0.5, 0.8])
    s = json.loads((tmp_path / "m0" / "summary.json").read_text())
    s.update(label="a|b ünï\nsecond line\n", data={"format": "npz", "source": "x|y", "target": "webcam"})
    (tmp_path / "m0" / "summary.json").write_text(json.dumps(s))
    _summary(tmp_path / "r0", "random", 0, [0.5, 0.6])
    res = runner.invoke(app, ["report", str(tmp_path / "m0"), str(tmp_path / "r0"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    lines = (tmp_path / "o" / "comparison.md").read_text().splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    assert len(table) == 4 and all(len(_cells(ln)) == 4 for ln in table), table  # method, 2 pairs, avg
    assert _cells(table[0])[1:3] == ["amazon→webcam", r"x\|y→webcam"]
    assert _cells(table[2]) == [r"a\|b ünï second line", "–", "80.0 (n=1)", "–"]
    report = (tmp_path / "m0" / "report.md").read_text().splitlines()
    assert report[0] == "# t: x|y→webcam, a|b ünï second line" and report[1] == ""


def test_seeds_that_end_with_different_label_counts_are_plotted_and_noted_whatever_their_order(tmp_path,
                                                                                             monkeypatch):
    """Dropped queries are not trained on, so seeds of one experiment can hold different label counts per round:
    the curve put every seed's accuracy at the first run's counts (the order of the folders moved the curve) and
    the table did not say the cell averages runs of different label counts."""
    from matplotlib.figure import Figure

    seen = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: seen.append(fig.axes[0].get_lines()[0].get_xdata()))
    _summary(tmp_path / "s0", "margin", 0, [0.5, 0.6, 0.8])
    _summary(tmp_path / "s1", "margin", 1, [0.5, 0.6, 0.6])
    s = json.loads((tmp_path / "s1" / "summary.json").read_text())
    for m, n in zip(s["rounds"], (0, 3, 7)):  # 2 then 3 of its 5 + 5 queries dropped
        m["labels"] = n
    (tmp_path / "s1" / "summary.json").write_text(json.dumps(s))
    from adakit.report import compare

    md = compare([tmp_path / "s0", tmp_path / "s1"], tmp_path / "a")
    compare([tmp_path / "s1", tmp_path / "s0"], tmp_path / "b")
    assert [list(x) for x in seen] == [[0, 4, 8.5], [0, 4, 8.5]]  # the mean count of each round
    assert "finetune + margin on amazon→webcam: its seeds end with different numbers of labels (7, 10)" in md


def test_a_cell_without_target_labels_differs_from_a_cell_without_runs_and_the_spread_is_named(tmp_path):
    """Runs of a target without labels and a method never run on a pair were both '–': a reader could not tell two
    finished runs from none. The header did not say which std (population or sample) the ± is."""
    _summary(tmp_path / "m0", "margin", 0, [0.5, 0.8])
    _summary(tmp_path / "m1", "margin", 1, [0.5, 0.6])
    for seed in (0, 1):
        _summary(tmp_path / f"u{seed}", "margin", seed, [0.5])
        s = json.loads((tmp_path / f"u{seed}" / "summary.json").read_text())
        s.update(rounds=[], final_accuracy=None, data={"format": "npz", "source": "amazon", "target": "unlabelled"},
                 label="dann")
        (tmp_path / f"u{seed}" / "summary.json").write_text(json.dumps(s))
    from adakit.report import compare

    md = compare([tmp_path / d for d in ("m0", "m1", "u0", "u1")], tmp_path / "o")
    assert "| dann | no target labels (n=2) | – | – |" in md
    assert "| finetune + margin | – | 70.0 ± 10.0 (n=2) | – |" in md
    assert "population std (ddof = 0) over the n seeds" in md and "–: no run" in md


def test_report_on_an_unfinished_run_says_to_resume_it(tmp_path):
    """A run killed before its end (a ledger, no summary.json) was called 'no summary.json (is it a finished adakit
    run folder?)': it now says the run has not finished and how to continue it or leave it out; a folder that does
    not exist is named as such."""
    from adakit.ledger import Ledger

    _summary(tmp_path / "m0", "margin", 0, [0.5, 0.8])
    (tmp_path / "killed").mkdir()
    Ledger(tmp_path / "killed" / "ledger.sqlite").close()
    res = runner.invoke(app, ["report", str(tmp_path / "m0"), str(tmp_path / "killed"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "has not finished" in res.output and "adakit resume" in res.output, res.output
    assert "leave it out" in res.output and not (tmp_path / "o").exists()
    res = runner.invoke(app, ["report", str(tmp_path / "typo")])
    assert res.exit_code == 2 and "not found" in res.output, res.output


def test_run_report_of_a_target_without_labels_shows_its_validators_not_an_empty_table(tmp_path):
    """report.md of a run on a target without labels was an accuracy table with a heading and no rows; it now says
    there is no accuracy and shows the label-free validators of each round (summary.json's unlabelled_rounds).
    The budget line said '0.0 in 0 rounds' for a run that queries nothing, and now gives the per-round counts."""
    from adakit.report import write_run_report

    _summary(tmp_path / "u", "margin", 0, [0.5])
    s = json.loads((tmp_path / "u" / "summary.json").read_text())
    s.update(rounds=[], final_accuracy=None, budget={"total": 0.0, "rounds": 0, "per_round": []},
             unlabelled_rounds=[{"round": 0, "labels": 0, "val/entropy": -1.25, "val/snd": 4.5}])
    write_run_report(tmp_path / "u", s)
    md = (tmp_path / "u" / "report.md").read_text()
    assert "| round | labels | accuracy |" not in md and "no accuracy" in md
    assert "| round | labels | val/entropy | val/snd |" in md and "| 0 | 0 | -1.2500 | 4.5000 |" in md
    assert "budget: none (0 rounds: no target label is queried)" in md
    _summary(tmp_path / "m", "margin", 0, [0.5, 0.6, 0.8])
    write_run_report(tmp_path / "m", json.loads((tmp_path / "m" / "summary.json").read_text()))
    assert "budget: 0.05 in 2 rounds (5, 5 a round)" in (tmp_path / "m" / "report.md").read_text()


def test_run_report_counts_the_rounds_added_with_adakit_query(tmp_path):
    """A UDA run (budget.rounds: 0) given active rounds with `adakit query` kept saying 'budget: none (0 rounds: no
    target label is queried)' above a table of rounds with labels; the budget line now counts the added rounds, for
    an active run too. On a target without labels the table is introduced as 'no test sample has a label' (the
    target had people's labels by then)."""
    from adakit.report import write_run_report

    _summary(tmp_path / "u", "margin", 0, [0.5])
    s = json.loads((tmp_path / "u" / "summary.json").read_text())
    s.update(rounds=[], final_accuracy=None, budget={"total": 10.0, "rounds": 0, "per_round": []},
             unlabelled_rounds=[{"round": r, "labels": 9 * r, "val/im": 0.25} for r in range(3)])
    write_run_report(tmp_path / "u", s)
    md = (tmp_path / "u" / "report.md").read_text()
    assert "budget: 0 rounds in the config; 2 rounds added with `adakit query`" in md, md
    assert "no target label is queried" not in md and "No test sample has a label" in md
    assert "| 2 | 18 | 0.2500 |" in md
    _summary(tmp_path / "m", "margin", 0, [0.5, 0.6, 0.8, 0.85])  # 2 configured rounds, then one more
    s = json.loads((tmp_path / "m" / "summary.json").read_text())
    s["budget"] = {"total": 0.05, "rounds": 2, "per_round": [5, 5]}
    write_run_report(tmp_path / "m", s)
    assert "budget: 0.05 in 2 rounds (5, 5 a round); 1 more round added with `adakit query`" in \
        (tmp_path / "m" / "report.md").read_text()


def test_very_long_domain_names_give_a_curve_file_name_the_file_system_takes(tmp_path):
    """A pair of long domain names made a curve file name over the file system's 255 bytes: `adakit report` ended
    in an OSError traceback after checking everything. Long names are cut and end in a hash of the whole pair."""
    from adakit.report import curve_file

    long_a, long_b = "é" * 60 + "→" + "t" * 200, "é" * 60 + "→" + "t" * 199 + "u"
    assert len(curve_file(long_a).encode()) <= 120 and curve_file(long_a) != curve_file(long_b)
    assert curve_file(long_a).startswith("curve-" + "é" * 20) and curve_file(long_a).endswith(".png")
    assert curve_file("amazon→webcam") == "curve-amazon-to-webcam.png"  # short names are unchanged
    _summary(tmp_path / "m0", "margin", 0, [0.5, 0.8])
    s = json.loads((tmp_path / "m0" / "summary.json").read_text())
    s["data"].update(source="é" * 60, target="t" * 200)
    (tmp_path / "m0" / "summary.json").write_text(json.dumps(s))
    res = runner.invoke(app, ["report", str(tmp_path / "m0"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / curve_file("é" * 60 + "→" + "t" * 200)).stat().st_size > 1000


def test_answers_recorded_after_the_last_round_was_trained_are_named_in_the_reports(tmp_path):
    """Labels corrected (`import-labels --correct`) after a run finished are not trained on (`resume` has nothing
    left to do), yet report.md and comparison.md showed the accuracies as if of the corrected labels, and
    import-labels said `adakit resume` would train on them."""
    from adakit.ledger import Ledger
    from adakit.report import compare, write_run_report

    _summary(tmp_path / "m0", "margin", 0, [0.5, 0.8])
    _summary(tmp_path / "m1", "margin", 1, [0.5, 0.6])
    for d in ("m0", "m1"):
        with Ledger(tmp_path / d / "ledger.sqlite") as led:
            led.record_queries(1, ["a", "b", "c"], range(3), [0.1] * 3)
            led.record_labels({"a": 1, "b": 2, "c": 0}, "oracle")
            led.record_metrics(1, {"accuracy": 0.8}, 3)
            if d == "m0":
                time.sleep(0.01)  # (timestamps are in milliseconds)
                led.record_labels({"a": 0, "b": 0}, "me", correction=True)
    s = json.loads((tmp_path / "m0" / "summary.json").read_text())
    write_run_report(tmp_path / "m0", s)
    md = (tmp_path / "m0" / "report.md").read_text()
    assert "2 answers were recorded after the last round was trained" in md and "ledger export" in md
    write_run_report(tmp_path / "m1", json.loads((tmp_path / "m1" / "summary.json").read_text()))
    assert "after the last round" not in (tmp_path / "m1" / "report.md").read_text()
    md = compare([tmp_path / "m0", tmp_path / "m1"], tmp_path / "o")
    assert f"- {tmp_path / 'm0'}: 2 answers" in md and str(tmp_path / "m1") + ":" not in md


def test_import_labels_into_a_finished_run_does_not_promise_a_retraining(tmp_path):
    """Corrections imported into a finished run were answered with 'next: `adakit resume RUN` trains on them', but
    resume has nothing left to do; it now says no model is trained on them, and report.md names them."""
    import csv

    import yaml

    cfg = {"seed": 0, "data": {"format": "demo", "source": "digits", "target": "digits-mixed"},
           "model": {"backbone": "mlp", "hidden_dim": 16, "bottleneck_dim": 8}, "query": {"strategy": "margin"},
           "budget": {"total": 10, "rounds": 1}, "train": {"warmup_iters": 5, "round_iters": 3, "threads": 1,
                                                           "device": "cpu"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    assert runner.invoke(app, ["run", str(tmp_path / "c.yaml"), "--out", str(run), "--quiet"]).exit_code == 0
    assert runner.invoke(app, ["ledger", "export", str(run), str(tmp_path / "l.csv")]).exit_code == 0
    rows = list(csv.DictReader((tmp_path / "l.csv").open()))
    (tmp_path / "fix.csv").write_text(f"sample_id,label\n{rows[0]['sample_id']},{(int(rows[0]['label']) + 1) % 10}\n")
    time.sleep(0.01)
    res = runner.invoke(app, ["import-labels", str(run), str(tmp_path / "fix.csv"), "--correct"])
    assert res.exit_code == 0 and "1 corrected" in res.output, res.output
    assert "trains on them" not in res.output and "the run has finished" in res.output, res.output
    assert runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "o")]).exit_code == 0
    assert "1 answer was recorded after the last round was trained" in (run / "report.md").read_text()


def test_cells_of_runs_under_different_protocols_say_which(tmp_path):
    """Inductive runs (tested on a held-out half of the target) and transductive ones (on all of it) stood side by
    side with only the heading listing both protocols: each cell now names its own when they differ."""
    _summary(tmp_path / "m0", "margin", 0, [0.5, 0.8])
    _summary(tmp_path / "r0", "random", 0, [0.5, 0.6])
    s = json.loads((tmp_path / "r0" / "summary.json").read_text())
    s["protocol"] = "inductive"
    (tmp_path / "r0" / "summary.json").write_text(json.dumps(s))
    from adakit.report import compare

    md = compare([tmp_path / "m0", tmp_path / "r0"], tmp_path / "o")
    assert "| finetune + margin | 80.0 (n=1, transductive) |" in md
    assert "| finetune + random | 60.0 (n=1, inductive) |" in md
    md = compare([tmp_path / "m0"], tmp_path / "o")
    assert "| finetune + margin | 80.0 (n=1) |" in md


def test_dollar_signs_in_names_are_drawn_as_they_are(tmp_path, monkeypatch):
    """matplotlib reads text between two '$' as TeX: a method label 'a $\\q$ b' ended `adakit report` in a
    ParseFatalException traceback, and 'price $5 and $6' lost its dollar signs to math italics."""
    from matplotlib.figure import Figure

    from adakit.report import plot_curves

    real, seen = Figure.savefig, {}

    def savefig(fig, *a, **k):
        real(fig, *a, **k)  # draws the text: TeX errors come from here
        ax = fig.axes[0]
        seen.update(title=ax.get_title(), legend=[t.get_text() for t in ax.get_legend().get_texts()])

    monkeypatch.setattr(Figure, "savefig", savefig)
    run = {"rounds": [{"labels": 0, "accuracy": 0.5}, {"labels": 10, "accuracy": 0.6}]}
    plot_curves({r"a $\q$ b": [run], "price $5 and $6": [run]}, tmp_path / "c.png", title="$x$→$y$")
    assert (tmp_path / "c.png").stat().st_size > 1000
    assert seen["legend"] == [r"a \$\q\$ b", r"price \$5 and \$6"] and seen["title"] == r"\$x\$→\$y\$"


def test_a_curve_with_bands_says_what_they_are(tmp_path, monkeypatch):
    """The shaded band around a curve of several seeds was explained nowhere in the figure."""
    from matplotlib.figure import Figure

    from adakit.report import plot_curves

    seen = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **k: seen.append(fig.axes[0].get_legend().get_title()
                                                                            .get_text()))

    def run(a):
        return {"rounds": [{"labels": 0, "accuracy": 0.5}, {"labels": 10, "accuracy": a}]}

    plot_curves({"m": [run(0.6), run(0.7)]}, tmp_path / "a.png")
    plot_curves({"m": [run(0.6)]}, tmp_path / "b.png")
    assert seen == ["mean over seeds, band ± std", ""]


def test_a_linear_probe_on_a_target_without_labels_finishes_with_its_report(unlabelled_target_config, tmp_path):
    """runner=linear_probe on a target without labels records rounds without an accuracy: writing report.md ended
    in KeyError 'accuracy', so the run never wrote summary.json (unfinished, and resuming failed the same way)."""
    cfg = unlabelled_target_config()
    res = runner.invoke(app, ["run", str(cfg), "--out", str(tmp_path / "p"), "--quiet", "--set",
                              "runner=linear_probe"])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "p" / "report.md").read_text()
    assert "no accuracy" in md and "| round | labels | val/" in md
    assert (tmp_path / "p" / "summary.json").is_file()
    res = runner.invoke(app, ["report", str(tmp_path / "p"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0 and "no target labels (n=1)" in res.output, res.output


@pytest.mark.parametrize("content", ['{"name": "t", "seed', "[1, 2]", '{"name": "t"}', "\udcff"])
def test_a_damaged_summary_is_named_with_what_to_do(tmp_path, content):
    """A summary.json cut short, not an object or missing keys ended `adakit report` in a JSONDecodeError or
    KeyError traceback; it is now an error naming the file and how to write it again."""
    from adakit.ledger import Ledger

    run = tmp_path / "m0"
    _summary(run, "margin", 0, [0.5, 0.8])
    (run / "summary.json").write_bytes(content.encode(errors="surrogateescape"))
    res = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert f"{run / 'summary.json'}" in res.output and "holds no ledger" in res.output, res.output
    Ledger(run / "ledger.sqlite").close()  # a run of the loop: resume writes its summary again
    res = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "adakit resume" in res.output, res.output

"""`adakit bench`: the grid runner behind the committed benchmark tables."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from adakit.bench import run_bench
from adakit.cli import app
from adakit.errors import ConfigError

BASE = {"name": "tiny", "seed": 0, "data": {"format": "demo"},
        "model": {"hidden_dim": 16, "bottleneck_dim": 8},
        "query": {"strategy": "random"}, "budget": {"total": 0.02, "rounds": 2},
        "train": {"warmup_iters": 30, "round_iters": 10, "threads": 1, "device": "cpu"}}


@pytest.fixture()
def bench_file(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    spec = {"base": "base.yaml", "seeds": [0, 1],
            "pairs": [["digits", "digits-shifted"], ["digits", "digits-rotated"]],
            "methods": {"random": ["query.strategy=random"], "margin": ["query.strategy=margin"]}}
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_pair_and_method_filters_and_resume(bench_file, tmp_path):
    out = tmp_path / "out"
    md = run_bench(bench_file, out, only=["margin"], pairs=["digits-digits-rotated"])
    runs = sorted(p.parent.relative_to(out).as_posix() for p in out.glob("*/*/*/summary.json"))
    assert runs == ["digits-digits-rotated/margin/seed-0", "digits-digits-rotated/margin/seed-1"]
    assert "| margin |" in md and "digits→digits-rotated" in md and "(n=2)" in md
    s = json.loads((out / runs[0] / "summary.json").read_text())
    assert s["label"] == "margin" and s["strategy"] == "margin" and [r["labels"] for r in s["rounds"]] == [0, 9, 18]
    # finished runs are skipped: a second call trains nothing and leaves them untouched
    mtime = (out / runs[0] / "summary.json").stat().st_mtime_ns
    calls = []
    run_bench(bench_file, out, only=["margin"], pairs=["digits-digits-rotated"], on_run=lambda *a: calls.append(a))
    assert calls == [] and (out / runs[0] / "summary.json").stat().st_mtime_ns == mtime


def test_a_bench_given_as_a_dict_runs_the_same_grid(bench_file, tmp_path, monkeypatch):
    out = tmp_path / "out"
    md = run_bench(bench_file, out, only=["margin"], pairs=["digits-digits-rotated"])
    spec = yaml.safe_load(bench_file.read_text())
    monkeypatch.chdir(tmp_path)  # (base relative to the working folder)
    calls = []
    again = run_bench(spec, out, only=["margin"], pairs=["digits-digits-rotated"], on_run=lambda *a: calls.append(a))
    assert again == md and calls == []  # the same runs: found finished, none retrained
    with pytest.raises(ConfigError, match="<bench given in Python>: invalid config:\n  methods: Input should be"):
        run_bench({**spec, "methods": 3}, out)


def test_table_only_writes_the_finished_runs_and_trains_nothing(bench_file, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["bench", str(bench_file), "--out", str(out), "--table-only"])
    assert res.exit_code == 2 and "no finished run of this grid yet" in res.output
    run_bench(bench_file, out, only=["margin"], pairs=["digits-digits-rotated"])
    calls = []
    md = run_bench(bench_file, out, on_run=lambda *a: calls.append(a), table_only=True)
    assert calls == [] and len(list(out.glob("*/*/*/summary.json"))) == 2  # the other 6 runs were not started
    assert "| margin |" in md and "| random |" not in md and "(n=2)" in md
    assert (out / "comparison.md").read_text().strip() == md.strip()


def test_a_table_being_replaced_says_it_is_out_of_date_until_the_bench_finishes(bench_file, tmp_path, monkeypatch):
    import adakit.bench as bench

    out = tmp_path / "out"
    run_bench(bench_file, out, only=["margin"], pairs=["digits-digits-rotated"])
    old = (out / "comparison.md").read_text()

    def stopped(plan, *a, **k):  # the grid grew (random too) and the command was stopped before any run finished
        raise KeyboardInterrupt

    monkeypatch.setattr(bench, "run_plan", stopped)
    for _ in range(2):  # stopped twice: one line, not two
        with pytest.raises(KeyboardInterrupt):
            run_bench(bench_file, out, pairs=["digits-digits-rotated"])
    text = (out / "comparison.md").read_text()
    assert text.startswith("> **Out of date** (since ") and text.count("Out of date") == 1
    assert "`adakit bench` started again in this folder" in text and text.endswith(old)
    monkeypatch.undo()
    md = run_bench(bench_file, out, pairs=["digits-digits-rotated"])  # finished: the new table, no line
    assert (out / "comparison.md").read_text().strip() == md.strip() and "Out of date" not in md
    assert "| random |" in md
    # nothing to run (every run finished): the table is only rewritten, never marked
    with monkeypatch.context() as m:
        m.setattr(bench, "run_plan", stopped)
        with pytest.raises(KeyboardInterrupt):
            run_bench(bench_file, out, pairs=["digits-digits-rotated"])
    assert "Out of date" not in (out / "comparison.md").read_text()


def test_the_second_method_adopts_the_shared_warmup(bench_file, tmp_path):
    out = tmp_path / "out"
    run_bench(bench_file, out, pairs=["digits-digits-shifted"])
    a = json.loads((out / "digits-digits-shifted/random/seed-0/summary.json").read_text())
    b = json.loads((out / "digits-digits-shifted/margin/seed-0/summary.json").read_text())
    assert a["rounds"][0] == b["rounds"][0]  # the same round-0 model, trained once
    assert a["rounds"][1:] != b["rounds"][1:]


def test_unknown_method_or_pair_fails_before_any_run(bench_file, tmp_path):
    with pytest.raises(ConfigError, match=r"no method named \['margni'\]"):
        run_bench(bench_file, tmp_path / "o", only=["margni"])
    with pytest.raises(ConfigError, match=r"no pair named \['digits-usps'\].*digits-digits-shifted"):
        run_bench(bench_file, tmp_path / "o", pairs=["digits-usps"])
    res = CliRunner().invoke(app, ["bench", str(bench_file), "--out", str(tmp_path / "o"), "--pair", "x-y"])
    assert res.exit_code != 0 and "no pair named" in res.output
    assert not (tmp_path / "o").exists()


def test_two_method_names_that_map_to_one_run_folder_are_refused(bench_file, tmp_path):
    spec = yaml.safe_load(bench_file.read_text())
    spec["methods"] = {"margin k=5": ["query.strategy=margin"], "margin_k_5": ["query.strategy=random"]}
    bench_file.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="methods 'margin k=5' and 'margin_k_5' would share the run folder "
                                          "'margin_k_5'"):
        run_bench(bench_file, tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_pairs_sharing_a_folder_names_read_as_yaml_and_non_ascii_names(bench_file, tmp_path):
    """Two pairs could map to one run folder (the second was skipped as finished, then the table failed); method
    names were read as YAML ("null" became no label, "yes" a boolean); a name without ASCII letters had no folder
    of its own (its runs landed beside the other methods')."""
    from adakit.bench import load_bench, slug

    spec = yaml.safe_load(bench_file.read_text())
    spec["pairs"] = [["x y", "z"], ["x_y", "z"]]
    bench_file.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=r"'margin' on x y-z and 'margin' on x_y-z would share one run folder"):
        run_bench(bench_file, tmp_path / "o")
    assert not (tmp_path / "o").exists()
    assert slug("марджин") == "марджин" and slug("амазон-webcam") == "амазон-webcam" and slug("-x") == "x"
    with pytest.raises(ConfigError, match="gives an empty folder name"):
        slug("#!")
    spec = yaml.safe_load(bench_file.read_text())
    spec["pairs"] = [["digits", "digits-shifted"]]
    spec["methods"] = {"null": ["query.strategy=margin"], "yes": ["query.strategy=random"]}
    bench_file.write_text(yaml.safe_dump(spec))
    assert set(load_bench(bench_file)[0].methods) == {"null", "yes"}
    from adakit.bench import plan_bench

    labels = {cfg.label for cfg, _ in plan_bench(bench_file, tmp_path / "o")}
    assert labels == {"null", "yes"}


def test_a_finished_run_of_another_config_is_refused_not_counted(bench_file, tmp_path):
    out = tmp_path / "o"
    run_bench(bench_file, out, only=["random"], pairs=["digits-digits-shifted"])
    spec = yaml.safe_load(bench_file.read_text())
    spec["set"] = ["train.round_iters=7"]
    bench_file.write_text(yaml.safe_dump(spec))
    for table_only in (False, True):
        with pytest.raises(ConfigError, match=r"random/seed-0 holds a run of another config \(train.round_iters: "):
            run_bench(bench_file, out, only=["random"], pairs=["digits-digits-shifted"], table_only=table_only)
    spec["set"] = ["train.threads=2", "train.eval_batch_size=64"]  # how it runs, not what it computes: reused
    bench_file.write_text(yaml.safe_dump(spec))
    assert "(n=" in run_bench(bench_file, out, only=["random"], pairs=["digits-digits-shifted"], table_only=True)


def test_a_run_stored_before_a_key_existed_is_the_same_experiment(bench_file, tmp_path):
    """A key added since a run was stored, whose default reproduces it, is no change (as `adakit resume` sees it)."""
    from adakit.ledger import Ledger

    out = tmp_path / "o"
    run_bench(bench_file, out, only=["random"], pairs=["digits-digits-shifted"])
    for led_path in out.glob("*/random/seed-*/ledger.sqlite"):
        with Ledger(led_path) as led:
            stored = led.get_meta("config")
            del stored["query"]["probs_from"], stored["data"]["source_val"]
            led.set_meta("config", stored)
    assert "(n=2)" in run_bench(bench_file, out, only=["random"], pairs=["digits-digits-shifted"], table_only=True)


def test_a_run_that_stored_anchor_k_null_loads_resumes_and_compares_as_it_ran(bench_file, tmp_path):
    """Runs stored before 2026-12-02 hold anchor.k: null (K chosen from the pool size); once k became an int they
    could not be loaded, predicted from, resumed or reported beside new runs. Without LAA the value is unused (the
    same experiment as today's default); with LAA the old rule is kept (5 below 1,000 pool samples, else 10)."""
    import adakit
    from adakit.adapt.paa import AnchorParams, AnchorSet
    from adakit.ledger import Ledger

    out = tmp_path / "o"
    run_bench(bench_file, out, only=["random"], pairs=["digits-digits-shifted"])
    runs = sorted(out.glob("*/random/seed-*"))
    for run in runs:
        with Ledger(run / "ledger.sqlite") as led:
            stored = led.get_meta("config")
            stored["anchor"]["k"] = None
            led.set_meta("config", stored)
    assert "(n=2)" in run_bench(bench_file, out, only=["random"], pairs=["digits-digits-shifted"], table_only=True)
    assert adakit.load_run(runs[0]).config.anchor.k == 10
    pool = type("Pool", (), {"__len__": lambda self: 800})()
    params = AnchorParams(kind="raa", k=None)
    anchors = AnchorSet(params, None, pool, np.zeros(0), np.zeros(0), 8, np.random.default_rng(0), "cpu", 3)
    assert anchors.k == 5


def test_a_method_that_does_not_fit_the_base_config_is_named(tmp_path):
    """A key of the base config that only one method has (objective.trade_off of DANN) broke the others, and the
    error named only the base file. A method that switches the objective now drops the base's DANN parameters
    (with a warning, as --set does); a key the method itself gives wrongly is an error naming the method."""
    from adakit.bench import plan_bench

    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, "objective": {"name": "dann", "trade_off": 0.5}}))
    spec = {"base": "base.yaml", "seeds": [0], "pairs": [["digits", "digits-shifted"]],
            "methods": {"dann": [], "finetune": ["objective.name=finetune"]}}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(spec))
    with pytest.warns(UserWarning, match="dropped objective.trade_off=0.5, of dann, which finetune does not take"):
        plan = plan_bench(tmp_path / "bench.yaml", tmp_path / "out")
    assert [c.objective.params() for c, _ in plan] == [{"trade_off": 0.5}, {}]
    spec["methods"]["finetune"].append("objective.trade_off=0.1")
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match="(?s)method .finetune. .objective.name=finetune, objective.trade_off=0.1., "
                                          "pair digits-digits-shifted: .*trade_off"):
        run_bench(tmp_path / "bench.yaml", tmp_path / "out")


def test_set_of_a_key_the_grid_sets_is_refused(bench_file, tmp_path):
    """--set lost silently to the grid for seed, label, data.source/target and the keys a method sets (the README
    said it applies to every run): such a --set is an error naming who sets the key and what to use instead."""
    from adakit.bench import plan_bench

    out = tmp_path / "out"
    for item, why in [("seed=3", "the bench sets seed for each run from its seeds: \\[0, 1\\]"),
                      ("label=x", "the bench sets label for each run to its method's name"),
                      ("data.target=digits", ".*from its pairs: digits-digits-shifted, .* --pair SOURCE-TARGET"),
                      ("data={source: digits}", "the bench sets data.source and data.target"),
                      ("query.strategy=entropy", "method '(random|margin)' of .*bench.yaml sets "
                                                 "query.strategy=(random|margin) for its runs, over --set; "
                                                 "change it there, or leave the method out")]:
        with pytest.raises(ConfigError, match=f"--set {re.escape(item)}: {why}"):
            plan_bench(bench_file, out, [item])
    assert not out.exists()
    plan = plan_bench(bench_file, out, ["train.lr=0.02"], only=["random"])  # a key no grid key covers
    assert {c.train.lr for c, _ in plan} == {0.02}
    res = CliRunner().invoke(app, ["bench", str(bench_file), "--out", str(out), "--set", "seed=1"])
    assert res.exit_code == 2 and "error: --set seed=1: the bench sets seed" in res.output


def test_cli_bench_on_an_unlabelled_target_reports_each_run(tmp_path):
    """A UDA bench on a target without labels: each finished run's line said 100 * None (a TypeError) and the
    rest of the grid was abandoned."""
    import numpy as np

    rng = np.random.default_rng(0)
    for name, y in (("src", np.arange(40) % 2), ("tgt", np.full(40, -1))):
        np.savez(tmp_path / f"{name}.npz", feat=rng.normal(size=(40, 4)).astype(np.float32), y=y)
    base = {**BASE, "data": {"format": "npz", "root": str(tmp_path), "unlabelled_value": -1},
            "budget": {"total": 0, "rounds": 0}, "objective": {"name": "dann"}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    spec = {"base": "base.yaml", "seeds": [0, 1], "pairs": [["src", "tgt"]], "methods": {"dann": []}}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(spec))
    res = CliRunner().invoke(app, ["bench", str(tmp_path / "bench.yaml"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert res.output.count("final accuracy n/a (no labelled test samples)") == 2


def test_a_table_of_part_of_the_grid_says_so(bench_file, tmp_path):
    """A grid split over processes sharing --out (--only / --pair) ends with the comparison.md of the process that
    finished last, which held only its own runs and did not say so: the other methods were missing without a word.
    A filtered table now names its filter, how many of the grid's runs it covers and the --table-only call."""
    out = tmp_path / "out"
    run_bench(bench_file, out, only=["margin"], pairs=["digits-digits-rotated"])
    md = run_bench(bench_file, out, only=["random"], pairs=["digits-digits-rotated"])
    assert "| random |" in md and "| margin |" not in md
    note = ("Filtered by --only random --pair digits-digits-rotated: this table covers 2 of the grid's 8 runs; "
            "without these filters, `--table-only` tabulates every finished run of the grid.")
    assert note in md and note in (out / "comparison.md").read_text()
    whole = run_bench(bench_file, out, table_only=True)
    assert "| random |" in whole and "| margin |" in whole and "Filtered" not in whole


def test_a_resumed_bench_adopts_the_warmup_of_a_run_finished_before(bench_file, tmp_path, monkeypatch):
    """Runs that share a warm-up train it once, but only within one call: a bench interrupted after the first
    method's run trained the same warm-up again for the second method when run again (a waste on a laptop, not a
    difference in numbers); a finished run's warm-up is now adopted."""
    from adakit.loop import ActiveLoop

    out = tmp_path / "out"
    run_bench(bench_file, out, only=["random"], pairs=["digits-digits-shifted"])  # the interrupted bench's part
    adopted = []
    real = ActiveLoop.adopt_warmup

    def spy(self, other):
        adopted.append((self.run_dir.relative_to(out).as_posix(), Path(other).relative_to(out).as_posix()))
        return real(self, other)

    monkeypatch.setattr(ActiveLoop, "adopt_warmup", spy)
    run_bench(bench_file, out, pairs=["digits-digits-shifted"])
    assert adopted == [("digits-digits-shifted/margin/seed-0", "digits-digits-shifted/random/seed-0"),
                       ("digits-digits-shifted/margin/seed-1", "digits-digits-shifted/random/seed-1")]
    a = json.loads((out / "digits-digits-shifted/random/seed-0/summary.json").read_text())
    b = json.loads((out / "digits-digits-shifted/margin/seed-0/summary.json").read_text())
    assert a["rounds"][0] == b["rounds"][0]
    assert (out / "digits-digits-shifted/margin/seed-0/checkpoints/round-0.pt").read_bytes() == \
        (out / "digits-digits-shifted/random/seed-0/checkpoints/round-0.pt").read_bytes()


@pytest.mark.parametrize("change, error", [
    ({"seeds": []}, "seeds: is empty; give at least one"),
    ({"methods": {}}, "methods: is empty; give at least one"),
    ({"seeds": [0, 1, 0]}, "seeds: [0, 1, 0] lists seed 0 twice"),
    ({"pairs": [["digits", "digits-rotated"], ["digits", "digits-rotated"]]}, "pairs: lists [digits, digits-rotated] "
                                                                              "twice"),
    ({"methods": {"margin": ["query.strategy=margin", "seed=3"]}}, "method 'margin': seed=3: the bench sets seed"),
    ({"methods": {"margin": ["label=m"]}}, "method 'margin': label=m: the bench sets label for each run"),
    ({"set": ["seed=2"]}, "set: seed=2: the bench sets seed for each run from its seeds: [0, 1]"),
    ({"methods": {"m": ["data.target=digits"]}}, "method 'm': data.target=digits: the bench sets data.source and "
                                                 "data.target for each run from its pairs"),
])
def test_a_bench_file_the_grid_cannot_run_as_written_is_refused_before_work(bench_file, tmp_path, change, error):
    """An empty seeds: / methods: ended in "compare: give at least one run folder"; a seed or pair listed twice was
    "would share one run folder ... rename a domain or method"; a method's (or set:'s) seed=, label= or pair key
    was replaced by the grid's value without a word (the run used seed 0 while the file said 3)."""
    spec = {**yaml.safe_load(bench_file.read_text()), **change}
    bench_file.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError, match=re.escape(f"{bench_file}: {error}")):
        run_bench(bench_file, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_table_only_names_the_runs_of_the_grid_it_leaves_out(bench_file, tmp_path):
    """--table-only wrote the finished runs' table only: a seed that had not finished (or not started) left its cell
    with a smaller n and no word about it. The table now lists the grid's runs that are not in it."""
    from adakit.bench import plan_bench
    from adakit.ledger import Ledger

    out = tmp_path / "out"
    plan = plan_bench(bench_file, out, only=["margin"], pairs=["digits-digits-rotated"])
    (done, _), (started, _) = [(d, c) for c, d in plan]
    done.mkdir(parents=True)
    (done / "summary.json").write_text(json.dumps({
        "name": "tiny", "label": "margin", "strategy": "margin", "objective": "finetune", "protocol": "transductive",
        "seed": 0, "data": {"format": "demo", "source": "digits", "target": "digits-rotated"},
        "budget": {"total": 0.02, "rounds": 2}, "rounds": [{"round": 0, "labels": 0, "accuracy": 0.5}],
        "final_accuracy": 0.5}))
    md = run_bench(bench_file, out, only=["margin"], pairs=["digits-digits-rotated"], table_only=True)
    assert "| margin | 50.0 (n=1) |" in md
    assert "1 run of the grid is not in the table" in md and "- digits-digits-rotated/margin/seed-1 (not started)" in md
    started.mkdir(parents=True)
    Ledger(started / "ledger.sqlite").close()
    md = run_bench(bench_file, out, only=["margin"], pairs=["digits-digits-rotated"], table_only=True)
    assert "- digits-digits-rotated/margin/seed-1 (started, not finished)" in md
    assert (out / "comparison.md").read_text().strip() == md.strip()


def test_long_method_labels_give_folder_names_the_file_system_takes(bench_file, tmp_path):
    """A method label over 255 bytes made a run folder name no file system takes (OSError when the run started);
    a long name is cut and ends in a hash of the label, so two labels differing only at the end keep apart."""
    from adakit.bench import plan_bench, slug

    a, b = "margin " + "é" * 150 + " a", "margin " + "é" * 150 + " b"
    spec = {**yaml.safe_load(bench_file.read_text()),
            "methods": {a: ["query.strategy=margin"], b: ["query.strategy=random"]}}
    bench_file.write_text(yaml.safe_dump(spec))
    plan = plan_bench(bench_file, tmp_path / "out")
    names = {d.parent.name for _, d in plan}
    assert len(names) == 2 and all(len(n.encode()) <= 255 for n in names)
    assert all(n.startswith("margin_" + "é" * 50) for n in names)
    assert slug("FT + margin") == "FT_+_margin"  # short names are unchanged

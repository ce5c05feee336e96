"""`adakit sweep`: a grid of settings run end to end on the demo data, picked by a validator, resumable."""

import csv
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from adakit.cli import app
from adakit.errors import ConfigError
from adakit.registry import VALIDATORS
from adakit.sweep import _check_select, checkpoints, parse_grid, plan_sweep, run_sweep

BASE = {"name": "tiny", "seed": 0, "data": {"format": "demo"}, "model": {"hidden_dim": 16, "bottleneck_dim": 8},
        "objective": {"name": "finetune"}, "query": {"strategy": "margin"}, "budget": {"total": 0.02, "rounds": 1},
        "train": {"warmup_iters": 30, "round_iters": 10, "threads": 1, "device": "cpu", "lr": 0.01,
                  "eval_checkpoints": 1}}


@pytest.fixture()
def config(tmp_path: Path) -> Path:
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(BASE))
    return path


def test_sweep_end_to_end_then_resumed(config, tmp_path):
    out = tmp_path / "sweep"
    res = CliRunner().invoke(app, ["sweep", str(config), "--grid", "train.lr=0.03,0.003", "--select", "im",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "pick by im:" in res.output
    result = json.loads((out / "sweep.json").read_text())
    # 2 grid settings + the config's own lr (0.01), which is not a grid point
    assert result["settings"] == ["train.lr=0.03", "train.lr=0.003", "train.lr=0.01"] and result["ran"] == 3
    rows = list(csv.DictReader((out / "sweep.csv").open()))
    assert len(rows) == 3 * 3  # per setting: warm-up step 15, round 0, round 1
    # active runs (one query round here): each setting is judged by its last round, the model it keeps; the pick
    # is the last round with the highest IM (never by accuracy)
    last = [r for r in rows if r["checkpoint"] == "round 1"]
    best = max(last, key=lambda r: float(r["im"]))
    assert (best["setting"], best["checkpoint"]) == (result["pick"]["setting"], result["pick"]["checkpoint"])
    assert "pick" in best["marks"].split(";")
    assert result["pick"]["weights"] is None or Path(result["pick"]["weights"]).is_file()
    from adakit.sweep import Setting, weights_file

    s03 = Setting({}, "x", out / "train.lr_0.03", None)
    assert weights_file(s03, "warm-up step 15").endswith("warmup-15.pt") and weights_file(s03, "round 1")
    assert weights_file(s03, "round 0") and weights_file(s03, "round 7") is None
    oracle = max(last, key=lambda r: float(r["accuracy_oracle"]))
    assert float(oracle["accuracy_oracle"]) == result["oracle_best"]["oracle_accuracy"]
    assert result["default"] == {"setting": "train.lr=0.01", "checkpoint": "round 1",
                                 "oracle_accuracy": result["default"]["oracle_accuracy"]}
    md = (out / "sweep.md").read_text()
    assert "**pick**" in md and "**oracle best**" in md and "**default**" in md and "oracle column" in md
    assert "**active runs** (3 of the settings) are judged by the model they keep, their last round" in md
    assert result["active_settings"] == result["settings"]
    # each row names its setting's run folder (inside OUT; sweep.csv's run_dir); the pick's line says how to load it
    rows_md = [line.strip("| ").split(" | ") for line in md.splitlines() if line.startswith("| train.lr=")]
    assert len(rows_md) == len(rows) and {tuple(r[i] for i in (0, 1)) for r in rows_md} == \
        {(r["setting"], r["checkpoint"]) for r in rows}
    for cells, row in zip(rows_md, rows):
        assert cells[-1] == f"`{Path(row['run_dir']).name}`" and (out / cells[-1].strip("`") / "summary.json").is_file()
    assert {r[-1] for r in rows_md} == {"`train.lr_0.03`", "`train.lr_0.003`", "`train.lr_0.01`"}
    assert f'load it with `adakit.load_run("{result["pick"]["run_dir"]}", checkpoint="round 1")`' in md
    # margin sampling, no held-out source: those validators are no columns of sweep.md (sweep.csv keeps them empty)
    assert "Not recorded by any run, so not shown: `dev`, `queried_acc_iw`, `source_acc`" in md
    assert "`queried_acc`) recorded at round r sits on round r−1's row" in md
    assert {r["queried_acc_iw"] for r in rows} == {""}
    # queried-batch accuracy of round 1 scores round 0's model (the model that made the predictions)
    summary = json.loads((out / "train.lr_0.03" / "summary.json").read_text())
    ck = checkpoints(summary, ["queried_acc", "im"])
    assert ck[1]["checkpoint"] == "round 0" and ck[1]["queried_acc"] == summary["rounds"][1]["val/queried_acc"]
    assert ck[2]["queried_acc"] is None and ck[0]["checkpoint"] == "warm-up step 15"
    # every checkpoint a sweep may pick loads as a model (load_run took only the last one)
    import numpy as np
    import torch

    import adakit
    from adakit.rundir import CheckpointError

    run03 = out / "train.lr_0.03"
    from adakit.data import load_domains

    x = adakit.load_run(run03).config  # (the run's own config, to make inputs)
    rows = load_domains(x.data, x.seed).test.load(np.arange(5))
    probs = {c: adakit.load_run(run03, checkpoint=c).predict_proba(rows)
             for c in ("warm-up step 15", "round 0", 0, "round 1", "last")}
    assert np.array_equal(probs["round 1"], probs["last"]) and np.array_equal(probs["round 0"], probs[0])
    assert not np.array_equal(probs["warm-up step 15"], probs["round 0"])
    warm = torch.load(run03 / "checkpoints" / "warmup-15.pt", weights_only=False)["model"]
    assert torch.equal(next(iter(adakit.load_run(run03, checkpoint="warm-up step 15").model.state_dict().values())),
                       next(iter(warm.values())))
    with pytest.raises(ConfigError, match="saved no warm-up checkpoint at step 3 .saved: 15"):
        adakit.load_run(run03, checkpoint="warm-up step 3")
    with pytest.raises(ConfigError, match=r"has no round 7 \(its rounds: 0..1\)"):
        adakit.load_run(run03, checkpoint=7)
    import shutil

    gone = tmp_path / "copy"
    shutil.copytree(run03, gone)
    (gone / "checkpoints" / "round-0.pt").unlink()  # a run keeps round 0: the file is named as missing
    with pytest.raises(CheckpointError, match="the model of round 0 is missing: .*round-0.pt .*restore it"):
        adakit.load_run(gone, checkpoint=0)
    with pytest.raises(ConfigError, match="give a round number"):
        adakit.load_run(run03, checkpoint="best")
    res = CliRunner().invoke(app, ["predict", str(run03), str(tmp_path / "nope.npz"), "--out", str(tmp_path / "p.csv"),
                                   "--checkpoint", "warm-up step 99"])
    assert res.exit_code == 2 and "saved no warm-up checkpoint at step 99" in res.output
    # resumed: a second call trains nothing and picks the same
    mtime = (out / "train.lr_0.03" / "summary.json").stat().st_mtime_ns
    again = run_sweep(config, ["train.lr=0.03,0.003"], "im", out)
    assert again["ran"] == 0 and again["pick"] == result["pick"]
    assert (out / "train.lr_0.03" / "summary.json").stat().st_mtime_ns == mtime
    # --only keeps matching settings
    only = run_sweep(config, ["train.lr=0.03,0.003"], "entropy", out, only=["train.lr=0.003"])
    assert only["settings"] == ["train.lr=0.003"] and only["ran"] == 0


def test_bad_grid_key_or_validator_fails_before_work(config, tmp_path):
    out = tmp_path / "o"
    with pytest.raises(ConfigError, match=r"(?s)--grid train.lrr: .*train.lrr: unknown key"):
        run_sweep(config, ["train.lrr=0.1,0.2"], "im", out)
    with pytest.raises(ConfigError, match="--grid objective.trade_of"):
        run_sweep(config, ["objective.name=dann", "objective.trade_of=1"], "im", out, extra=None)
    with pytest.raises(ConfigError, match="unknown validator 'imm'"):
        run_sweep(config, ["train.lr=0.1"], "imm", out)
    with pytest.raises(ConfigError, match=r"select=\['bnm', 'im'\]: give one validator's name.*once per validator "
                                          "with the same out folder"):  # (was a bare TypeError: unhashable list)
        run_sweep(config, ["train.lr=0.1"], ["bnm", "im"], out)
    with pytest.raises(ConfigError, match="data.source_val"):
        run_sweep(config, ["train.lr=0.1"], "dev", out)
    # a grid of data.source_val: --set of a grid key is refused, so the advice is the config's own value
    with pytest.raises(ConfigError, match=r"the config's own data.source_val \(0.0\) is a setting too .*set "
                                          r"data.source_val in the config to one of the grid's values"):
        run_sweep(config, ["data.source_val=0.1,0.2"], "dev", out)
    # 0 listed in the grid itself: the advice is to remove it from the grid (the config's own value is not at fault;
    # this said "the config's own data.source_val (0.0)" for a config whose value is 0.1)
    held_out = tmp_path / "held-out.yaml"
    held_out.write_text(yaml.safe_dump({**BASE, "data": {**BASE["data"], "source_val": 0.1}}))
    with pytest.raises(ConfigError, match=r"--grid data.source_val lists 0 \(setting data.source_val=0\.?0?\); remove "
                                          r"0 from the grid$") as e:
        run_sweep(held_out, ["data.source_val=0,0.2"], "dev", out)
    assert "config's own" not in str(e.value)
    # listed in the grid and the config's own value too: both have to change
    with pytest.raises(ConfigError, match=r"lists 0 .*remove 0 from the grid, and set data.source_val in the config "
                                          r"to one of the grid's other values \(the config's own value is always a "
                                          r"setting\)"):
        run_sweep(config, ["data.source_val=0,0.2"], "dev", out)
    with pytest.raises(ConfigError, match="only query.strategy=random"):
        run_sweep(config, ["train.lr=0.1"], "queried_acc_iw", out)
    with pytest.raises(ConfigError, match="expected key=v1,v2"):
        parse_grid(["train.lr"])
    assert not out.exists()
    res = CliRunner().invoke(app, ["sweep", str(config), "--grid", "train.lrr=1", "--select", "im", "--out", str(out)])
    assert res.exit_code == 2 and "train.lrr" in res.output


def test_grid_values_compare_as_the_config_reads_them(config, tmp_path):
    from adakit.sweep import plan_sweep

    settings = plan_sweep(config, parse_grid(["train.lr=1e-2,3e-2"]), tmp_path / "o")
    assert [(s.name, s.is_default) for s in settings] == [("train.lr=0.01", True), ("train.lr=0.03", False)]
    assert [s.name for s in plan_sweep(config, parse_grid(["train.lr=1e-2,3e-2"]), tmp_path / "o",
                                       only=["train.lr=3e-2"])] == ["train.lr=0.03"]
    with pytest.raises(ConfigError, match="two values are the same setting"):
        plan_sweep(config, parse_grid(["train.warmup_iters=40,40.0"]), tmp_path / "o")
    # a value that fails only on the data is an error before any run
    with pytest.raises(ConfigError, match="setting data.source_val=0.999: .*holds out"):
        run_sweep(config, ["data.source_val=0.1,0.999"], "im", tmp_path / "o")
    assert not (tmp_path / "o").exists()


def test_a_finished_run_of_another_config_is_never_reused(config, tmp_path):
    out = tmp_path / "s"
    run_sweep(config, ["train.lr=0.03"], "im", out)
    with pytest.raises(ConfigError, match=r"train.lr_0.03 holds a run of another config \(train.warmup_iters: 30 → 40"):
        run_sweep(config, ["train.lr=0.03"], "im", out, extra=["train.warmup_iters=40"])


def test_confidence_validator_on_pseudo_label_training_warns(config, tmp_path):
    settings = plan_sweep(config, parse_grid(["anchor.kind=none,laa"]), tmp_path / "o")
    with pytest.warns(UserWarning, match=r"--select bnm .*1 setting\(s\) train on pseudo-labels .*anchor.kind=laa"):
        _check_select("bnm", VALIDATORS.get("bnm"), settings)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: a validator that does not reward confidence, or no anchors
        _check_select("queried_acc", VALIDATORS.get("queried_acc"), settings)
        _check_select("bnm", VALIDATORS.get("bnm"), settings[:1])


@pytest.mark.slow  # two spawned processes, each importing torch
def test_parallel_jobs_run_every_setting(config, tmp_path):
    out = tmp_path / "par"
    res = run_sweep(config, ["train.lr=0.03,0.01"], "bnm", out, extra=["train.warmup_iters=10", "budget.rounds=0"],
                    jobs=2)
    assert res["ran"] == 2 and res["settings"] == ["train.lr=0.03", "train.lr=0.01"]
    assert res["default"]["setting"] == "train.lr=0.01"  # the config's own value is a grid point: no extra run
    assert all((out / d / "summary.json").is_file() for d in ("train.lr_0.03", "train.lr_0.01"))


def test_a_sweep_on_a_target_without_any_labels_still_picks(tmp_path, unlabelled_target_config):
    config = unlabelled_target_config("dann", warmup_iters=20, eval_checkpoints=1)
    res = run_sweep(config, ["train.lr=0.03,0.01"], "im", tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "train.lr_0.03" / "summary.json").read_text())
    assert summary["rounds"] == [] and summary["final_accuracy"] is None  # no accuracy without target labels
    assert [r["round"] for r in summary["unlabelled_rounds"]] == [0] and "val/im" in summary["unlabelled_rounds"][0]
    assert res["pick"]["checkpoint"] in ("warm-up step 10", "round 0") and "oracle_best" not in res
    assert res["pick"]["oracle_accuracy"] is None
    md = (tmp_path / "out" / "sweep.md").read_text()
    assert "oracle accuracy n/a)" in md and "–%" not in md


def _fake_setting(tmp_path: Path, name: str, ims: list[float], is_default: bool = False):
    """A finished run without queries whose warm-up checkpoints (steps 10, 20) and round 0 have these IM scores
    (no run needed)."""
    from adakit.config import build_config
    from adakit.sweep import Setting

    w10, w20, r0 = ims
    summary = {"warmup_checkpoints": [{"step": 10, "accuracy": 0.5, "val/im": w10},
                                      {"step": 20, "accuracy": 0.55, "val/im": w20}],
               "rounds": [{"round": 0, "labels": 0, "accuracy": 0.6, "val/im": r0}]}
    return Setting({"train.lr": name}, f"train.lr={name}", tmp_path / name, build_config(BASE), is_default, summary)


def test_sweep_tables_say_they_are_out_of_date_while_a_larger_grid_runs(config, tmp_path, monkeypatch):
    import adakit.sweep as sweep

    out = tmp_path / "sweep"
    sweep.run_sweep(config, ["train.lr=0.03"], "im", out)
    old = (out / "sweep.md").read_text()

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep, "run_settings", stopped)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(config, ["train.lr=0.03,0.003"], "im", out)  # a new setting to run, stopped
    text = (out / "sweep.md").read_text()
    assert text.startswith("> **Out of date** (since ") and "`adakit sweep` started again" in text
    assert text.endswith(old)
    monkeypatch.undo()
    sweep.run_sweep(config, ["train.lr=0.03,0.003"], "im", out)
    assert "Out of date" not in (out / "sweep.md").read_text()


def test_a_tie_outside_the_default_goes_to_the_same_setting_whatever_the_order_of_the_grid_flags(tmp_path):
    from adakit.config import build_config
    from adakit.sweep import Setting, pick

    def setting(lr: float, wd: float, im: float, flags: tuple[str, str]) -> Setting:
        values = dict(sorted({"train.lr": lr, "train.weight_decay": wd}.items(), key=lambda kv: flags.index(kv[0])))
        summary = {"rounds": [{"round": 0, "labels": 0, "accuracy": 0.6, "val/im": im}]}
        return Setting(values, " ".join(f"{k}={v}" for k, v in values.items()), tmp_path / f"{lr}-{wd}",
                       build_config(BASE), False, summary)

    scores = {(0.01, 0.0): 0.5, (0.01, 0.1): 0.9, (0.03, 0.0): 0.9, (0.03, 0.1): 0.2}  # two tied, no default
    lrs, wds = [0.01, 0.03], [0.0, 0.1]
    lr_first = [setting(lr, wd, scores[lr, wd], ("train.lr", "train.weight_decay")) for lr in lrs for wd in wds]
    wd_first = [setting(lr, wd, scores[lr, wd], ("train.weight_decay", "train.lr")) for wd in wds for lr in lrs]
    picked = [pick(grid, "im") for grid in (lr_first, wd_first)]
    assert [p["tie_break"] for p in picked] == ["first", "first"]
    assert {p["run_dir"] for p in picked} == {str(tmp_path / "0.01-0.1")}  # train.lr sorts first: its first value
    # each key's values in the order given: --grid train.lr=0.03,0.01 puts 0.03 first
    lr_desc = [setting(lr, wd, scores[lr, wd], ("train.lr", "train.weight_decay")) for lr in lrs[::-1] for wd in wds]
    assert pick(lr_desc, "im")["run_dir"] == str(tmp_path / "0.03-0.0")


def test_a_tied_pick_prefers_the_default_setting_at_its_latest_tied_checkpoint(tmp_path):
    from adakit.sweep import _write, pick

    grid = [_fake_setting(tmp_path, "0.03", [0.2, 0.9, 0.9]),
            _fake_setting(tmp_path, "0.01", [0.9, 0.9, 0.4], is_default=True),
            _fake_setting(tmp_path, "0.003", [0.1, 0.9, 0.3])]
    p = pick(grid, "im")
    assert (p["setting"], p["checkpoint"], p["tie_break"]) == ("train.lr=0.01", "warm-up step 20", "default")
    assert len(p["tied"]) == 5 and p["score"] == 0.9
    # the default's last checkpoint when it is tied (rather than its earlier tied ones)
    grid[1] = _fake_setting(tmp_path, "0.01", [0.9, 0.2, 0.9], is_default=True)
    assert (pick(grid, "im")["setting"], pick(grid, "im")["checkpoint"]) == ("train.lr=0.01", "round 0")
    # the default not among the tied: the first in grid order; no tie: no tie rule
    grid[1] = _fake_setting(tmp_path, "0.01", [0.5, 0.5, 0.5], is_default=True)
    p = pick(grid, "im")
    assert (p["setting"], p["checkpoint"], p["tie_break"]) == ("train.lr=0.03", "warm-up step 20", "first")
    grid[2] = _fake_setting(tmp_path, "0.003", [0.1, 0.95, float("nan")])
    p = pick(grid, "im")
    assert (p["setting"], p["checkpoint"], p["tie_break"], p["tied"]) == ("train.lr=0.003", "warm-up step 20", None, [])
    # the table says so: a tie line and the tied rows marked
    grid[2] = _fake_setting(tmp_path, "0.003", [0.1, 0.9, 0.3])
    grid[1] = _fake_setting(tmp_path, "0.01", [0.9, 0.9, 0.4], is_default=True)
    p = pick(grid, "im")
    table = [(s, c) for s in grid for c in checkpoints(s.summary, ["im"])]
    _write(tmp_path / "out", {"select": "im", "pick": p}, table, ["im"])
    md = (tmp_path / "out" / "sweep.md").read_text()
    assert "**tie**: 5 checkpoints share the best im score" in md and "config default's setting" in md
    rows = list(csv.DictReader(open(tmp_path / "out" / "sweep.csv")))
    assert sum("tied best" in r["marks"] for r in rows) == 5
    assert [r["marks"] for r in rows if "pick" in r["marks"]] == ["pick;tied best"]


def test_sweep_md_marks_units_and_shows_only_the_validators_some_run_recorded(tmp_path):
    """sweep.md: accuracies are fractions as in sweep.csv (not percent beside fraction validators), the marks
    column is named, a column no run recorded is left out (sweep.csv keeps it), and a queried-batch score is said
    to sit on the row of the model that made the picks."""
    from adakit.sweep import _write, pick

    validators = ["im", "queried_acc", "source_acc"]

    def write(grid: list, name: str) -> tuple[str, list[dict]]:
        table = [(s, c) for s in grid for c in checkpoints(s.summary, validators)]
        _write(tmp_path / name, {"select": "im", "pick": pick(grid, "im")}, table, validators)
        return (tmp_path / name / "sweep.md").read_text(), list(csv.DictReader(open(tmp_path / name / "sweep.csv")))

    uda = [_fake_setting(tmp_path, "0.03", [0.2, 0.9, 0.5]),
           _fake_setting(tmp_path, "0.01", [0.1, 0.3, 0.4], is_default=True)]
    md, rows = write(uda, "uda")
    lines = md.splitlines()
    assert "| setting | checkpoint | labels | im | accuracy (oracle) | marks | folder |" in lines
    assert "| train.lr=0.03 | warm-up step 20 | 0 | 0.9 | 0.55 | pick | `0.03` |" in lines
    assert "Not recorded by any run, so not shown: `queried_acc`, `source_acc`" in md and "round r−1" not in md
    assert "accuracies (`accuracy` and the validators `source_acc`, `queried_acc*`) are fractions" in md
    assert list(rows[0])[3:6] == validators and {r["queried_acc"] for r in rows} == {""}
    # an active run records queried_acc on rounds 1 and 2: shown, on rounds 0 and 1 (the models that made the picks)
    active = _fake_setting(tmp_path, "0.1", [0.1, 0.2, 0.3])
    active.summary["rounds"] += [{"round": r, "labels": 5 * r, "accuracy": 0.7, "val/im": 0.3, "val/queried_acc": q}
                                 for r, q in ((1, 0.25), (2, 0.75))]
    md, _ = write([active], "active")
    lines = md.splitlines()
    assert "| setting | checkpoint | labels | im | queried_acc | accuracy (oracle) | marks | folder |" in lines
    assert [line.split(" | ")[4] for line in lines if line.startswith("| train.lr=0.1 | round")] == \
        ["0.25", "0.75", "–"]
    assert "A queried-batch score (`queried_acc`) recorded at round r sits on round r−1's row" in md
    assert "Not recorded by any run, so not shown: `source_acc`" in md
    # a "–" cell is explained (a warm-up or last-round row of a queried-batch score, or a score that was not finite)
    assert "`–`: no score recorded for that checkpoint" in md
    md, _ = write(uda, "uda")
    assert "`–`" not in md  # (no empty cell: no such line)


def test_the_readme_loads_the_pick_from_a_folder_its_sweep_makes(monkeypatch):
    """The README named the folder with the grid keys in --grid order; the sweep sorts them."""
    import re
    import shlex

    import adakit.sweep as sweep_mod
    from adakit.validate._run import checkpoint_steps

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    command = re.search(r"```bash\n(adakit sweep configs/office31-features.yaml.*?)```", readme, re.S).group(1)
    args = shlex.split(command.replace("\\\n", " "))
    flags = [(a, b) for a, b in zip(args, args[1:]) if a.startswith("--")]
    out = next(b for a, b in flags if a == "--out")
    monkeypatch.setattr(sweep_mod, "_check_data", lambda settings: None)  # (the folder names need no data)
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    settings = plan_sweep(args[2], parse_grid([b for a, b in flags if a == "--grid"]), out,
                          [b for a, b in flags if a == "--set"])
    shown = re.findall(r'adakit\.load_run\("([^"]+)", checkpoint="warm-up step (\d+)"\)', readme)
    assert shown
    for folder, step in shown:
        assert Path(folder).name in {s.run_dir.name for s in settings} and Path(folder).parent == Path(out)
        assert int(step) in checkpoint_steps(settings[0].config.train.warmup_iters,
                                             settings[0].config.train.eval_checkpoints)


def test_an_active_run_offers_its_last_round_scored_by_the_mean_queried_batch(tmp_path):
    """An intermediate round is never picked (its labels are superseded, its weights deleted); queried_acc, which
    cannot score the last round's model, scores the run by its mean over the rounds."""
    from adakit.config import build_config
    from adakit.sweep import Setting, candidates, pick

    def active(name, qs, ims, default=False):
        rounds = [{"round": r, "labels": 5 * r, "accuracy": 0.5 + 0.1 * r, "val/im": im,
                   **({"val/queried_acc": qs[r - 1]} if r else {})} for r, im in enumerate(ims)]
        summary = {"warmup_checkpoints": [{"step": 10, "accuracy": 0.4, "val/im": 9.0}], "rounds": rounds}
        return Setting({"train.lr": name}, f"train.lr={name}", tmp_path / name, build_config(BASE), default, summary)

    # queried_acc of round r scores round r-1: a = (0.9 + 0.1) / 2 = 0.5; b = (0.4 + 0.7) / 2 = 0.55
    a = active("0.1", [0.9, 0.1], [1.0, 2.0, 3.0], default=True)
    b = active("0.2", [0.4, 0.7], [1.0, 2.0, 2.5])
    assert candidates(a.summary, "queried_acc") == [{"checkpoint": "round 2", "labels": 10,
                                                     "accuracy": pytest.approx(0.7), "queried_acc": 0.5}]
    assert [c["checkpoint"] for c in candidates(a.summary, "im")] == ["round 2"]  # not the warm-up's 9.0
    p = pick([a, b], "queried_acc")
    assert (p["setting"], p["checkpoint"]) == ("train.lr=0.2", "round 2") and p["score"] == pytest.approx(0.55)
    # a pool validator scores the last round's model itself: a's 3.0 beats b's 2.5
    p = pick([a, b], "im")
    assert (p["setting"], p["checkpoint"], p["score"]) == ("train.lr=0.1", "round 2", 3.0)


def test_more_parallel_threads_than_cpus_warns(tmp_path, monkeypatch):
    import os

    from adakit.sweep import _check_jobs

    grid = [_fake_setting(tmp_path, lr, [0.1, 0.2, 0.3]) for lr in ("0.1", "0.2", "0.3", "0.4")]
    for s in grid:
        s.config.train.threads = None  # unset: torch's default
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr("torch.get_num_threads", lambda: 2)
    with pytest.warns(UserWarning, match=r"--jobs 4 runs at up to 2 torch thread\(s\) each on 2 CPU\(s\).*--jobs 1$"):
        _check_jobs(4, grid)  # 4 jobs on 2 CPUs: no thread count helps, fewer jobs do
    with pytest.warns(UserWarning, match=r"--jobs 2 runs at up to 2 .*--jobs 1, or --set train.threads=1 "):
        _check_jobs(2, grid)
    for s in grid:
        s.config.train.threads = 1
    with pytest.warns(UserWarning, match=r"--jobs 3 runs at up to 1 .*Use --jobs 2$"):  # (threads=1 already)
        _check_jobs(3, grid)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _check_jobs(2, grid)  # 2 runs x 1 thread on 2 CPUs: fine
        _check_jobs(1, grid)
        # more jobs than unfinished settings start no more processes than settings: 2 at once here, which fit (it
        # warned "--jobs 8 ... Use --jobs 2" for a grid of 2, or for a resumed sweep with 2 settings left)
        _check_jobs(8, grid[:2])
        for s in grid[2:]:
            (s.run_dir).mkdir()
            (s.run_dir / "summary.json").write_text("{}")
        _check_jobs(8, grid)


def test_a_sweep_from_python_takes_a_dict_config_and_a_dict_grid(config, tmp_path):
    """run_sweep took only a YAML path and the command line's grid strings."""
    from adakit.config import build_config

    from_file = run_sweep(config, ["train.lr=0.03,0.003"], "im", tmp_path / "file")
    from_dict = run_sweep(BASE, {"train.lr": [0.03, 3e-3]}, "im", tmp_path / "dict")
    assert from_dict["settings"] == from_file["settings"]
    assert from_dict["pick"]["setting"] == from_file["pick"]["setting"]
    assert from_dict["pick"]["score"] == from_file["pick"]["score"]
    again = run_sweep(build_config(BASE), {"train.lr": (0.03, 0.003)}, "im", tmp_path / "dict")
    assert again["ran"] == 0 and again["pick"] == from_dict["pick"]
    with pytest.raises(ConfigError, match="give at least one grid key"):
        run_sweep(BASE, {}, "im", tmp_path / "none")


def test_readme_snippet_of_a_sweep_from_python_runs(tmp_path, monkeypatch, readme_python):
    blocks = readme_python("adakit sweep configs/office31-features.yaml", stop="**Which validator to trust.**")
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "readme"}
    exec(compile(blocks[0], "README.md", "exec"), ns)
    pick = ns["result"]["pick"]
    assert pick["checkpoint"].startswith(("warm-up step", "round 0")) and pick["setting"].startswith("train.lr=")
    assert ns["model"].predict(np.zeros((2, 64), np.float32)).shape == (2,)  # the pick, loaded


def test_a_sweep_on_your_own_arrays_model_and_labelling_function(tmp_path):
    """run_sweep(..., source=, target=, model=, oracle=): every setting runs on the objects, from the same initial
    weights of your module (copied per setting); a second call continues with the same objects."""
    import numpy as np
    import torch
    from torch import nn

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(120, 6)).astype(np.float32)
    ys = xs[:, :3].argmax(1)
    xt = rng.normal(0.3, 1.2, size=(80, 6)).astype(np.float32)
    yt = xt[:, :3].argmax(1)
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(6, 16), nn.ReLU())
    before = [p.detach().clone() for p in encoder.parameters()]
    config = {"budget": {"total": 6, "rounds": 1}, "train": {"warmup_iters": 20, "round_iters": 10, "threads": 1,
                                                            "backbone_lr_mult": 1.0, "device": "cpu"}}
    objects = {"source": (xs, ys), "target": (xt, None), "test": (xt, yt), "model": encoder,
               "oracle": lambda idx: yt[idx]}
    res = run_sweep(config, {"train.lr": [0.01, 0.03]}, "im", tmp_path / "s", **objects)
    assert res["ran"] == 2 and res["pick"]["setting"] in ("train.lr=0.01", "train.lr=0.03")
    stored = yaml.safe_load((tmp_path / "s" / "train.lr_0.03" / "config.yaml").read_text())
    assert (stored["data"]["format"], stored["model"]["backbone"], stored["oracle"]["kind"]) == \
        ("objects", "custom", "callable")
    assert all(torch.equal(a, b) for a, b in zip(before, encoder.parameters()))  # your module is not trained
    again = run_sweep(config, {"train.lr": [0.01, 0.03]}, "im", tmp_path / "s", **objects)
    assert again["ran"] == 0 and again["pick"] == res["pick"]
    with pytest.raises(ConfigError, match="runs in this process"):
        run_sweep(config, {"train.lr": [0.01]}, "im", tmp_path / "j", jobs=2, **objects)
    with pytest.raises(ConfigError, match=r"unknown keyword\(s\) \['modle'\]"):
        run_sweep(config, {"train.lr": [0.01]}, "im", tmp_path / "k", modle=encoder)


def test_a_sweep_on_your_arrays_can_compare_the_network_with_the_linear_probe(tmp_path):
    import numpy as np
    import torch
    from torch import nn

    rng = np.random.default_rng(1)
    xs = rng.normal(size=(100, 6)).astype(np.float32)
    xt = rng.normal(0.3, 1.2, size=(60, 6)).astype(np.float32)
    torch.manual_seed(0)
    objects = {"source": (xs, xs[:, :3].argmax(1)), "target": (xt, xt[:, :3].argmax(1)),
               "model": nn.Sequential(nn.Linear(6, 8), nn.ReLU())}
    config = {"budget": {"total": 6, "rounds": 1}, "train": {"warmup_iters": 20, "round_iters": 10, "threads": 1,
                                                            "device": "cpu"}}
    res = run_sweep(config, {"runner": ["loop", "linear_probe"]}, "queried_acc", tmp_path / "s", **objects)
    assert res["ran"] == 2 and {s for s in res["settings"]} == {"runner=loop", "runner=linear_probe"}
    probe = yaml.safe_load((tmp_path / "s" / "runner_linear_probe" / "config.yaml").read_text())
    assert probe["data"]["format"] == "objects" and probe["model"]["backbone"] != "custom"  # (data objects only)
    assert run_sweep(config, {"runner": ["loop", "linear_probe"]}, "queried_acc", tmp_path / "s", **objects)["ran"] == 0


def test_grid_values_from_python_are_checked_before_any_run(tmp_path):
    import numpy as np

    for bad, message in (({"train.lr": 0.01}, "give a list of values"), ({"train.lr": "0.01"}, "give a list"),
                         ({"train.lr": []}, "the list of values is empty"),
                         ({"train.lr": [{"a": 1}]}, "values must be numbers, strings or booleans")):
        with pytest.raises(ConfigError, match=f"grid 'train.lr': {message}"):
            run_sweep(BASE, bad, "im", tmp_path / "s")
    assert not (tmp_path / "s").exists()
    settings = plan_sweep(BASE, {"train.lr": np.array([0.03, 0.003])}, tmp_path / "s")  # a numpy array works
    assert [s.name for s in settings] == ["train.lr=0.03", "train.lr=0.003", "train.lr=0.01"]


def test_a_stopped_jobs_sweep_starts_no_further_setting_and_a_dead_worker_is_named(config, tmp_path, monkeypatch):
    """Calls already handed to a --jobs worker ran after Ctrl-C (the worker caught the interrupt and took the next
    call); a killed worker ended in a raw BrokenProcessPool traceback."""
    import threading
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    import adakit.sweep as sweep
    from adakit.errors import AdakitError

    settings = plan_sweep(config, parse_grid(["train.lr=0.03,0.01"]), tmp_path / "o")
    stop = threading.Event()
    sweep._init_worker(stop)
    try:
        monkeypatch.setattr(sweep, "run_plan", lambda plan, **k: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            sweep._run_one(settings[0].config.to_dict(), str(settings[0].run_dir))
        assert stop.is_set()  # the interrupted setting stops the sweep: the next call starts nothing
        monkeypatch.setattr(sweep, "run_plan", lambda plan, **k: pytest.fail("a setting started after the stop"))
        assert sweep._run_one(settings[1].config.to_dict(), str(settings[1].run_dir)) is None
    finally:
        sweep._init_worker(None)

    class DeadPool:
        def __init__(self, *a, **k):
            pass

        def submit(self, fn, *args):
            f = Future()
            f.set_exception(BrokenProcessPool("A process in the process pool was terminated abruptly"))
            return f

        def shutdown(self, **k):
            pass

    monkeypatch.setattr(sweep, "ProcessPoolExecutor", DeadPool)
    with pytest.raises(AdakitError, match=r"a worker process of --jobs 2 died .*0 of 2 finished.*same command"):
        sweep.run_settings(settings, jobs=2)


def test_grid_values_with_commas_bad_yaml_query_keys_and_only_values(config, tmp_path):
    """Quoted values may hold commas; a value that is not YAML is a ConfigError (it was a raw ParserError);
    query.probs_from (a key of the query section, not of the strategy) was read as a strategy parameter, so its
    values all looked like null; an --only value that is not a grid value was ignored."""
    assert parse_grid(['name="a,b",c']) == {"name": ["a,b", "c"]}
    for bad in ("model.hidden_dim=[1,2]", 'name="a,b,c'):
        with pytest.raises(ConfigError, match=r"grid .*(values must be numbers|not YAML scalars)"):
            parse_grid([bad])
    settings = plan_sweep(config, parse_grid(["query.probs_from=model,probe"]), tmp_path / "o")
    assert [(s.name, s.config.query.probs_from, s.is_default) for s in settings] == [
        ("query.probs_from=model", "model", True), ("query.probs_from=probe", "probe", False)]
    with pytest.raises(ConfigError, match=r"--only train.lr=0.5: not a value of --grid train.lr \(0.03, 0.003\)"):
        plan_sweep(config, parse_grid(["train.lr=0.03,0.003"]), tmp_path / "o", only=["train.lr=0.03,0.5"])


def test_run_folders_do_not_depend_on_the_order_of_the_grid_keys(config, tmp_path):
    """Reordering the --grid flags renamed every run folder, so the same sweep retrained everything; folders named
    in the flags' order by an earlier adakit are still used."""
    grid = {"train.lr": [0.03], "train.round_iters": [5, 10]}
    swapped = {"train.round_iters": [5, 10], "train.lr": [0.03]}
    a = {s.run_dir for s in plan_sweep(config, grid, tmp_path / "o")}
    b = {s.run_dir for s in plan_sweep(config, swapped, tmp_path / "o")}
    assert a == b and tmp_path / "o" / "train.lr_0.03_train.round_iters_5" in a
    old = tmp_path / "o" / "train.round_iters_5_train.lr_0.03"
    old.mkdir(parents=True)  # a sweep of an earlier adakit
    assert old in {s.run_dir for s in plan_sweep(config, swapped, tmp_path / "o")}


def test_jobs_workers_end_when_the_sweep_process_is_killed(tmp_path):
    """SIGKILL on a --jobs sweep left its workers training on as orphans, taking further settings and holding
    their run folders ("in use by PID ..."); they now end within about a second of their parent."""
    import os
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "worker.pid"
    script = f"""
import os, signal, time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
import adakit.sweep as sweep

def work(path):
    open(path, "w").write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    ctx = get_context("spawn")
    pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=sweep._init_pool_worker, initargs=(ctx.Event(),))
    pool.submit(work, {str(pid_file)!r})
    while not os.path.exists({str(pid_file)!r}) or not open({str(pid_file)!r}).read():
        time.sleep(0.05)
    os.kill(os.getpid(), signal.SIGKILL)
"""
    path = tmp_path / "killed_sweep.py"  # (a file: spawned workers import the function from it)
    path.write_text(script)
    subprocess.run([sys.executable, str(path)], timeout=120)
    worker = int(pid_file.read_text())

    def alive(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            return False
        return "\nState:\tZ" not in state  # a zombie (not reaped in some containers) is gone too

    deadline = time.monotonic() + 20
    while alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    still = alive(worker)
    if still:
        os.kill(worker, 9)
    assert not still, "the worker outlived the killed sweep"


def test_set_of_a_grid_key_is_refused(config, tmp_path):
    """--set train.lr=... beside --grid train.lr=... was overridden by the grid without a word."""
    with pytest.raises(ConfigError, match="--set train.lr=0.5: --grid sets train.lr for each setting; give it in "
                                          "--set or in --grid, not both"):
        plan_sweep(config, parse_grid(["train.lr=0.03,0.003"]), tmp_path / "o", extra=["train.lr=0.5"])
    with pytest.raises(ConfigError, match="--set train="):
        plan_sweep(config, parse_grid(["train.lr=0.03,0.003"]), tmp_path / "o", extra=["train={lr: 0.5}"])
    assert not (tmp_path / "o").exists()


def test_a_sweep_stopped_while_writing_its_tables_leaves_the_previous_ones_whole(tmp_path, monkeypatch):
    """sweep.md, sweep.csv and sweep.json were written in place one after the other: a sweep killed (or failing)
    while writing them left a truncated sweep.csv, or a new sweep.md beside the previous sweep.csv / sweep.json.
    Each is now composed first and renamed into place whole."""
    import csv as csv_module

    from adakit.sweep import _write, pick

    def write(grid: list) -> dict[str, str]:
        table = [(s, c) for s in grid for c in checkpoints(s.summary, ["im"])]
        _write(tmp_path / "out", {"select": "im", "pick": pick(grid, "im")}, table, ["im"])
        return {n: (tmp_path / "out" / n).read_text() for n in ("sweep.md", "sweep.csv", "sweep.json")}

    before = write([_fake_setting(tmp_path, "0.03", [0.2, 0.9, 0.5])])
    real = csv_module.writer

    def dying_writer(*args, **kwargs):  # stops after the header and one row, as a kill mid-write would
        w, rows = real(*args, **kwargs), []

        class Writer:
            def writerow(self, row):
                rows.append(row)
                if len(rows) > 2:
                    raise KeyboardInterrupt
                return w.writerow(row)
        return Writer()

    monkeypatch.setattr(csv_module, "writer", dying_writer)
    with pytest.raises(KeyboardInterrupt):
        write([_fake_setting(tmp_path, "0.03", [0.2, 0.9, 0.5]), _fake_setting(tmp_path, "0.01", [0.1, 0.3, 0.95])])
    assert {n: (tmp_path / "out" / n).read_text() for n in before} == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(before)  # no temporary file left
    monkeypatch.setattr(csv_module, "writer", real)
    after = write([_fake_setting(tmp_path, "0.03", [0.2, 0.9, 0.5]), _fake_setting(tmp_path, "0.01", [0.1, 0.3, 0.95])])
    assert "train.lr=0.01,round 0,0,0.95,0.6,pick," in after["sweep.csv"] and "| pick |" in after["sweep.md"]


def test_a_grid_value_list_ending_in_a_comma_is_refused(config, tmp_path):
    """--grid train.lr=0.1, (a value missing after the comma) ran a sweep of train.lr=0.1 alone, without a word: YAML
    drops an empty last item of a flow list ('0.1,,0.2' was already an error)."""
    for item in ("train.lr=0.1,", "train.lr=0.1, ", "train.lr=0.1,0.3,"):
        with pytest.raises(ConfigError, match=rf"--grid '{item}': an empty value after the last comma"):
            parse_grid([item])
    assert parse_grid(['name="a,",b']) == {"name": ["a,", "b"]}  # a quoted comma is a value's
    res = CliRunner().invoke(app, ["sweep", str(config), "--grid", "train.lr=0.1,", "--select", "im", "--out",
                                   str(tmp_path / "o")])
    assert res.exit_code == 2 and "an empty value after the last comma" in res.output
    # --only is read the same way, and its errors name --only (they said --grid)
    for only, error in (("train.lr=0.03,", "--only 'train.lr=0.03,': an empty value after the last comma"),
                        ("train.lr=", "--only 'train.lr=': expected key=v1,v2,..., e.g. --only train.lr=")):
        with pytest.raises(ConfigError, match=re.escape(error)):
            plan_sweep(config, parse_grid(["train.lr=0.03,0.003"]), tmp_path / "o", only=[only])
    assert not (tmp_path / "o").exists()


def test_a_sweep_whose_runs_scored_nothing_says_why_and_keeps_them(tmp_path):
    """Settings whose training diverged record no validator (or NaN): the error said "no run recorded it (see
    `adakit methods im` for its inputs)", pointing at inputs the sweep had already checked; it now says the runs
    have no score, how that happens and that they are kept."""
    from adakit.sweep import pick

    nan = float("nan")
    grid = [_fake_setting(tmp_path, "0.1", [nan, nan, nan]), _fake_setting(tmp_path, "0.2", [nan, nan, nan])]
    for c in grid[1].summary["warmup_checkpoints"] + grid[1].summary["rounds"]:
        del c["val/im"]  # not recorded at all
    with pytest.raises(ConfigError, match=r"--select im: none of the 2 finished setting\(s\) has a score of it to pick "
                                          r"by \(3 checkpoint\(s\) scored NaN\); .*diverged.* The runs are kept"):
        pick(grid, "im")
    # the sweep writes its table before it raises: which settings diverged, and what they recorded, are visible
    from adakit.registry import VALIDATORS
    from adakit.sweep import _write, checkpoints

    table = [(s, c) for s in grid for c in checkpoints(s.summary, VALIDATORS.names())]
    _write(tmp_path / "out", {"select": "im", "pick": None, "ran": 0, "settings": [s.name for s in grid]}, table,
           VALIDATORS.names())
    md = (tmp_path / "out" / "sweep.md").read_text()
    assert "- **no pick**: none of the settings has a finite `im` score" in md
    assert md.count("| train.lr=0.1 |") == 3 and md.count("| train.lr=0.2 |") == 3 and "| pick" not in md
    grid[0].summary["rounds"][0]["val/im"] = 0.5  # one finite score: it is the pick, NaN never wins
    assert (pick(grid, "im")["setting"], pick(grid, "im")["checkpoint"]) == ("train.lr=0.1", "round 0")


def test_a_sweep_where_every_setting_diverged_writes_its_table_before_it_stops(tmp_path):
    """Every setting diverged (lr 1e30): the sweep raised without a sweep.md, so which settings diverged and what
    they recorded could only be read from each run's summary.json."""
    config = {**BASE, "train": {**BASE["train"], "lr": 1e30}}
    with pytest.warns(RuntimeWarning, match="training loss was not finite"), \
            pytest.raises(ConfigError, match=r"none of the 2 finished setting\(s\) has a score .*sweep.md lists what "
                                             r"each setting recorded"):
        run_sweep(config, {"train.lr": [1e32]}, "im", tmp_path / "out")
    md = (tmp_path / "out" / "sweep.md").read_text()
    assert "- **no pick**: none of the settings has a finite `im` score" in md
    assert md.count("| train.lr=1.0e+30 |") == 3 and md.count("| train.lr=1.0e+32 |") == 3  # warm-up step, rounds


def test_a_sweep_answered_by_people_waits_like_a_run_and_continues_when_run_again(tmp_path):
    """A sweep with oracle.kind: file ended in 'error: ... then `adakit resume <setting>`' (exit 2), as if it had
    failed, and never said that the sweep itself continues; it now stops as `adakit run` does ('waiting for labels',
    exit 0), names the file to fill and says to run the same sweep again, which continues the setting."""
    from adakit.labeling.answers import import_answers
    from adakit.ledger import Ledger

    values = {**BASE, "budget": {"total": 4, "rounds": 1}, "oracle": {"kind": "file"},
              "train": {**BASE["train"], "warmup_iters": 5, "round_iters": 5}}
    cfg = tmp_path / "people.yaml"
    cfg.write_text(yaml.safe_dump(values))
    args = ["sweep", str(cfg), "--grid", "train.lr=0.01", "--select", "entropy", "--out", str(tmp_path / "s")]
    res = CliRunner().invoke(app, args)
    text = " ".join(res.output.split())
    run_dir = tmp_path / "s" / "train.lr_0.01"
    assert res.exit_code == 0 and text.startswith("waiting for labels: round 1:"), res.output
    assert f"{run_dir / 'queries' / 'round-1.csv'}" in text and "run the same `adakit sweep` command again" in text
    assert not (tmp_path / "s" / "sweep.json").exists()
    with Ledger(run_dir / "ledger.sqlite") as led:
        ids = [q.sample_id for q in led.open_queries()]
    assert len(ids) == 4 and import_answers(run_dir, dict.fromkeys(ids, 0)).new == 4
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "pick by entropy: train.lr=0.01, round 1" in res.output, res.output
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["pick"]["checkpoint"] == "round 1"


def _object_sweep():
    """Arrays of a tiny UDA sweep on Python objects: source / target features, a config and a one-setting grid."""
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(60, 4)).astype(np.float32)
    xt = rng.normal(0.5, 1.3, size=(40, 4)).astype(np.float32)
    config = {"objective": {"name": "dann"}, "budget": {"total": 0, "rounds": 0},
              "train": {"warmup_iters": 6, "threads": 1, "device": "cpu"}}
    return xs, xt, config, {"train.lr": [0.01]}


def test_a_sweep_on_python_objects_refuses_runs_it_finished_on_other_data_or_another_module(tmp_path):
    """Run again with other arrays (or another module), a sweep on Python objects reused its finished runs silently:
    the pick, its scores and oracle accuracy were those of the old data."""
    from torch import nn

    xs, xt, config, grid = _object_sweep()
    out = tmp_path / "s"
    same = {"source": (xs, xs[:, :3].argmax(1)), "test": (xt, xt[:, :3].argmax(1))}
    res = run_sweep(config, grid, "im", out, target=(xt, None), model=nn.Sequential(nn.Linear(4, 8)), **same)
    assert res["ran"] == 1
    assert run_sweep(config, grid, "im", out, target=(xt, None), model=nn.Sequential(nn.Linear(4, 8)),
                     **same)["ran"] == 0  # the same objects (a new module of the same class): continued
    with pytest.raises(ConfigError, match=r"train.lr_0.01 \(setting train.lr=0.01\) was run on other data: target= "
                                          r"has 30 samples instead of 40.*another out folder"):
        run_sweep(config, grid, "im", out, target=(xt[:30], None), model=nn.Sequential(nn.Linear(4, 8)), **same)
    with pytest.raises(ConfigError, match="target= has different values"):
        run_sweep(config, grid, "im", out, target=(2 * xt, None), model=nn.Sequential(nn.Linear(4, 8)), **same)
    with pytest.raises(ConfigError, match=r"was run with another model: model= is a Linear, the run's was a "
                                          r"Sequential"):
        run_sweep(config, grid, "im", out, target=(xt, None), model=nn.Linear(4, 8), **same)
    with pytest.raises(ConfigError, match="another model: model= gives 16 features per input, the run's Sequential "
                                          "gave 8"):
        run_sweep(config, grid, "im", out, target=(xt, None), model=nn.Sequential(nn.Linear(4, 16)), **same)
    assert json.loads((out / "sweep.json").read_text())["ran"] == 0  # refused before anything was written


def test_sweep_md_says_which_columns_read_target_labels_and_how_to_load_a_pick_on_your_own_module(tmp_path):
    """sweep.md's title said "no target labels" also when queried_acc picked (it reads the labels bought for each
    queried batch), no line said which columns read target labels, and the pick's load_run call lacked the
    backbone= that a run on your own module needs (load_run refuses it without)."""
    from adakit.config import build_config
    from adakit.sweep import Setting, _write, pick

    rounds = [{"round": r, "labels": 5 * r, "accuracy": 0.6, "val/im": 0.3,
               **({"val/queried_acc": 0.5} if r else {})} for r in range(3)]
    custom = build_config({**BASE, "model": {**BASE["model"], "backbone": "custom"}})
    s = Setting({"train.lr": 0.1}, "train.lr=0.1", tmp_path / "0.1", custom, True, {"rounds": rounds})
    table = [(s, c) for c in checkpoints(s.summary, ["im", "queried_acc"])]
    for select in ("queried_acc", "im"):
        _write(tmp_path / select, {"select": select, "pick": pick([s], select)}, table, ["im", "queried_acc"])
    md = (tmp_path / "queried_acc" / "sweep.md").read_text()
    assert md.splitlines()[0] == ("# Sweep: selection by `queried_acc` (higher is better; reads only the target "
                                  "labels the runs bought, never the test labels)")
    assert ("Target labels: `accuracy (oracle)` reads the test labels (the pick never does); `queried_acc` reads the "
            "labels bought for each queried batch; `im` reads none.") in md
    assert f'`adakit.load_run("{tmp_path / "0.1"}", checkpoint="round 2", backbone=<your module>)`' in md
    assert '`adakit.load_run("<this folder>/<folder>", checkpoint="<checkpoint>", backbone=<your module>)`' in md
    md = (tmp_path / "im" / "sweep.md").read_text()
    assert md.splitlines()[0] == "# Sweep: selection by `im` (higher is better; no target labels)"
    uda = _fake_setting(tmp_path, "0.03", [0.2, 0.9, 0.5])  # built-in backbone: load_run needs nothing more
    _write(tmp_path / "uda", {"select": "im", "pick": pick([uda], "im")},
           [(uda, c) for c in checkpoints(uda.summary, ["im"])], ["im"])
    md = (tmp_path / "uda" / "sweep.md").read_text()
    assert f'`adakit.load_run("{tmp_path / "0.03"}", checkpoint="warm-up step 20")`' in md
    assert '`adakit.load_run("<this folder>/<folder>", checkpoint="<checkpoint>")` loads' in md
    assert "Target labels: `accuracy (oracle)` reads the test labels (the pick never does); `im` reads none." in md


def test_a_sweep_on_python_objects_checks_the_held_out_source_split_of_every_setting_before_training(tmp_path):
    """A data.source_val that holds out the whole source was found only when its setting started, after the
    settings before it had trained (the data check before any run skipped data given as objects)."""
    from torch import nn

    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(60, 4)).astype(np.float32), rng.normal(size=(40, 4)).astype(np.float32)
    config = {"objective": {"name": "dann"}, "data": {"source_val": 0.1}, "budget": {"total": 0, "rounds": 0},
              "train": {"warmup_iters": 6, "threads": 1, "device": "cpu"}}
    with pytest.raises(ConfigError, match=r"setting data.source_val=0.99: data.source_val=0.99: holds out 60 of 60"):
        run_sweep(config, {"data.source_val": [0.1, 0.99]}, "source_acc", tmp_path / "s",
                  source=(xs, xs[:, :3].argmax(1)), target=xt, model=nn.Linear(4, 8))
    assert not (tmp_path / "s").exists()  # nothing trained


def _ledger_facts(run_dir: Path) -> tuple[list, list, list]:
    """A run's queries (with scores and suggestions), its labels and its metrics, as its ledger holds them."""
    from adakit.ledger import Ledger

    with Ledger.read_only(run_dir / "ledger.sqlite") as led:
        return [tuple(vars(q).values()) for q in led.queries()], list(led.labelled_pool()), led.metrics()


def _same_run(a: Path, b: Path) -> None:
    """Two runs of one setting ended on the same results, bit for bit: summary.json's rounds (accuracy and every
    validator) and warm-up checkpoints, the ledger's queries and labels, and the last model."""
    import torch

    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert sa["rounds"] == sb["rounds"] and sa["warmup_checkpoints"] == sb["warmup_checkpoints"]
    assert _ledger_facts(a) == _ledger_facts(b)
    last = f"round-{sa['rounds'][-1]['round']}.pt"
    ma, mb = (torch.load(d / "checkpoints" / last, weights_only=False)["model"] for d in (a, b))
    assert ma.keys() == mb.keys() and all(torch.equal(ma[k], mb[k]) for k in ma)


@pytest.fixture()
def warmups_trained(monkeypatch) -> list[str]:
    """The run folders (names) that train a warm-up in this process, in order."""
    from adakit.loop import ActiveLoop

    trained: list[str] = []
    real = ActiveLoop._train

    def spy(self, r):
        if r == 0:
            trained.append(self.run_dir.name)
        return real(self, r)

    monkeypatch.setattr(ActiveLoop, "_train", spy)
    return trained


def test_a_resumed_sweep_adopts_the_warmup_of_a_setting_finished_before(config, tmp_path, warmups_trained):
    """A resumed sweep ran only its unfinished settings, so none adopted the warm-up of a finished one: a sweep over
    round_iters killed after its first setting trained the same warm-up again for each other setting. Settings
    with another warm-up (another lr) never adopt it, and an adopted warm-up ends on the results of a trained one."""
    out = tmp_path / "shared"
    grid = ["train.lr=0.01,0.03", "train.round_iters=10,20"]
    run_sweep(config, grid, "im", out, only=["train.round_iters=10"])  # the sweep killed after these two
    assert warmups_trained == ["train.lr_0.01_train.round_iters_10", "train.lr_0.03_train.round_iters_10"]
    warmups_trained.clear()
    res = run_sweep(config, grid, "im", out)
    assert res["ran"] == 2 and warmups_trained == []  # both adopted the finished setting of their lr
    for lr in ("0.01", "0.03"):
        own = out / f"train.lr_{lr}_train.round_iters_20"
        assert (own / "checkpoints/round-0.pt").read_bytes() == \
            (out / f"train.lr_{lr}_train.round_iters_10/checkpoints/round-0.pt").read_bytes()
        assert json.loads((own / "summary.json").read_text())["rounds"][1]["labels"] > 0
    # the same setting trained alone (its own warm-up) ends on the same results, bit for bit
    alone = tmp_path / "alone"
    run_sweep(config, grid, "im", alone, only=["train.lr=0.03", "train.round_iters=20"])
    assert warmups_trained == ["train.lr_0.03_train.round_iters_20"]
    _same_run(out / "train.lr_0.03_train.round_iters_20", alone / "train.lr_0.03_train.round_iters_20")


def test_jobs_run_each_warmup_group_s_warmup_once(config, tmp_path, monkeypatch, warmups_trained):
    """--jobs handed every setting to a worker of its own, so each trained its warm-up, also settings that differ only
    in keys round 0 never reads. One setting of each warm-up now runs first and the others of its group adopt it."""
    import shutil
    from concurrent.futures import Future

    import adakit.sweep as sweep

    submitted = []

    class InlinePool:  # the pool's calls, run here in order (the real one spawns processes)
        def __init__(self, *a, **k):
            pass

        def submit(self, fn, config, run_dir, finished=()):
            submitted.append((Path(run_dir).name, [Path(d).name for _, d in finished]))
            f = Future()
            f.set_result(fn(config, run_dir, finished))
            return f

        def shutdown(self, **k):
            pass

    monkeypatch.setattr(sweep, "ProcessPoolExecutor", InlinePool)
    grid = ["train.lr=0.01,0.03", "query.strategy=margin,entropy", "train.round_iters=10,20"]
    settings = plan_sweep(config, parse_grid(grid), tmp_path / "o")
    assert [len(g) for g in sweep.warmup_groups(settings)] == [4, 4]  # one per lr
    assert sweep.run_settings(settings, jobs=3) == 8
    lead = {lr: f"query.strategy_margin_train.lr_{lr}_train.round_iters_10" for lr in ("0.01", "0.03")}
    assert submitted[:2] == [(lead["0.01"], []), (lead["0.03"], [])]  # each group's first setting, nothing to adopt
    assert sorted(submitted[2:]) == sorted((s.run_dir.name, [lead[lr]]) for s in settings
                                           for lr in [str(s.values["train.lr"])] if s.run_dir.name != lead[lr])
    assert warmups_trained == [lead["0.01"], lead["0.03"]]
    # a resumed --jobs sweep: the settings left adopt a finished one's warm-up at once
    for s in settings[1:]:
        shutil.rmtree(s.run_dir)
    submitted.clear()
    warmups_trained.clear()
    assert sweep.run_settings(settings, jobs=3) == 7
    assert warmups_trained == [lead["0.03"]]
    assert submitted[:4] == [*((s.run_dir.name, [lead["0.01"]]) for s in settings[1:4]), (lead["0.03"], [])]


def test_parallel_jobs_adopt_a_shared_warmup_with_the_results_of_a_trained_one(config, tmp_path):
    """In worker processes: the setting that adopts its group's warm-up ends on the results of one that trained it."""
    from adakit.ledger import Ledger

    grid = ["train.round_iters=10,20", "query.strategy=margin,entropy"]
    out = tmp_path / "par"
    res = run_sweep(config, grid, "im", out, jobs=2)
    assert res["ran"] == 4
    trained = []
    for ledger in sorted(out.glob("*/ledger.sqlite")):
        with Ledger.read_only(ledger) as led:
            if led.get_meta("processes/0") is not None:  # (set where round 0 trains; an adopted warm-up has none)
                trained.append(ledger.parent.name)
    assert trained == ["query.strategy_margin_train.round_iters_10"]
    alone = tmp_path / "alone"
    run_sweep(config, grid, "im", alone, only=["train.round_iters=20", "query.strategy=entropy"])
    name = "query.strategy_entropy_train.round_iters_20"
    _same_run(out / name, alone / name)



def test_a_sweep_on_your_own_module_defined_in_a_function_continues_with_it(tmp_path):
    """The module check of a sweep on Python objects compared the run's class name (the last part of
    ``module.qualname``) with the whole ``__qualname__`` of the module given: a class defined inside a function
    (``make.<locals>.Net``) was refused as 'another model' when the same sweep was called again with it."""
    from torch import nn

    class Net(nn.Module):  # (its __qualname__ holds this test's name and <locals>)
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 8)

        def forward(self, x):
            return self.lin(x)

    xs, xt, config, grid = _object_sweep()
    out = tmp_path / "s"
    objects = {"source": (xs, xs[:, :3].argmax(1)), "target": (xt, None), "test": (xt, xt[:, :3].argmax(1))}
    assert run_sweep(config, grid, "im", out, model=Net(), **objects)["ran"] == 1
    assert run_sweep(config, grid, "im", out, model=Net(), **objects)["ran"] == 0
    with pytest.raises(ConfigError, match=r"was run with another model: model= is a Sequential, the run's was a .*Net"):
        run_sweep(config, grid, "im", out, model=nn.Sequential(nn.Linear(4, 8)), **objects)

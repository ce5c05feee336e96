"""CLI basics: --version, boolean options shown as flags, `adakit report` output folder, and the progress bar
of a Python-API run."""

import io
import json
import re
from pathlib import Path

import typer
from rich.console import Console
from typer.testing import CliRunner

import adakit
from adakit import progress
from adakit.cli import app
from adakit.config import build_config
from adakit.loop import ActiveLoop

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def test_version_prints_the_package_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output == f"adakit {adakit.__version__}\n"
    declared = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M)
    assert adakit.__version__ == declared.group(1)


def _commands(group, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def test_every_boolean_option_is_a_plain_flag_in_help():
    root = typer.main.get_command(app)
    checked = 0
    for path, cmd in [((), root), *_commands(root)]:
        flags = [p for p in cmd.params if getattr(p, "is_flag", False)]
        if not flags:
            continue
        res = runner.invoke(app, [*path, "--help"], terminal_width=200)
        assert res.exit_code == 0, res.output
        for p in flags:
            assert not p.secondary_opts, (path, p.opts)  # no --x/--no-x pair
            (line,) = [ln for ln in res.output.splitlines() if re.search(rf"{re.escape(p.opts[0])}(\s|$)", ln)]
            assert "<bool>" not in line and "[default: False]" not in line and p.help, (path, line)
            checked += 1
    assert checked >= 10  # run/resume/demo --quiet, features, import-labels, label, export-labelstudio, --version


def _summary(run_dir, strategy, accs):
    run_dir.mkdir(parents=True)
    s = {"name": "t", "strategy": strategy, "objective": "finetune", "protocol": "transductive", "seed": 0,
         "data": {"format": "npz", "source": "amazon", "target": "webcam"},
         "budget": {"total": 0.05, "rounds": 2, "per_round": [5, 5]},
         "rounds": [{"round": i, "labels": 5 * i, "accuracy": a, "mean_class_accuracy": a} for i, a in enumerate(accs)],
         "final_accuracy": accs[-1]}
    (run_dir / "summary.json").write_text(json.dumps(s))


def test_report_without_out_writes_into_the_current_folder_and_says_where(tmp_path, monkeypatch):
    _summary(tmp_path / "runs" / "m", "margin", [0.5, 0.6, 0.7])
    _summary(tmp_path / "runs" / "r", "random", [0.5, 0.55, 0.6])
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    res = runner.invoke(app, ["report", "../runs/m", "../runs/r"], terminal_width=400)
    assert res.exit_code == 0, res.output
    assert "| finetune + margin | 70.0 (n=1) |" in (here / "comparison.md").read_text()
    assert (here / "curve-amazon-to-webcam.png").is_file()
    assert not (tmp_path / "runs" / "m" / "comparison.md").exists()  # used to land in the first run's folder
    assert f"wrote {here.resolve() / 'comparison.md'} and curve-amazon-to-webcam.png" in res.output
    assert (tmp_path / "runs" / "r" / "report.md").is_file()


def test_report_checks_every_folder_before_writing_anything(tmp_path):
    _summary(tmp_path / "m", "margin", [0.5, 0.6, 0.7])
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["report", str(tmp_path / "m"), str(tmp_path / "empty"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "no summary.json" in res.output
    assert not (tmp_path / "m" / "report.md").exists() and not (tmp_path / "o").exists()


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, force_jupyter=False, width=100), buf


def test_progress_bar_draws_on_a_terminal_and_stays_silent_otherwise(monkeypatch):
    for terminal, enabled, drawn in ((True, True, True), (True, False, False), (False, True, False)):
        console, buf = _console(terminal)
        monkeypatch.setattr(progress, "console", console)
        with progress.progress_bar(3, "round 7 train", enabled=enabled) as bar:
            for _ in range(3):
                bar.advance(loss=0.5)
        assert ("round 7 train" in buf.getvalue()) is drawn, (terminal, enabled, buf.getvalue())


def test_python_api_run_shows_the_cli_progress_bar_by_default(tmp_path, monkeypatch):
    """`adakit run` and `ActiveLoop(...).run()` draw the same bar (the trainer's); show_progress=False / --quiet
    silence it (checked above on `progress_bar(enabled=False)`, which is what they pass down)."""
    values = {"data": {"format": "demo"}, "model": {"hidden_dim": 16, "bottleneck_dim": 8},
              "budget": {"total": 0.01, "rounds": 1}, "train": {"warmup_iters": 5, "round_iters": 5, "threads": 1}}
    console, buf = _console(True)
    monkeypatch.setattr(progress, "console", console)
    ActiveLoop(build_config(values), tmp_path / "run").run()
    assert "round 0 train" in buf.getvalue() and "round 1 train" in buf.getvalue()


def test_run_on_a_target_without_labels_ends_with_a_final_line(tmp_path, unlabelled_target_config):
    """No target label: the run has no accuracy, and its last line says so (it used to end in a TypeError)."""
    config = unlabelled_target_config(warmup_iters=10)
    res = runner.invoke(app, ["run", str(config), "--out", str(tmp_path / "r"), "--quiet"])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())  # the console may wrap the long path
    assert f"final target accuracy n/a (no labelled test samples); results in {tmp_path / 'r'}" in text
    assert "round 0: 0 labels, target accuracy n/a (no labelled test samples)" in text  # ('accuracy no labelled')


def test_warnings_on_the_command_line_are_one_line_without_python_source(capsys):
    """A warning printed by a command (e.g. sweep's --jobs advice) showed a .py path and a source line."""
    import warnings

    from adakit import cli

    with warnings.catch_warnings():
        assert CliRunner().invoke(cli.app, ["methods"]).exit_code == 0
        assert warnings.showwarning is cli._show_warning  # the callback installs it for every command
        warnings.simplefilter("always")
        warnings.warn("--jobs 4 runs at up to 1 torch thread(s) each on 2 CPU(s)", UserWarning, stacklevel=1)
    printed = capsys.readouterr().err
    assert printed.startswith("warning: --jobs 4 runs") and ".py" not in printed

"""Run-folder reliability (issue 11): no overwrite, no default-config fallback, run.lock, validation before
work, named errors for damaged checkpoints, clean-up after kills."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from adakit.cli import app
from adakit.config import build_config
from adakit.errors import AdakitError, ConfigError, DataError
from adakit.ledger import Ledger
from adakit.loop import ActiveLoop
from adakit.rundir import CheckpointError, RunInUseError, acquire, check_out_dir, clean_checkpoints, run_lock

runner = CliRunner()

TINY = {
    "seed": 1,
    "data": {"format": "demo"},
    "model": {"backbone": "mlp", "hidden_dim": 16, "bottleneck_dim": 8},
    "query": {"strategy": "margin"},
    "budget": {"total": 0.02, "rounds": 2},
    "train": {"warmup_iters": 5, "round_iters": 3, "threads": 1, "eval_batch_size": 512},
}


def _config(tmp_path, values=TINY):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _cli(*args):
    res = runner.invoke(app, [str(a) for a in args])
    # a named error: exit code 2 with "error:", never an uncaught exception (typer's exit is a SystemExit)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def _digest(folder):
    """Content of every file (SQLite's -wal/-shm side files, which a read-only open may create, left out)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-round run (checkpoints of round 0 and 2), copied by the tests that damage it."""
    d = tmp_path_factory.mktemp("finished") / "run"
    ActiveLoop(build_config(TINY), d, show_progress=False).run()
    return d


def _copy_run(src, dst):
    import shutil

    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("run.lock"))
    return dst


# -- 1. --out never overwrites a folder that is not a run ----------------------------------------
def test_run_refuses_a_non_empty_folder_that_is_not_a_run(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    for name, text in (("config.yaml", "my: notes\n"), ("report.md", "# my report\n"), ("summary.json", "{}")):
        (out / name).write_text(text)
    before = _digest(out)
    res = _cli("run", _config(tmp_path), "--out", out, "--quiet")
    assert res.exit_code == 2 and "not empty and holds no run" in res.output and "config.yaml" in res.output
    assert _digest(out) == before


def test_run_accepts_an_empty_folder(tmp_path):  # absent folders and run folders: test_check_out_dir
    values = {**TINY, "budget": {"total": 0.0, "rounds": 0}}
    out = tmp_path / "empty"
    out.mkdir()
    res = _cli("run", _config(tmp_path, values), "--out", out, "--quiet")
    assert res.exit_code == 0, res.output
    assert (out / "summary.json").is_file()


@pytest.mark.parametrize("target", ["file", "file/under", "file/under/deeper"])
def test_out_naming_a_file_or_a_path_under_a_file_is_a_named_error(tmp_path, target):
    (tmp_path / "file").write_text("x")
    res = _cli("run", _config(tmp_path), "--out", tmp_path / target, "--quiet")
    assert res.exit_code == 2 and "is a file" in res.output
    assert (tmp_path / "file").read_text() == "x"


# -- 2. resume / query never fall back to the default config ------------------------------------
@pytest.mark.parametrize("command", [["resume"], ["query", "--budget", "3"]])
def test_a_ledger_without_stored_config_is_refused_and_left_untouched(tmp_path, command):
    run = tmp_path / "run"
    Ledger(run / "ledger.sqlite").close()  # an adakit ledger (schema) that never got a config
    before = _digest(run)
    res = _cli(command[0], run, *command[1:])
    assert res.exit_code == 2 and "holds no stored config" in res.output, res.output
    assert _digest(run) == before and not (run / "config.yaml").exists()
    with pytest.raises(ConfigError, match="holds no stored config"):
        ActiveLoop.resume(run)


@pytest.mark.parametrize("damage", ["zero-byte", "garbage", "truncated"])
@pytest.mark.parametrize("command", [["resume"], ["query", "--budget", "3"], ["run", "CFG", "--out"]])
def test_a_damaged_ledger_is_a_named_error_in_every_run_command(tmp_path, finished_run, command, damage):
    run = tmp_path / "run"
    run.mkdir()
    content = {"zero-byte": b"", "garbage": os.urandom(3000),
               "truncated": (finished_run / "ledger.sqlite").read_bytes()[:3000]}[damage]
    (run / "ledger.sqlite").write_bytes(content)
    args = [_config(tmp_path) if a == "CFG" else a for a in command]
    res = _cli(*args, run)
    assert res.exit_code == 2 and "ledger.sqlite" in res.output, res.output
    assert (run / "ledger.sqlite").read_bytes() == content and not (run / "config.yaml").exists()


# -- 3. run.lock ----------------------------------------------------------------------------------
_HOLDER = textwrap.dedent("""
    import sys, time
    from adakit.rundir import acquire
    acquire(sys.argv[1])
    print("locked", flush=True)
    time.sleep(60)
""")


def _hold_lock_in_subprocess(run_dir):
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_process_gets_in_use_by_pid(tmp_path, finished_run):
    run = _copy_run(finished_run, tmp_path / "run")
    proc = _hold_lock_in_subprocess(run)
    try:
        with pytest.raises(RunInUseError, match=f"in use by PID {proc.pid} \\(started .*\\); wait for it or stop it"):
            acquire(run)
        for args in (["resume", run, "--quiet"], ["query", run, "--budget", "2"],
                     ["run", run / "config.yaml", "--out", run, "--quiet"]):
            res = _cli(*args)
            assert res.exit_code == 2 and f"in use by PID {proc.pid}" in res.output, (args, res.output)
        with pytest.raises(RunInUseError):
            ActiveLoop.resume(run, show_progress=False).run()
    finally:
        proc.kill()
        proc.wait()
    with run_lock(run):  # released when the holder ended
        pass


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    proc = _hold_lock_in_subprocess(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "run.lock").read_text().split()[0] == str(proc.pid)  # the stale file is still there
    with run_lock(tmp_path):
        assert (tmp_path / "run.lock").read_text().split()[0] == str(os.getpid())


def test_a_forked_child_does_not_keep_the_lock_of_a_killed_holder(tmp_path):
    """Loader workers (train.num_workers > 0) are forked and inherited the lock's descriptor: after a SIGKILL of
    the run they kept the lock until they noticed (seconds, or for good when stuck), and `adakit resume` said the
    run was in use by the dead process."""
    code = ("import os, sys, time; from adakit.rundir import acquire; acquire(sys.argv[1])\n"
            "r, w = os.pipe()\n"
            "child = os.fork()\n"
            "if child == 0:\n    os.write(w, b'x'); time.sleep(60); os._exit(0)\n"
            "os.read(r, 1)\n"  # the child has run (its after-fork hooks ran before fork() returned in it): on a
            "print(child, flush=True); time.sleep(60)")  # loaded machine it could still be unscheduled when killed
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    try:
        with pytest.raises(RunInUseError, match=f"in use by PID {proc.pid}"):  # (the child's close kept it held)
            acquire(tmp_path)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        os.kill(child, 0)  # (the forked child is still alive)
        with run_lock(tmp_path):  # but holds no lock
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_the_lock_is_reentrant_in_one_process_and_released_on_exit(tmp_path):
    with run_lock(tmp_path):
        with run_lock(tmp_path):
            pass
        probe = subprocess.run([sys.executable, "-c", "import sys; from adakit.rundir import acquire; "
                                "acquire(sys.argv[1])", str(tmp_path)], capture_output=True, text=True)
        assert probe.returncode != 0 and "in use by PID" in probe.stderr  # still held by the outer block
    probe = subprocess.run([sys.executable, "-c", "import sys; from adakit.rundir import acquire; acquire(sys.argv[1])",
                            str(tmp_path)], capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr


# -- 4. validation before the run folder exists ---------------------------------------------------
@pytest.mark.parametrize("override, key", [
    ("budget.total=.inf", "budget.total"), ("budget.total=.nan", "budget.total"), ("seed=-1", "seed"),
    ("seed=4294967296", "seed"), ("train.device=tpu", "train.device"),
    ("data.pattern={root}/{dom}.npz", "data.pattern"), ("data.protocol=inductive", "data.test_fraction"),
])
def test_bad_config_is_a_named_error_before_the_run_folder_exists(tmp_path, override, key):
    extra = ["--set", "data.test_fraction=0.001"] if key == "data.test_fraction" else []
    out = tmp_path / "out"
    res = _cli("run", _config(tmp_path), "--out", out, "--quiet", "--set", override, *extra)
    assert res.exit_code == 2 and key in res.output, res.output
    assert not out.exists()


def test_inductive_split_too_small_says_how_to_fix():
    from adakit.data import load_domains

    cfg = build_config(TINY, ["data.protocol=inductive", "data.test_fraction=0.999"])
    with pytest.raises(ConfigError, match=r"test_fraction=0.999.*at least 10 .*Choose data.test_fraction between"):
        load_domains(cfg.data, cfg.seed)


def _npz(path, dim, classes=("a", "b")):
    rng = np.random.default_rng(0)
    y = np.arange(20) % len(classes)
    np.savez(path, feat=rng.normal(size=(20, dim)).astype(np.float32), y=y, classes=np.array(classes))


def test_source_and_target_feature_sizes_must_match_before_training(tmp_path):
    _npz(tmp_path / "src.npz", 8)
    _npz(tmp_path / "tgt.npz", 5)
    values = {**TINY, "data": {"format": "npz", "root": str(tmp_path), "source": "src", "target": "tgt"},
              "budget": {"total": 2, "rounds": 1}}
    with pytest.raises(DataError, match=r"'src' has samples of shape \(8,\) but target domain 'tgt' has \(5,\)"):
        ActiveLoop(build_config(values), tmp_path / "run", show_progress=False)
    res = _cli("run", _config(tmp_path, values), "--out", tmp_path / "run", "--quiet")
    assert res.exit_code == 2 and "(8,)" in res.output and "(5,)" in res.output
    assert not (tmp_path / "run").exists()


def test_a_feature_file_changed_under_a_stopped_run_is_refused_on_resume(tmp_path):
    """Rows of a feature file are identified by their row number: a row inserted at the top (re-running
    `adakit features` after adding an image) would hand every stored label to another sample."""
    _npz(tmp_path / "src.npz", 6)
    _npz(tmp_path / "tgt.npz", 6)
    values = {**TINY, "data": {"format": "npz", "root": str(tmp_path), "source": "src", "target": "tgt"},
              "budget": {"total": 4, "rounds": 2}, "oracle": {"kind": "file"}}
    res = _cli("run", _config(tmp_path, values), "--out", tmp_path / "run", "--quiet")
    assert res.exit_code == 0 and "waiting for labels" in res.output, res.output
    with np.load(tmp_path / "tgt.npz") as f:
        feat, y, classes = f["feat"], f["y"], f["classes"]
    np.savez(tmp_path / "tgt.npz", feat=np.concatenate([feat[-1:], feat[:-1]]), y=np.roll(y, 1), classes=classes)
    res = _cli("resume", tmp_path / "run", "--quiet")
    assert res.exit_code == 2 and "the target data (data.target='tgt') is not what" in res.output, res.output
    assert "different labels" in res.output and "restore the data" in res.output
    np.savez(tmp_path / "tgt.npz", feat=feat, y=y, classes=classes)  # restored: the run continues
    res = _cli("resume", tmp_path / "run", "--quiet")
    assert res.exit_code == 0 and "waiting for labels" in res.output, res.output


# -- 5. duplicate class names ----------------------------------------------------------------------
def test_duplicate_class_names_are_a_data_error(tmp_path):
    from adakit.data import TensorDomain, load_domain

    with pytest.raises(DataError, match=r"class names listed more than once: \['cat'\]"):
        TensorDomain(name="d", classes=["cat", "dog", "cat"], ids=np.arange(3), y=[0, 1, 0], x=np.zeros((3, 2)))
    _npz(tmp_path / "dup.npz", 4, classes=("a", "b", "a"))
    with pytest.raises(DataError, match=r"'dup'.*listed more than once: \['a'\]"):
        load_domain("npz", "dup", str(tmp_path))


# -- 6. missing or corrupt checkpoints ------------------------------------------------------------
@pytest.mark.parametrize("damage", ["missing", "zero", "garbage", "truncated", "not a state"])
def test_a_missing_or_corrupt_checkpoint_is_a_named_error(tmp_path, finished_run, damage):
    run = _copy_run(finished_run, tmp_path / "run")
    ck = run / "checkpoints" / "round-2.pt"
    if damage == "missing":
        ck.unlink()
    elif damage == "zero":
        ck.write_bytes(b"")
    elif damage == "garbage":
        ck.write_bytes(os.urandom(2000))
    elif damage == "truncated":
        ck.write_bytes(ck.read_bytes()[:1000])
    else:
        import torch

        torch.save([1, 2, 3], ck)
    word = "missing" if damage == "missing" else "unreadable|not an adakit checkpoint"
    for args in (["resume", run, "--quiet"], ["query", run, "--budget", "2"]):
        res = _cli(*args)
        assert res.exit_code == 2, res.output
        assert "round 2" in res.output and "round-2.pt" in res.output, res.output
        assert any(w in res.output for w in word.split("|")), res.output
    loop = ActiveLoop.resume(run, show_progress=False)
    with pytest.raises(CheckpointError) as e:
        loop.restore()
    assert isinstance(e.value, AdakitError) and isinstance(e.value, RuntimeError)  # labelling page falls back


# -- 7. after kills: orphan checkpoints, timings in summary.json ----------------------------------
def test_resume_removes_orphan_checkpoints_and_reports_timings(tmp_path, finished_run):
    run = _copy_run(finished_run, tmp_path / "run")
    ck = run / "checkpoints"
    (ck / "round-3.pt.tmp").write_bytes(b"half a save")        # killed inside torch.save
    (ck / "round-1.pt").write_bytes((ck / "round-2.pt").read_bytes())  # recorded, superseded, not deleted yet
    (ck / "round-9.pt").write_bytes(b"saved, never recorded")
    with Ledger(run / "ledger.sqlite") as led:  # what an older kill left: rows without their timing
        led.conn.execute("DELETE FROM meta WHERE key IN ('train/2', 'query_seconds/1')")
    s = ActiveLoop.resume(run, show_progress=False).run()
    assert sorted(p.name for p in ck.iterdir()) == ["round-0.pt", "round-2.pt"]
    on_disk = json.loads((run / "summary.json").read_text())
    for summary in (s, on_disk):
        assert summary["train_sec_per_iter"] is not None and summary["train_sec_per_iter"] > 0
        assert len(summary["query_seconds"]) == 1 and None not in summary["query_seconds"]


def test_clean_checkpoints_keeps_the_warmup_and_the_last(tmp_path, finished_run):
    run = _copy_run(finished_run, tmp_path / "run")
    with Ledger(run / "ledger.sqlite") as led:
        assert clean_checkpoints(run, led) == []
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["round-0.pt", "round-2.pt"]


def test_a_trained_round_always_has_its_timing(tmp_path):
    loop = ActiveLoop(build_config(TINY), tmp_path, show_progress=False)
    seen = []
    record = loop.ledger.record_checkpoint

    def spy(r, path):  # at the moment the checkpoint row lands, the round's stats are already stored
        seen.append(loop.ledger.get_meta(f"train/{r}") is not None)
        record(r, path)

    loop.ledger.record_checkpoint = spy
    loop.run()
    assert seen == [True, True, True]


# -- 8. check_out_dir directly ---------------------------------------------------------------------
def test_check_out_dir(tmp_path, finished_run):
    assert check_out_dir(tmp_path / "absent") is False
    assert check_out_dir(tmp_path) is False  # empty
    (tmp_path / "run.lock").touch()
    assert check_out_dir(tmp_path) is False  # only the lock of a run that failed before its ledger
    assert check_out_dir(finished_run) is True
    (tmp_path / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty"):
        check_out_dir(tmp_path)


def test_config_yaml_is_written_when_missing_a_second_config_is_refused_and_callbacks_get_copies(tmp_path,
                                                                                                     monkeypatch):
    """A kill between storing the config in the ledger and writing config.yaml left the run without it for good
    (report then averaged runs of different configs); two runs of different configs started on one new folder
    merged silently; a callback that failed on "labelled" got it again on resume with count 0; a callback that
    changed the info it got changed what later callbacks saw and what run() returned."""
    from adakit.config import build_config
    from adakit.errors import ConfigError
    from adakit.loop import ActiveLoop

    values = {"seed": 0, "data": {"format": "demo"}, "model": {"hidden_dim": 8, "bottleneck_dim": 4},
              "query": {"strategy": "margin"}, "budget": {"total": 0.02, "rounds": 2},
              "train": {"warmup_iters": 4, "round_iters": 2, "threads": 1}}
    run = tmp_path / "run"
    made = {}
    setup = ActiveLoop._setup

    def slow_setup(self, domains):  # while this run loads its data, another process starts one in the folder
        setup(self, domains)
        if "first" not in made:
            made["first"] = None  # (the other process's own setup passes straight through)
            made["first"] = ActiveLoop(build_config(values), run, show_progress=False)

    monkeypatch.setattr(ActiveLoop, "_setup", slow_setup)
    with pytest.raises(ConfigError, match="another process started a run of a different config here meanwhile"):
        ActiveLoop(build_config({**values, "query": {"strategy": "random"}}), run, show_progress=False)
    monkeypatch.setattr(ActiveLoop, "_setup", setup)
    first = made["first"]
    seen: list[tuple[str, dict]] = []

    def fail_once(kind, info):
        seen.append((kind, info))
        if kind == "labelled" and info["round"] == 1 and sum(k == "labelled" for k, _ in seen) == 1:
            raise RuntimeError("a logger failed")

    def vandal(kind, info):
        info.clear()

    first.callbacks += [vandal, fail_once]
    with pytest.raises(RuntimeError, match="a logger failed"):
        first.run()
    first.close()
    (run / "config.yaml").unlink()  # as a kill before it was written leaves the run
    again = ActiveLoop.resume(run, show_progress=False, callbacks=[vandal, fail_once])
    summary = again.run()
    assert (run / "config.yaml").is_file() and summary["rounds"] and summary["final_accuracy"] is not None
    labelled = [info["round"] for kind, info in seen if kind == "labelled"]
    assert labelled == [1, 2]  # round 1's event is not sent again (it was, with count 0)
    assert all(info for _, info in seen)  # the vandal emptied only its own copies


def test_a_run_goes_on_with_other_execution_settings_and_refuses_other_changes(tmp_path):
    """A run whose MLflow server was gone could never go on (resume read the stored log section; a run of the same
    config with log.mlflow=false was 'a different config'), and `adakit bench` continued a run on another thread
    count only to have the loop refuse it. Execution settings (device, threads, eval batch size, log, oracle) may
    change when a run continues; everything else is refused."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # a port nothing listens on
    cfg = _config(tmp_path, {**TINY, "log": {"mlflow": f"http://127.0.0.1:{port}"}})
    res = _cli("run", cfg, "--out", tmp_path / "r", "--quiet")
    assert res.exit_code == 2 and f"log.mlflow='http://127.0.0.1:{port}': no MLflow server answers" in res.output
    assert not (tmp_path / "r").exists()  # refused before the run folder was made (it was made, then stuck)
    (tmp_path / "afile").write_text("x")
    res = _cli("run", _config(tmp_path, TINY), "--out", tmp_path / "r", "--quiet",
               "--set", f"log.tensorboard={tmp_path / 'afile' / 'tb'}")
    assert res.exit_code == 2 and "log.tensorboard" in res.output and "is a file" in res.output
    assert not (tmp_path / "r").exists()

    stopped = tmp_path / "stopped"
    loop = ActiveLoop(build_config(TINY), stopped, show_progress=False,
                      on_event=lambda kind, info: (_ for _ in ()).throw(KeyboardInterrupt) if kind == "queried" else 0)
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    loop.close()
    res = _cli("resume", stopped, "--quiet", "--set", "query.strategy=entropy")
    assert res.exit_code == 2 and "query.strategy=entropy: a run continues with its own settings except" in res.output
    # from Python: one change as a string (it was read character by character), spaces around it, keyword only
    with pytest.raises(TypeError):
        ActiveLoop.resume(stopped, ["train.threads=2"])  # (a second positional argument was taken as changes)
    with pytest.raises(ConfigError, match="query.strategy=entropy: a run continues with its own settings"):
        ActiveLoop.resume(stopped, changes="query.strategy=entropy")
    ActiveLoop.resume(stopped, changes=" log.mlflow=false", show_progress=False).close()
    res = _cli("resume", stopped, "--quiet", "--set", "train.threads=2", "--set", "train.eval_batch_size=64")
    assert res.exit_code == 0, res.output
    # the same config on another thread count through `adakit run` continues the (finished) run too
    res = _cli("run", _config(tmp_path, {**TINY, "train": {**TINY["train"], "threads": 2}}), "--out", stopped,
               "--quiet")
    assert res.exit_code == 0 and "different config" not in res.output, res.output
    with Ledger(stopped / "ledger.sqlite") as led:
        assert led.get_meta("config")["train"]["threads"] == 1  # the stored config stays as the run started


def test_a_resume_that_trains_nothing_keeps_the_processes_that_trained(tmp_path, finished_run):
    """summary.json named the processes of whichever command wrote it last: a one-process resume of a finished
    torchrun run rewrote world_size 2 / gloo to 1 / none although every round trained on two processes, and a
    finished run continued on another thread count (`adakit resume --set train.threads=2`) took that process's
    environment, so `adakit report` named threads it never trained with."""
    run = _copy_run(finished_run, tmp_path / "run")
    with Ledger(run / "ledger.sqlite") as led:
        last = led.last_checkpoint()[0]
        stored = led.get_meta(f"processes/{last}")
        assert (stored["world_size"], stored["backend"]) == (1, "none")
        assert stored["environment"] == json.loads((run / "summary.json").read_text())["environment"]
        trained = {**stored["environment"], "torch_threads": 7}  # as another machine's run would record it
        led.set_meta(f"processes/{last}", {"world_size": 2, "backend": "gloo", "environment": trained})
    summary = ActiveLoop.resume(run, changes="train.threads=2", show_progress=False).run()
    assert (summary["world_size"], summary["backend"], summary["environment"]) == (2, "gloo", trained)
    assert json.loads((run / "summary.json").read_text())["world_size"] == 2
    with Ledger(run / "ledger.sqlite") as led:  # a run from before environments were stored: the writer's
        led.set_meta(f"processes/{last}", {"world_size": 1, "backend": "none"})
    assert ActiveLoop.resume(run, show_progress=False).run()["environment"]["torch_threads"] != 7


def test_adakit_query_on_a_run_whose_mlflow_server_is_gone_still_selects(tmp_path, monkeypatch):
    """`adakit query` (and the labelling page's model) open the run only to select or predict: no logger writes
    anything there, and `adakit query` has no --set to switch one off. A run whose MLflow server is gone refused
    them at the logger check; it is now checked only where a run trains (a new run, `run()`)."""
    import socket

    from adakit.callbacks import MLflowLogger

    pytest.importorskip("mlflow")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # a port nothing listens on
    values = {**TINY, "budget": {"total": 0.02, "rounds": 1}, "log": {"mlflow": f"http://127.0.0.1:{port}"}}
    run = tmp_path / "run"
    with monkeypatch.context() as m:  # the run as it ran while its server was up
        m.setattr(MLflowLogger, "check", lambda self, *a, **k: None)
        m.setattr(MLflowLogger, "__call__", lambda self, kind, info: None)
        ActiveLoop(build_config(values), run, show_progress=False).run()
    res = _cli("query", run, "--budget", "2")
    assert res.exit_code == 0, res.output
    assert (run / "queries" / "round-2.csv").is_file()
    res = _cli("resume", run, "--quiet")  # training would log: the server is checked before any work
    assert res.exit_code == 2 and "no MLflow server answers" in res.output
    with Ledger(run / "ledger.sqlite") as led:
        assert led.last_checkpoint()[0] == 1  # round 2 was not trained


def test_inductive_split_of_a_target_too_small_for_any_fraction_names_no_empty_range():
    # a target of 1 sample (or of fewer than two per class, stratified) used to be told to choose
    # data.test_fraction "between 1 and 0"
    from adakit.data import _check_split
    from adakit.data.domain import TensorDomain

    one = TensorDomain("t", ["a", "b"], np.array(["t/0"]), np.array([0]), torch.zeros(1, 2))
    with pytest.raises(ConfigError, match=r"\(1 samples\).*at least 2 samples") as e:
        _check_split(one, 0.5, stratified=False)
    assert "between" not in str(e.value)

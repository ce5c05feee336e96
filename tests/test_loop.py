import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml

from adakit.config import build_config
from adakit.errors import ConfigError, DataError
from adakit.ledger import Ledger
from adakit.loop import ActiveLoop, round_budgets

SMALL = {
    "seed": 1,
    "data": {"format": "demo"},
    "model": {"backbone": "mlp", "hidden_dim": 32, "bottleneck_dim": 16},
    "query": {"strategy": "margin"},
    "budget": {"total": 0.05, "rounds": 5},
    "train": {"warmup_iters": 60, "round_iters": 40, "threads": 1},
}


def test_round_budgets():
    assert round_budgets(0.05, 5, 1000) == [10, 10, 10, 10, 10]
    assert round_budgets(23, 5, 1000) == [4, 4, 4, 4, 7]
    assert round_budgets(0.5, 0, 10) == []
    with pytest.raises(DataError, match="only 10 samples"):
        round_budgets(11, 2, 10)
    with pytest.raises(ConfigError, match="fewer than budget.rounds"):
        round_budgets(2, 5, 100)


def test_run_writes_the_run_folder(tmp_path):
    summary = ActiveLoop(build_config(SMALL), tmp_path, show_progress=False).run()
    for name in ("config.yaml", "ledger.sqlite", "metrics.jsonl", "summary.json", "report.md", "curve.png"):
        assert (tmp_path / name).is_file(), name
    s = json.loads((tmp_path / "summary.json").read_text())
    assert {"strategy", "objective", "protocol", "seed", "rounds", "final_accuracy"} <= set(s)
    assert [r["labels"] for r in s["rounds"]] == [0, 9, 18, 27, 36, 45]
    assert s["final_accuracy"] == s["rounds"][-1]["accuracy"] == summary["final_accuracy"]
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 6
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["query"]["strategy"] == "margin"
    env = s["environment"]  # what the numbers were computed with
    assert env["versions"]["torch"] == torch.__version__ and env["device"] == "cpu"
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and env["torch_threads"] >= 1
    assert f"{env['cpu_capability']} kernels" in (tmp_path / "report.md").read_text()
    with Ledger(tmp_path / "ledger.sqlite") as led:
        assert led.check() == []
        idx, y = led.labelled_pool()
        assert len(set(idx)) == 45
    # labels come from the hidden ground truth of the pool, by pool index
    from adakit.data import load_domain

    pool = load_domain("demo", "digits-shifted", None)
    assert pool.y[np.array(idx)].tolist() == y


def test_same_folder_other_config_is_refused(tmp_path):
    ActiveLoop(build_config(SMALL, ["budget.rounds=0"]), tmp_path, show_progress=False).run()
    with pytest.raises(ConfigError, match="different config"):
        ActiveLoop(build_config(SMALL, ["budget.rounds=1"]), tmp_path, show_progress=False)


def test_budget_larger_than_pool_fails_before_training(tmp_path):
    with pytest.raises(DataError, match="larger|only 898 samples"):
        ActiveLoop(build_config(SMALL, ["budget.total=5000"]), tmp_path / "r", show_progress=False)
    assert not (tmp_path / "r").exists()  # nothing written: the same --out works once the config is fixed
    with pytest.raises(ConfigError, match="needs \\[.domain_discriminator.\\].*use one of: .*dann.*probe_domain=true"):
        ActiveLoop(build_config(SMALL, ["query.strategy=aada"]), tmp_path / "r", show_progress=False)
    assert not (tmp_path / "r").exists()


def test_a_model_too_large_for_memory_is_a_config_error_before_the_run_folder(tmp_path):
    """model.hidden_dim: 10**15 (a typo) was torch's raw "DefaultCPUAllocator: can't allocate memory" traceback."""
    with pytest.raises(ConfigError, match=r"model: no memory for the model's weights .*model\.backbone=mlp, "
                                          r"model\.hidden_dim=1000000000000000 \(mlp\).*lower the width"):
        ActiveLoop(build_config(SMALL, ["model.hidden_dim=1000000000000000", "train.device=cpu"]), tmp_path / "r",
                   show_progress=False)
    assert not (tmp_path / "r").exists()


def test_resume_after_sigkill_in_round_3_gives_the_same_labels(tmp_path):
    cfg_values = {**SMALL, "train": {**SMALL["train"], "round_iters": 1500}}
    reference = ActiveLoop(build_config(cfg_values), tmp_path / "ref", show_progress=False)
    reference.run()
    ref_labels = reference.ledger.current_labels()

    cfg_path = tmp_path / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg_values))
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "adakit", "run", str(cfg_path), "--out", str(run_dir), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    status = None
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "ledger.sqlite").exists():
            try:
                con = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True, timeout=1)
                row = con.execute("SELECT status FROM rounds WHERE round=3").fetchone()
                con.close()
                status = row[0] if row else None
            except sqlite3.OperationalError:
                status = None
            if status == "labelled":  # round 3's labels are committed; it is training now
                break
        time.sleep(0.05)
    assert status == "labelled" and proc.poll() is None, "did not catch the run in round 3"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Ledger(run_dir / "ledger.sqlite") as led:
        assert led.round_status(3) == "labelled" and led.last_checkpoint()[0] == 2
        assert len(led.current_labels()) == 27

    resumed = ActiveLoop.resume(run_dir, show_progress=False)
    summary = resumed.run()
    assert resumed.ledger.current_labels() == ref_labels
    assert resumed.ledger.check() == []
    assert [q.sample_id for q in resumed.ledger.queries()] == [q.sample_id for q in reference.ledger.queries()]
    assert summary["final_accuracy"] == pytest.approx(reference.summary()["final_accuracy"], abs=1e-6)


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    first = ActiveLoop(build_config(SMALL), tmp_path, show_progress=False).run()
    again = ActiveLoop.resume(tmp_path, show_progress=False).run()
    assert again["rounds"] == first["rounds"]


def test_a_run_stored_before_fused_sgd_resumes_with_the_foreach_kernel(tmp_path):
    """Runs started before train.fused_sgd existed were trained with the foreach kernel; resumed, they keep it
    (their stored config has no fused_sgd key), so the resumed rounds round as the first ones did."""
    cfg = build_config({**SMALL, "budget": {"total": 0.05, "rounds": 1}})
    ActiveLoop(cfg, tmp_path / "new", show_progress=False).run()
    assert ActiveLoop.resume(tmp_path / "new", show_progress=False).trainer.optimizer.param_groups[0]["fused"]
    ActiveLoop(cfg, tmp_path / "old", show_progress=False).run()
    with Ledger(tmp_path / "old" / "ledger.sqlite") as led:
        stored = led.get_meta("config")
        del stored["train"]["fused_sgd"]
        led.set_meta("config", stored)
    group = ActiveLoop.resume(tmp_path / "old", show_progress=False).trainer.optimizer.param_groups[0]
    assert group["foreach"] is True and not group["fused"]
    # the config it was started with, given again (adakit run / adakit bench on the folder): the same run, continued
    # with its kernel; a config that differs elsewhere is still refused
    again = ActiveLoop(cfg, tmp_path / "old", show_progress=False)
    assert again.cfg.train.fused_sgd is False and again.trainer.optimizer.param_groups[0]["foreach"] is True
    with pytest.raises(ConfigError, match="holds a finished run with a different config"):
        ActiveLoop(build_config({**SMALL, "budget": {"total": 0.05, "rounds": 2}}), tmp_path / "old")


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(ConfigError, match="not a run folder"):
        ActiveLoop.resume(tmp_path)


def test_adopted_warmup_equals_a_trained_one(tmp_path):
    a = ActiveLoop(build_config(SMALL), tmp_path / "a", show_progress=False)
    a.run()
    cfg_b = build_config(SMALL, ["query.strategy=entropy"])
    trained = ActiveLoop(cfg_b, tmp_path / "trained", show_progress=False).run()
    b = ActiveLoop(cfg_b, tmp_path / "adopted", show_progress=False)
    assert b.adopt_warmup(tmp_path / "a")
    adopted = b.run()
    assert adopted["rounds"] == trained["rounds"]
    other = ActiveLoop(build_config(SMALL, ["seed=7"]), tmp_path / "other", show_progress=False)
    assert not other.adopt_warmup(tmp_path / "a")  # a different seed trains a different warm-up
    for i, change in enumerate(["train.warmup_iters=31", "train.lr=0.02", "train.eval_checkpoints=2"]):
        assert not ActiveLoop(build_config(SMALL, [change]), tmp_path / f"o{i}", show_progress=False).adopt_warmup(
            tmp_path / "a"), change
    # train.round_iters is read after the warm-up only: a run that differs there adopts it, with the same results
    cfg_c = build_config(SMALL, ["train.round_iters=7"])
    trained = ActiveLoop(cfg_c, tmp_path / "trained-c", show_progress=False).run()
    c = ActiveLoop(cfg_c, tmp_path / "adopted-c", show_progress=False)
    assert c.adopt_warmup(tmp_path / "a")
    assert c.run()["rounds"] == trained["rounds"]


def test_a_moved_run_folder_resumes(tmp_path):
    import shutil

    ActiveLoop(build_config(SMALL, ["budget.rounds=2"]), tmp_path / "a", show_progress=False).run()
    with Ledger(tmp_path / "a" / "ledger.sqlite") as led:
        assert not os.path.isabs(led.last_checkpoint()[1])
    shutil.move(tmp_path / "a", tmp_path / "b")
    summary = ActiveLoop.resume(tmp_path / "b", show_progress=False).run()
    assert len(summary["rounds"]) == 3


def test_las_gets_the_runs_total_budget_fraction(tmp_path):
    loop = ActiveLoop(build_config(SMALL, ["query.strategy=las", "budget.total=0.1"]), tmp_path, show_progress=False)
    assert loop.strategy.params.budget_ratio == 0.1  # the configured fraction (90 labels of 898)
    loop = ActiveLoop(build_config(SMALL, ["query.strategy=las", "query.budget_ratio=0.2"]), tmp_path / "b",
                      show_progress=False)
    assert loop.strategy.params.budget_ratio == 0.2


@pytest.mark.parametrize("pool,total,ratio,m", [(1408, 0.05, 0.05, 10), (249, 0.05, 0.05, 10), (2817, 0.05, 0.05, 10),
                                                 (9298, 0.01, 0.01, 54), (1408, 70, 70 / 1408, 11)])
def test_las_oversampling_follows_the_configured_budget_fraction(pool, total, ratio, m):
    """LADA's M = ⌈0.55/B − 1⌉ is 10 at B = 5 %: B is budget.total when it is a fraction, not the rounded count over
    the pool (70 of 1,408 is 4.97 % and gave M = 11); a budget given as a count is that count over the pool."""
    from adakit.loop import query_params_for_run
    from adakit.query.las import oversampling_ratio

    cfg = build_config({**SMALL, "query": {"strategy": "las"}, "budget": {"total": total, "rounds": 5}})
    params = query_params_for_run(cfg, round_budgets(total, 5, pool), pool)
    assert params.budget_ratio == pytest.approx(ratio)
    assert oversampling_ratio(params.budget_ratio) == m


def test_a_relative_run_folder_stays_where_it_was_given(tmp_path, monkeypatch):
    """A relative run_dir, then os.chdir (as in a notebook): the ledger stayed in the first folder while checkpoints
    and queries went under the new one, and resume failed on a missing checkpoint."""
    from adakit.config import build_config

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    cfg = build_config({**SMALL, "budget": {"total": 0.02, "rounds": 1},
                        "train": {"warmup_iters": 10, "round_iters": 5, "threads": 1}})
    loop = ActiveLoop(cfg, "run", show_progress=False)
    monkeypatch.chdir(tmp_path / "b")
    loop.run()
    assert loop.run_dir == tmp_path / "a" / "run"
    assert (tmp_path / "a" / "run" / "summary.json").is_file() and not (tmp_path / "b" / "run").exists()
    assert sorted(p.name for p in (tmp_path / "a" / "run" / "checkpoints").iterdir())

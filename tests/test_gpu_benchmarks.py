"""The GPU benchmark scripts on a machine without the device (simulated: ``torch.cuda.is_available`` patched):
benchmarks/gpu_round.py and gpu_check.sh refuse a non-empty output folder (its run would be resumed and its old
timings reported), and benchmarks/query_speed.py checks --device before measuring and never lets a failed cell
replace a good one. The results files are redirected to tmp_path: the committed ones are never written."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import adakit.loop

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def no_loop(monkeypatch):
    """Building an ActiveLoop fails the test (a refused --out must stop the script before any work)."""
    def refuse(*args, **kwargs):
        raise AssertionError("ActiveLoop was built")

    monkeypatch.setattr(adakit.loop, "ActiveLoop", refuse)


def test_gpu_round_refuses_a_non_empty_out_folder_and_keeps_it(tmp_path, no_loop, capsys):
    out = tmp_path / "r50"
    out.mkdir()
    (out / "summary.json").write_text("{}")  # a finished run's folder
    with pytest.raises(SystemExit) as e:
        _module("gpu_round").main(["--config", "configs/office31-images.yaml", "--out", str(out)])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert f"--out {out} is not an empty folder" in err and "give a new folder" in err
    assert (out / "summary.json").read_text() == "{}"
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit):  # a file in the way is refused too
        _module("gpu_round").main(["--config", "configs/office31-images.yaml", "--out", str(tmp_path / "file")])


def test_gpu_check_refuses_a_non_empty_out_folder_before_step_1(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    (data / "office31" / "images").mkdir(parents=True)
    out.mkdir()
    (out / "round.txt").write_text("TIMING device=cuda train_images_per_s=1\n")
    env = dict(os.environ, ADAKIT_DATA=str(data), PYTHON=sys.executable)
    proc = subprocess.run(["bash", str(BENCH / "gpu_check.sh"), str(out)], capture_output=True, text=True, env=env,
                          cwd=BENCH.parent, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"FAIL: {out} is not an empty folder" in proc.stderr and "== step 1" not in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["round.txt"]


@pytest.fixture
def qs(tmp_path, monkeypatch):
    """benchmarks/query_speed.py with its results files in tmp_path."""
    mod = _module("query_speed")
    monkeypatch.setattr(mod, "JSON_OUT", tmp_path / "query_speed.json")
    monkeypatch.setattr(mod, "MD_OUT", tmp_path / "query_speed.md")
    monkeypatch.setenv("QS_DEVICE", "cpu")  # main sets it; monkeypatch restores it
    return mod


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps", "gpu0"])
def test_query_speed_checks_the_device_before_measuring(qs, monkeypatch, capsys, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(qs, "run_cell", lambda *a: pytest.fail("a cell was measured"))
    with pytest.raises(SystemExit) as e:
        qs.main(["--device", device, "--sizes", "2000", "--strategies", "margin", "--threads", "1"])
    assert e.value.code == 2
    assert f"--device='{device}'" in capsys.readouterr().err
    assert not qs.JSON_OUT.exists() and not qs.MD_OUT.exists()


def _good(when: str = "2026-12-04 10:00 UTC") -> dict:
    return {"strategy": "margin", "n": 2000, "threads": 1, "device": "cuda", "when": when, "b": 20,
            "backend": "exact", "load_start": 1.0, "load_end": 1.0,
            "adakit": {"wall": 0.01, "cpu": 0.01, "reps": 5, "spread": 0.1, "alone": False}}


def test_a_failed_cell_never_replaces_a_good_one_with_the_same_key(qs):
    cells = {}
    failed = {**_good("2026-12-05 10:00 UTC"), "error": "failed: RuntimeError: Found no NVIDIA driver"}
    del failed["adakit"]
    assert qs.record_cell(cells, failed)  # nothing better recorded: the failure is the cell
    assert qs.record_cell(cells, _good()) and cells[qs._key(_good())] == _good()
    assert not qs.record_cell(cells, failed) and cells[qs._key(_good())] == _good()
    assert not qs.record_cell(cells, {**failed, "error": "> 45 s (timed out)"})
    newer = _good("2026-12-06 10:00 UTC")
    assert qs.record_cell(cells, newer) and cells[qs._key(newer)] == newer  # a good cell: the newest wins


def test_a_failed_run_leaves_the_recorded_good_cell_in_the_files(qs, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # the device check passes; the cell fails
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    qs.JSON_OUT.write_text(json.dumps({"cells": [_good()], "agreement": [], "agreement_when": None}))

    def fail(name, n, threads, *a):
        return {"strategy": name, "n": n, "threads": threads, "device": os.environ["QS_DEVICE"],
                "when": "2026-12-05 10:00 UTC", "backend": "exact", "error": "failed: RuntimeError: out of memory"}

    monkeypatch.setattr(qs, "run_cell", fail)
    with pytest.raises(SystemExit) as e:  # (the failed cell is named and the exit status says so)
        qs.main(["--device", "cuda", "--sizes", "2000", "--strategies", "margin", "--threads", "1", "--no-reference"])
    assert e.value.code == 1
    assert json.loads(qs.JSON_OUT.read_text())["cells"] == [_good()]
    assert "not recorded: the good cell of 2026-12-04 10:00 UTC is kept" in capsys.readouterr().out
    assert "2026-12-04 10:00 UTC" in qs.MD_OUT.read_text() and "out of memory" not in qs.MD_OUT.read_text()

"""Every script in examples/ runs to the end at its small size (as CI runs them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.slow
@pytest.mark.parametrize("script,args,expect", [
    ("own_arrays.py", ["--small"], ["margin: target accuracy per round", "badge:", "las:"]),
    ("own_model_dataset.py", ["--small"], ["dann + las: target accuracy per round", "round 2:  20 labels"]),
    ("own_training_loop.py", ["--small"], ["finetune: target accuracy after the warm-up", "dann:", "mstn:"]),
    ("callable_oracle.py", ["--small"], ["oracle answered 20 queries in 2 rounds", "load_run: predicted 197 new rows"]),
])
def test_example_runs(script, args, expect, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(EXAMPLES.parent)}
    res = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    for text in expect:
        assert text in res.stdout, res.stdout

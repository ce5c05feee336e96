"""Tiny runs waiting for labels: one on the built-in demo digits (features), one on real Office-31 images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adakit.config import build_config
from adakit.errors import WaitingForLabels
from adakit.ledger import Ledger
from adakit.loop import ActiveLoop

DEMO = {
    "name": "tiny-file-oracle",
    "data": {"format": "demo"},
    "model": {"backbone": "mlp", "hidden_dim": 32, "bottleneck_dim": 16},
    "query": {"strategy": "margin"},
    "budget": {"total": 40, "rounds": 2},
    "train": {"warmup_iters": 20, "round_iters": 10, "batch_size": 16, "device": "cpu", "eval_batch_size": 512},
    "oracle": {"kind": "file"},
}


def make_run(values: dict, run_dir: Path) -> Path:
    """Train round 0 and query round 1; stops waiting for labels (file oracle)."""
    loop = ActiveLoop(build_config(values), run_dir, show_progress=False)
    with pytest.raises(WaitingForLabels):
        loop.run()
    loop.ledger.close()
    return run_dir


@pytest.fixture(scope="session")
def _demo_template(tmp_path_factory) -> Path:
    return make_run(DEMO, tmp_path_factory.mktemp("demo-template") / "run")


@pytest.fixture
def demo_run(_demo_template, tmp_path) -> Path:
    """A fresh copy of a demo-digits run: round 0 trained, round 1's 20 queries open."""
    dst = tmp_path / "run"
    shutil.copytree(_demo_template, dst)
    with Ledger(dst / "ledger.sqlite") as led:  # the ledger keeps absolute checkpoint paths
        led.conn.execute("UPDATE checkpoints SET path = replace(path, ?, ?)", (str(_demo_template), str(dst)))
    return dst


def office_values(root: Path) -> dict:
    return {
        "name": "office31-mini",
        "data": {"format": "image_folder", "root": str(root), "pattern": "{root}/{domain}", "source": "amazon",
                 "target": "webcam", "image_size": 32, "resize": 36},
        "model": {"backbone": "lenet", "bottleneck_dim": 16},
        "query": {"strategy": "margin"},
        "budget": {"total": 4, "rounds": 1},
        "train": {"warmup_iters": 10, "round_iters": 5, "batch_size": 8, "device": "cpu"},
        "oracle": {"kind": "file"},
    }


@pytest.fixture
def office_run(data_root, tmp_path) -> Path:
    """A run on real Office-31 images (amazon -> webcam, all 31 classes, 2 images each, linked from the
    shared data): round 0 trained, round 1's 4 queries open."""
    images = data_root / "office31" / "images"
    if not images.is_dir():
        pytest.skip(f"{images} not found")
    mini = tmp_path / "office31-mini"
    for dom in ("amazon", "webcam"):
        for cdir in sorted((images / dom / "images").iterdir()):
            (mini / dom / cdir.name).mkdir(parents=True)
            for f in sorted(cdir.glob("*.jpg"))[:2]:
                (mini / dom / cdir.name / f.name).symlink_to(f)
    return make_run(office_values(mini), tmp_path / "run")

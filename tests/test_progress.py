"""Progress in a terminal: long inference passes get a bar and a query a spinner inside a run, never nested (rich
allows one live display at a time), and nothing is drawn outside a run or with show_progress=False."""

import io

import numpy as np
import pytest
import torch
from rich.console import Console

import adakit.progress as progress
from adakit import ActiveLoop
from adakit.data.domain import TensorDomain
from adakit.inference import forward_domain


@pytest.fixture
def terminal(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=buf, force_terminal=True, width=120))
    return buf


def _arrays():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(60, 6)).astype(np.float32)
    xt = rng.normal(size=(50, 6)).astype(np.float32)
    return (xs, xs[:, :3].argmax(1)), (xt, xt[:, :3].argmax(1))


# eval batches of 2: the pool and test passes (25 batches) are long enough for a bar; CoreSet with use_source
# computes the source pass lazily inside its query, i.e. inside the spinner
CONFIG = {"budget": {"total": 4, "rounds": 2}, "train": {"warmup_iters": 5, "round_iters": 5, "eval_batch_size": 2},
          "query": {"strategy": "coreset", "use_source": True}}


def test_a_run_shows_inference_bars_and_a_query_spinner(terminal, tmp_path):
    source, target = _arrays()
    ActiveLoop(CONFIG, tmp_path / "r", source=source, target=target).run()
    out = terminal.getvalue()
    assert "inference on target" in out and "round 1: coreset picks 2 of 50 unlabelled samples" in out
    assert "inference on source" not in out  # inside the spinner: silent instead of a second live display


def test_nothing_is_drawn_without_show_progress_or_outside_a_run(terminal, tmp_path):
    source, target = _arrays()
    ActiveLoop(CONFIG, tmp_path / "r", source=source, target=target, show_progress=False).run()
    dom = TensorDomain(name="d", classes=["a", "b"], ids=np.arange(50).astype(str), y=np.zeros(50, int),
                       x=torch.zeros(50, 6))

    class Model(torch.nn.Module):
        def forward(self, x):
            return x, x[:, :2]

    forward_domain(Model(), dom, batch_size=1)  # 50 batches, but not inside a run
    assert terminal.getvalue() == ""
    with progress.shown():
        forward_domain(Model(), dom, batch_size=1)
    assert "inference on d" in terminal.getvalue()

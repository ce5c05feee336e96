"""Short, seeded UDA runs on the demo digits for the objectives' end-to-end tests (not collected: leading _).

Target ``digits-rotated``: the demo's shift (thicker strokes, 20° rotation) without its contrast inversion.
With the inversion (``digits-shifted``) a source-only MLP on raw pixels scores 0–7 % (below the 10 % of
chance: the inverted image's logits are roughly the negated source logits, so the true class ranks last) and
no alignment objective recovers (DANN, MSTN, TSF stay at 0–9 % after 300–1000 iterations, seeds 0–2):
marginal and class-conditional alignment are blind to a permutation of the clusters, and the pseudo-labels
that MSTN/TSF/CDAN condition on start out all wrong. On ``digits-rotated`` source-only reaches 12–20 % after
300 iterations and every objective 29–63 % (seeds 0–2, smallest gain +10 points), so the tests assert an
8-point gain at seed 0 (where the smallest gain is +17.7 points).
"""

from __future__ import annotations

import functools
import tempfile

from adakit.config import build_config
from adakit.loop import ActiveLoop

ITERS = 300
MARGIN = 0.08


@functools.cache
def final_accuracy(objective: str, seed: int = 0, iters: int = ITERS, **params) -> float:
    """Target accuracy after ``iters`` warm-up iterations with ``objective`` (UDA: budget.rounds = 0)."""
    cfg = build_config({"seed": seed, "data": {"format": "demo", "source": "digits", "target": "digits-rotated"},
                        "model": {"backbone": "mlp", "hidden_dim": 64, "bottleneck_dim": 32},
                        "objective": {"name": objective, **params}, "budget": {"rounds": 0},
                        "train": {"warmup_iters": iters, "batch_size": 32, "device": "cpu"}})
    with tempfile.TemporaryDirectory() as run_dir:
        return ActiveLoop(cfg, run_dir, show_progress=False).run()["final_accuracy"]


def assert_beats_source_only(objective: str, **params) -> None:
    base = final_accuracy("source_only")
    acc = final_accuracy(objective, **params)
    assert acc >= base + MARGIN, f"{objective}: {acc:.3f} vs source_only {base:.3f} (+{MARGIN} required)"

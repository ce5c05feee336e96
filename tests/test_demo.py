"""`adakit demo` (reduced: 2 seeds, fewer iterations and rounds): table, files, round 0 above chance."""

import io
import json

import numpy as np
import pytest
from rich.console import Console

from adakit.data import load_domain
from adakit.data.demo import DEMO_TARGET, shifted_mask, tilt
from adakit.demo import STRATEGIES, _cell, _title, run_demo

FAST = ["train.warmup_iters=200", "train.round_iters=60", "budget.rounds=2"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    buf = io.StringIO()
    res = run_demo(out, show_progress=False, console=Console(file=buf, width=200), seeds=(0, 1), overrides=FAST)
    return out, res, buf.getvalue()


def test_demo_table_has_every_round_with_mean_and_spread(demo):
    _, res, text = demo
    assert "mean ± std over 2 seeds" in text and "random, seeds 0, 1" in text
    header = next(line for line in text.splitlines() if "labels" in line and "margin" in line)
    assert all(col in header for col in ("round", "labels", "margin", "random", "margin − random"))
    rows = [line for line in text.splitlines() if line.startswith("│") and line.strip("│ ").split(" ")[0].isdigit()]
    assert len(rows) == 3 and res["labels"] == [0, 22, 45]
    for r, row in enumerate(rows):
        for s in STRATEGIES:  # each cell is the mean ± std of the per-seed accuracies
            a = 100 * res["accuracy"][s][:, r]
            assert f"{a.mean():.1f} ± {a.std():.1f}" in row
    assert res["accuracy"]["margin"].shape == (2, 3)


def test_round_zero_is_the_shared_source_only_model_above_chance(demo):
    _, res, text = demo
    r0 = res["accuracy"]["margin"][:, 0]
    np.testing.assert_array_equal(r0, res["accuracy"]["random"][:, 0])  # random adopts margin's warm-up
    assert res["chance"] == 0.1 and r0.min() > 3 * res["chance"]  # measured 0.68, 0.71 with these settings
    flat = " ".join(text.split())
    assert f"Round 0 = the source-only model (no target label yet): {100 * r0.mean():.1f}% (chance 10%)" in flat
    # the explanation holds: the source-only model reads the unchanged digits, not the tilted ones
    unchanged, tilted = res["source_only"].mean(0)
    assert res["source_only"].shape == (2, 2) and unchanged > 0.8 and tilted < 0.4
    frac = shifted_mask(898).mean()  # a third of the target is tilted; the two parts make up round 0, per seed
    np.testing.assert_allclose((1 - frac) * res["source_only"][:, 0] + frac * res["source_only"][:, 1], r0, atol=1e-3)
    assert f"{100 * unchanged:.0f}% of the unchanged digits, {100 * tilted:.0f}% of the thick tilted ones" in flat
    share = {s: 100 * res["queried_tilted"][s].mean() for s in STRATEGIES}  # from the ledgers' labelled samples
    assert share["margin"] > share["random"] and f"{share['margin']:.0f}% of its queries were tilted digits" in flat


def test_demo_writes_and_names_its_files(demo):
    out, res, text = demo
    for s in STRATEGIES:
        for seed in (0, 1):
            summary = json.loads((out / s / f"seed-{seed}" / "summary.json").read_text())
            assert summary["seed"] == seed and summary["strategy"] == s and len(summary["rounds"]) == 3
    assert res["comparison"].is_file() and res["curve"].is_file() and res["curve"].parent == out
    flat = " ".join(text.split())
    assert str(res["comparison"]) in flat and str(res["curve"]) in flat and f"{out}/<strategy>/seed-<k>/" in flat


def test_demo_target_is_a_real_shift_of_held_out_digits():
    from sklearn.datasets import load_digits

    src, tgt = load_domain("demo", "digits", None), load_domain("demo", DEMO_TARGET, None)
    assert len(src) == 899 and len(tgt) == 898 and src.classes == tgt.classes
    assert not set(src.ids) & set(tgt.ids)
    raw = load_digits().images[1::2].reshape(898, -1) / 16.0
    tilted = shifted_mask(898)
    np.testing.assert_allclose(tgt.x[~tilted].numpy(), raw[~tilted], atol=1e-6)  # two thirds unchanged
    assert (np.abs(tgt.x[tilted].numpy() - raw[tilted]).sum(1) > 1).all()
    img = np.zeros((1, 8, 8), np.float32)
    img[0, 1:7, 4] = 16  # a vertical stroke gets thicker and leans
    out = tilt(img)
    assert out.shape == (1, 8, 8) and out.max() <= 16 and (out > 8).sum() > (img > 8).sum()
    assert out[0, :, 4].sum() < 2 * img[0, :, 4].sum()


def test_one_seed_shows_no_spread():
    assert _title((3,)) == "target accuracy (%) per round, seed 3"
    assert _cell(np.array([0.8125])) == "81.2"
    assert _title((0, 1)).endswith("mean ± std over 2 seeds")
    assert _cell(np.array([0.5, 0.7])) == "60.0 ± 10.0"


def test_demo_run_again_in_its_folder_reports_the_finished_runs(demo):
    """A second `adakit demo` trains nothing and prints the same report (the warm-up's event is not sent again,
    so the source-only split comes from the round-0 checkpoint)."""
    out, res, text = demo
    buf = io.StringIO()
    again = run_demo(out, show_progress=False, console=Console(file=buf, width=200), seeds=(0, 1), overrides=FAST)
    np.testing.assert_allclose(again["source_only"], res["source_only"], atol=1e-6)
    np.testing.assert_array_equal(again["accuracy"]["margin"], res["accuracy"]["margin"])
    assert buf.getvalue().count("source digits →") == 1 and "Round 0 = the source-only model" in buf.getvalue()

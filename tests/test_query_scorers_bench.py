"""benchmarks/query_scorers.py: the tables of which model ranks the pool (paired by seed)."""

import importlib.util
import json
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
spec = importlib.util.spec_from_file_location("query_scorers", BENCH / "query_scorers.py")
qs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(qs)


def _run(d: Path, accs: list[float]) -> None:
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"rounds": [{"round": r, "accuracy": a} for r, a in enumerate(accs)]}))


def test_table_pairs_each_ranking_with_ft_and_the_probe_by_seed(tmp_path):
    res, diag = tmp_path / "resampled", tmp_path / "diag"
    # FT 0.70, 0.80; probe 0.75, 0.79; probe-ranked 0.74, 0.82: − FT = +4, +2 -> +3.00, stdev √2, s.e. 1.00;
    # − probe = −1, +3 -> +1.00 ± 2.00; logit gap 0.70, 0.81: − FT 0, +1 -> +0.50 ± 0.50, − probe −5, +2 -> −1.50,
    # stdev 7/√2, s.e. 3.50
    for seed, (ft, probe, ranked, gap) in enumerate([(0.70, 0.75, 0.74, 0.70), (0.80, 0.79, 0.82, 0.81)]):
        for folder, acc in zip(qs.BASELINES.values(), (ft, probe, ranked), strict=True):
            _run(res / "a-b" / folder / f"seed-{seed}", [0.5, acc])
        _run(diag / "a-b" / "gap" / f"seed-{seed}", [0.5, gap])
    _run(diag / "a-b" / "ens" / "seed-0", [0.5, 0.6])  # a ranking without every seed is left out
    out = qs.table(diag, res)
    assert "| a→b | the probe's (`query.probs_from: probe`) | 2 | 78.00 ± 5.66 | +3.00 ± 1.00 | +1.00 ± 2.00 |" in out
    assert "| a→b | the network's logit gap | 2 | 75.50 ± 7.78 | +0.50 ± 0.50 | -1.50 ± 3.50 |" in out
    assert "mean of the network's" not in out


def test_heldout_refuses_runs_whose_round_0_differs(tmp_path):
    mine, ft, probe = qs.BASELINES["the probe's (`query.probs_from: probe`)"], "FT_+_margin_validators_choice", \
        "linear_probe_raw_features_+_margin"
    for seed in (0, 1):
        _run(tmp_path / "new" / "s" / "a-b" / mine / f"seed-{seed}", [0.5, 0.6 + seed / 10])
        _run(tmp_path / "check" / "s" / "a-b" / ft / f"seed-{seed}", [0.5, 0.7])
        _run(tmp_path / "check" / "s" / "a-b" / probe / f"seed-{seed}", [0.4, 0.5])
    out = qs.heldout(tmp_path / "new", tmp_path / "check")  # FT 70, probe 50, new 60 / 70: −5 ± 5, +15 ± 5
    assert "| s | a→b | 70.00 | 50.00 | 65.00 | -5.00 ± 5.00 | +15.00 ± 5.00 |" in out
    _run(tmp_path / "new" / "s" / "a-b" / mine / "seed-2", [0.51, 0.6])
    _run(tmp_path / "check" / "s" / "a-b" / ft / "seed-2", [0.5, 0.7])
    _run(tmp_path / "check" / "s" / "a-b" / probe / "seed-2", [0.4, 0.5])
    with pytest.raises(SystemExit, match="round 0 differs"):
        qs.heldout(tmp_path / "new", tmp_path / "check")

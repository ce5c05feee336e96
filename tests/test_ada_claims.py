"""benchmarks/ada_claims.py: the claims table of the committed ADA benchmark."""

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "ada_claims", Path(__file__).resolve().parent.parent / "benchmarks" / "ada_claims.py")
ada_claims = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ada_claims)


def row(md: str, ordering: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if f"| {ordering} |" in ln)
    return [c.strip() for c in line.strip("|").split("|")]


def test_claims_table_averages_pairs_counts_holds_and_ties():
    table = {"FT + las": {"a→b": 90.0, "c→d": 100.0, "e→f": 70.0},
             "FT + margin": {"a→b": 85.0, "c→d": 100.0, "e→f": 72.0},
             "FT + entropy": {"a→b": 85.5, "c→d": 99.0, "e→f": 71.0}}
    md = ada_claims.claims_table(table, tol=1.0)
    r = row(md, "FT + las > FT + margin")
    assert r[2:] == ["86.7", "85.7", "+1.0", "yes", "1/3 (1 tied)"]
    r = row(md, "FT + margin ≈ FT + entropy")  # |85.7 − 85.2| = 0.5 ≤ 1 on average; pairs: 0.5, 1.0, 1.0
    assert r[5:] == ["yes", "3/3"]
    assert row(md, "SDM-AG ≥ SDM-G")[5] == "not run"

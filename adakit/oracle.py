"""Where labels come from: the hidden ground truth (benchmarks) or files people answer."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from adakit.data.domain import Domain
from adakit.errors import DataError


class SimulatedOracle:
    """Answers with the pool's hidden ground-truth labels."""

    annotator = "oracle"

    def __init__(self, pool: Domain):
        self.pool = pool

    def label(self, queries, round_index: int) -> dict[str, int] | None:
        idx = np.array([q.pool_index for q in queries], dtype=np.int64)
        y = self.pool.y[idx]
        if (y < 0).any():
            raise DataError(f"the simulated oracle needs ground-truth labels, but target {self.pool.name!r} "
                            "has unlabelled samples; use oracle.kind=file to label by hand")
        return {q.sample_id: int(v) for q, v in zip(queries, y)}


class FileOracle:
    """Writes the round's open queries to ``queries/round-K.csv`` (+ JSON) for people to answer.

    Returns None: the run waits until answers are imported (``adakit import-labels``).
    """

    annotator = "file"

    def __init__(self, pool: Domain, run_dir: Path, classes: list[str]):
        self.pool, self.run_dir, self.classes = pool, Path(run_dir), classes

    def label(self, queries, round_index: int) -> dict[str, int] | None:
        export_queries(self.pool, self.classes, queries, self.run_dir / "queries" / f"round-{round_index}")
        return None


def export_queries(pool: Domain, classes: list[str], queries, stem: Path) -> Path:
    """Write ``stem.csv`` and ``stem.json``: id, locator, score, suggested label, empty label column."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"sample_id": q.sample_id, "location": pool.describe(q.pool_index), "score": q.score,
             "suggested": classes[q.suggested] if q.suggested is not None else "", "label": ""}
            for q in queries]
    tmp = stem.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["sample_id", "label"])
        w.writeheader()
        w.writerows(rows)
    tmp.replace(stem.with_suffix(".csv"))
    stem.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    return stem.with_suffix(".csv")

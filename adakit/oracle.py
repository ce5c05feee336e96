"""Where labels come from: the hidden ground truth (benchmarks) or files people answer."""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from adakit.csvcells import plain_cell, safe_cell
from adakit.data.domain import Domain
from adakit.errors import DataError
from adakit.ledger import DROPPED, is_drop, means_drop
from adakit.rundir import replaced_atomically


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

    An existing export is never overwritten when people may have typed into it (see `export_round`).
    Returns None: the run waits until answers are imported (``adakit import-labels``).
    """

    annotator = "file"

    def __init__(self, pool: Domain, run_dir: Path, classes: list[str]):
        self.pool, self.run_dir, self.classes = pool, Path(run_dir), classes
        self.exported: Path | None = None  # the file listing the open queries of the last round exported

    def label(self, queries, round_index: int) -> dict[str, int] | None:
        self.exported = export_round(self.pool, self.classes, queries,
                                     self.run_dir / "queries" / f"round-{round_index}")
        return None


def _with(stem: Path, suffix: str) -> Path:
    return stem.with_name(stem.name + suffix)


#: the columns of a round's export (`export_queries`); a file with other columns was saved by someone else
EXPORT_FIELDS = ("sample_id", "location", "score", "suggested", "label")


def export_queries(pool: Domain, classes: list[str], queries, stem: Path, json_twin: bool = True) -> Path:
    """Write ``stem.csv`` and ``stem.json``: id, locator, score, suggested label, empty label column.
    Each file is written whole and renamed into place (a killed process leaves the old file or the new)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    rows = [dict(zip(EXPORT_FIELDS, (q.sample_id, pool.describe(q.pool_index), q.score,
                                     classes[q.suggested] if q.suggested is not None else "", "")))
            for q in queries]
    with replaced_atomically(_with(stem, ".csv")) as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["sample_id", "label"])
        w.writeheader()
        w.writerows({k: safe_cell(v) for k, v in r.items()} for r in rows)
    if json_twin:
        with replaced_atomically(_with(stem, ".json")) as fh:
            fh.write(json.dumps(rows, indent=1))
    return _with(stem, ".csv")


def _export_state(path: Path) -> tuple[set[str] | None, bool]:
    """(sample ids, whether any label was filled in) of an export file; ids None when it cannot be read."""
    if not path.exists():
        return set(), False
    try:
        text = path.read_bytes().decode("utf-8-sig")
        if path.suffix == ".json":
            rows = json.loads(text)
            rows = [r for r in rows if isinstance(r, dict)] if isinstance(rows, list) else None
        else:
            reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
            rows = list(reader)
            if reader.fieldnames not in (None, list(EXPORT_FIELDS), ["sample_id", "label"]):
                return None, True  # saved by a spreadsheet (other separator, header): it may hold answers; keep it
    except (OSError, ValueError, csv.Error, RecursionError):
        return None, True
    if rows is None:
        return None, True
    ids = {str(r.get("sample_id") or r.get("id") or "") for r in rows}
    if path.suffix != ".json":
        ids = {plain_cell(i) for i in ids}
    filled = any(str(r.get("label") or r.get("answer") or "").strip() for r in rows)
    return ids, filled


def export_round(pool: Domain, classes: list[str], queries, stem: Path) -> Path:
    """Export a round's open queries for people, never destroying what they typed.

    ``stem.csv`` is written when absent, kept when it already lists exactly these queries, and rewritten
    only when nothing was filled into it. When it holds answers (or cannot be read) and the open queries
    changed (e.g. some were answered on the labelling page), it is kept and the open ones go to
    ``stem.open.csv`` beside it. The JSON twin follows the same rule. Returns the file listing the open queries.
    """
    want = {q.sample_id for q in queries}
    csv_path = _with(stem, ".csv")
    ids, filled = _export_state(csv_path)
    if ids == want and csv_path.exists():
        return csv_path
    if ids is not None and not filled:
        json_ids, json_filled = _export_state(_with(stem, ".json"))
        return export_queries(pool, classes, queries, stem, json_twin=json_ids is not None and not json_filled)
    side = _with(stem, ".open")
    side_ids, side_filled = _export_state(_with(side, ".csv"))
    if side_ids == want or side_ids is None or side_filled:
        return _with(side, ".csv")  # already there, or people's answers are in it too: kept
    return export_queries(pool, classes, queries, side)


def export_missing(ledger, pool: Domain, classes: list[str], run_dir: Path) -> list[Path]:
    """Export the open queries of every round still waiting for labels whose ``queries/round-K.csv`` is
    missing (a process killed between recording the queries and writing the file). Returns the files written."""
    written = []
    rounds = [r for (r,) in ledger.conn.execute("SELECT round FROM rounds WHERE status='queried' ORDER BY round")]
    for r in rounds:
        stem = Path(run_dir) / "queries" / f"round-{r}"
        if _with(stem, ".csv").exists():
            continue
        open_q = ledger.open_queries(r)
        if open_q:
            written.append(export_round(pool, classes, open_q, stem))
    return written


_INDEX = re.compile(r"0|[1-9][0-9]*")  # a class index: plain ASCII decimal, no sign, no leading zero


def index_in_text(text: str, n_classes: int | None = None) -> int | None:
    """The class index ``text`` writes as plain ASCII decimal digits (``"3"``; never ``"+3"``, ``"03"``, ``"3.0"``,
    ``"1_0"`` or non-ASCII digits), if it is below ``n_classes`` (when given); else None."""
    t = text.strip()
    if not _INDEX.fullmatch(t) or len(t) > 9:
        return None
    return int(t) if n_classes is None or int(t) < n_classes else None


def close_class(label, classes: list[str]) -> str | None:
    """The class a mistyped name most likely meant (other case, spaces or a typo), or None."""
    import difflib

    if not isinstance(label, str) or not label.strip():
        return None
    key = " ".join(label.split()).casefold()
    folded = {" ".join(c.split()).casefold(): c for c in classes}
    if key in folded:
        return folded[key]
    near = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.8)
    return folded[near[0]] if near else None


def class_lookup(classes: Sequence[str]) -> dict[str, int]:
    """Class index by name; also by the name's Unicode NFC form and without surrounding spaces (a class folder
    copied from macOS spells "café" in NFD, a CSV cell is read stripped) where that form names no other class."""
    out = {c: k for k, c in reversed(list(enumerate(classes)))}
    for c, k in list(out.items()):
        for form in (c.strip(), unicodedata.normalize("NFC", c), unicodedata.normalize("NFC", c).strip()):
            out.setdefault(form, k)
    return out


def find_class(text: str, by_name: dict[str, int]) -> int | None:
    """The class `class_lookup`'s ``by_name`` gives a text as written, stripped, or in Unicode NFC form."""
    for form in (text, text.strip(), unicodedata.normalize("NFC", text.strip())):
        if form in by_name:
            return by_name[form]
    return None


def resolve_label(label, classes: list[str], by_name: dict[str, int] | None = None) -> int | None:
    """Class index of a label: a class name, an int, or an index written as plain ASCII decimal digits
    (``"3"``; never ``"+3"``, ``"03"``, ``"3.0"``, ``"1_0"`` or non-ASCII digits); `DROPPED` for ``drop``
    (unless a class has that name); None when it is none."""
    if isinstance(label, bool):
        return None
    if isinstance(label, int):
        return label if 0 <= label < len(classes) else None
    if not isinstance(label, str):
        return None
    by_name = by_name if by_name is not None else class_lookup(classes)
    text = label.strip()
    named = find_class(label, by_name)
    if named is not None:
        return named
    if means_drop(text, classes):
        return DROPPED
    return index_in_text(text, len(classes))


def _ambiguous(text: str, by_name: dict[str, int], n_classes: int) -> bool:
    """Whether ``text`` names one class and, read as an index, another (classes named by digits)."""
    t = text.strip()
    i = index_in_text(t, n_classes) if t in by_name else None
    return i is not None and i != by_name[t]


class RejectedAnswers(DataError):
    """Some labels a callable oracle returned were invalid; ``answers`` holds the valid ones (saved first)."""

    def __init__(self, message: str, answers: dict[str, int]):
        super().__init__(message)
        self.answers = answers


def _no_answer(v) -> bool:
    """None, NaN, an empty string or -1: the annotator gave no answer for this sample (yet)."""
    if v is None:
        return True
    if isinstance(v, float):
        return v != v or v == -1
    if isinstance(v, int) and not isinstance(v, bool):
        return v == -1
    return isinstance(v, str) and not v.strip()


class CallableOracle:
    """Answers with a user function ``labels_for(indices) -> labels``.

    ``indices`` are target-pool indices (an int64 numpy array, in query order; for a target given as
    ``(X, y)`` or a Dataset they are its row numbers). ``labels`` holds one class index in ``[0, C)`` or
    one class name per index (an index written as text, as numpy makes it in a mixed array, counts as the
    index); None, NaN, ``""`` or -1 mean "no answer yet" (the sample stays an open
    query); ``adakit.DROP`` (the string ``"drop"``) means "nobody can label this": the query is
    closed, never asked again and not trained on (see `Ledger.dropped_pool`). A return value of the wrong
    shape or type is a `DataError`; invalid labels among valid ones are a `RejectedAnswers` error that
    carries the valid answers, which the loop saves before raising it.
    """

    annotator = "callable"

    def __init__(self, labels_for, pool: Domain, classes: list[str]):
        if not callable(labels_for):
            raise DataError(f"oracle=: expected 'simulated', 'file' or a function labels_for(indices) -> labels, "
                            f"got {labels_for!r}")
        self.labels_for, self.pool, self.classes = labels_for, pool, list(classes)
        self.name = getattr(labels_for, "__name__", type(labels_for).__name__)

    def label(self, queries, round_index: int) -> dict[str, int]:
        idx = np.array([q.pool_index for q in queries], dtype=np.int64)
        raw = self.labels_for(idx.copy())
        where = f"oracle {self.name}() in round {round_index}"
        if hasattr(raw, "detach"):  # a torch tensor
            raw = raw.detach().cpu().numpy()
        if raw is None or isinstance(raw, (dict, str, bytes)) or not hasattr(raw, "__len__"):
            raise DataError(f"{where}: returned {'None (a missing return?)' if raw is None else type(raw).__name__}; "
                            f"return one label per index ({len(idx)} here) as a list, numpy array or tensor")
        if isinstance(raw, (list, tuple)):  # mixed items kept (an object array); 0-d tensors as their values
            y = np.array([v.item() if isinstance(v, torch.Tensor) and v.dim() == 0 else v for v in raw], dtype=object)
        else:
            y = np.asarray(raw)
        if y.ndim != 1 or len(y) != len(idx):
            raise DataError(f"{where}: returned {y.shape if y.ndim != 1 else len(y)} labels for {len(idx)} "
                            "indices; return one label per index, in the same order")
        if y.dtype.kind not in "iufUSO":
            raise DataError(f"{where}: labels must be integer class indices (or class names); got dtype {y.dtype}")
        answers: dict[str, int] = {}
        bad: list[str] = []
        index = class_lookup(self.classes)
        # numpy may have made texts from indices (np.where(unsure, DROP, y)): in a text array that holds a drop, or
        # anything but class names, a text that names one class and indexes another is ambiguous (an array of
        # class names only is taken as names)
        numpy_text = y.dtype.kind in "US" and any(
            is_drop(v) or not (_no_answer(v) or str(v).strip() in index) for v in y.tolist())
        for q, v in zip(queries, y.tolist()):
            v = v.item() if isinstance(v, np.generic) else v
            if _no_answer(v):
                continue
            if isinstance(v, str) and v.strip() == "-1" and "-1" not in index:
                continue  # -1 turned into text by numpy (np.where(..., adakit.DROP, y)): no answer, as -1 is
            if numpy_text and _ambiguous(v, index, len(self.classes)):
                t = v.strip()
                bad.append(f"label {t!r} for pool index {q.pool_index} is both the name of class {index[t]} and the "
                           f"index of class {int(t)} ({self.classes[int(t)]!r}); numpy turns indices into text in an "
                           "array that also holds text (adakit.DROP): return a list, an object array "
                           "(np.where(unsure, adakit.DROP, y.astype(object))) or class names")
                continue
            y_text = resolve_label(v, self.classes, index) if isinstance(v, str) else None
            if y_text is not None:
                answers[q.sample_id] = y_text  # a name, "drop", or an index as text
            elif isinstance(v, float) and v.is_integer() and 0 <= v < len(self.classes):
                answers[q.sample_id] = int(v)
            elif isinstance(v, int) and not isinstance(v, bool) and 0 <= v < len(self.classes):
                answers[q.sample_id] = v
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                bad.append(f"label {v} for pool index {q.pool_index} is outside 0..{len(self.classes) - 1} "
                           f"({len(self.classes)} classes)" if float(v).is_integer() else
                           f"label {v} for pool index {q.pool_index} is not an integer class index")
            else:
                close = close_class(v, self.classes)
                shown = ", ".join(map(repr, self.classes[:10])) + (f", ... ({len(self.classes)} classes)"
                                                                    if len(self.classes) > 10 else "")
                bad.append(f"label {v!r} for pool index {q.pool_index} is not in the class list "
                           + (f"(did you mean {close!r}?)" if close else f"[{shown}]"))
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise RejectedAnswers(f"{where}: {len(bad)} label(s) rejected: {'; '.join(bad[:3])}{more}. The "
                                  f"{len(answers)} valid answer(s) are saved in the ledger; the rejected samples "
                                  f"stay open and ActiveLoop.resume(...) asks {self.name}() for them again",
                                  answers)
        return answers

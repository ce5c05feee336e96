"""Answers from files: the CSV written by `adakit query` (filled in by people) or a Label Studio JSON
export. Every problem is reported with its line number; the valid answers are committed in one
transaction; importing the same file again changes nothing.

CSV: a header naming ``sample_id`` (or ``id``) and ``label`` columns, other columns are ignored; a
label is a class name or a class index (a name wins when a class is named like an index). Rows with
an empty label are unanswered and skipped. Label Studio: the JSON export (tasks with ``annotations``
holding a ``choices`` result) or the JSON-MIN export, with the sample id in ``meta.sample_id`` or
``data.sample_id`` as `adakit export-labelstudio` writes it.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from adakit.data import Domains
from adakit.errors import DataError, LedgerError
from adakit.labeling.run import open_run

ID_COLUMNS = ("sample_id", "id")
LABEL_COLUMNS = ("label", "answer")


@dataclass
class RawAnswer:
    line: int
    sample_id: str
    label: object  # str (name or index as text) or int


@dataclass
class ImportReport:
    """What an import did. ``errors`` and ``notes`` are ``(line, message)``; line 0 = the whole file."""

    file: Path
    new: int = 0
    same: int = 0
    corrected: int = 0
    unanswered: int = 0
    committed: bool = False
    unreadable: bool = False
    errors: list[tuple[int, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        s = f"{self.file.name}: {self.new} new, {self.same} unchanged, {self.corrected} corrected"
        if self.unanswered:
            s += f"; {self.unanswered} without a label (skipped)"
        if self.errors:
            s += f"; {len(self.errors)} rejected (see errors)"
        return s

    def messages(self) -> tuple[list[str], list[str]]:
        """(errors, notes) as printable lines."""
        def fmt(line, msg):
            return f"{self.file.name}: {msg}" if line == 0 else f"{self.file.name}, line {line}: {msg}"

        return [fmt(*e) for e in sorted(self.errors)], [fmt(*n) for n in sorted(self.notes)]


# -- reading ------------------------------------------------------------------------------------------
def _decode(data: bytes, report: ImportReport) -> str | None:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        report.errors.append((1, "the file is UTF-16; save it as UTF-8 (in a spreadsheet: 'CSV UTF-8') and import "
                                 "it again; nothing was imported"))
        report.unreadable = True
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        report.errors.append((line, f"not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8 "
                                    "(in a spreadsheet: 'CSV UTF-8') and import it again; nothing was imported"))
        report.unreadable = True
        return None


def _read_csv(text: str, report: ImportReport) -> list[RawAnswer]:
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first and "," not in first else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header, id_col, label_col = None, None, None
    out: list[RawAnswer] = []
    line = 1
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            cells = [c.strip() for c in row]
            if header is None:
                if not any(cells):
                    report.errors.append((start, "empty row before the header"))
                    continue
                header = [c.lower() for c in cells]
                id_col = next((header.index(c) for c in ID_COLUMNS if c in header), None)
                label_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
                if id_col is None or label_col is None:
                    report.errors.append((start, f"the header must name a 'sample_id' and a 'label' column "
                                                 f"(found: {', '.join(cells)}); use the CSV `adakit query` wrote"))
                    return []
                continue
            if not any(cells):
                report.errors.append((start, "empty row"))
                continue
            sid = cells[id_col] if id_col < len(cells) else ""
            label = cells[label_col] if label_col < len(cells) else ""
            if not sid:
                report.errors.append((start, f"no sample_id (label {label!r})" if label else "no sample_id"))
                continue
            if not label:
                report.unanswered += 1
                continue
            out.append(RawAnswer(start, sid, label))
    except csv.Error as e:
        report.errors.append((reader.line_num, f"malformed CSV: {e}"))
    if header is None and not report.errors:
        report.errors.append((0, "the file is empty"))
    return out


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _json_items(text: str, report: ImportReport) -> list[tuple[int, object]]:
    """Top-level list items with the line each starts on."""
    dec = json.JSONDecoder()
    ws = " \t\r\n"
    i = len(text) - len(text.lstrip(ws))
    if i >= len(text):
        report.errors.append((0, "the file is empty"))
        return []
    try:
        if text[i] != "[":
            obj = json.loads(text)
            if isinstance(obj, dict) and isinstance(obj.get("tasks"), list):
                return [(_line_of(text, i), t) for t in obj["tasks"]]
            report.errors.append((_line_of(text, i), "expected a JSON list of Label Studio tasks"))
            return []
        i += 1
        items = []
        while True:
            while i < len(text) and text[i] in ws:
                i += 1
            if i < len(text) and text[i] == "]":
                return items
            obj, end = dec.raw_decode(text, i)
            items.append((_line_of(text, i), obj))
            i = end
            while i < len(text) and text[i] in ws:
                i += 1
            if i < len(text) and text[i] == ",":
                i += 1
            elif i < len(text) and text[i] == "]":
                return items
            else:
                raise json.JSONDecodeError("expected ',' or ']'", text, min(i, len(text)))
    except json.JSONDecodeError as e:
        report.errors.append((e.lineno, f"not valid JSON: {e.msg} (column {e.colno}); nothing was imported"))
        report.unreadable = True
        return []


_MIN_KEYS = ("label", "choice", "choices")


def _read_labelstudio(text: str, report: ImportReport) -> list[RawAnswer]:
    out = []
    for line, item in _json_items(text, report):
        if not isinstance(item, dict):
            report.errors.append((line, "a task must be a JSON object"))
            continue
        meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
        data = item.get("data") if isinstance(item.get("data"), dict) else {}
        sid = meta.get("sample_id") or data.get("sample_id") or item.get("sample_id")
        if not isinstance(sid, str) or not sid:
            report.errors.append((line, f"task {item.get('id', '?')}: no sample_id in meta or data (export the "
                                        "tasks with `adakit export-labelstudio` so each carries its sample id)"))
            continue
        if "annotations" in item or "completions" in item:
            anns = item.get("annotations") or item.get("completions") or []
            answers = []
            for ann in anns:
                if not isinstance(ann, dict) or ann.get("was_cancelled"):
                    continue
                for res in ann.get("result") or []:
                    if isinstance(res, dict) and res.get("type") == "choices":
                        answers.append(list((res.get("value") or {}).get("choices") or []))
            choices = {tuple(a) for a in answers}
        else:  # JSON-MIN: the Choices tag's name is the key
            v = next((item[k] for k in _MIN_KEYS if k in item), None)
            choices = set() if v in (None, "") else {tuple(v["choices"]) if isinstance(v, dict) else
                                                     tuple(v) if isinstance(v, list) else (v,)}
        if not choices:
            report.unanswered += 1
            continue
        if len(choices) > 1:
            report.errors.append((line, f"{sid!r}: annotations disagree ({' vs '.join(map(str, sorted(choices)))}); "
                                        "resolve them in Label Studio and export again"))
            continue
        (ch,) = choices
        if len(ch) != 1:
            report.errors.append((line, f"{sid!r}: {len(ch)} choices selected; exactly one class per sample"))
            continue
        out.append(RawAnswer(line, sid, ch[0]))
    return out


def read_answers(path: str | Path) -> tuple[list[RawAnswer], ImportReport]:
    """Answers in a CSV or Label Studio JSON file, and a report holding the problems found reading it."""
    path = Path(path)
    report = ImportReport(path)
    if not path.is_file():
        raise DataError(f"answers file not found: {path}")
    text = _decode(path.read_bytes(), report)
    if text is None:
        return [], report
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        return _read_labelstudio(text, report), report
    return _read_csv(text, report), report


# -- validating and committing ---------------------------------------------------------------------------
def _resolve(label, classes: list[str]) -> int | None:
    if isinstance(label, bool):
        return None
    if isinstance(label, int):
        return label if 0 <= label < len(classes) else None
    text = str(label).strip()
    if text in classes:
        return classes.index(text)
    try:
        i = int(text)
    except ValueError:
        return None
    return i if 0 <= i < len(classes) else None


def import_answers(run_dir: str | Path, path: str | Path, annotator: str | None = None, correct: bool = False,
                   dry_run: bool = False, domains: Domains | None = None) -> ImportReport:
    """Validate the answers in ``path`` against the run and commit the valid ones in one transaction.

    Rejected (each with its line): unknown ids, ids never queried, labels outside the class list,
    answers conflicting with another row of the file (every row for that id is rejected) and answers
    that differ from a label already in the ledger (unless ``correct``: then they are recorded as
    correction records). Repeated identical rows count once. Nothing is written when ``dry_run``.
    """
    raw, report = read_answers(path)
    if report.unreadable:
        return report
    cfg, doms, ledger = open_run(run_dir, domains)
    try:
        classes = list(doms.classes)
        pool_ids = set(doms.pool.ids.tolist())
        queried = {q.sample_id for q in ledger.queries()}
        current = ledger.current_labels()
        seen: dict[str, tuple[int, int]] = {}
        rejected: set[str] = set()
        valid: dict[str, int] = {}
        for a in raw:
            if a.sample_id not in pool_ids:
                report.errors.append((a.line, f"unknown id {a.sample_id!r}: not a sample of the target pool "
                                              f"{doms.pool.name!r}"))
                continue
            if a.sample_id not in queried:
                report.errors.append((a.line, f"{a.sample_id!r} was never queried (only queried samples can be "
                                              "labelled: see the run's queries/ folder)"))
                continue
            y = _resolve(a.label, classes)
            if y is None:
                shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
                report.errors.append((a.line, f"{a.sample_id!r}: label {a.label!r} is not in the class list "
                                              f"(a name: {shown}; or an index 0..{len(classes) - 1})"))
                continue
            if a.sample_id in seen:
                first_line, first_y = seen[a.sample_id]
                if first_y == y and a.sample_id not in rejected:
                    report.notes.append((a.line, f"{a.sample_id!r} repeats line {first_line} (same answer, "
                                                 "counted once)"))
                elif first_y != y or a.sample_id in rejected:
                    report.errors.append((a.line, f"{a.sample_id!r}: {classes[y]!r} conflicts with line {first_line} "
                                                  f"({classes[first_y]!r}); neither is recorded"))
                    rejected.add(a.sample_id)
                    valid.pop(a.sample_id, None)
                continue
            seen[a.sample_id] = (a.line, y)
            if a.sample_id in current and current[a.sample_id] != y and not correct:
                report.errors.append((a.line, f"{a.sample_id!r} is already labelled {classes[current[a.sample_id]]!r} "
                                              f"in the ledger, the file says {classes[y]!r}; import with --correct "
                                              "to record a correction"))
                rejected.add(a.sample_id)
                continue
            valid[a.sample_id] = y
        if dry_run:
            for sid, y in valid.items():
                state = "new" if sid not in current else "same" if current[sid] == y else "corrected"
                setattr(report, state, getattr(report, state) + 1)
            return report
        try:
            outcome = ledger.record_labels(valid, annotator or f"file:{Path(path).name}", correction=correct)
        except LedgerError as e:  # an answer arrived meanwhile (e.g. from the labelling page): all rolled back
            report.errors.append((0, f"nothing was imported: {e}"))
            return report
        report.committed = True
        for state in outcome.values():
            setattr(report, state, getattr(report, state) + 1)
        return report
    finally:
        ledger.close()

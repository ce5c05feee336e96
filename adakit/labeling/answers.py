"""Answers from files: the CSV written by `adakit query` (filled in by people) or a Label Studio JSON
export. Every problem is reported with its line number; the valid answers are committed in one
transaction; importing the same file again changes nothing.

CSV (comma, semicolon or tab separated, as the header line shows): a header naming ``sample_id`` (or ``id``)
and ``label`` columns, other columns are ignored; a
label is a class name or a class index written as a plain decimal number (``3``; not ``+3``, ``3.0``,
``1_0`` or other digits; a name wins when a class is named like an index, and where the classes are named by
numbers other than their positions a number is read as a name only), or ``drop`` (any case) for a
sample nobody can label (it closes the query without a class; a class named "drop" wins). Rows with an
empty label are unanswered and skipped. A row spanning several lines (a quote left open) makes the file unreadable:
nothing is imported. Label Studio: the JSON export (tasks with ``annotations``
holding a ``choices`` result) or the JSON-MIN export, with the sample id in ``meta.sample_id`` or
``data.sample_id`` as `adakit export-labelstudio` writes it.
"""

from __future__ import annotations

import csv
import dataclasses
import heapq
import io
import json
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adakit.csvcells import plain_cell
from adakit.data import Domains
from adakit.errors import ConfigError, DataError, LedgerError
from adakit.labeling.labelstudio import FROM_NAME
from adakit.labeling.run import open_run
from adakit.ledger import DROP, DROPPED, Ledger, is_drop, label_name, means_drop
from adakit.oracle import class_lookup, close_class, find_class, index_in_text, resolve_label
from adakit.rundir import stored_experiment

ID_COLUMNS = ("sample_id", "id")
LABEL_COLUMNS = ("label", "answer")


@dataclass
class RawAnswer:
    line: int
    sample_id: str
    label: object  # str (name or index as text) or int
    #: the ``class`` cell of a file with a ``class`` column (`adakit ledger export`), or None when empty
    name: str | None = None
    #: the file has a ``class`` column: ``label`` holds the class index there (as `adakit ledger export` writes it)
    indexed: bool = False


@dataclass
class ImportReport:
    """What an import did. ``errors`` and ``notes`` are ``(line, message)``; line 0 = the whole file."""

    file: Path
    new: int = 0
    same: int = 0
    corrected: int = 0
    unanswered: int = 0
    unqueried: int = 0  #: rows for samples the run has not queried, skipped (``skip_unqueried``)
    committed: bool = False
    unreadable: bool = False
    errors: list[tuple[int, str]] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)
    #: how many errors / notes of each kind (e.g. ``"unknown id"``), for a short summary of a big file
    error_kinds: Counter = field(default_factory=Counter)
    note_kinds: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, line: int, kind: str, msg: str) -> None:
        self.errors.append((line, msg))
        self.error_kinds[kind] += 1

    def note(self, line: int, kind: str, msg: str) -> None:
        self.notes.append((line, msg))
        self.note_kinds[kind] += 1

    def summary(self) -> str:
        s = f"{self.file.name}: {self.new} new, {self.same} unchanged, {self.corrected} corrected"
        if self.unanswered:
            s += f"; {self.unanswered} without a label (skipped)"
        if self.unqueried:
            s += f"; {self.unqueried} for samples not queried (skipped)"
        if self.errors:
            s += f"; {len(self.errors)} rejected (see errors)"
        return s

    def messages(self, limit: int | None = None) -> tuple[list[str], list[str]]:
        """(errors, notes) as printable lines, by line; only the first ``limit`` of each when given."""
        def fmt(line, msg):
            return f"{self.file.name}: {msg}" if line == 0 else f"{self.file.name}, line {line}: {msg}"

        def first(items):
            return sorted(items) if limit is None else heapq.nsmallest(limit, items)

        return [fmt(*e) for e in first(self.errors)], [fmt(*n) for n in first(self.notes)]


# -- reading ------------------------------------------------------------------------------------------
def _decode(data: bytes, report: ImportReport) -> str | None:
    if data.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):  # a zip (.xlsx, .ods) or an old .xls workbook
        report.error(0, "workbook", "this is a spreadsheet workbook (.xlsx, .ods or .xls), not a CSV file: save the "
                                    "sheet as 'CSV UTF-8' in the spreadsheet and import that file; nothing was "
                                    "imported")
        report.unreadable = True
        return None
    if data.startswith(b"SQLite format 3\x00"):  # e.g. the run's ledger.sqlite given by mistake
        report.error(0, "sqlite", "this is an SQLite database (a run's ledger.sqlite?), not an answers file: give "
                                  "the CSV or Label Studio JSON export holding the answers; nothing was imported")
        report.unreadable = True
        return None
    head = data[:200]
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) > 3 and head.count(0) > len(head) // 3):
        report.error(1, "encoding", "the file is UTF-16 (with or without a byte-order mark); save it as UTF-8 (in "
                                    "a spreadsheet: 'CSV UTF-8') and import it again; nothing was imported")
        report.unreadable = True
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        report.error(line, "encoding", f"not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8 "
                                       "(in a spreadsheet: 'CSV UTF-8') and import it again; nothing was imported")
        report.unreadable = True
        return None


def _plain(sample_id: str) -> str:
    return unicodedata.normalize("NFC", sample_id).strip()


def _by_plain_form(ids) -> dict[str, str | None]:
    """Each id by its NFC form without surrounding spaces; None where two ids share that form (ambiguous)."""
    out: dict[str, str | None] = {}
    for s in ids:
        key = _plain(s)
        out[key] = s if key not in out else None
    return out


def _delimiter(header: str) -> str:
    """The separator of a CSV from its header line: a spreadsheet saves "CSV" with tabs, or with semicolons where
    the comma is the decimal separator. The one that splits the header into an id and a label column wins (a
    semicolon header may hold a comma inside a column name); else a tab or semicolon in a header without commas;
    else the comma."""
    for d in (",", "\t", ";"):
        cells = [c.strip().strip('"').lower() for c in header.split(d)]
        if any(c in cells for c in ID_COLUMNS) and any(c in cells for c in LABEL_COLUMNS):
            return d
    return next((d for d in ("\t", ";") if d in header and "," not in header), ",")


def _read_csv(text: str, report: ImportReport) -> list[RawAnswer]:
    # the header (blank lines before it skipped); lines may end with \r\n, \n or a bare \r (Excel's "CSV (Macintosh)")
    lines = (ln for ln in re.split(r"\r\n|\r|\n", text) if ln.strip())
    first = next(lines, "")
    hint = re.fullmatch(r'\s*"?sep=(.)"?[,;\t]*\s*', first)  # Excel's separator line, "sep=;", before the header
    delimiter = hint.group(1) if hint else _delimiter(first)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header, id_col, label_col, class_col = None, None, None, None
    out: list[RawAnswer] = []
    line = 1
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            if line - start > 1:  # a quoted field holds line ends: a stray quote swallowed the rows after it
                report.error(start, "open quote", f"this row runs over lines {start}-{line - 1}: a quote (\") opened "
                                                  "here is closed only there, swallowing the rows between; remove "
                                                  "the stray quote (a field cannot span lines) and import again; "
                                                  "nothing was imported")
                report.unreadable = True
                return []
            cells = [c.strip() for c in row]
            if header is None:
                if hint and any(cells):  # (the separator line: read, not a header)
                    hint = None
                    continue
                if not any(cells):
                    report.error(start, "empty row", "empty row before the header")
                    continue
                header = [c.lower() for c in cells]
                id_col = next((header.index(c) for c in ID_COLUMNS if c in header), None)
                label_col = next((header.index(c) for c in LABEL_COLUMNS if c in header), None)
                class_col = header.index("class") if "class" in header else None  # `adakit ledger export`
                if "corrects" in header:  # every label row of each sample: its first answer conflicts with its last
                    report.error(start, "history export", "this is an `adakit ledger export --history` file (every "
                                                          "label row, corrections included); import the default "
                                                          "export, which holds each sample's current label")
                    report.unreadable = True
                    return []
                if id_col is None or label_col is None:
                    report.error(start, "header", f"the header must name a 'sample_id' and a 'label' column "
                                                  f"(found: {', '.join(cells)}); use the CSV `adakit query` wrote")
                    return []
                labels = [k for k, c in enumerate(header) if c in LABEL_COLUMNS]
                if len(labels) > 1:  # answers typed into a column added beside the export's empty one
                    shown = " and ".join(f"{cells[k]!r} (column {k + 1})" for k in labels)
                    report.error(start, "header", f"the header has {'two' if len(labels) == 2 else len(labels)} "
                                                  f"label columns: {shown}; which holds the answers is unclear: keep "
                                                  "one, named 'label', and import again; nothing was imported")
                    report.unreadable = True
                    return []
                continue
            if not any(cells):
                report.error(start, "empty row", "empty row")
                continue
            sid = plain_cell(cells[id_col]) if id_col < len(cells) else ""
            label = plain_cell(cells[label_col]) if label_col < len(cells) else ""
            name = (plain_cell(cells[class_col]) if class_col < len(cells) else "") if class_col is not None else ""
            if not sid:
                report.error(start, "no sample_id", f"no sample_id (label {label!r})" if label else "no sample_id")
                continue
            if not label and not name:
                report.unanswered += 1
                if len(cells) == 2 and cells[1] and label_col > 1:  # "id,3" typed under the export's header
                    report.note(start, "short row", f"{cells[1]!r} is under {header[1]!r}, not under "
                                                    f"{header[label_col]!r} (column {label_col + 1}): this row has "
                                                    "no label and was skipped; put the answer in the label column")
                continue
            out.append(RawAnswer(start, sid, label, name or None, indexed=class_col is not None))
    except csv.Error as e:
        hint = (f"a quote (\") opened on line {line} is never closed" if "end of data" in str(e) else
                f"at line {reader.line_num}: {e}")
        report.error(line, "malformed CSV", f"malformed CSV, {hint}; fix the file (a field cannot span lines) and "
                                            "import it again; nothing was imported")
        report.unreadable = True
        return []
    if header is None and not report.errors:
        report.error(0, "empty file", "the file is empty")
    elif header is not None and not out and not report.unanswered and not report.errors:
        report.note(0, "no rows", "the file holds a header and no rows: nothing to import")
    return out


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _json_items(text: str, report: ImportReport) -> list[tuple[int, object]]:
    """Top-level list items with the line each starts on. Strict: a trailing comma, anything after the
    closing bracket or nesting deeper than Python's parser allows is an error naming its line and column."""
    dec = json.JSONDecoder()
    ws = " \t\r\n"
    n = len(text)
    i = n - len(text.lstrip(ws))
    if i >= n:
        report.error(0, "empty file", "the file is empty")
        return []

    def skip(k: int) -> int:
        while k < n and text[k] in ws:
            k += 1
        return k

    def fail(msg: str, pos: int) -> None:
        raise json.JSONDecodeError(msg, text, min(pos, n))

    try:
        if text[i] != "[":
            obj = json.loads(text)
            if isinstance(obj, dict) and isinstance(obj.get("tasks"), list):
                return [(_line_of(text, i), t) for t in obj["tasks"]]
            report.error(_line_of(text, i), "not a task list", "expected a JSON list of Label Studio tasks")
            return []
        i = skip(i + 1)
        items = []
        if i < n and text[i] == "]":
            end = i + 1
        else:
            while True:
                obj, end = dec.raw_decode(text, i)
                items.append((_line_of(text, i), obj))
                i = skip(end)
                if i < n and text[i] == ",":
                    i = skip(i + 1)
                    if i < n and text[i] == "]":
                        fail("trailing comma before ']'", i)
                elif i < n and text[i] == "]":
                    end = i + 1
                    break
                else:
                    fail("expected ',' or ']'", i)
        rest = skip(end)
        if rest < n:
            fail("extra data after the closing ']'", rest)
        return items
    except json.JSONDecodeError as e:
        report.error(e.lineno, "invalid JSON", f"not valid JSON: {e.msg} (column {e.colno}); nothing was imported")
    except RecursionError:
        report.error(0, "invalid JSON", "the JSON is nested too deeply to be a Label Studio export; nothing was "
                                        "imported")
    report.unreadable = True
    return []


_MIN_KEYS = ("label", "choice", "choices")
#: keys of a JSON-MIN task that only an annotated task has, and the keys of the task itself (its data as
#: `adakit export-labelstudio` writes it, and Label Studio's own fields)
_MIN_ANNOTATED = frozenset({"annotator", "annotation_id", "lead_time"})
_MIN_TASK_KEYS = frozenset({"id", "image", "text", "sample_id", "meta", "data", "created_at", "updated_at",
                            "agreement", "drafts", "predictions", "total_annotations", "cancelled_annotations"})


class _BadTask(ValueError):
    """A task whose fields have unexpected types (reported per task, with its line)."""


def _choice_list(value, where: str) -> tuple:
    """The selected classes of one result: a list of names (or indices)."""
    if not isinstance(value, list):
        raise _BadTask(f"{where} must be a list of class names, not {type(value).__name__}")
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (str, int)):
            raise _BadTask(f"{where} holds {type(v).__name__} {_short(v)}; expected class names")
    return tuple(value)


def _short(v) -> str:
    text = repr(v) if not isinstance(v, (list, dict)) else type(v).__name__
    return text if len(text) <= 40 else text[:37] + "..."


def _task_choices(item: dict) -> set[tuple]:
    """Every distinct answer (tuple of chosen classes) of one task; `_BadTask` on unexpected types."""
    if "annotations" in item or "completions" in item:
        key = "annotations" if "annotations" in item else "completions"
        anns = item.get(key)
        if anns is None:
            return set()
        if not isinstance(anns, list):
            raise _BadTask(f"'{key}' must be a list, not {type(anns).__name__}")
        answers = set()
        for ann in anns:
            if not isinstance(ann, dict):
                raise _BadTask(f"each of '{key}' must be an object, not {type(ann).__name__}")
            if ann.get("was_cancelled"):
                continue
            results = ann.get("result")
            if results is None:
                continue
            if not isinstance(results, list):
                raise _BadTask(f"an annotation's 'result' must be a list, not {type(results).__name__}")
            for res in results:
                if not isinstance(res, dict) or res.get("type") != "choices":
                    continue
                value = res.get("value")
                if not isinstance(value, dict):
                    raise _BadTask(f"a choices result's 'value' must be an object, not {type(value).__name__}")
                answers.add(_choice_list(value.get("choices"), "'value.choices'"))
        return answers
    # JSON-MIN: the Choices tag's name is the key
    v = next((item[k] for k in _MIN_KEYS if k in item), None)
    if v is None and _MIN_ANNOTATED.intersection(item):
        other = sorted(str(k) for k in item if k not in _MIN_TASK_KEYS and k not in _MIN_ANNOTATED)
        found = f" (it holds {', '.join(map(repr, other))}: was the Choices tag renamed?)" if other else ""
        raise _BadTask(f"annotated (JSON-MIN) but no '{FROM_NAME}' field{found}; adakit reads the choice from the tag "
                       f"named '{FROM_NAME}' (as `adakit export-labelstudio` writes it): rename that key to "
                       f"'{FROM_NAME}' in the file, or the tag in the project's labelling setup, and export again")
    if v is None or v == "":
        return set()
    if isinstance(v, dict):
        return {_choice_list(v.get("choices"), "'choices'")}
    if isinstance(v, list):
        return {_choice_list(v, "the choices")}
    return {_choice_list([v], "the label")}


def _read_labelstudio(text: str, report: ImportReport) -> list[RawAnswer]:
    out = []
    for line, item in _json_items(text, report):
        if not isinstance(item, dict):
            report.error(line, "bad task", "a task must be a JSON object")
            continue
        meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
        data = item.get("data") if isinstance(item.get("data"), dict) else {}
        sid = meta.get("sample_id") or data.get("sample_id") or item.get("sample_id")
        task_id = _short(item.get("id", "?"))
        if not isinstance(sid, str) or not sid:
            report.error(line, "no sample_id", f"task {task_id}: no sample_id in meta or data (export the tasks "
                                               "with `adakit export-labelstudio` so each carries its sample id)")
            continue
        try:
            choices = _task_choices(item)
        except _BadTask as e:
            report.error(line, "bad task", f"task {task_id} ({sid!r}): {e}; is this a Label Studio JSON export?")
            continue
        if not choices:
            report.unanswered += 1
            continue
        if len(choices) > 1:
            shown = " vs ".join(sorted(map(str, choices)))
            report.error(line, "disagreement", f"{sid!r}: annotations disagree ({shown}); resolve them in Label "
                                               "Studio and export again")
            continue
        (ch,) = choices
        if len(ch) != 1:
            report.error(line, "several choices", f"{sid!r}: {len(ch)} choices selected; exactly one class per "
                                                  "sample")
            continue
        out.append(RawAnswer(line, sid, ch[0]))
    return out


def read_answers(path: str | Path) -> tuple[list[RawAnswer], ImportReport]:
    """Answers in a CSV or Label Studio JSON file, and a report holding the problems found reading it."""
    path = Path(path)
    report = ImportReport(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; give the answers file in it (a CSV or a Label Studio JSON export)")
    if not path.is_file():
        raise DataError(f"answers file not found: {path}")
    text = _decode(path.read_bytes(), report)
    if text is None:
        return [], report
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{"):
        return _read_labelstudio(text, report), report
    return _read_csv(text, report), report


# -- validating and committing ---------------------------------------------------------------------------
def _indexed_label(a: RawAnswer, classes: list[str], by_name: dict[str, int]) -> tuple[int | None, str | None]:
    """(label, None) or (None, why) for a row of a file with a ``class`` column (`adakit ledger export`): its
    ``label`` is the class index (-1: dropped), its ``class`` the name; when both are filled they must agree."""
    text = str(a.label).strip()
    by_index, i = None, index_in_text(text)
    if text == "-1":
        by_index = DROPPED
    elif i is not None:  # an index, never read as a name here
        by_index = i if i < len(classes) else None
    elif text:
        by_index = resolve_label(text, classes, by_name)  # a name typed into the label column
    name = None if a.name is None else a.name.strip()
    by_class = None if name is None else find_class(name, by_name)
    if by_class is None and name is not None and means_drop(name, classes):
        by_class = DROPPED
    if by_index == DROPPED and is_drop(name):  # `ledger export`'s dropped row, also when a class is named drop
        by_class = DROPPED
    if text and by_index is None:
        return None, (f"label {text!r} is not a class index 0..{len(classes) - 1} (in a file with a 'class' column, "
                      f"as `adakit ledger export` writes, the label column holds the class index; -1 = dropped)")
    if a.name is not None and by_class is None:
        close = close_class(a.name, classes)
        return None, f"class {a.name!r} is not in the class list" + (f" (did you mean {close!r}?)" if close else "")
    if by_index is not None and by_class is not None and by_index != by_class:
        return None, (f"label {text} (class {label_name(by_index, classes)!r}) and class {a.name!r} disagree; in a "
                      "file with a 'class' column the label column holds the class index: change both, or clear one")
    return (by_index if by_index is not None else by_class), None


def _run_context(run_dir: Path, domains: Domains | None) -> tuple[list[str], set[str] | None, Ledger]:
    """Class list, target pool ids and ledger of a run. A run started from Python objects stores no data, and
    a run's data may be missing on this machine: then the class list comes from the ledger and the pool ids
    are unknown (None: ids are checked against the queries). Labels index the recorded class list when there
    is one."""
    if domains is None and stored_experiment(run_dir).data.format == "objects":
        ledger = Ledger(run_dir / "ledger.sqlite")
        classes = ledger.classes()
        if classes is None:
            ledger.close()
            raise DataError(f"{run_dir}: the ledger holds no class list (a run of an older adakit); import the "
                            "answers from Python: import_answers(run_dir, path, domains=loop.domains)")
        return list(classes), None, ledger
    try:
        _, doms, ledger = open_run(run_dir, domains)
    except (DataError, ConfigError, OSError):
        if domains is not None:
            raise
        ledger = Ledger(run_dir / "ledger.sqlite")
        classes = ledger.classes()
        if classes is None:  # (a run of an older adakit: its data is needed)
            ledger.close()
            raise
        return list(classes), None, ledger  # the data is not here: the ledger has what is needed
    classes = ledger.classes() if domains is None else None
    return list(classes if classes is not None else doms.classes), set(doms.pool.ids.tolist()), ledger


def answers_in_memory(answers: Any) -> tuple[list[RawAnswer], ImportReport]:
    """Answers given as Python objects: a mapping ``{sample_id: label}``, pairs ``(sample_id, label)`` or a table
    with ``sample_id`` and ``label`` columns (a pandas DataFrame); "lines" are 1-based positions. A label is a
    class name, a class index or ``"drop"``; None, NaN and ``""`` are unanswered (skipped)."""
    report = ImportReport(Path("<answers given in Python>"))
    columns = getattr(answers, "columns", None)
    if columns is not None:  # a table (pandas DataFrame): sample_id as a column or as the index
        if "label" not in columns:
            raise DataError(f"answers: the table has no 'label' column (its columns: {list(columns)})")
        index = getattr(answers, "index", None)
        if "sample_id" in columns:
            ids = answers["sample_id"]
        elif getattr(index, "name", None) == "sample_id":
            ids = index
        else:
            raise DataError(f"answers: the table has no 'sample_id' column or index (its columns: {list(columns)})")
        pairs = list(zip(ids, answers["label"]))
    elif isinstance(answers, Mapping) or hasattr(answers, "items") and hasattr(answers, "index"):
        pairs = list(answers.items())  # a mapping, or a pandas Series indexed by sample id
    else:
        try:
            pairs = [tuple(a) for a in answers]
        except TypeError:
            raise DataError(f"answers: expected a file path, a mapping {{sample_id: label}}, (sample_id, label) "
                            f"pairs or a table with sample_id and label columns; got {type(answers).__name__}") \
                from None
        bad = next((i for i, a in enumerate(pairs) if len(a) != 2), None)
        if bad is not None:
            raise DataError(f"answers: item {bad + 1} is {pairs[bad]!r}, not a (sample_id, label) pair")
    out = []
    for i, (sid, label) in enumerate(pairs, start=1):
        if hasattr(label, "item"):  # a numpy scalar
            label = label.item()
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        if _no_answer(label):
            report.unanswered += 1
            continue
        out.append(RawAnswer(i, str(sid), label))
    return out, report


def _no_answer(label: Any) -> bool:
    """None, NaN, "" or pandas' missing value (whose comparisons raise)."""
    try:
        return label is None or label == "" or (isinstance(label, float) and math.isnan(label))
    except TypeError:  # pandas.NA
        return True


def import_answers(run_dir: str | Path, path: str | Path | Any, annotator: str | None = None, correct: bool = False,
                   dry_run: bool = False, domains: Domains | None = None,
                   skip_unqueried: bool = False) -> ImportReport:
    """Validate the answers in ``path`` against the run and commit the valid ones in one transaction.

    ``path``: a CSV or Label Studio JSON file, or the answers as Python objects (`answers_in_memory`: a mapping
    ``{sample_id: label}``, ``(sample_id, label)`` pairs, a DataFrame with those columns). Rejected (each with its
    line or position): unknown ids, ids never queried, labels outside the class list,
    answers conflicting with another row of the file, a row with a rejected label included (every row for
    that id is rejected) and answers
    that differ from a label already in the ledger (unless ``correct``: then they are recorded as
    correction records). Repeated identical rows count once. Nothing is written when ``dry_run``.
    ``skip_unqueried``: rows whose id the run has not queried (unknown or never queried) are counted
    (``unqueried``) and skipped instead of rejected, so the labels of an earlier run on the same data (its
    ``adakit ledger export``) can be imported at every round: each answers the queries it holds.
    """
    raw, report = read_answers(path) if isinstance(path, (str, Path)) else answers_in_memory(path)
    if report.unreadable:
        return report
    classes, pool_ids, ledger = _run_context(Path(run_dir), domains)
    try:
        by_name = class_lookup(classes)
        # classes named by numbers other than their position (label codes "1", "2", ...): "1" names a class, so a
        # number is read as a name only, as in image lists, never as an index (one file would mix both)
        numbered = any(index_in_text(c) is not None and c != str(k) for k, c in enumerate(classes))
        queried = {q.sample_id for q in ledger.queries()}
        known = queried if pool_ids is None else pool_ids
        nfc: dict[str, str | None] | None = None  # known ids by NFC form, stripped (built at the first unknown id)
        current = ledger.current_labels()
        seen: dict[str, tuple[int, int]] = {}
        rejected: set[str] = set()
        valid: dict[str, int] = {}
        unclear: dict[str, int] = {}  # sample id -> first line answering it with a rejected label

        def also_answered(a: RawAnswer) -> None:
            """A row with a rejected label: another row's answer for that sample is not recorded either (the file
            answers it twice, and the rejected label may mean another class)."""
            unclear.setdefault(a.sample_id, a.line)
            if a.sample_id in valid:
                valid.pop(a.sample_id)
                rejected.add(a.sample_id)
                report.error(seen[a.sample_id][0], "conflicting rows",
                             f"{a.sample_id!r}: not recorded: line {a.line} answers it too, with a label that is "
                             "rejected; keep one row per sample")

        for a in raw:
            if skip_unqueried and a.sample_id not in queried:
                nfc = nfc if nfc is not None else _by_plain_form(known)
                if (nfc.get(_plain(a.sample_id)) or a.sample_id) not in queried:
                    report.unqueried += 1
                    continue
            if a.sample_id not in known:  # the same id in another Unicode form (a name copied from macOS), or an
                # id with spaces around it (a class folder " mug"), which the cells lost when they were stripped?
                nfc = nfc if nfc is not None else _by_plain_form(known)
                a = dataclasses.replace(a, sample_id=nfc.get(_plain(a.sample_id)) or a.sample_id)
            if a.sample_id not in known:
                where = "one of the run's queried samples" if pool_ids is None else "a sample of the target pool"
                report.error(a.line, "unknown id", f"unknown id {a.sample_id!r}: not {where}")
                continue
            if a.sample_id not in queried:
                report.error(a.line, "never queried", f"{a.sample_id!r} was never queried (only queried samples "
                                                      "can be labelled: see the run's queries/ folder)")
                continue
            if a.indexed:
                y, why = _indexed_label(a, classes, by_name)
                if why:
                    report.error(a.line, "label and class differ", f"{a.sample_id!r}: {why}")
                    also_answered(a)
                    continue
            else:
                y = resolve_label(a.label, classes, by_name)
                if (numbered and isinstance(a.label, str) and find_class(a.label, by_name) is None
                        and index_in_text(a.label) is not None):  # an index among names that are numbers
                    shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
                    report.error(a.line, "not a class", f"{a.sample_id!r}: label {a.label!r} is not a class name; "
                                                        f"the classes are named by numbers ({shown}), so a number is "
                                                        "read as a class name, never as an index: write the name")
                    also_answered(a)
                    continue
            if y is None:
                close = close_class(a.label, classes)
                shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
                report.error(a.line, "not a class", f"{a.sample_id!r}: label {a.label!r} is not in the class list "
                                                    + (f"(did you mean {close!r}?)" if close else
                                                       f"(a name: {shown}; or an index 0..{len(classes) - 1} "
                                                       f"written as plain digits; or {DROP!r} when nobody can "
                                                       "label it)"))
                also_answered(a)
                continue
            if a.sample_id in unclear:
                report.error(a.line, "conflicting rows", f"{a.sample_id!r}: not recorded: line "
                                                         f"{unclear[a.sample_id]} answers it too, with a label that "
                                                         "is rejected; keep one row per sample")
                rejected.add(a.sample_id)
                continue
            if a.sample_id in seen:
                first_line, first_y = seen[a.sample_id]
                if first_y == y and a.sample_id not in rejected:
                    report.note(a.line, "repeated row", f"{a.sample_id!r} repeats line {first_line} (same answer, "
                                                        "counted once)")
                elif first_y != y or a.sample_id in rejected:
                    ours, theirs = label_name(y, classes), label_name(first_y, classes)
                    report.error(a.line, "conflicting rows", f"{a.sample_id!r}: {ours!r} conflicts with line "
                                                             f"{first_line} ({theirs!r}); neither is recorded")
                    rejected.add(a.sample_id)
                    valid.pop(a.sample_id, None)
                continue
            seen[a.sample_id] = (a.line, y)
            if a.sample_id in current and current[a.sample_id] != y and not correct:
                ledger_says = label_name(current[a.sample_id], classes)
                report.error(a.line, "differs from the ledger",
                             f"{a.sample_id!r} is already labelled {ledger_says!r} in the ledger, the file says "
                             f"{label_name(y, classes)!r}; import with --correct to record a correction")
                rejected.add(a.sample_id)
                continue
            valid[a.sample_id] = y
        if dry_run:
            for sid, y in valid.items():
                state = "new" if sid not in current else "same" if current[sid] == y else "corrected"
                setattr(report, state, getattr(report, state) + 1)
            return report
        try:
            who = annotator or (f"file:{Path(path).name}" if isinstance(path, (str, Path)) else "python")
            outcome = ledger.record_labels(valid, who, correction=correct)
        except LedgerError as e:  # an answer arrived meanwhile (e.g. from the labelling page): all rolled back
            report.error(0, "ledger refused", f"nothing was imported: {e}")
            return report
        report.committed = True
        for state in outcome.values():
            setattr(report, state, getattr(report, state) + 1)
        return report
    finally:
        ledger.close()

"""The label ledger: one SQLite file per run holding config, rounds, queries, labels, metrics and
checkpoints. Every label is committed (WAL, synchronous=FULL) before anything else uses it, so a
label that was acknowledged survives a killed process.
"""

from __future__ import annotations

import functools
import json
import numbers
import os
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from adakit.errors import LedgerBusy, LedgerError, NotQueried

SCHEMA_VERSION = 1

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS rounds (
        round INTEGER PRIMARY KEY, budget INTEGER NOT NULL, status TEXT NOT NULL,
        created TEXT NOT NULL, updated TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS queries (
        sample_id TEXT PRIMARY KEY, pool_index INTEGER NOT NULL, round INTEGER NOT NULL,
        rank INTEGER NOT NULL, score REAL, suggested INTEGER, created TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS labels (
        id INTEGER PRIMARY KEY AUTOINCREMENT, sample_id TEXT NOT NULL REFERENCES queries(sample_id),
        label INTEGER NOT NULL, annotator TEXT NOT NULL, created TEXT NOT NULL,
        correction_of INTEGER REFERENCES labels(id))""",
    """CREATE UNIQUE INDEX IF NOT EXISTS one_first_label ON labels(sample_id) WHERE correction_of IS NULL""",
    """CREATE TABLE IF NOT EXISTS metrics (
        round INTEGER NOT NULL, name TEXT NOT NULL, value REAL NOT NULL, labels INTEGER NOT NULL,
        created TEXT NOT NULL, PRIMARY KEY (round, name))""",
    """CREATE TABLE IF NOT EXISTS checkpoints (round INTEGER PRIMARY KEY, path TEXT NOT NULL, created TEXT NOT NULL)""",
]

#: the label recorded for a query nobody can answer ("dropped"): it closes the query, is never queried again and
#: is not trained on; a later answer (or correction) can still give it a class
DROPPED = -1
#: the word people write (in an answers file, or return from a labelling function) to drop a query; a class
#: of that name wins
DROP = "drop"


#: how long a write waits for another process's write transaction before it is `LedgerBusy` (SQLite's busy timeout)
BUSY_TIMEOUT_S = 30.0


def is_drop(value) -> bool:
    """Whether an answer is the word `DROP` (any case, spaces around it ignored)."""
    return isinstance(value, str) and value.strip().lower() == DROP


def means_drop(value, classes) -> bool:
    """Whether an answer drops its query: the word `DROP`, while no class is named that word (in any case): with
    such a class the word is never a drop, whatever its spelling, in files, the page and labelling functions
    alike (a class name that does not match exactly is then an unknown class, not a drop)."""
    return is_drop(value) and not any(is_drop(c) for c in classes)


def label_name(label: int, classes: list[str]) -> str:
    """A recorded label as people read it: its class name, or `DROP`."""
    return DROP if label == DROPPED else classes[label]

#: round status, in order
STATUSES = ("queried", "labelled", "trained", "evaluated")
#: tables every adakit ledger holds
TABLES = ("meta", "rounds", "queries", "labels", "metrics", "checkpoints")
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _check_hint(path: Path) -> str:
    return f"; `adakit ledger check {path.parent}` shows what is wrong"


def _what_to_do(path: Path) -> str:
    return f"restore {path.name} from a backup, or start a new run with another --out folder{_check_hint(path)}"


def _inspect_file(path: Path) -> None:
    """Refuse a file that cannot be a ledger before SQLite touches it: empty, not SQLite, truncated."""
    size = path.stat().st_size
    if size == 0:
        raise LedgerError(f"{path} is empty (0 bytes): not an adakit ledger (adakit never leaves an empty one: "
                          f"it was emptied or replaced); {_what_to_do(path)}")
    with path.open("rb") as fh:
        head = fh.read(100)
    if not head.startswith(_SQLITE_MAGIC):
        raise LedgerError(f"{path} is not an SQLite file (not an adakit ledger, or overwritten); {_what_to_do(path)}")
    if len(head) < 100:
        raise LedgerError(f"{path} is truncated ({size} bytes, shorter than an SQLite header); {_what_to_do(path)}")
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(head[28:32], "big")
    wal = path.with_name(path.name + "-wal")  # while one exists a checkpoint may be growing the file: skip
    if head[24:28] == head[92:96] and pages and size < pages * page_size and not wal.exists():
        raise LedgerError(f"{path} is truncated ({size} bytes; its header says {pages} pages of {page_size} "
                          f"bytes); {_what_to_do(path)}")


def _writable(folder: Path) -> bool:
    return os.access(folder, os.W_OK)


def sqlite_error(path: Path, e: sqlite3.Error) -> LedgerError:
    """The `LedgerError` for SQLite's error ``e`` on the ledger ``path``, with its cause where it is not damage:
    another writer (`LedgerBusy`), a full disk or a read-only folder (nothing written, the ledger intact)."""
    text = str(e)
    if isinstance(e, sqlite3.OperationalError) and ("locked" in text or "busy" in text):
        return LedgerBusy(f"{path}: the ledger is busy (another process holds a write transaction); nothing was "
                          "written, try again")
    if "disk is full" in text:
        return LedgerError(f"{path}: the disk is full ({text}); nothing was written and the ledger is intact: free "
                           "some space and run the command again")
    if "readonly" in text or ("unable to open" in text and not _writable(path.parent)):
        return LedgerError(f"{path}: the run folder is read-only ({text}); nothing was written and the ledger is "
                           "intact: copy the run folder to a writable place and run the command there")
    return LedgerError(f"{path}: the ledger cannot be read or written ({text}); {_what_to_do(path)}")


def _guarded(fn: Callable) -> Callable:
    """Turn SQLite's errors on a damaged file (malformed, not a database, ...) into `LedgerError`
    (`sqlite_error`: a busy ledger, a full disk and a read-only folder are named as such)."""
    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.DatabaseError as e:
            raise sqlite_error(self.path, e) from e

    return wrapper


def _create(path: Path) -> None:
    """Write a new ledger whole beside ``path`` and link it into place only if no file is there yet: a
    killed process leaves no ledger or a complete one (never an empty file), and two processes creating
    the same ledger at once both end up using the one that got there first. The temporary file a killed creation
    left is removed by the next creation of this ledger (`adakit.rundir.sweep_stale_tmp`)."""
    from adakit.rundir import sweep_stale_tmp  # (the temporary files of ledgers whose creation was killed)

    sweep_stale_tmp(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        con = sqlite3.connect(tmp, isolation_level=None)
        try:
            con.execute("BEGIN")
            for stmt in _SCHEMA:
                con.execute(stmt)
            con.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            con.execute("COMMIT")
        finally:
            con.close()
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # created meanwhile by another process: that one is used
        except OSError:  # a file system without hard links
            if not path.exists():
                os.replace(tmp, path)
    except sqlite3.Error as e:
        raise LedgerError(f"{path}: cannot create the ledger ({e})") from e
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + "-journal").unlink(missing_ok=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class Query:
    sample_id: str
    pool_index: int
    round: int
    rank: int
    score: float | None
    suggested: int | None


class Ledger:
    """Run ledger at ``path``: created with the current schema when the file does not exist; an existing
    file must be an adakit ledger (`LedgerError` otherwise: it is never turned into one)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            _create(self.path)
        if not self.path.is_file():
            raise LedgerError(f"{self.path} is not a file; choose another --out folder")
        _inspect_file(self.path)
        try:
            self.conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                        check_same_thread=False)
        except sqlite3.Error as e:
            raise sqlite_error(self.path, e) from e
        try:
            self._check_schema()
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except BaseException:
            self.conn.close()
            raise

    @classmethod
    def read_only(cls, path: str | Path) -> Ledger:
        """Open an existing ledger read-only and without migrating it (`adakit ledger check` on a file that
        may be damaged, e.g. two first answers for one sample would make the migration's index fail)."""
        from urllib.request import pathname2url

        self = cls.__new__(cls)
        self.path = Path(path)
        if not self.path.is_file():
            raise LedgerError(f"{self.path} not found")
        _inspect_file(self.path)
        mode = "ro"
        if not _writable(self.path.parent):  # read-only storage: SQLite cannot make the WAL's shared-memory file
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:  # (an empty one, as a read-only open leaves, holds nothing)
                raise LedgerError(f"{self.path}: the run folder is read-only and holds the write-ahead log of a "
                                  "process that did not finish (ledger.sqlite-wal), which only a writable folder can "
                                  "apply: copy the run folder to a writable place and run the command there")
            mode = "ro&immutable=1"  # nothing can change the file meanwhile
        try:
            self.conn = sqlite3.connect(f"file:{pathname2url(str(self.path.resolve()))}?mode={mode}", uri=True,
                                        timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as e:
            raise sqlite_error(self.path, e) from e
        try:
            self._check_schema()
        except BaseException:
            self.conn.close()
            raise
        return self

    @_guarded
    def _check_schema(self) -> None:
        """An existing file must hold adakit's tables and ``meta.schema_version`` (nothing is created in it)."""
        tables = {name for (name,) in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" not in tables:
            found = ", ".join(sorted(tables)) or "no tables"
            raise LedgerError(f"{self.path} is an SQLite file but not an adakit ledger (no meta table; found: "
                              f"{found}); {_what_to_do(self.path)}")
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None or not str(row[0]).isdigit():
            raise LedgerError(f"{self.path} is not an adakit ledger (no valid schema_version in its meta table); "
                              f"{_what_to_do(self.path)}")
        if int(row[0]) > SCHEMA_VERSION:
            raise LedgerError(f"{self.path}: ledger schema v{row[0]} is newer than this adakit "
                              f"(v{SCHEMA_VERSION}); upgrade adakit")
        missing = [t for t in TABLES if t not in tables]
        if missing:
            raise LedgerError(f"{self.path} is a damaged adakit ledger: table(s) {', '.join(missing)} missing; "
                              f"{_what_to_do(self.path)}")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; SQLite's errors in it become `sqlite_error`'s named errors (all rolled back)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise sqlite_error(self.path, e) from e
        try:
            yield self.conn
        except BaseException as e:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise sqlite_error(self.path, e) from e
            raise
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise sqlite_error(self.path, e) from e

    @_guarded
    def _migrate(self) -> None:
        with self.transaction() as c:
            for stmt in _SCHEMA:
                c.execute(stmt)
            row = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) > SCHEMA_VERSION:
                raise LedgerError(f"{self.path}: ledger schema v{row[0]} is newer than this adakit "
                                  f"(v{SCHEMA_VERSION}); upgrade adakit")

    # -- meta -------------------------------------------------------------------------------------
    def set_meta(self, key: str, value) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default=None):
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_classes(self, classes: list[str]) -> None:
        """Record the run's class list (meta ``classes``), so `check` can verify every label against it."""
        self.set_meta("classes", [str(c) for c in classes])

    def classes(self) -> list[str] | None:
        """The recorded class list, or None (a ledger written before adakit recorded it)."""
        value = self.get_meta("classes")
        return list(value) if isinstance(value, list) else None

    # -- rounds -----------------------------------------------------------------------------------
    def round_status(self, r: int) -> str | None:
        row = self.conn.execute("SELECT status FROM rounds WHERE round=?", (r,)).fetchone()
        return row[0] if row else None

    def set_round_status(self, r: int, status: str, budget: int = 0, conn: sqlite3.Connection | None = None) -> None:
        assert status in STATUSES
        c = conn or self.conn
        now = _now()
        c.execute("""INSERT INTO rounds VALUES (?, ?, ?, ?, ?) ON CONFLICT(round) DO UPDATE SET
                     status=excluded.status, updated=excluded.updated""", (r, budget, status, now, now))

    def round_reached(self, r: int, status: str) -> bool:
        s = self.round_status(r)
        return s is not None and STATUSES.index(s) >= STATUSES.index(status)

    # -- queries ----------------------------------------------------------------------------------
    def record_queries(self, r: int, sample_ids: list[str], pool_indices: Iterable[int],
                       scores: Iterable[float], suggested: Iterable[int] | None = None) -> None:
        """Record round r's selection (one transaction); a sample can be queried once per run."""
        pool_indices, scores = list(pool_indices), list(scores)
        suggested = list(suggested) if suggested is not None else [None] * len(sample_ids)
        now = _now()
        with self.transaction() as c:
            dup = c.execute(f"SELECT sample_id FROM queries WHERE sample_id IN ({','.join('?' * len(sample_ids))})",
                            sample_ids).fetchall() if sample_ids else []
            if dup:
                raise LedgerError(f"samples already queried: {[d[0] for d in dup][:5]}")
            c.executemany("INSERT INTO queries VALUES (?, ?, ?, ?, ?, ?, ?)",
                          [(s, int(i), r, k, float(sc), None if sg is None else int(sg), now)
                           for k, (s, i, sc, sg) in enumerate(zip(sample_ids, pool_indices, scores, suggested))])
            self.set_round_status(r, "queried", budget=len(sample_ids), conn=c)

    def queries(self, r: int | None = None) -> list[Query]:
        sql = "SELECT sample_id, pool_index, round, rank, score, suggested FROM queries"
        rows = self.conn.execute(sql + (" WHERE round=? ORDER BY rank" if r is not None else " ORDER BY round, rank"),
                                 (r,) if r is not None else ()).fetchall()
        return [Query(*row) for row in rows]

    def open_queries(self, r: int | None = None) -> list[Query]:
        """Queries without any answer yet (a dropped query is answered)."""
        labels = self.current_labels()
        return [q for q in self.queries(r) if q.sample_id not in labels]

    # -- labels -----------------------------------------------------------------------------------
    @staticmethod
    def _valid_label(sample_id: str, label: Any, classes: list[str] | None) -> int:
        """``label`` as an int: an index into ``classes`` (the recorded list; any ≥ 0 when None) or `DROPPED`;
        else `LedgerError`."""
        if isinstance(label, bool) or not isinstance(label, numbers.Integral):
            raise LedgerError(f"sample {sample_id!r}: label {label!r} is not a class index (an int); nothing was "
                              "recorded")
        if label != DROPPED and (label < 0 or (classes is not None and label >= len(classes))):
            known = f"0..{len(classes) - 1}" if classes is not None else "≥ 0"
            raise LedgerError(f"sample {sample_id!r}: label {label} is not a class index ({known}) nor {DROPPED} "
                              "(dropped); nothing was recorded")
        return int(label)

    def record_labels(self, labels: dict[str, int], annotator: str, correction: bool = False,
                      keep_first: bool = False) -> dict[str, str]:
        """Commit labels in one transaction. Returns per sample ``"new"``, ``"same"`` (already given:
        nothing changes, so re-recording is idempotent) or ``"corrected"``. A different answer for an
        already labelled sample is refused unless ``correction`` is set (then a correction row is added), or,
        with ``keep_first``, left out as ``"conflict"`` while the others are committed (the first answer wins,
        as on the labelling page).
        """
        now = _now()
        out: dict[str, str] = {}
        classes = self.classes()
        labels = {sid: self._valid_label(sid, v, classes) for sid, v in labels.items()}  # all checked before writing
        with self.transaction() as c:
            for sid, label in labels.items():
                if c.execute("SELECT 1 FROM queries WHERE sample_id=?", (sid,)).fetchone() is None:
                    raise NotQueried(f"sample {sid!r} was never queried; only queried samples can be labelled")
                cur = c.execute("SELECT id, label FROM labels WHERE sample_id=? ORDER BY id DESC LIMIT 1",
                                (sid,)).fetchone()
                if cur is None:
                    c.execute("INSERT INTO labels (sample_id, label, annotator, created) VALUES (?, ?, ?, ?)",
                              (sid, int(label), annotator, now))
                    out[sid] = "new"
                elif cur[1] == int(label):
                    out[sid] = "same"
                elif correction:
                    c.execute("INSERT INTO labels (sample_id, label, annotator, created, correction_of) "
                              "VALUES (?, ?, ?, ?, ?)", (sid, int(label), annotator, now, cur[0]))
                    out[sid] = "corrected"
                elif keep_first:
                    out[sid] = "conflict"
                else:
                    raise LedgerError(f"sample {sid!r} already has label {cur[1]}; got {int(label)}. "
                                      "Record it as a correction to change it.")
        return out

    def answer(self, sample_id: str, label: int, annotator: str,
               replaces: int | None = None) -> tuple[str, int | None]:
        """One person's answer, in its own transaction, compare-and-set (the labelling page's write).

        ``replaces=None``: the sample must still be unlabelled (or already carry ``label``: ``"same"``).
        ``replaces=L``: the answer corrects label L, which must still be the current label; a correction
        row is added. Returns ``(outcome, current label)`` with outcome ``"new"``, ``"same"``,
        ``"corrected"`` or ``"conflict"`` (nothing written: someone else answered first; the current
        label is returned so the caller can show it). Raises `LedgerError` for a sample never queried.
        """
        label = self._valid_label(sample_id, label, self.classes())
        with self.transaction() as c:
            if c.execute("SELECT 1 FROM queries WHERE sample_id=?", (sample_id,)).fetchone() is None:
                raise NotQueried(f"sample {sample_id!r} was never queried; only queried samples can be labelled")
            cur = c.execute("SELECT id, label FROM labels WHERE sample_id=? ORDER BY id DESC LIMIT 1",
                            (sample_id,)).fetchone()
            current = None if cur is None else int(cur[1])
            if current == label:
                return "same", current
            if current != (None if replaces is None else int(replaces)):
                return "conflict", current
            c.execute("INSERT INTO labels (sample_id, label, annotator, created, correction_of) VALUES (?, ?, ?, ?, ?)",
                      (sample_id, label, annotator, _now(), None if cur is None else cur[0]))
            return ("new" if cur is None else "corrected"), label

    def label_rows(self, sample_id: str | None = None) -> list[dict]:
        """Every label row (first answers and corrections), oldest first."""
        sql = "SELECT id, sample_id, label, annotator, created, correction_of FROM labels"
        rows = self.conn.execute(sql + (" WHERE sample_id=? ORDER BY id" if sample_id else " ORDER BY id"),
                                 (sample_id,) if sample_id else ()).fetchall()
        keys = ("id", "sample_id", "label", "annotator", "created", "correction_of")
        return [dict(zip(keys, r)) for r in rows]

    def label_table(self, history: bool = False) -> list[dict]:
        """The people's (or the oracle's) answers as rows: one per answered query with its current label, in
        query order; with ``history`` every label row, oldest first (first answers and their corrections).

        Keys: ``sample_id``, ``round``, ``pool_index``, ``label`` (class index; `DROPPED` for a dropped query),
        ``class`` (its name, ``"drop"``, or None when the ledger holds no class list), ``annotator``, ``created``
        (UTC, ISO 8601), ``corrects`` (history only: the label this row replaced, else None).
        """
        classes = self.classes()
        queries = {q.sample_id: q for q in self.queries()}
        rows = self.label_rows()
        by_id = {r["id"]: r for r in rows}
        if not history:
            latest = {r["sample_id"]: r for r in rows}  # oldest first: the last row per sample is its label
            rows = [latest[s] for s in queries if s in latest]

        def row(r: dict) -> dict:  # a damaged ledger (`check` names it) still exports: unknowns become None
            q, y = queries.get(r["sample_id"]), r["label"]
            known = classes is not None and isinstance(y, int) and DROPPED <= y < len(classes)
            out = {"sample_id": r["sample_id"], "round": q and q.round, "pool_index": q and q.pool_index, "label": y,
                   "class": label_name(y, classes) if known else None, "annotator": r["annotator"],
                   "created": r["created"]}
            if history:
                before = by_id.get(r["correction_of"])
                out["corrects"] = None if before is None else before["label"]
            return out

        return [row(r) for r in rows]

    def last_round(self) -> int:
        """Highest round number in the ledger (0 when none was queried)."""
        row = self.conn.execute("SELECT MAX(round) FROM rounds").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def current_labels(self) -> dict[str, int]:
        """sample_id -> latest label (corrections win); `DROPPED` for a query nobody could answer."""
        rows = self.conn.execute("SELECT sample_id, label FROM labels ORDER BY id").fetchall()
        return dict(rows)

    def labelled_pool(self) -> tuple[list[int], list[int]]:
        """Pool indices and labels of every labelled sample, in query order (dropped queries excluded)."""
        labels = self.current_labels()
        qs = [q for q in self.queries() if labels.get(q.sample_id, DROPPED) != DROPPED]
        return [q.pool_index for q in qs], [labels[q.sample_id] for q in qs]

    def dropped_pool(self) -> list[int]:
        """Pool indices of the dropped queries (answered "nobody can label this"), in query order."""
        labels = self.current_labels()
        return [q.pool_index for q in self.queries() if labels.get(q.sample_id) == DROPPED]

    # -- metrics and checkpoints ------------------------------------------------------------------
    def record_metrics(self, r: int, metrics: dict[str, float], labels: int) -> None:
        now = _now()
        with self.transaction() as c:
            c.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?, ?)",
                          [(r, k, float(v), labels, now) for k, v in metrics.items()])
            self.set_round_status(r, "evaluated", conn=c)

    def metrics(self) -> list[dict]:
        rows = self.conn.execute("SELECT round, name, value, labels FROM metrics ORDER BY round, name").fetchall()
        by_round: dict[int, dict] = {}
        for r, name, value, labels in rows:
            by_round.setdefault(r, {"round": r, "labels": labels})[name] = value
        return list(by_round.values())

    def record_checkpoint(self, r: int, path: str) -> None:
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?)", (r, path, _now()))
            self.set_round_status(r, "trained", conn=c)

    def last_checkpoint(self) -> tuple[int, str] | None:
        row = self.conn.execute("SELECT round, path FROM checkpoints ORDER BY round DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else None

    # -- integrity --------------------------------------------------------------------------------
    def check(self) -> list[str]:
        """Problems found (empty when the ledger is consistent): SQLite integrity, labels of ids never
        queried, two first answers for one id, corrections of label rows that do not exist, a stored config
        that does not validate, labels outside the recorded class list (skipped when no class list is recorded:
        see `classes`)."""
        from adakit.config import build_config
        from adakit.errors import AdakitError

        problems = []
        ok = self.conn.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            problems.append(f"sqlite integrity_check: {ok}")
        for (sid,) in self.conn.execute(
                "SELECT sample_id FROM labels WHERE sample_id NOT IN (SELECT sample_id FROM queries)"):
            problems.append(f"label for {sid!r}, which was never queried")
        for sid, n in self.conn.execute(
                "SELECT sample_id, COUNT(*) FROM labels WHERE correction_of IS NULL "
                "GROUP BY sample_id HAVING COUNT(*) > 1"):
            problems.append(f"{sid!r} has {n} first answers without a correction record")
        for row_id, sid, before in self.conn.execute(  # (integrity_check does not check foreign keys)
                "SELECT id, sample_id, correction_of FROM labels WHERE correction_of IS NOT NULL "
                "AND correction_of NOT IN (SELECT id FROM labels) ORDER BY id"):
            problems.append(f"label row {row_id} of {sid!r} is recorded as the correction of label row {before}, "
                            "which does not exist")
        for (sid,) in self.conn.execute(
                "SELECT sample_id FROM queries GROUP BY sample_id HAVING COUNT(*) > 1"):
            problems.append(f"{sid!r} queried twice")
        try:
            config = self.get_meta("config")
        except ValueError as e:
            problems.append(f"the stored config is not valid JSON ({e})")
        else:
            if config is not None:  # a bare ledger (library use) holds none; `adakit ledger check` requires one
                try:
                    build_config(config)
                except AdakitError as e:
                    problems.append(f"the stored config does not validate: {e}")
                except Exception as e:  # a stored value of the wrong shape (not a mapping, ...)
                    problems.append(f"the stored config does not validate: {type(e).__name__}: {e}")
        try:
            classes = self.classes()
        except ValueError as e:
            problems.append(f"the stored class list is not valid JSON ({e})")
            classes = None
        if classes is not None:
            n = len(classes)
            bad = self.conn.execute("SELECT id, sample_id, label FROM labels WHERE label < -1 OR label >= ? "
                                    "OR typeof(label) != 'integer' ORDER BY id", (n,)).fetchall()
            for _, sid, label in bad[:20]:
                problems.append(f"{sid!r} has label {label!r}, outside the class list 0..{n - 1} (or {DROPPED}: "
                                "dropped)")
            if len(bad) > 20:
                problems.append(f"... and {len(bad) - 20} more labels outside the class list")
        return problems


@dataclass
class RunCheck:
    """What `check_run` found: ``problems`` (empty: the ledger is consistent), ``notes`` and the counts."""

    problems: list[str]
    notes: list[str]
    queries: int = 0
    labelled: int = 0
    dropped: int = 0
    corrections: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_run(run_dir: str | Path) -> RunCheck:
    """``adakit ledger check`` from Python: a run folder's ledger read-only, `Ledger.check` plus what a run's ledger
    must hold (its config; a class list, else a note), and the counts. A folder without a ledger is a
    `ConfigError`; a file SQLite cannot read is a problem, not an exception."""
    from adakit.errors import ConfigError

    path = Path(run_dir) / "ledger.sqlite"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no ledger.sqlite)")
    notes: list[str] = []
    try:
        with Ledger.read_only(path) as led:
            problems = led.check()  # a meta value that is not JSON is one of its problems
            meta = dict(led.conn.execute("SELECT key, value FROM meta WHERE key IN ('config', 'classes')"))
            if "config" not in meta:
                problems.append("no config stored in the ledger: it was not written by `adakit run` (or its "
                                "creation was interrupted); start a new run in another folder")
            if "classes" not in meta:
                notes.append("no class list recorded (a run started by an older adakit): labels were not checked "
                             "against the class list")
            labels = led.current_labels()
            dropped = sum(y == DROPPED for y in labels.values())
            return RunCheck(problems, notes, len(led.queries()), len(labels) - dropped, dropped,
                            len(led.label_rows()) - len(labels))
    except LedgerError as e:  # (without the advice to run this very check)
        return RunCheck([str(e).replace(_check_hint(path), "")], notes)
    except sqlite3.DatabaseError as e:
        return RunCheck([f"{path}: SQLite cannot read it ({e}); restore it from a backup"], notes)


for _name in ("get_meta", "set_meta", "classes", "set_classes", "round_status", "set_round_status",
              "round_reached", "record_queries", "queries", "open_queries", "record_labels", "answer",
              "label_rows", "label_table", "last_round", "current_labels", "labelled_pool", "dropped_pool",
              "record_metrics", "metrics", "record_checkpoint", "last_checkpoint", "check"):
    setattr(Ledger, _name, _guarded(getattr(Ledger, _name)))

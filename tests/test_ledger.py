"""Ledger integrity and atomicity: WAL + synchronous=FULL, one transaction per answer, compare-and-set
answers, idempotent record_labels, corrections, check(), schema version, a killed writer loses nothing
committed and leaves nothing half-written."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading

import pytest

from adakit.errors import LedgerError
from adakit.ledger import DROPPED, SCHEMA_VERSION, Ledger


@pytest.fixture
def led(tmp_path):
    ledger = Ledger(tmp_path / "ledger.sqlite")
    ledger.record_queries(1, [f"s{i}" for i in range(10)], range(10), [1.0 - i / 10 for i in range(10)],
                          [i % 3 for i in range(10)])
    yield ledger
    ledger.close()


def test_wal_and_full_sync(led):
    assert led.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert led.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert led.get_meta("schema_version") == SCHEMA_VERSION


def test_queries_are_open_until_labelled(led):
    assert [q.sample_id for q in led.open_queries(1)] == [f"s{i}" for i in range(10)]
    assert led.round_status(1) == "queried" and led.last_round() == 1
    led.record_labels({"s0": 2}, "t")
    assert len(led.open_queries(1)) == 9
    with pytest.raises(LedgerError, match="already queried"):
        led.record_queries(2, ["s3"], [3], [0.5])


def test_record_labels_is_idempotent_and_refuses_silent_changes(led):
    assert led.record_labels({"s0": 1, "s1": 2}, "a") == {"s0": "new", "s1": "new"}
    assert led.record_labels({"s0": 1, "s1": 2}, "a") == {"s0": "same", "s1": "same"}
    with pytest.raises(LedgerError, match="correction"):
        led.record_labels({"s0": 1, "s1": 0}, "a")
    assert led.record_labels({"s1": 0}, "b", correction=True) == {"s1": "corrected"}
    assert led.current_labels() == {"s0": 1, "s1": 0}
    rows = led.label_rows("s1")
    assert [r["label"] for r in rows] == [2, 0] and rows[1]["correction_of"] == rows[0]["id"]
    assert led.check() == []


def test_record_labels_is_atomic(led):
    """One bad id in a batch: nothing of the batch is written."""
    with pytest.raises(LedgerError, match="never queried"):
        led.record_labels({"s0": 1, "s1": 1, "nope": 1, "s2": 1}, "a")
    assert led.current_labels() == {}


def test_answer_is_compare_and_set(led):
    assert led.answer("s0", 1, "web") == ("new", 1)
    assert led.answer("s0", 1, "web") == ("same", 1)
    assert led.answer("s0", 2, "web") == ("conflict", 1)          # no silent overwrite
    assert led.answer("s0", 2, "web", replaces=0) == ("conflict", 1)  # stale correction
    assert led.answer("s0", 2, "web", replaces=1) == ("corrected", 2)
    assert led.answer("s1", 2, "web", replaces=1) == ("conflict", None)  # correcting what is not there
    with pytest.raises(LedgerError, match="never queried"):
        led.answer("nope", 1, "web")
    assert led.current_labels() == {"s0": 2} and len(led.label_rows()) == 2 and led.check() == []


def test_concurrent_answers_from_separate_connections(tmp_path, led):
    """Eight connections (as eight server processes would) race on every sample: one first answer each."""
    path = led.path
    barrier = threading.Barrier(8)
    outcomes: list[tuple[str, str, int]] = []
    lock = threading.Lock()

    def worker(k):
        with Ledger(path) as mine:
            barrier.wait()
            for i in range(10):
                res = mine.answer(f"s{i}", (i + k) % 5, f"w{k}")
                with lock:
                    outcomes.append((f"s{i}", *res))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    labels = led.current_labels()
    assert len(labels) == 10 and len(led.label_rows()) == 10 and led.check() == []
    for i in range(10):
        new = [o for o in outcomes if o[0] == f"s{i}" and o[1] == "new"]
        assert len(new) == 1 and labels[f"s{i}"] == new[0][2]


def _damage(led, *statements: str) -> None:
    """Run ``statements`` on the ledger with the checks that would refuse them off (foreign keys, the index allowing
    one first answer per id), as a damaged or hand-edited file holds them."""
    led.conn.execute("PRAGMA foreign_keys=OFF")
    led.conn.execute("DROP INDEX one_first_label")
    for sql in statements:
        led.conn.execute(sql)


def test_check_reports_damage(led):
    led.record_labels({"s0": 1}, "a")
    assert led.check() == []
    _damage(led, "INSERT INTO labels (sample_id, label, annotator, created) VALUES ('ghost', 1, 'x', 'now')",
            "INSERT INTO labels (sample_id, label, annotator, created) VALUES ('s0', 2, 'x', 'now')")
    problems = led.check()
    assert any("'ghost', which was never queried" in p for p in problems)
    assert any("'s0' has 2 first answers without a correction record" in p for p in problems)
    # a damaged ledger can still be inspected read-only (opening it normally would re-create the index)
    with Ledger.read_only(led.path) as ro:
        assert len(ro.check()) == 2
        with pytest.raises(sqlite3.OperationalError):
            ro.conn.execute("DELETE FROM labels")


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "l.sqlite"
    with Ledger(path) as led:
        led.conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(LedgerError, match="newer than this adakit"):
        Ledger(path)


_WRITER = textwrap.dedent("""
    import sys
    from adakit.ledger import Ledger
    led = Ledger(sys.argv[1])
    n = 0
    for i in range(200):
        outcome, _ = led.answer(f"s{i}", i % 5, "killed")
        print(f"acked s{i}", flush=True)          # acknowledged only after the commit returned
        if i == 150:
            with led.transaction() as c:          # a batch in progress when the process dies
                c.execute("INSERT INTO labels (sample_id, label, annotator, created) "
                          "VALUES ('s199', 1, 'half', 'now')")
                print("in-transaction", flush=True)
                import time; time.sleep(60)
""")


def test_sigkill_keeps_every_committed_answer_and_no_half_transaction(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as led:
        led.record_queries(1, [f"s{i}" for i in range(200)], range(200), [0.0] * 200)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    acked = []
    for line in proc.stdout:
        if line.startswith("acked"):
            acked.append(line.split()[1])
        elif line.startswith("in-transaction"):
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert len(acked) == 151
    with Ledger(path) as led:
        labels = led.current_labels()
        assert all(labels[s] == int(s[1:]) % 5 for s in acked)
        assert "s199" not in labels and len(labels) == 151  # the uncommitted insert is gone
        assert led.check() == []


# -- a file that is not an adakit ledger is refused, never turned into one -----------------------------
def _real_ledger_bytes(tmp_path) -> bytes:
    path = tmp_path / "real.sqlite"
    with Ledger(path) as led:
        led.record_queries(1, [f"s{i}" for i in range(3000)], range(3000), [0.5] * 3000)
        led.record_labels({f"s{i}": i % 5 for i in range(2000)}, "a")
    return path.read_bytes()


def _foreign_sqlite(path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE users (name TEXT)")
    con.commit()
    con.close()


def _meta_only(path) -> None:  # adakit's meta table and version, the other tables gone
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.commit()
    con.close()


def _meta_without_version(path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.commit()
    con.close()


_NOT_LEDGERS = {
    "zero-byte": (lambda p, real: p.write_bytes(b""), "empty"),
    "garbage": (lambda p, real: p.write_bytes(b"name,label\nx,1\n" * 100), "not an SQLite file"),
    "truncated-header": (lambda p, real: p.write_bytes(real[:50]), "truncated"),
    "truncated": (lambda p, real: p.write_bytes(real[: len(real) // 2]), "truncated"),
    "foreign-schema": (lambda p, real: _foreign_sqlite(p), "not an adakit ledger"),
    "meta-without-version": (lambda p, real: _meta_without_version(p), "schema_version"),
    "missing-tables": (lambda p, real: _meta_only(p), "missing"),
}


@pytest.mark.parametrize("case", sorted(_NOT_LEDGERS))
def test_a_file_that_is_not_a_ledger_is_refused_and_left_untouched(tmp_path, case):
    make, expected = _NOT_LEDGERS[case]
    path = tmp_path / "run" / "ledger.sqlite"
    path.parent.mkdir()
    make(path, _real_ledger_bytes(tmp_path))
    before = path.read_bytes()
    for opener in (Ledger, Ledger.read_only):
        with pytest.raises(LedgerError) as e:
            opener(path)
        msg = str(e.value)
        assert str(path) in msg and expected in msg and "another --out" in msg and "restore" in msg, msg
    assert path.read_bytes() == before  # no schema was written into it


def test_a_new_ledger_is_created_only_where_no_file_exists(tmp_path):
    path = tmp_path / "new" / "ledger.sqlite"
    with Ledger(path) as led:
        assert led.get_meta("schema_version") == SCHEMA_VERSION
    with Ledger(path) as led:  # an existing adakit ledger opens
        assert led.get_meta("schema_version") == SCHEMA_VERSION
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(LedgerError, match="not a file"):
        Ledger(tmp_path / "dir.sqlite")


def test_damage_found_after_opening_is_a_ledger_error(tmp_path):
    """Pages damaged in the middle of the file (header and schema intact): every method that reads them
    raises LedgerError naming the file, not sqlite3.DatabaseError."""
    path = tmp_path / "ledger.sqlite"
    data = bytearray(_real_ledger_bytes(tmp_path))
    page = int.from_bytes(data[16:18], "big")
    for p in range(2, len(data) // page):  # scribble over every page but the first (the schema)
        data[p * page:(p + 1) * page] = bytes([0xA5]) * page
    path.write_bytes(bytes(data))
    with pytest.raises(LedgerError) as e:
        with Ledger(path) as led:
            led.current_labels()
            led.queries()
    assert str(path) in str(e.value) and "ledger check" in str(e.value)


def test_check_reports_a_bad_stored_config_and_labels_outside_the_class_list(led):
    led.set_meta("config", {"budget": {"total": "lots"}})
    led.set_classes(["cat", "dog", "emu"])
    assert led.classes() == ["cat", "dog", "emu"]
    led.record_labels({"s0": 2}, "a")
    assert not any("outside" in p for p in led.check())
    with pytest.raises(LedgerError, match="label 7 is not a class index \\(0..2\\)"):
        led.record_labels({"s0": 2, "s1": 7}, "a")  # refused whole: nothing recorded
    with pytest.raises(LedgerError, match="'two' is not a class index"):
        led.record_labels({"s1": "two"}, "a")
    with pytest.raises(LedgerError, match="label -2 is not a class index"):
        led.answer("s1", -2, "web")
    assert led.current_labels() == {"s0": 2}
    assert led.record_labels({"s2": DROPPED}, "a") == {"s2": "new"}  # a drop is allowed
    # a label outside the list written by other means (an older adakit, a hand edit) is what check() finds
    led.conn.execute("INSERT INTO labels (sample_id, label, annotator, created, correction_of) "
                     "VALUES ('s1', 7, 'a', 'now', NULL)")
    problems = led.check()
    assert any("stored config does not validate" in p and "budget.total" in p for p in problems), problems
    assert any("'s1' has label 7, outside the class list 0..2" in p for p in problems), problems
    led.conn.execute("DELETE FROM meta WHERE key='classes'")
    assert led.classes() is None and not any("outside" in p for p in led.check())


def test_concurrent_creation_gives_one_ledger_and_no_empty_file(tmp_path):
    """Creation is atomic (written beside, then linked into place): processes racing to create the same
    ledger all open the one that got there first, and no zero-byte file ever exists for them to refuse."""
    path = tmp_path / "ledger.sqlite"
    barrier = threading.Barrier(8)
    errors: list[Exception] = []

    def create(k):
        barrier.wait()
        try:
            with Ledger(path) as led:
                led.set_meta(f"w{k}", k)
        except Exception as e:  # pragma: no cover - the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=create, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with Ledger(path) as led:
        assert [led.get_meta(f"w{k}") for k in range(8)] == list(range(8))
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("ledger.sqlite")) == []


def test_a_ledger_on_read_only_storage_is_read_and_errors_name_the_real_cause(tmp_path, monkeypatch):
    """A finished run kept on read-only storage is read (SQLite cannot make a WAL's shared-memory file there:
    opened immutable); a full disk or a read-only folder is named as such, not as a damaged ledger to restore."""
    import sqlite3

    from adakit import ledger as ledger_mod
    from adakit.ledger import Ledger, sqlite_error

    path = tmp_path / "ledger.sqlite"
    with Ledger(path) as led:
        led.set_meta("config", {"seed": 1})
    monkeypatch.setattr(ledger_mod, "_writable", lambda folder: False)
    with Ledger.read_only(path) as led:
        assert led.get_meta("config") == {"seed": 1}
    (tmp_path / "ledger.sqlite-wal").write_bytes(b"")  # as any read-only open on writable storage leaves it
    with Ledger.read_only(path) as led:  # empty: nothing to apply (it made a copied run folder unreadable)
        assert led.get_meta("config") == {"seed": 1}
    (tmp_path / "ledger.sqlite-wal").write_bytes(b"\0" * 64)  # a process that did not finish
    with pytest.raises(LedgerError, match="read-only and holds the write-ahead log .* copy the run folder"):
        Ledger.read_only(path)
    err = sqlite_error(path, sqlite3.OperationalError("attempt to write a readonly database"))
    assert "the run folder is read-only" in str(err) and "restore" not in str(err)
    err = sqlite_error(path, sqlite3.OperationalError("unable to open database file"))
    assert "the run folder is read-only" in str(err)
    assert "restore ledger.sqlite" in str(sqlite_error(path, sqlite3.DatabaseError("database disk image is malformed")))
    monkeypatch.setattr(ledger_mod, "_writable", lambda folder: True)
    err = sqlite_error(path, sqlite3.OperationalError("database or disk is full"))
    assert "the disk is full" in str(err) and "nothing was written" in str(err) and "restore" not in str(err)
    assert "restore ledger.sqlite" in str(sqlite_error(path, sqlite3.DatabaseError("file is not a database")))


def test_files_written_whole_leave_no_partial_file_and_name_the_failure(tmp_path):
    """Exports, reports and checkpoints are written through `replaced_atomically`: a failing write (a full disk)
    leaves the old file untouched and no temporary file, and is a DataError naming the file."""
    import errno

    from adakit.errors import DataError
    from adakit.rundir import replaced_atomically, write_atomically

    target = tmp_path / "labels.csv"
    write_atomically(target, "old\n")
    with pytest.raises(DataError, match=r"cannot write .*labels\.csv \(No space left on device\); no partial file"):
        with replaced_atomically(target) as fh:
            fh.write("new, half")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    with pytest.raises(KeyError):  # other errors pass through, also without leaving the temporary file
        with replaced_atomically(target, binary=True) as fh:
            fh.write(b"x")
            raise KeyError("x")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["labels.csv"]


def test_two_writers_of_one_file_each_write_their_own_whole_file(tmp_path):
    """Two processes writing one path (two `adakit features` runs with the same --out) shared the temporary file
    ``<path>.tmp``: the first rename moved a file the second was still writing into, which ended as a mix of both
    (or a broken zip), and the second failed. Each writer now has its own; the last rename wins, whole."""
    from adakit.errors import ConfigError
    from adakit.rundir import replaced_atomically

    target = tmp_path / "f.npz"
    with replaced_atomically(target, binary=True) as first:
        first.write(b"A" * 1000)
        with replaced_atomically(target, binary=True) as second:
            second.write(b"B" * 10)
        assert target.read_bytes() == b"B" * 10
        first.write(b"A" * 1000)
    assert target.read_bytes() == b"A" * 2000
    # replace=False: a file another writer made meanwhile is kept, and this one's result is dropped with an error
    other = tmp_path / "g.npz"
    with pytest.raises(ConfigError, match=r"g\.npz was written by another process while this one worked; it is kept "
                                          r"as it is .* --force"):
        with replaced_atomically(other, binary=True, replace=False) as fh:
            fh.write(b"mine")
            other.write_bytes(b"theirs")
    assert other.read_bytes() == b"theirs"
    with replaced_atomically(tmp_path / "h.npz", binary=True, replace=False) as fh:
        fh.write(b"new")
    assert (tmp_path / "h.npz").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz", "g.npz", "h.npz"]


def test_temporary_files_of_killed_writes_are_removed_by_the_next_write_of_their_file(tmp_path):
    """A process killed while writing (`replaced_atomically`, a new ledger) left ``<name>.<pid>-<random>.tmp`` for
    good outside checkpoints/ (``adakit features --out somewhere/feats.npz``: in somewhere/). The next write of that
    file removes those whose process is gone and that have not changed for a while; a live writer's file (another
    process's, this one's), a recent one, the temporary files of other targets and files not named as adakit names
    them are kept (it deletes nothing but leftovers of the file it writes)."""
    from adakit.rundir import STALE_TMP_SECONDS, sweep_stale_tmp, write_atomically

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old = os.path.getmtime(tmp_path) - STALE_TMP_SECONDS - 60
        out, run = tmp_path / "somewhere", tmp_path / "run"
        out.mkdir()
        run.mkdir()
        ledger_tmp = run / f".ledger.sqlite.{gone.pid}.0a1b2c3d.tmp"
        stale = [out / f"feats.npz.{gone.pid}-0a1b2c.tmp", ledger_tmp,
                 ledger_tmp.with_name(ledger_tmp.name + "-journal")]
        kept = [out / f"feats.npz.{alive.pid}-0a1b2d.tmp", out / f"feats.npz.{os.getpid()}-0a1b2e.tmp",
                out / "feats.npz.tmp", out / f"notes.{gone.pid}.tmp", out / f"feats.npz.{gone.pid}-ABCDEF.tmp",
                out / f"feats.npz.{gone.pid}-0a1b2.tmp", run / f"ledger.sqlite.{gone.pid}.0a1b2c3d.tmp",
                out / f"report.md.{gone.pid}-ffffff.tmp", out / f"feats.npz.{gone.pid}-0a1b2c.tmp.bak",
                out / f"old-feats.npz.{gone.pid}-0a1b2c.tmp", run / f".other.sqlite.{gone.pid}.0a1b2c3d.tmp"]
        for f in stale + kept:
            f.write_bytes(b"half a write")
            os.utime(f, (old, old))
        recent = out / f"feats.npz.{gone.pid}-0a1b2f.tmp"  # changed a moment ago: perhaps a writer on another host
        recent.write_bytes(b"being written")
        write_atomically(out / "feats.npz", "new")
        with Ledger(run / "ledger.sqlite"):
            pass
        assert [f.name for f in stale if f.exists()] == []
        assert [f.name for f in [*kept, recent] if not f.exists()] == []
        assert (out / "feats.npz").read_text() == "new" and (run / "ledger.sqlite").is_file()
        # once per file and process: a file left later goes at the next command (or an explicit sweep)
        later = out / f"feats.npz.{gone.pid}-123456.tmp"
        later.write_bytes(b"")
        os.utime(later, (old, old))
        write_atomically(out / "feats.npz", "again")
        assert later.exists()
        assert sweep_stale_tmp(out / "feats.npz", force=True) == [later] and not later.exists()
        assert sweep_stale_tmp(out / "report.md") == [out / f"report.md.{gone.pid}-ffffff.tmp"]
    finally:
        alive.kill()
        alive.wait()


def test_sweeping_temporary_files_keeps_names_adakit_never_writes(tmp_path):
    """`sweep_stale_tmp` deletes files in folders of the user's (an export, ``--out``). It matched any number as the
    PID, so other programs' old files named like a date or a zero-padded counter followed by 6 or 8 hex digits
    (``backup.20240105-a1b2c3.tmp``: no process has that PID) were deleted. adakit writes ``os.getpid()``: no leading
    zero, at most 7 digits (the largest PID Linux allows is 4194304)."""
    from adakit.rundir import STALE_TMP_SECONDS, sweep_stale_tmp

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    old = os.path.getmtime(tmp_path) - STALE_TMP_SECONDS - 60
    users = [tmp_path / "f.20240105-a1b2c3.tmp", tmp_path / "f.0099999-a1b2c3.tmp",
             tmp_path / f"f.0{gone.pid}-a1b2c3.tmp", tmp_path / ".f.20240105.0a1b2c3d.tmp",
             tmp_path / ".f.0099999.0a1b2c3d.tmp", tmp_path / "f.12345678-a1b2c3.tmp"]
    stale = [tmp_path / f"f.{gone.pid}-a1b2c3.tmp", tmp_path / f".f.{gone.pid}.0a1b2c3d.tmp"]
    for f in users + stale:
        f.write_bytes(b"")
        os.utime(f, (old, old))
    assert sorted(sweep_stale_tmp(tmp_path / "f")) == sorted(stale)
    assert [f.name for f in users if not f.exists()] == []


def test_check_finds_dangling_corrections_and_counts_first_answers_right(led, tmp_path):
    """A correction row pointing at a label row that does not exist passed `check` (SQLite's integrity_check does
    not check foreign keys); two equal first answers for one id were reported as 'labelled 1 times'."""
    from adakit.ledger import check_run

    led.record_labels({"s0": 1, "s1": 2}, "a")
    led.record_labels({"s1": 0}, "b", correction=True)
    assert led.check() == []
    _damage(led, "UPDATE labels SET correction_of=999 WHERE correction_of IS NOT NULL",
            "INSERT INTO labels (sample_id, label, annotator, created) VALUES ('s0', 1, 'x', 'now')")
    problems = led.check()
    assert any("'s1'" in p and "correction of label row 999, which does not exist" in p for p in problems), problems
    assert any("'s0' has 2 first answers without a correction record" in p for p in problems), problems
    # `adakit ledger check` on a damaged file does not tell the user to run `adakit ledger check`
    run = tmp_path / "run"
    run.mkdir()
    data = led.path.read_bytes()
    (run / "ledger.sqlite").write_bytes(data[: len(data) // 2])
    res = check_run(run)
    assert not res.ok and "truncated" in res.problems[0] and "restore ledger.sqlite" in res.problems[0]
    assert "ledger check" not in res.problems[0], res.problems

"""Run-folder safety: the ``run.lock`` file lock, ``--out`` checks, the stored config, checkpoints.

* `run_lock` — one writer per run folder. ``run.lock`` holds an exclusive ``fcntl.flock`` on an open file
  descriptor, so the OS releases it when the holder exits or is killed (even by SIGKILL): a lock file left
  behind never blocks. The file records the holder's PID and start time for the "in use" message. Taken by
  `adakit run`, `resume`, `query` and by `ActiveLoop` whenever it trains or writes rounds. The labelling
  page and `import-labels` do *not* take it: they only add answers, each in its own SQLite transaction,
  which is safe next to a running loop (the loop reads the labels it needs when a round starts).
* `check_out_dir` — `adakit run --out` refuses a folder that is not empty and holds no run, a file, or a
  path under a file, before any work.
* `stored_config` — the config a run folder's ledger holds, read without writing anything.
* `load_checkpoint` / `clean_checkpoints` — named errors for missing or unreadable checkpoints, and removal
  of the files a killed process left behind.
* `replaced_atomically` — files written whole; `sweep_stale_tmp` removes the temporary files a killed process left
  while writing the same file.
"""

from __future__ import annotations

import errno
import os
import pickle
import re
import secrets
import sqlite3
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from adakit.errors import AdakitError, ConfigError, DataError, LedgerError

LOCK_NAME = "run.lock"
LEDGER_NAME = "ledger.sqlite"
#: files a run folder may hold before it is a run (a lock file from a run that failed before its ledger)
_IGNORABLE = {LOCK_NAME}


class RunInUseError(AdakitError):
    """Another process holds the run folder's ``run.lock``."""


class CheckpointError(DataError, RuntimeError):
    """A checkpoint the ledger names is missing or unreadable.

    Also a `RuntimeError`, so callers that treat model weights as optional (the labelling page's
    suggestions) keep falling back as they do for other load failures.
    """


# -- the lock ---------------------------------------------------------------------------------------
_held: dict[str, list] = {}  # lock file (real path) -> [open file, depth]; re-entrant within one process
_held_guard = threading.Lock()


def _forget_in_child() -> None:
    """In a forked child (DataLoader workers): close the inherited lock descriptors, which the parent still holds,
    so that the lock ends with the parent (a SIGKILL of the run left it held by workers that had not yet noticed,
    and resume said the run was in use by the dead process)."""
    global _held_guard
    for fh, _ in list(_held.values()):
        try:
            fh.close()
        except OSError:
            pass
    _held.clear()
    _held_guard = threading.Lock()  # (another thread may have held it at the fork)


os.register_at_fork(after_in_child=_forget_in_child)


def _holder(lock_file: Path) -> str:
    try:
        text = lock_file.read_text(errors="replace").split("\n")
    except OSError:
        return "another process"
    pid = text[0].strip() if text and text[0].strip().isdigit() else "?"
    started = text[1].strip() if len(text) > 1 and text[1].strip() else "?"
    return f"PID {pid} (started {started})"


def acquire(run_dir: str | Path, lock_name: str = LOCK_NAME) -> Callable[[], None]:
    """Take ``run_dir/run.lock`` (creating the folder's lock file); returns the function that releases it.

    Raises `RunInUseError` naming the holder's PID when another process holds it. Re-entrant within one
    process (nested calls share the lock; the outermost release frees it). ``lock_name``: another lock file
    in the folder (`adakit data prepare` locks its output folder with one).
    """
    import fcntl

    lock_file = Path(run_dir) / lock_name
    key = os.path.realpath(lock_file)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            return lambda: _release(key)
        try:
            fh = open(lock_file, "a+")  # noqa: SIM115 - kept open while the lock is held
        except OSError as e:
            raise ConfigError(f"cannot create the lock file {lock_file}: {e.strerror or e}; check that the "
                              "folder is writable") from None
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            fh.close()
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ConfigError(f"cannot lock {lock_file}: {e.strerror or e}") from None
            raise RunInUseError(f"{Path(run_dir)} is in use by {_holder(lock_file)}; wait for it or stop it "
                                f"(the lock is released when that process ends)") from None
        fh.seek(0)
        fh.truncate()
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        fh.write(f"{os.getpid()}\n{started}\n")
        fh.flush()
        _held[key] = [fh, 1]
    return lambda: _release(key)


def holder(run_dir: str | Path) -> str | None:
    """Who holds ``run_dir``'s run lock now ("PID … (started …)"), or None when no process does; the folder and
    its lock file are only read (a read-only run folder works)."""
    import fcntl

    try:
        fh = open(Path(run_dir) / LOCK_NAME)  # noqa: SIM115 - closed below
    except OSError:
        return None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        return _holder(Path(run_dir) / LOCK_NAME) if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN) else None
    finally:
        fh.close()
    return None


def _release(key: str) -> None:
    with _held_guard:
        entry = _held.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _held[key]
            entry[0].close()  # closing the descriptor releases the flock; the file stays (see module doc)


@contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir/run.lock`` for the block (see `acquire`)."""
    release = acquire(run_dir)
    try:
        yield
    finally:
        release()


F = TypeVar("F", bound=Callable[..., Any])


def locked(method: F) -> F:
    """Decorator for methods of objects with a ``run_dir``: hold the run lock while the method runs."""
    @wraps(method)
    def wrapper(self, *args, **kwargs):
        from adakit import distributed

        if not distributed.is_main():  # torchrun: rank 0 holds the lock for the run's processes
            return method(self, *args, **kwargs)
        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        with run_lock(self.run_dir):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


# -- files written whole -----------------------------------------------------------------------------
LEDGER_FILES = ("ledger.sqlite", "ledger.sqlite-wal", "ledger.sqlite-shm", "ledger.sqlite-journal")


def check_not_ledger(path: str | Path, flag: str = "the output") -> None:
    """`ConfigError` when ``path`` (links followed) is a run's ledger or one of SQLite's files beside it: no export,
    report or prediction may replace the labels people gave, ``--force`` or not."""
    real = Path(path).expanduser().resolve()
    if real.name in LEDGER_FILES and (real.exists() or (real.parent / LEDGER_FILES[0]).exists()):
        raise ConfigError(f"{flag} {path} is a run's ledger ({real}), which holds its labels; it is never replaced. "
                          "Choose another file name")


#: a temporary file of a write is left alone this long after its last change, whatever its PID (a writer on another
#: host of a shared folder has a PID this host does not know; adakit's writes change their file at least this often)
STALE_TMP_SECONDS = 15 * 60
#: the PID in adakit's temporary file names, as ``os.getpid()`` writes it: no leading zero, at most 7 digits (Linux
#: allows PIDs up to 4194304), so that files named with a date or a zero-padded counter never match
_PID = r"([1-9]\d{0,6})"
#: target files whose temporary files this process has looked for (`sweep_stale_tmp`: once per file)
_swept: set[str] = set()


def _pid_alive(pid: int) -> bool:
    """Whether a process of ``pid`` runs on this host (this process, or one that cannot be signalled, counts)."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except (ProcessLookupError, OverflowError):  # none, or a PID this system cannot have
        return False
    except OSError:  # PermissionError: another user's process; anything else: taken as running
        return True
    return True


def sweep_stale_tmp(path: str | Path, force: bool = False) -> list[Path]:
    """Remove the temporary files that writes of ``path`` killed midway left beside it (a process is killed while it
    writes: `replaced_atomically` cannot remove its ``<name>.<pid>-<6 hex>.tmp``, nor a new ledger's creation its
    ``.<name>.<pid>.<8 hex>.tmp`` with SQLite's ``-journal``); returns the removed paths. Removed: only files named
    as adakit names the temporary files of ``path`` itself, whose PID is no live process on this host and that have
    not changed for `STALE_TMP_SECONDS`; a live writer's file (of this process, or of another one running), other
    files of the folder and files named for other targets are never touched. Done once per file per process
    (``force``: again); a file that cannot be removed is left, silently."""
    path = Path(path)
    key = os.path.realpath(path)
    if key in _swept and not force:
        return []
    _swept.add(key)
    name = re.escape(path.name)
    pattern = re.compile(rf"(?:{name}\.{_PID}-[0-9a-f]{{6}}\.tmp|\.{name}\.{_PID}\.[0-9a-f]{{8}}\.tmp(?:-journal)?)")
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return []
    now = time.time()
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or now - entry.stat(follow_symlinks=False).st_mtime \
                    < STALE_TMP_SECONDS or _pid_alive(int(m.group(1) or m.group(2))):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(path.parent / entry.name)
    return removed


@contextmanager
def replaced_atomically(path: str | Path, binary: bool = False, replace: bool = True) -> Iterator[Any]:
    """A file object for ``path``'s new content: written to ``<path>.<pid>-<random>.tmp`` (one per writer: two
    processes writing the same path each write their own whole file) and renamed over ``path`` when the block
    ends, so a killed process leaves the old file or the new one. With ``replace=False`` a ``path`` that
    appeared meanwhile (another process wrote it) is kept and a `ConfigError` says so. A write that fails (a full
    disk, a read-only folder) removes the temporary file, leaves ``path`` as it was and raises `DataError` naming
    it. A run's ledger is never the target (`check_not_ledger`). The temporary files of writes a killed process
    left for ``path`` are removed first (`sweep_stale_tmp`)."""
    check_not_ledger(path)
    path = Path(path)
    sweep_stale_tmp(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp")
    try:
        with tmp.open("wb") if binary else tmp.open("w", newline="", encoding="utf-8") as fh:
            yield fh
        if replace:
            os.replace(tmp, path)
        else:
            _link_new(tmp, path)
            tmp.unlink()
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise DataError(f"cannot write {path} ({e.strerror or e}); no partial file is left: free some space or "
                            "choose a writable folder, then run the command again") from None
        raise


def _link_new(tmp: Path, path: Path) -> None:
    """``tmp``'s file at ``path`` too, unless ``path`` exists (atomically, by a hard link; on a file system without
    them, checked just before the rename)."""
    taken = ConfigError(f"{path} was written by another process while this one worked; it is kept as it is and "
                        "this result is not saved: run again with --force (overwrite=True) to replace it, or choose "
                        "another file")
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise taken from None
    except OSError:  # no hard links here (some network and FAT file systems)
        if path.exists():
            raise taken from None
        os.replace(tmp, path)


def write_atomically(path: str | Path, text: str) -> None:
    """``text`` as ``path``'s content, written whole (`replaced_atomically`)."""
    with replaced_atomically(path) as fh:
        fh.write(text)


#: first words of the line `mark_out_of_date` puts on a table that a running command will replace
OUT_OF_DATE = "> **Out of date**"


def mark_out_of_date(path: str | Path, command: str) -> None:
    """Put a line on top of ``path`` (a markdown table an earlier ``command`` wrote, if any) saying it is out of
    date while ``command`` runs again in its folder: the table is replaced when the command finishes, and a reader
    meanwhile (or after the command was stopped) is not led to take the old table for the new one. A line an
    earlier start left is replaced, not repeated."""
    path = Path(path)
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    if text.startswith(OUT_OF_DATE):
        text = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    write_atomically(path, f"{OUT_OF_DATE} (since {when}): `{command}` started again in this folder; this table is "
                           "what it wrote before. The command replaces it when it finishes; if the command was "
                           "stopped, run it again to finish (finished runs are not trained again).\n\n" + text)


# -- run folders ------------------------------------------------------------------------------------
def stored_config(run_dir: str | Path, required: bool = True) -> dict | None:
    """The config stored in ``run_dir``'s ledger, read without writing anything.

    `LedgerError` when the ledger is unreadable or not an adakit ledger. When it holds no config (a run
    killed right after creating its ledger): `ConfigError` if ``required``, else None. Never falls back to
    a default config.
    """
    from adakit.ledger import Ledger

    run_dir = Path(run_dir)
    path = run_dir / LEDGER_NAME
    if not run_dir.exists():
        raise ConfigError(f"{run_dir} does not exist: give the folder of a run (`adakit run --out` made it)")
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no {LEDGER_NAME}); start one with `adakit run`")
    try:
        led = Ledger.read_only(path)
        try:
            values = led.get_meta("config")
            version = led.get_meta("schema_version")
        finally:
            led.close()
    except sqlite3.Error as e:
        raise LedgerError(f"{path} is not a readable adakit ledger ({e}); check it with `adakit ledger check "
                          f"{run_dir}`, restore it from a backup, or start a new run in another folder") from None
    except ValueError as e:  # a meta value that is not JSON
        raise LedgerError(f"{path}: its stored config is not valid JSON ({e}); the ledger is damaged") from None
    if version is None:
        raise LedgerError(f"{path} is not an adakit ledger (no schema_version); check it with `adakit ledger "
                          f"check {run_dir}` or start a new run in another folder")
    if values is None:
        if required:
            raise ConfigError(f"{path} holds no stored config (its run was stopped before it started); "
                              f"start it again with `adakit run CONFIG --out {run_dir}`")
        return None
    if not isinstance(values, dict):
        raise LedgerError(f"{path}: the stored config is a {type(values).__name__}, not a mapping; the ledger "
                          "is damaged")
    return _unused_legacy_values(values)


def _unused_legacy_values(values: dict) -> dict:
    """A stored config with the legacy values its run never read replaced by today's defaults, so that it loads
    and compares equal to the same config today: ``anchor.k: null`` (stored by adakit before 2026-12-02) without
    LAA, ``model.weights`` beside ``model.backbone: identity`` (ignored by adakit before 2026-12-04, refused
    since: the identity backbone has no weights), a ``model.dropout`` that no layer applied (a backbone other
    than mlp with ``model.bottleneck_dim: 0``; ignored before 2026-12-05, refused since), and the settings
    `adakit.config.unread_settings` refuses since 2026-12-05: ``model.hidden_dim`` without the mlp backbone,
    ``model.temperature`` without the cosine head, ``train.backbone_lr_mult`` without a pretrained backbone."""
    anchor = values.get("anchor")
    if isinstance(anchor, dict) and "k" in anchor and anchor["k"] is None and anchor.get("kind", "none") != "laa":
        values = {**values, "anchor": {**anchor, "k": 10}}
    model = values.get("model")
    if isinstance(model, dict) and model.get("backbone") == "identity" and model.get("weights"):
        values = {**values, "model": {**model, "weights": None}}
    model = values.get("model")
    if isinstance(model, dict) and model.get("backbone", "mlp") != "mlp" and model.get("bottleneck_dim") == 0 \
            and isinstance(model.get("dropout"), int | float) and model["dropout"] > 0:
        values = {**values, "model": {**model, "dropout": 0.0}}
    return _unread_as_default(values)


def _unread_as_default(values: dict) -> dict:
    """A stored config with the settings its run never read (`adakit.config.unread_settings`) at their defaults."""
    from adakit.config import (
        ModelConfig,
        TrainConfig,
        objective_head,
        reads_backbone_lr_mult,
        reads_hidden_dim,
        reads_temperature,
    )

    model, train = values.get("model"), values.get("train")
    if not isinstance(model, dict):
        return values
    backbone = model.get("backbone", ModelConfig.model_fields["backbone"].default)
    unread = {}
    if "hidden_dim" in model and not reads_hidden_dim(backbone):
        unread["hidden_dim"] = ModelConfig.model_fields["hidden_dim"].default
    if "temperature" in model:
        try:
            head = objective_head(values.get("objective") or {})
        except Exception:  # noqa: BLE001 - an objective that does not validate: left as stored (validation names it)
            head = "cosine"
        if not reads_temperature(model.get("head", ModelConfig.model_fields["head"].default), head):
            unread["temperature"] = ModelConfig.model_fields["temperature"].default
    if unread:
        values = {**values, "model": {**model, **unread}}
    if isinstance(train, dict) and "backbone_lr_mult" in train \
            and not reads_backbone_lr_mult(backbone, model.get("weights")):
        default = TrainConfig.model_fields["backbone_lr_mult"].default
        values = {**values, "train": {**train, "backbone_lr_mult": default}}
    return values


#: keys added to the config since runs were first stored, with the value that reproduces a run stored without them
#: (where it differs from today's default): runs before 2026-12-03 trained with the foreach SGD kernel
ADDED_KEYS = {("train", "fused_sgd"): False}


def _absent(values: dict) -> dict:
    """The `ADDED_KEYS` a stored config lacks, with the value its run ran with."""
    return {(s, k): v for (s, k), v in ADDED_KEYS.items() if isinstance(values.get(s), dict) and k not in values[s]}


def _with(values: dict, keys: dict) -> dict:
    out = dict(values)
    for (section, key), value in keys.items():
        out[section] = {**out[section], key: value}
    return out


def as_stored(values: dict) -> dict:
    """A stored config with the `ADDED_KEYS` it lacks set as the stored run ran, so it resumes as it started."""
    return _with(values, _absent(values)) if isinstance(values, dict) else values


def continued_config(stored: dict, cfg: Any) -> Any:
    """The config a stored run continues with when ``cfg`` (an `ExperimentConfig`) asks for the same run, else None.

    The same run: equal configs once the `ADDED_KEYS` the stored config lacks take its run's value in both (a
    config written before a key existed, given again, continues the stored run as it started), except the
    `SWITCHABLE_KEYS`, which take ``cfg``'s value (a run labelled through files may go on with a function, a
    run stopped on one machine may go on with more threads or without a logger whose server is gone).
    """
    from adakit.config import build_config

    stored = _unused_legacy_values(stored)
    old = build_config(_with(stored, _absent(stored)))  # (an invalid stored config is a ConfigError here)
    if config_changes(stored, cfg, ignore=SWITCHABLE_KEYS):
        return None
    for key in SWITCHABLE_KEYS:
        section, _, field = key.partition(".")
        value = getattr(cfg, section)
        if field:
            value = getattr(old, section).model_copy(update={field: getattr(value, field)})
        old = old.model_copy(update={section: value})
    return old


#: config keys that change how a run executes, not what it computes: runs differing only in these are one
#: experiment (a bench re-run on more threads, a report over runs on "cpu" and "auto")
EXECUTION_KEYS = ("train.device", "train.threads", "train.eval_batch_size", "log")

#: config keys a run may change when it continues: where its answers come from (files, a function, the
#: target's labels; every answer is in the ledger whichever oracle gave it), and the `EXECUTION_KEYS`
SWITCHABLE_KEYS = ("oracle", *EXECUTION_KEYS)


def _built(values: dict) -> dict:
    """A config dict as the config it builds (defaults of keys added since it was stored filled in, values
    normalised); as it is when it does not validate."""
    from adakit.config import build_config

    try:
        return build_config(values).to_dict()
    except ConfigError:
        return values


def config_changes(stored: dict, cfg: Any, limit: int = 4, ignore: tuple[str, ...] = ()) -> str:
    """The keys where ``cfg`` (an `ExperimentConfig` or a stored config dict) differs from a stored run's config,
    as ``section.key: stored → given`` (at most ``limit``, then a count), for an error message; "" when none.
    Both sides are compared as the configs they build, and keys the stored config lacks (`ADDED_KEYS`) take its
    run's value in both (so "" exactly when `continued_config` continues the run); keys under a prefix in
    ``ignore`` are not compared."""
    stored = _unused_legacy_values(stored) if isinstance(stored, dict) else stored
    absent = _absent(stored)
    old = _built(_with(stored, absent))
    new = _with(_built(as_stored(cfg)) if isinstance(cfg, dict) else cfg.to_dict(), absent)

    def flat(d: Any, prefix: str = "") -> dict:
        if not isinstance(d, dict) or not d:  # (an empty mapping is a value, as for ==)
            return {prefix: d}
        out: dict = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out

    a, b = flat(old), flat(new)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k, "(unset)") != b.get(k, "(unset)")
            and not any(k == p or k.startswith(p + ".") for p in ignore)]
    shown = "; ".join(f"{k}: {a.get(k, '(unset)')!r} → {b.get(k, '(unset)')!r}" for k in keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def sh(path: str | Path) -> str:
    """``path`` as a shell word, for commands shown in messages (a folder with spaces or quotes still pastes)."""
    import shlex

    return shlex.quote(str(path))


def resume_hint(run_dir: str | Path, from_objects: bool) -> str:
    """How to continue a stopped run: `adakit resume`, or `ActiveLoop.resume` for a run started from Python objects."""
    return f"ActiveLoop.resume({str(run_dir)!r}, ...) with the same objects" if from_objects else \
        f"`adakit resume {sh(run_dir)}`"


def stored_experiment(run_dir: str | Path):
    """`stored_config` validated into an `ExperimentConfig` (errors name the ledger)."""
    from adakit.config import build_config

    values = as_stored(stored_config(run_dir))
    try:
        return build_config(values)
    except ConfigError as e:
        raise ConfigError(f"{Path(run_dir) / LEDGER_NAME}: the stored config is not valid for this adakit: "
                          f"{e}") from None


def existing_ancestor(path: Path) -> Path:
    """The nearest folder above ``path`` that exists (or a file there, which no folder can be created under)."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def check_folder_path(path: Path, flag: str = "--out", what: str = "the run") -> None:
    """Refuse ``path`` as a folder to write ``what`` into when it is a file or lies under one (`ConfigError`)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder; choose a folder for {what}")
    parent = existing_ancestor(path)
    if not path.exists() and not parent.is_dir():
        raise ConfigError(f"{flag} {path}: {parent} is a file, so no folder can be created under it; choose a "
                          f"folder elsewhere for {what}")


def check_writable_folder(path: Path, flag: str = "--out", what: str = "the run") -> None:
    """`check_folder_path`, and refuse a folder that cannot be written (``path``, or the nearest folder above it
    when it is yet to be created)."""
    check_folder_path(path, flag, what)
    _check_writable(path, flag, what)


def _check_writable(path: Path, flag: str, what: str) -> None:
    where = path if path.exists() else existing_ancestor(path)
    if not os.access(where, os.W_OK | os.X_OK):
        why = "the folder is not writable" if where == path else f"cannot create it, {where} is not writable"
        raise ConfigError(f"{flag} {path}: {why}; choose a writable folder for {what}")


def check_out_dir(out_dir: str | Path, flag: str = "--out") -> bool:
    """Check a run folder (``adakit run --out``, ``ActiveLoop(run_dir=...)``) before any work; True when it
    already holds a run. ``flag`` names the folder's option in the messages.

    Allowed: an absent folder (under a creatable path), an empty one, or a run folder. Refused with a
    `ConfigError`: a file, a path under a file, an unwritable parent, or a non-empty folder that is not a run
    (its files would be overwritten). A damaged ledger gives `LedgerError`.
    """
    out_dir = Path(out_dir)
    choose = f"choose another {flag}"
    check_folder_path(out_dir, flag)
    if not out_dir.exists():
        _check_writable(out_dir, flag, "the run")
        return False
    if (out_dir / LEDGER_NAME).exists():
        if not (out_dir / LEDGER_NAME).is_file():
            raise ConfigError(f"{flag} {out_dir}: {out_dir / LEDGER_NAME} is not a file; {choose}")
        stored_config(out_dir, required=False)  # a damaged or foreign ledger is refused here, untouched
        return True
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in _IGNORABLE)
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ConfigError(f"{flag} {out_dir} is not empty and holds no run ({shown}); a run would overwrite its "
                          "files. Choose a new or empty folder")
    _check_writable(out_dir, flag, "the run")
    return False


# -- checkpoints ------------------------------------------------------------------------------------
_LOAD_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, KeyError,
                AttributeError, IndexError, TypeError, UnicodeDecodeError, OSError, MemoryError)


def _checkpoint_advice(run_dir: Path, r: int) -> str:
    return (f"restore it from a backup, or start the run again in a new folder (`adakit run "
            f"{run_dir / 'config.yaml'} --out NEW_FOLDER`); the labels in {run_dir / LEDGER_NAME} are intact "
            f"(round {r})")


def checkpoint_file(run_dir: str | Path, stored: str) -> Path:
    """The file of a checkpoint path stored in the ledger: relative to the run folder (so a moved run folder still
    resumes), or absolute as an earlier adakit stored it."""
    p = Path(stored)
    return p if p.is_absolute() else Path(run_dir) / p


def load_checkpoint(path: Path, r: int, run_dir: str | Path, map_location=None, name: str | None = None) -> dict:
    """Read round ``r``'s checkpoint; `CheckpointError` naming the file and what to do when it is missing or
    unreadable (truncated, garbage, not a checkpoint). ``name``: what the messages call it (default ``round r``;
    ``warm-up step K`` for a warm-up checkpoint, which belongs to round 0)."""
    import torch

    run_dir = Path(run_dir)
    what = name or f"round {r}"
    if not path.is_file():
        raise CheckpointError(f"checkpoint of {what} is missing: {path}; " + _checkpoint_advice(run_dir, r))
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not ours (and unpickling
        # arbitrary bytes can do anything, from MemoryError to worse)
        raise CheckpointError(f"checkpoint of {what} is unreadable: {path} (not a torch checkpoint archive, "
                              f"{path.stat().st_size} bytes); " + _checkpoint_advice(run_dir, r))
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except _LOAD_ERRORS as e:
        raise CheckpointError(f"checkpoint of {what} is unreadable: {path} ({type(e).__name__}: {e}); "
                              + _checkpoint_advice(run_dir, r)) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint of {what} is not an adakit checkpoint: {path} (holds a "
                              f"{type(state).__name__}); " + _checkpoint_advice(run_dir, r))
    return state


def apply_checkpoint(trainer, path: Path, r: int, run_dir: str | Path, map_location=None) -> None:
    """`load_checkpoint` into ``trainer``; a state that does not fit the model is a `CheckpointError` too."""
    state = load_checkpoint(path, r, run_dir, map_location)
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"checkpoint of round {r} does not fit this run's model: {path} "
                              f"({type(e).__name__}: {str(e)[:300]}); "
                              + _checkpoint_advice(Path(run_dir), r)) from None


def clean_checkpoints(run_dir: str | Path, ledger) -> list[Path]:
    """Remove checkpoint files a killed process left behind; returns the removed paths.

    Kept: the files of the ledger's last checkpoint and of the warm-up (round 0, which `adopt_warmup`
    copies). Removed: ``*.tmp`` files (a save that did not finish) and every other ``round-*.pt`` (saved but
    not recorded, or recorded and superseded before the old one was deleted). Call with the run lock held.
    """
    run_dir = Path(run_dir)
    ck_dir = run_dir / "checkpoints"
    if not ck_dir.is_dir():
        return []
    keep = set()
    rows = ledger.conn.execute("SELECT round, path FROM checkpoints").fetchall()
    last = max((r for r, _ in rows), default=None)
    for r, p in rows:
        if r in (0, last):
            keep.add(os.path.realpath(checkpoint_file(run_dir, p)))
            keep.add(os.path.realpath(ck_dir / Path(p).name))  # an absolute path of a moved run folder (see restore)
    for row in ledger.get_meta("warmup_checkpoints", []) or []:  # train.eval_checkpoints: the saved warm-up models
        keep.add(os.path.realpath(run_dir / row["checkpoint"]))
    removed = []
    for f in ck_dir.iterdir():
        if not f.is_file():
            continue
        orphan = f.name.endswith(".tmp") or (f.suffix == ".pt" and os.path.realpath(f) not in keep)
        if orphan:
            f.unlink(missing_ok=True)
            removed.append(f)
    return removed


def run_timings(ledger, rounds: int) -> dict:
    """Timings for summary.json from the ledger rows that exist (a resumed run has no gaps shown as null).

    ``train_sec_per_iter``: of the last round with training stats (the configured last round when present);
    ``query_seconds``: seconds of each round's selection, for the rounds that recorded one.
    """
    train = None
    for r in range(max(rounds, ledger.last_round()), -1, -1):
        stats = ledger.get_meta(f"train/{r}")
        if isinstance(stats, dict) and stats.get("sec_per_iter") is not None:
            train = stats["sec_per_iter"]
            break
    last = max(rounds, ledger.last_round())
    queries = [s for s in (ledger.get_meta(f"query_seconds/{r}") for r in range(1, last + 1)) if s is not None]
    return {"train_sec_per_iter": train, "query_seconds": queries}

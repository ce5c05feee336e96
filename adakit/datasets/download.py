"""Downloading (resumable, checksum-verified) and safe archive extraction, with the standard library only.

`download` writes ``<file>.part`` and resumes it with an HTTP ``Range`` request when called again; the
file gets its final name only once it is complete and its checksum (when one is published) matches.
`extract` unpacks zip / tar / tar.gz / tar.bz2 / tar.xz refusing members that would land outside the
destination (tarfile's ``data`` filter where Python has it, an explicit path check otherwise).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import os
import tarfile
import zipfile
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from adakit.errors import DataError

CHUNK = 1 << 20


def file_hash(path: Path, algo: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: Path, sha256: str | None = None, md5: str | None = None, what: str = "") -> str:
    """Check ``path`` against the published checksum; return a note saying what was checked.

    A mismatch is a `DataError` naming both digests. Without a published checksum the note gives the
    computed sha256, so a user can compare it with a colleague's copy.
    """
    label = what or str(path)
    if sha256 is None and md5 is None:
        return f"{label}: no published checksum, computed sha256 = {file_hash(path, 'sha256')}"
    algo, want = ("sha256", sha256) if sha256 else ("md5", md5)
    got = file_hash(path, algo)
    if got.lower() != str(want).lower():
        raise DataError(f"{label}: checksum mismatch ({algo} {got}, expected {want}); the file is corrupt or "
                        "not the published release")
    return f"{label}: {algo} ok ({got})"


@contextlib.contextmanager
def _bar(total: int | None, desc: str, enabled: bool):
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from adakit.progress import console

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as p:
        task = p.add_task(desc, total=total)
        yield lambda n: p.update(task, advance=n)


def download(url: str, dest: Path, *, sha256: str | None = None, md5: str | None = None,
             progress: bool = True, timeout: float = 60.0) -> str:
    """Fetch ``url`` to ``dest`` (resuming ``dest.part``), verify it, and return the checksum note.

    An existing ``dest`` is only verified. An interrupted transfer leaves ``dest.part`` and raises a
    `DataError`; calling again resumes from its size (``Range: bytes=N-``; a server that ignores the
    range restarts from zero). A checksum mismatch deletes the partial file and raises.
    """
    dest = Path(dest)
    if dest.is_file():
        return verify_checksum(dest, sha256, md5, dest.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    start = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "adakit"}
    if start:
        headers["Range"] = f"bytes={start}-"
    done = start
    total: int | None = None
    try:
        try:
            resp = urlopen(Request(url, headers=headers), timeout=timeout)  # noqa: S310 (http/https URLs of the catalogue)
        except HTTPError as e:
            if e.code != 416 or not start:
                raise
            # 416: nothing left past the .part's size, i.e. the .part is complete
            resp = None
        if resp is not None:
            with resp:
                length = resp.headers.get("Content-Length")
                if start and resp.status == 206:
                    mode = "ab"
                else:  # 200: the server sends the whole file
                    mode, done = "wb", 0
                total = done + int(length) if length is not None else None
                with open(part, mode) as f, _bar(total, dest.name, progress) as advance:
                    if done:
                        advance(done)
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        f.write(block)
                        done += len(block)
                        advance(len(block))
    except (URLError, OSError, http.client.HTTPException, TimeoutError) as e:
        raise DataError(f"download of {url} failed after {done} bytes ({e}); run the same command again to "
                        f"resume from {part}") from None
    if total is not None and done < total:
        raise DataError(f"download of {url} was interrupted at {done} of {total} bytes; run the same command "
                        f"again to resume from {part}")
    try:
        note = verify_checksum(part, sha256, md5, dest.name)
    except DataError as e:
        part.unlink(missing_ok=True)
        raise DataError(f"{e} (downloaded from {url}; the partial file was deleted, nothing was prepared)") from None
    os.replace(part, dest)
    return note


def is_archive(path: Path) -> bool:
    """Whether ``path`` is a zip or tar file (by content, so ``.gz`` data files are not archives)."""
    path = Path(path)
    return path.is_file() and (zipfile.is_zipfile(path) or tarfile.is_tarfile(path))


#: errors of the place written to (full disk, no permission, read-only file system, a file in the way), not of the
#: archive read
WRITE_ERRORS = (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EDQUOT)


def _inside(root: Path, name: str) -> bool:
    target = (root / name).resolve()
    return target == root or root in target.parents


def extract(archive: Path, dest: Path) -> None:
    """Unpack a zip or tar archive into ``dest``; a member escaping ``dest`` (``..``, absolute path, link
    outside) or a corrupt archive is a `DataError` naming it."""
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                bad = [n for n in zf.namelist() if n.startswith(("/", "\\")) or not _inside(root, n)]
                if bad:
                    raise DataError(f"{archive}: refusing to extract member(s) outside the destination: {bad[:5]}")
                zf.extractall(root)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                # links are refused outright: the datasets' archives hold files and folders only, and a chain of
                # links with long names fools the standard library's "data" filter on Pythons before its 2025
                # fixes (a member was written outside the destination, CVE-2025-4517)
                links = [m.name for m in members if m.issym() or m.islnk()]
                if links:
                    raise DataError(f"{archive}: holds links ({links[:5]}); dataset archives hold only files and "
                                    "folders, so it is not extracted (unpack it yourself and pass the folder "
                                    "with --from if you trust it)")
                bad = [m.name for m in members if not _inside(root, m.name.lstrip("/\\"))]
                if bad:
                    raise DataError(f"{archive}: refusing to extract member(s) outside the destination: {bad[:5]}")
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(root, members=members, filter="data")
                else:  # pragma: no cover - Python without PEP 706
                    tf.extractall(root, members=members)
        else:
            raise DataError(f"{archive}: not a zip or tar archive")
    except DataError:
        raise
    except getattr(tarfile, "FilterError", DataError) as e:
        raise DataError(f"{archive}: refusing to extract an unsafe member ({e})") from None
    except OSError as e:
        if e.errno in WRITE_ERRORS:  # the destination, not the archive
            raise DataError(f"cannot extract {archive} into {dest}: {e.strerror or e}; free some space or choose a "
                            "writable --out") from None
        raise DataError(f"{archive}: corrupt or truncated archive ({e}); download it again") from None
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, ValueError, KeyError) as e:
        raise DataError(f"{archive}: corrupt or truncated archive ({e}); download it again") from None

"""``adakit data prepare``: turn a dataset's public archives (or a folder a user has) into adakit's layout.

Steps: gather the sources (extract archives safely, hard-link or copy plain files and folders) into a
staging folder under ``out``; arrange the dataset's layout there (image folders ``<domain>/<class>/<image>``,
image lists ``<domain>.txt`` + ``classes.txt``, or the digit files `adakit.data.digits` reads); check every
domain's image count against the published one and decodes every image; only then move the result into
``out``. A failed check leaves ``out`` as it was (apart from the downloads kept for a retry).
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from adakit.datasets.catalog import DatasetInfo, DomainInfo, get_dataset
from adakit.datasets.download import download, extract, verify_checksum
from adakit.errors import ConfigError, DataError
from adakit.rundir import acquire

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_SKIP = ("__MACOSX",)
Classes = Sequence[str] | None  # the class list a preparer writes (None: DomainNet derives it from its lists)


@dataclass
class PrepareResult:
    """What `prepare` wrote: the output folder, image count per domain, checksum notes and warnings."""

    name: str
    out: Path
    counts: dict[str, int]
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- helpers


def default_out(ds: DatasetInfo) -> Path:
    """``$ADAKIT_DATA/<dataset folder>`` (``digits`` for MNIST, USPS and MNIST-M)."""
    from adakit.paths import ENV_VAR

    root = os.environ.get(ENV_VAR)
    if not root:
        raise ConfigError(f"no output folder: pass --out DIR, or set {ENV_VAR} (then the data goes to "
                          f"${ENV_VAR}/{ds.default_subdir})")
    return Path(root).expanduser() / ds.default_subdir


def _select(ds: DatasetInfo, domains: Sequence[str] | None) -> list[DomainInfo]:
    if not domains:
        return list(ds.domains)
    chosen: list[DomainInfo] = []
    for name in domains:
        hits = [d for d in ds.domains if d.name == name or d.name.startswith(f"{name}_")]
        if not hits:
            raise ConfigError(f"--domain {name!r}: {ds.title} has domains {', '.join(d.name for d in ds.domains)}")
        chosen += [d for d in hits if d not in chosen]
    return chosen


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _is_archive_name(p: Path) -> bool:
    return p.name.lower().endswith(ARCHIVE_SUFFIXES)


def _skipped(folder: str, names: list[str], raw: Path | None = None) -> list[str]:
    """What `_gather` does not copy from ``folder``: archives (extracted instead) and links to a folder above, or to
    a folder holding ``raw`` (where the copy goes: --out, linked from --from), which would copy forever."""
    here = Path(folder).resolve()
    into = raw.resolve() if raw is not None else None

    def loops(p: Path) -> bool:
        if not (p.is_symlink() and p.is_dir()):
            return False
        target = p.resolve()
        return here.is_relative_to(target) or (into is not None and into.is_relative_to(target))

    return [n for n in names if _is_archive_name(p := Path(folder) / n) or loops(p)]


def _gather(sources: Sequence[Path], raw: Path) -> None:
    """Extract archives and hard-link (or copy) files and folders from ``sources`` into ``raw``."""
    raw.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(Path(s).expanduser() for s in sources):
        if not src.exists():
            raise DataError(f"--from {src}: no such file or folder")
        dest = raw / f"{i:02d}"
        if src.is_dir():
            try:
                shutil.copytree(src, dest / src.name, copy_function=_link_or_copy,
                                ignore=lambda folder, names: _skipped(folder, names, raw))
            except shutil.Error as e:
                raise DataError(f"--from {src}: cannot copy some files ({str(e)[:300]})") from None
            for arc in sorted(p for p in src.rglob("*") if p.is_file() and _is_archive_name(p)):
                extract(arc, dest / "_archives" / arc.name)
        elif _is_archive_name(src):
            extract(src, dest)
        else:
            dest.mkdir(parents=True, exist_ok=True)
            _link_or_copy(str(src), str(dest / src.name))
    _owner_writable_folders(raw)


def _owner_writable_folders(root: Path) -> None:
    """Give the owner write permission on every folder under ``root``: folders copied or extracted read-only (mode
    555 in an archive or a shared data folder) could not be moved into place, nor the staging folder removed."""
    for dirpath, _, _ in os.walk(root):
        mode = os.stat(dirpath).st_mode
        if not mode & stat.S_IWUSR:
            os.chmod(dirpath, mode | stat.S_IWUSR)


def _find(raw: Path, names: Sequence[str], want_dir: bool = True,
          accept: Callable[[Path], bool] | None = None, max_depth: int = 6) -> Path | None:
    """The shallowest folder (or file) under ``raw`` named one of ``names`` (case-insensitive)."""
    wanted = {n.lower() for n in names}
    best: tuple[int, str, Path] | None = None
    base_depth = len(raw.parts)
    for dirpath, dirnames, filenames in os.walk(raw):
        depth = len(Path(dirpath).parts) - base_depth
        dirnames[:] = [d for d in dirnames if d not in _SKIP and not d.startswith(".")]
        if depth >= max_depth:
            dirnames[:] = []
        for n in (dirnames if want_dir else filenames):
            p = Path(dirpath) / n
            if n.lower() in wanted and (accept is None or accept(p)) and (best is None or depth < best[0]):
                best = (depth, str(p), p)
    return best[2] if best else None


def _need(found: Path | None, ds: DatasetInfo, what: str) -> Path:
    if found is None:
        src = ", ".join(f.name for f in ds.files) or "the published files"
        raise DataError(f"{ds.title}: {what} not found in the sources; pass the release ({src}) or its "
                        "extracted folder with --from")
    return found


def _has_subdirs(p: Path) -> bool:
    return any(c.is_dir() for c in p.iterdir())


# ------------------------------------------------------------------------------------------- preparers


def _prep_office31(ds: DatasetInfo, raw: Path, layout: Path, chosen: list[DomainInfo], classes: Classes) -> list[str]:
    outputs = []
    for d in chosen:
        src = _need(_find(raw, [d.name]), ds, f"the {d.name}/ folder")
        if (src / "images").is_dir():
            src = src / "images"
        dst = layout / ds.layout.format(domain=d.name)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        outputs.append(f"images/{d.name}")
    return outputs


def _prep_officehome(ds: DatasetInfo, raw: Path, layout: Path, chosen: list[DomainInfo], classes: Classes) -> list[str]:
    for d in chosen:
        src = _need(_find(raw, [d.name, d.name.replace("_", " ")], accept=_has_subdirs), ds, f"the {d.name}/ folder")
        layout.mkdir(parents=True, exist_ok=True)
        os.replace(src, layout / d.name)
    return [d.name for d in chosen]


def _write_classes(layout: Path, classes: Sequence[str]) -> None:
    (layout / "classes.txt").write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")


def _prep_visda(ds: DatasetInfo, raw: Path, layout: Path, chosen: list[DomainInfo], classes: Classes) -> list[str]:
    from adakit.data.images import find_images, junk_folder, refuse_unusable_names

    folders = {"synthetic": "train", "real": "validation"}
    classes = list(classes)
    index = {c: i for i, c in enumerate(classes)}
    layout.mkdir(parents=True, exist_ok=True)
    outputs = ["classes.txt"]
    for d in chosen:
        sub = folders[d.name]
        src = _need(_find(raw, [sub], accept=lambda p: any((p / c).is_dir() for c in classes)),
                    ds, f"the {sub}/ folder ({d.name} domain)")
        os.replace(src, layout / sub)
        lines = []
        for cdir in sorted(p for p in (layout / sub).iterdir() if p.is_dir() and not junk_folder(p.name)):
            if cdir.name not in index:
                raise DataError(f"{ds.title} {d.name}: folder {cdir.name!r} is not one of the classes "
                                f"{', '.join(classes)}")
            found = find_images(cdir)
            refuse_unusable_names(found, layout, f"{ds.title} {d.name}")  # the list is UTF-8 text, one per line
            lines += [f"{p.relative_to(layout).as_posix()} {index[cdir.name]}\n" for p in found]
        (layout / f"{d.name}.txt").write_text("".join(lines), encoding="utf-8")
        outputs += [sub, f"{d.name}.txt"]
    _write_classes(layout, classes)
    return outputs


def _prep_domainnet(ds: DatasetInfo, raw: Path, layout: Path, chosen: list[DomainInfo], classes: Classes) -> list[str]:
    layout.mkdir(parents=True, exist_ok=True)
    names: dict[int, str] = {}
    outputs, moved = [], set()
    for d in chosen:
        dom = d.name.rsplit("_", 1)[0]
        lst = _need(_find(raw, [f"{d.name}.txt"], want_dir=False), ds, f"the list {d.name}.txt")
        try:
            text = lst.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{lst}: not a UTF-8 text file ({err}); use the list from the DomainNet release") from None
        for n, line in enumerate(text.splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].isdigit() or len(parts[0].split("/")) < 3:
                raise DataError(f"{lst}, line {n}: expected '<domain>/<class>/<image> <label>', got {line!r}")
            label, cname = int(parts[1]), parts[0].split("/")[1]
            if names.setdefault(label, cname) != cname:
                raise DataError(f"{lst}, line {n}: label {label} is class {cname!r} here but {names[label]!r} "
                                "elsewhere in the lists")
        (layout / f"{d.name}.txt").write_text(text, encoding="utf-8")
        outputs.append(f"{d.name}.txt")
        if dom not in moved:
            src = _need(_find(raw, [dom], accept=_has_subdirs), ds, f"the {dom}/ image folder ({dom}.zip)")
            os.replace(src, layout / dom)
            moved.add(dom)
            outputs.append(dom)
    if classes is None:
        gaps = sorted(set(range(max(names) + 1)) - set(names)) if names else []
        if gaps:
            raise DataError(f"{ds.title}: the lists name no class for label(s) {gaps[:10]}; prepare both splits of "
                            "a domain (or pass the full lists) so classes.txt can be written")
        classes = [names[i] for i in range(len(names))]
    _write_classes(layout, classes)
    return outputs + ["classes.txt"]


def _copy_gz(src: Path, dst: Path) -> None:
    if src.suffix == ".gz":
        shutil.copyfile(src, dst)
    else:
        with open(src, "rb") as f, gzip.open(dst, "wb") as g:
            shutil.copyfileobj(f, g)


def _prep_mnist(ds: DatasetInfo, raw: Path, layout: Path, chosen: list[DomainInfo], classes: Classes) -> list[str]:
    layout.mkdir(parents=True, exist_ok=True)
    outputs = []
    for f in ds.files:
        if f.domains and not set(f.domains) & {d.name for d in chosen}:
            continue
        src = _need(_find(raw, [f.name, f.name[:-3]], want_dir=False), ds, f.name)
        _copy_gz(src, layout / f.name)
        outputs.append(f.name)
    return outputs


def _svmlight_to_usps_text(src: Path, dst: Path) -> None:
    """LIBSVM's usps / usps.t (labels 1..10, 256 values in [-1, 1]) -> Hastie's text format (digit, 256 values)."""
    from sklearn.datasets import load_svmlight_file

    try:
        x, y = load_svmlight_file(str(src), n_features=256)
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{src}: not a LIBSVM usps file ({e})") from None
    table = np.column_stack([y - 1, x.toarray()])
    with gzip.open(dst, "wt", encoding="ascii") as g:
        np.savetxt(g, table, fmt=["%d"] + ["%.6f"] * 256)


def _prep_usps(ds: DatasetInfo, raw: Path, layout: Path, chosen: list[DomainInfo], classes: Classes) -> list[str]:
    layout.mkdir(parents=True, exist_ok=True)
    alt = {"usps-train": ("zip.train.gz", "usps.bz2", "usps"), "usps-test": ("zip.test.gz", "usps.t.bz2", "usps.t")}
    outputs = []
    for d in chosen:
        text, *libsvm = alt[d.name]
        found = _find(raw, [text], want_dir=False)
        if found is not None:
            shutil.copyfile(found, layout / text)
        else:
            src = _need(_find(raw, libsvm, want_dir=False), ds, f"{text} or {libsvm[0]} ({d.name})")
            _svmlight_to_usps_text(src, layout / text)
        outputs.append(text)
    return outputs


def _png_folder_to_npz(folder: Path, labels: Path, dst: Path) -> None:
    from PIL import Image

    xs, ys = [], []
    for n, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise DataError(f"{labels}, line {n}: expected '<file>.png <digit>', got {line!r}")
        p = folder / parts[0]
        try:
            with Image.open(p) as im:
                xs.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        except (OSError, SyntaxError, ValueError) as e:
            raise DataError(f"MNIST-M: cannot read image {p} ({labels.name} line {n}): {e}") from None
        ys.append(int(parts[1]))
    if not xs:
        raise DataError(f"{labels}: lists no images")
    shapes = {x.shape for x in xs}
    if len(shapes) > 1:
        raise DataError(f"MNIST-M {folder}: images of different sizes {sorted(shapes)[:3]}")
    np.savez(dst, X=np.stack(xs), y=np.asarray(ys, dtype=np.int64))


def _prep_mnistm(ds: DatasetInfo, raw: Path, layout: Path, chosen: list[DomainInfo], classes: Classes) -> list[str]:
    layout.mkdir(parents=True, exist_ok=True)
    outputs = []
    for d in chosen:
        split = "train" if d.name.endswith("train") else "test"
        target = f"mnistm_{split}.npz"
        ready = _find(raw, [target], want_dir=False)
        if ready is not None:
            shutil.copyfile(ready, layout / target)
        else:
            folder = _need(_find(raw, [f"mnist_m_{split}"]), ds, f"the mnist_m_{split}/ folder")
            labels = _need(_find(raw, [f"mnist_m_{split}_labels.txt"], want_dir=False), ds,
                           f"mnist_m_{split}_labels.txt")
            _png_folder_to_npz(folder, labels, layout / target)
        outputs.append(target)
    return outputs


PREPARERS = {"office31": _prep_office31, "officehome": _prep_officehome, "visda": _prep_visda,
             "domainnet": _prep_domainnet, "mnist": _prep_mnist, "usps": _prep_usps, "mnistm": _prep_mnistm}


# -------------------------------------------------------------------------------------------- checking


def _unreadable(paths: Sequence[str], root: Path) -> list[str]:
    """Paths of images that cannot be decoded (`check_decodes`: truncated files too), with the reason, named
    relative to ``root`` (the staging folder they are read from is removed afterwards)."""
    from adakit.data.images import check_decodes

    bad = []
    for p in paths:
        why = check_decodes(str(p))
        if why is not None:
            full = str(Path(p).resolve())
            inside = str(Path(full).relative_to(root.resolve())) if Path(full).is_relative_to(root.resolve()) else p
            bad.append(f"{inside} ({why.replace(full, inside).replace(str(p), inside)})")
    return bad


def _short(items: Sequence[str], n: int = 10) -> str:
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def _check(ds: DatasetInfo, layout: Path, chosen: list[DomainInfo], expected: dict[str, tuple[int, bool]],
           classes: Sequence[str] | None, verify_images: bool) -> tuple[dict[str, int], list[str]]:
    """Count every domain with adakit's own loader; compare with the published counts; decode every image."""
    from adakit.data.digits import load_digits
    from adakit.data.images import load_image_folder, load_image_list

    cfg = SimpleNamespace(image_size=None, resize=None, root=None, verify_images=False)
    errors, warnings, counts = [], [], {}
    for d in chosen:
        label = f"{ds.title} {d.name}"
        if ds.kind == "digits":
            dom = load_digits(layout, d.name)
            paths: list[str] = []
        elif ds.kind == "image_folder":
            dom = load_image_folder(layout / ds.layout.format(domain=d.name), d.name, cfg)
            paths = list(dom.paths)
        else:
            lst = layout / ds.layout.format(domain=d.name)
            entries = [ln.rsplit(maxsplit=1)[0] for ln in lst.read_text(encoding="utf-8").splitlines() if ln.strip()]
            missing = [e for e in entries if not (layout / e).is_file()]
            if missing:
                errors.append(f"{label}: {len(missing)} of {len(entries):,} listed images missing: "
                              f"{_short(missing, 5)}")
                counts[d.name] = len(entries) - len(missing)
                continue
            dom = load_image_list(lst, d.name, cfg)
            paths = list(dom.paths)
        n = len(dom.y)
        counts[d.name] = n
        want, certain = expected[d.name]
        ref = classes if classes is not None else ds.classes
        unknown = [c for c in dom.classes if c not in ref] if ref and ds.kind == "image_folder" else []
        if unknown:  # a renamed class folder: the counts may still match, the class lists of the domains would not
            msg = (f"{label}: class folder(s) not in the release's class list: {_short(unknown, 5)} (its classes: "
                   f"{_short(list(ref), 5)}); rename them as in the release")
            (errors if certain else warnings).append(msg)
        if n != want:
            msg = f"{label}: {n:,} images, expected {want:,}"
            present = {dom.classes[i] for i in np.unique(dom.y[dom.y >= 0])}
            lacking = [c for c in (ref or []) if c not in present]
            if lacking:
                msg += f"; missing classes: {_short(lacking)}"
            if certain:
                errors.append(msg)
            else:
                warnings.append(msg + " (the published count is not confirmed; check the release)")
        bad = _unreadable(paths, layout) if verify_images else []
        if bad:
            errors.append(f"{label}: {len(bad)} unreadable image(s), as found in the archive or folder given: "
                          f"{_short(bad, 5)}")
    if errors:
        raise DataError("; ".join(errors) + ". Nothing was written to the output folder; replace the archive(s) "
                        "or files named and run the command again.")
    return counts, warnings


# ---------------------------------------------------------------------------------------------- prepare


def fetch(ds: DatasetInfo, chosen: list[DomainInfo], download_dir: Path, progress: bool = True,
          base_url: str | None = None) -> tuple[list[Path], list[str]]:
    """Download the files ``chosen`` needs into ``download_dir`` (resumable, checksum-verified).

    ``base_url`` replaces each file's folder URL (for a mirror, and for tests against a local server).
    """
    names = {d.name for d in chosen}
    files = [f for f in ds.files if not f.domains or set(f.domains) & names]
    if any(f.url is None for f in files) and base_url is None:
        raise DataError(f"{ds.title} has no direct public download: {ds.manual} ({ds.homepage}), then run "
                        f"`adakit data prepare {ds.name} --from <the file or its folder>`")
    paths, notes = [], []
    for f in files:
        url = f"{base_url.rstrip('/')}/{f.name}" if base_url else str(f.url)
        dest = Path(download_dir) / f.name
        notes.append(download(url, dest, sha256=f.sha256, md5=f.md5, progress=progress))
        paths.append(dest)
    return paths, notes


def prepare(name: str, out: str | os.PathLike | None = None, sources: Sequence[str | os.PathLike] | None = None, *,
            domains: Sequence[str] | None = None, expected: Mapping[str, int] | None = None,
            classes: Sequence[str] | None = None, force: bool = False, verify_images: bool = True,
            check_checksums: bool = True, progress: bool = True, download_dir: str | os.PathLike | None = None,
            base_url: str | None = None) -> PrepareResult:
    """Prepare dataset ``name`` into ``out`` from ``sources`` (archives / folders), or download it.

    ``domains`` restricts to some domains (DomainNet: ``clipart`` = both its splits). ``expected``
    (domain -> count) and ``classes`` replace the catalogue's counts and class list, e.g. for a subset
    or a test. A ``--from`` file named like a published file is checked against its published checksum
    (``check_checksums=False`` skips that, e.g. for a re-compressed copy). Existing output is an error
    unless ``force``. Downloads go to ``download_dir`` (default ``out/.downloads``) and are kept, so an
    interrupted run resumes.
    """
    ds = get_dataset(name)
    chosen = _select(ds, domains)
    out = Path(out).expanduser() if out is not None else default_out(ds)
    want = {d.name: (d.count, d.certain) for d in chosen}
    for k, v in (expected or {}).items():
        if k not in want:
            raise ConfigError(f"expected: {k!r} is not a domain being prepared ({', '.join(want)})")
        want[k] = (int(v), True)
    srcs = [Path(s).expanduser() for s in sources or ()]
    for s in srcs:
        if not s.exists():
            raise DataError(f"--from {s}: no such file or folder")
        if s.is_dir() and out.resolve().is_relative_to(s.resolve()):  # it would copy its own staging folder
            raise ConfigError(f"--out {out} lies inside --from {s}; prepare into a folder outside it")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _unwritable(out, e) from None
    release = acquire(out, f".prepare-{ds.name}.lock")  # one prepare of a dataset per folder: they share staging
    try:
        return _prepare_locked(ds, chosen, out, srcs, want, classes, force, verify_images, check_checksums,
                               progress, download_dir, base_url)
    finally:
        release()


def _prepare_locked(ds: DatasetInfo, chosen: list[DomainInfo], out: Path, srcs: list[Path],
                    want: dict[str, tuple[int, bool]], classes: Sequence[str] | None, force: bool,
                    verify_images: bool, check_checksums: bool, progress: bool,
                    download_dir: str | os.PathLike | None, base_url: str | None) -> PrepareResult:
    """`prepare` once ``out`` is locked: checksums or download, staging, layout, checks, install."""
    notes: list[str] = []
    if not force and ds.kind != "digits":  # under the lock: another prepare may just have finished
        clash = [str(p) for p in (out / ds.layout.format(domain=d.name) for d in chosen) if p.exists()]
        if clash:
            raise DataError(f"already prepared: {_short(clash, 3)}; remove it or pass --force to replace it")
    if srcs:
        published = {f.name: f for f in ds.files}
        for s in srcs if check_checksums else ():  # a published file given, or inside a folder given
            found = [s] if s.is_file() else sorted(p for p in s.rglob("*") if p.name in published and p.is_file())
            for f in (f for f in found if f.name in published):
                notes.append(verify_checksum(f, published[f.name].sha256, published[f.name].md5,
                                             f.name if f == s else str(f)))
    else:
        srcs, notes = fetch(ds, chosen, Path(download_dir) if download_dir else out / ".downloads", progress,
                            base_url)
    staging = out / f".staging-{ds.name}"
    try:
        _remove_tree(staging)
        raw, layout = staging / "raw", staging / "layout"
        with _status(f"{ds.title}: extracting", progress):
            _gather(srcs, raw)
        with _status(f"{ds.title}: arranging the layout", progress):
            outputs = PREPARERS[ds.name](ds, raw, layout, chosen, classes if classes is not None else ds.classes)
        with _status(f"{ds.title}: counting and checking images", progress):
            counts, warnings = _check(ds, layout, chosen, want, classes, verify_images)
        _install(layout, out, outputs, force)
    except OSError as e:  # the output side: a full disk, no permission, a file in the way
        raise _unwritable(out, e) from None
    finally:
        _remove_tree(staging)
    return PrepareResult(ds.name, out, counts, notes, warnings)


def _unwritable(out: Path, e: OSError) -> DataError:
    return DataError(f"--out {out}: cannot write there ({e.strerror or e}" + (f": {e.filename}" if e.filename else "")
                     + "); free some space or choose a writable folder, then run the command again")


def _remove_tree(path: Path) -> None:
    """Remove ``path`` (a staging or replaced folder) if it exists, read-only folders in it included."""
    if path.is_dir() and not path.is_symlink():
        _owner_writable_folders(path)
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _status(message: str, enabled: bool):
    """A spinner with ``message`` on a terminal (silent in logs, tests and with ``progress=False``)."""
    from adakit.progress import bar_visible, console

    if not bar_visible(enabled):
        yield
        return
    with console.status(message):
        yield


def _same_file(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()


def _install(layout: Path, out: Path, outputs: Sequence[str], force: bool) -> None:
    """Move ``outputs`` (paths relative to ``layout``) into ``out``; identical existing files are fine."""
    clash = [o for o in outputs if (out / o).exists() and not _same_file(layout / o, out / o)]
    if clash and not force:
        raise DataError(f"{out}: {_short(clash, 5)} already exist(s) with other content; remove or pass --force")
    for o in outputs:  # (a process killed here leaves each output old or new, never half removed)
        dst = out / o
        aside = dst.with_name(f".replaced-{dst.name}")  # the old one, moved aside until the new one is in place
        _remove_tree(aside)  # (left by a process killed after moving it aside)
        if dst.is_dir() and not dst.is_symlink():
            os.replace(dst, aside)
        elif dst.exists() or dst.is_symlink():
            dst.unlink()
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(layout / o, dst)
        _remove_tree(aside)

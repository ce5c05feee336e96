"""Feature-file domains: ``.npz`` (feat/y/classes), ``.mat`` and svmlight.

Label codes. adakit's own ``.npz`` (written by ``adakit features``) stores class indices ``y`` with a
``classes`` array (-1 = unlabelled). Every other file (``.mat``, svmlight, ``.npz`` without ``classes``)
holds integer label *codes* in any coding (−1/+1, 0..C−1, 1..C, arbitrary integers): they are mapped
explicitly to class indices 0..C−1 and the codes become the class names (``"-1"``, ``"1"``). The mapping
is the same for source and target: ``data.label_values`` when given (class i = label_values[i]),
otherwise the sorted union of the codes found in the source and the target file. No code means
"unlabelled" unless ``data.unlabelled_value`` names it. Labels must be integers (2.0 is read as 2; 2.7
is an error).
"""

from __future__ import annotations

import functools
import os
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np

from adakit.data.domain import TensorDomain
from adakit.data.images import _INT, folder_images
from adakit.data.registry import register_loader
from adakit.errors import ConfigError, DataError

_MAT_X = ("feat", "feas", "fts", "X", "x", "features", "data")
_MAT_Y = ("y", "label", "labels", "Y", "gnd")


def _require(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"feature file not found: {path}. Check data.root / data.pattern or set ADAKIT_DATA.")
    return path


def _unlabelled_hint(what: str, example: str) -> str:
    """What to do for a domain without labels whose file lacks them (``what``: the labels this format needs)."""
    return (f" A domain without labels still needs {what}: fill it with a code that means unknown and that no class "
            f"uses ({example}) and set data.unlabelled_value to it")


def real_features(a, path: Path, what: str = "feat") -> np.ndarray:
    """``a`` as float32 feature values: real numbers (true/false as 1/0, e.g. MATLAB's logical bag of words); complex
    values (which would lose their imaginary part), text, objects and finite values beyond float32's range (which
    would become inf) are a `DataError` naming the file and array."""
    a = np.asarray(a)
    if a.dtype.kind not in "iufb":
        kind = {"c": "complex numbers", "U": "text", "S": "text", "O": "Python objects"}
        raise DataError(f"{path}: {what} holds {kind.get(a.dtype.kind, f'values of type {a.dtype}')}; features "
                        "must be real numbers (convert them first, e.g. np.abs or np.real of complex features)")
    with np.errstate(over="ignore"):
        x = a.astype(np.float32)
    if a.dtype.kind == "f" and a.dtype.itemsize > 4:
        big = np.isinf(x) & np.isfinite(a)
        if big.any():
            raise DataError(f"{path}: {what} holds {int(big.sum())} value(s) beyond float32's range (±3.4e38), e.g. "
                            f"{a[big].flat[0].item()!r}, in which adakit computes; rescale the features (e.g. "
                            "divide them by their largest absolute value) or drop those rows")
    return x


def integer_labels(values, path: Path, what: str = "label") -> np.ndarray:
    """``values`` as int64; float values must be whole numbers (2.0 -> 2), else a `DataError` naming the file."""
    a = np.asarray(values).ravel()
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path}: {what} {a[i].item()!r} (row {i}) is not an integer; labels must be integer class "
                            f"codes (e.g. -1/+1, 0..C-1 or 1..C), {int(bad.sum())} rows are not")
    elif a.dtype.kind not in "iub":
        raise DataError(f"{path}: {what}s must be integer class codes, got values of type {a.dtype}")
    big = np.iinfo(np.int64)
    if a.size and a.dtype.kind in "uf" and (a.max() > big.max or a.min() < big.min):
        raise DataError(f"{path}: {what} {a.max() if a.max() > big.max else a.min()!r} is beyond 64-bit integers; "
                        "labels must be class codes (e.g. -1/+1, 0..C-1 or 1..C)")
    return a.astype(np.int64)


# -- reading one file: (features or None, raw integer label codes) ----------------------------------------
def _open_npz(path: Path):
    """The open ``.npz`` at ``path`` (use it in ``with``); a ``.npy`` (one array) or another kind of file (numpy
    takes it for pickled data) is a `DataError` saying what to do."""
    try:
        z = np.load(_require(path), allow_pickle=False)
    except ValueError as err:
        if "pickle" not in str(err):
            raise
        raise DataError(f"{path}: cannot read as .npz: not an .npz file (numpy finds no arrays in it). Save the "
                        "features with np.savez(path, feat=feat, y=y), or set data.format: mat / svmlight for such "
                        "files") from None
    if isinstance(z, np.ndarray):
        raise DataError(f"{path}: a .npy holds one array; save feat and y with np.savez(path.npz, feat=feat, y=y) "
                        "(and classes=names when y holds class indices)")
    return z


def _read_npz(path: Path, labels_only: bool = False):
    try:
        with _open_npz(path) as z:
            missing = [k for k in ("feat", "y") if k not in z.files]
            if missing:
                hint = (_unlabelled_hint("y", "e.g. np.full(N, -1)") + " (or store classes and y = -1)"
                        if missing == ["y"] else "")
                raise DataError(f"{path}: missing arrays {missing}; found {z.files}. Expected feat, y[, classes]."
                                + hint)
            y = integer_labels(z["y"], path)
            classes = [str(c) for c in z["classes"].tolist()] if "classes" in z.files else None
            if labels_only:
                return None, y, classes, None
            x = real_features(z["feat"], path)
            paths = _npz_image_paths(path, z)
            if paths is not None:
                ids = z["ids"].astype(str) if "whole_folder" in z.files and bool(z["whole_folder"]) else None
                sizes = z["image_bytes"] if "image_bytes" in z.files else None
                _warn_if_stale(path, path.parent / str(z["image_root"]), paths, ids, sizes)
            if "image_list" in z.files:
                _warn_if_list_changed(path, str(z["image_list"]))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:  # not an .npz, truncated, or not numbers
        raise DataError(f"{path}: cannot read as .npz ({type(err).__name__}: {err})") from None
    return x, y, classes, paths


def _npz_image_paths(path: Path, z) -> np.ndarray | None:
    """The image file of each row of an open ``.npz`` that records them (``ids`` + ``image_root``), else None."""
    if "ids" not in z.files or "image_root" not in z.files:
        return None
    root = path.parent / str(z["image_root"])  # an absolute image_root replaces the folder
    return np.char.add(f"{root}/", np.asarray(z["ids"]).astype(str))


def _warn_if_stale(path: Path, root: Path, paths: np.ndarray, ids: np.ndarray | None = None,
                   sizes: np.ndarray | None = None) -> None:
    """Warn when images a feature file was extracted from are gone (moved, renamed, deleted), have another size in
    bytes than at extraction (``sizes`` given: replaced or edited in place, so their features are not of the image
    there now) or, for a file made from a whole image folder (``ids`` given: its recorded ids), when the folder now
    holds images it lacks: its rows and labels are those of the folder at extraction time. Silent when the folder
    itself is absent (features used elsewhere)."""
    if not root.is_dir():
        return
    changes = []
    now_bytes = []
    for p in paths.tolist():  # (one stat per image, as the existence check took)
        try:
            now_bytes.append(os.stat(p).st_size)
        except OSError:
            now_bytes.append(-1)
    now_bytes = np.asarray(now_bytes, dtype=np.int64)
    gone = paths[now_bytes < 0].tolist()
    if gone:
        changes.append(f"{len(gone)} of {len(paths)} images it was extracted from are no longer in {root} "
                       f"(e.g. {gone[0]})")
    if sizes is not None and len(sizes) == len(paths):
        edited = paths[(now_bytes >= 0) & (now_bytes != sizes)].tolist()
        if edited:
            changes.append(f"{len(edited)} of {len(paths)} images changed since (another size in bytes, e.g. "
                           f"{edited[0]})")
    if ids is not None:
        with warnings.catch_warnings():  # (photos it cannot read were named when the features were made)
            warnings.simplefilter("ignore")
            now = [f.relative_to(root).as_posix() for f in folder_images(root)]
        added = sorted(set(now) - set(ids.tolist()))
        if added:
            changes.append(f"{len(added)} image(s) were added to {root} since (e.g. {', '.join(added[:3])})")
    if changes:
        warnings.warn(f"{path}: {'; '.join(changes)}; its features and labels are those of the folder at extraction "
                      "time: re-run `adakit features` if the folder changed", UserWarning, stacklevel=2)


def _warn_if_list_changed(path: Path, record: str) -> None:
    """Warn when the image-list file a feature file was made from (``record``: its path and sha256) now holds other
    bytes: its rows and labels are those of the list at extraction time. Silent when the list is gone."""
    from adakit.datasets.download import file_hash

    found = _FILE_RECORD.fullmatch(record)
    if found is None or not Path(found["name"]).is_file():
        return
    now = file_hash(Path(found["name"]))[:len(found["hash"])]
    if now != found["hash"]:
        warnings.warn(f"{path}: the image list {found['name']} it was made from changed since (sha256 "
                      f"{found['hash']}, now {now}); its rows and labels are those of the list at extraction time: "
                      "re-run `adakit features` if the list changed", UserWarning, stacklevel=2)


def _mat_key(m: dict, given: str | None, defaults: tuple[str, ...], name: str, path: Path, what: str) -> str:
    keys = [k for k in m if not k.startswith("__")]
    if given:
        try:
            key = given.format(domain=name)
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(f"data.{what}_key={given!r}: only {{domain}} may appear in braces ({err!r})") from None
        if key not in m:
            raise DataError(f"{path}: no variable {key!r} (data.{what}_key={given!r}, domain {name!r}); "
                            f"the file holds {keys}")
        return key
    found = [k for k in defaults if k in m]
    if len(found) > 1:
        raise DataError(f"{path}: several variables could be the {what}s ({', '.join(found)}); name the one to use "
                        f"with data.{what}_key (e.g. data.{what}_key: {found[0]})")
    key = found[0] if found else None
    if key is None:
        hint = _unlabelled_hint("a label variable", "e.g. y = -ones(N, 1)") if what == "label" else ""
        raise DataError(f"{path}: no {what} variable among the usual names ({'/'.join(defaults)}); the file holds "
                        f"{keys}. Name it with data.{what}_key (e.g. data.{what}_key: "
                        f"{'X' if what == 'feature' else 'Y'}_{{domain}}).{hint}")
    return key


def _load_mat(path: Path) -> dict:
    """The variables of a ``.mat`` file; an unreadable one is a `DataError` (MATLAB v7.3: how to convert it)."""
    import scipy.io

    _require(path)
    try:
        return scipy.io.loadmat(path)
    except Exception as err:  # any parse failure of the file (scipy raises many kinds)
        hint = ("; MATLAB v7.3 files are HDF5: save them with save(..., '-v7') or convert them to .npz"
                if "v7.3" in str(err) or "HDF" in str(err) else "")
        raise DataError(f"{path}: cannot read as .mat ({type(err).__name__}: {err}){hint}") from None


def _mat_matrix(m: dict, key: str, path: Path) -> np.ndarray:
    """Variable ``key`` of a loaded ``.mat`` as float32 (a sparse one, e.g. bag of words, made dense)."""
    import scipy.sparse

    v = m[key]
    return real_features(v.toarray() if scipy.sparse.issparse(v) else v, path, key)


def _read_mat(path: Path, name: str, cfg=None, labels_only: bool = False):

    fkey, lkey = (cfg.feature_key, cfg.label_key) if cfg is not None else (None, None)
    m = _load_mat(path)
    yk = _mat_key(m, lkey, _MAT_Y, name, path, "label")
    y = integer_labels(m[yk], path, f"label ({yk})")
    if labels_only:
        return None, y
    xk = _mat_key(m, fkey, _MAT_X, name, path, "feature")
    x = _mat_matrix(m, xk, path)
    if x.ndim == 2 and x.shape[0] != len(y) and x.shape[1] == len(y):
        x = x.T  # stored d x N (MATLAB convention of many DA feature sets)
    elif x.ndim == 2 and x.shape[0] == x.shape[1] == len(y):  # (N, d) and (d, N) cannot be told apart
        warnings.warn(f"{path}: {xk} is square ({len(y)}×{len(y)}): read as one row per sample; if it holds one "
                      "column per sample (d × N, as many MATLAB feature sets do), save it transposed", UserWarning,
                      stacklevel=2)
    if x.ndim == 2 and x.shape[0] != len(y):
        raise DataError(f"{path}: {xk} has shape {x.shape} but {yk} has {len(y)} labels; one row (or column) "
                        "per sample is needed")
    return x, y


def _read_svmlight(path: Path, labels_only: bool = False, cfg=None):
    """Features and labels of one svmlight file. With the run's data config, the source and target files are
    read together, so both get the same width (the largest feature index in either) and the same zero/one-based
    indexing (`_indexing`), even when one file never uses the last features. The pair is parsed once for the
    source, the target, their label codes and the run's recorded indexing (`_parse_svmlight`)."""
    files = [_require(path).resolve()]
    pair = _svmlight_pair(cfg)
    if pair is not None and files[0] in pair:
        files = pair
    parsed = _parse_svmlight(tuple(files))
    zero_based = _indexing(getattr(cfg, "zero_based", "auto") if cfg is not None else "auto", files, parsed)
    x, y = parsed[files.index(path.resolve())]
    y = integer_labels(y, path)
    if labels_only:
        return None, y
    x = x if zero_based else x[:, 1:]
    gib = x.shape[0] * x.shape[1] * 4 / 2**30
    if gib > DENSE_LIMIT_GIB:  # a stray huge feature index makes every row that wide
        widest = files[max(range(len(files)), key=lambda i: parsed[i][0].indices.max() if parsed[i][0].nnz else -1)]
        raise DataError(f"{path}: {x.shape[0]:,} rows as wide as the largest feature index ({x.shape[1]:,}, in "
                        f"{widest.name}) would take {gib:,.0f} GiB as dense float32 features; is index "
                        f"{x.shape[1] - 1 + (not zero_based)} a mistake? adakit trains on dense rows: reduce the "
                        "features (e.g. keep the frequent ones)")
    return _dense(x, path), y


def _dense(x, path: Path) -> np.ndarray:
    """Sparse (CSR) svmlight rows as dense float32 features, their values checked by `real_features`."""
    import scipy.sparse

    values = real_features(x.data, path, "the file")
    return scipy.sparse.csr_matrix((values, x.indices, x.indptr), shape=x.shape).toarray()


#: svmlight rows are made dense; a pair wider than this (GiB of float32) is refused before it is allocated
DENSE_LIMIT_GIB = 16


def _parse_svmlight(files: tuple[Path, ...]) -> tuple:
    """(CSR rows, labels) of each file, indices as written (read zero-based), all as wide as the widest; the last
    set of files read is kept (sparse) while the files are unchanged, so loading a run reads each file once."""
    stamps = []
    for f in files:
        st = f.stat()
        stamps.append((str(f), st.st_mtime_ns, st.st_size))
    return _parse_files(tuple(stamps))


@functools.lru_cache(maxsize=1)
def _parse_files(stamps: tuple[tuple[str, int, int], ...]) -> tuple:
    from sklearn.datasets import load_svmlight_file, load_svmlight_files

    names = [name for name, _, _ in stamps]
    try:
        arrays = load_svmlight_files(names, zero_based=True)
    except (ValueError, OverflowError) as err:
        for name in names:  # name the file that is not valid
            try:
                load_svmlight_file(name, zero_based=True)
            except (ValueError, OverflowError) as one:
                raise _not_svmlight(name, one) from None
        raise _not_svmlight(", ".join(names), err) from None
    return tuple(zip(arrays[0::2], arrays[1::2]))


def _not_svmlight(name: str | Path, err: Exception) -> DataError:
    """The error for a file scikit-learn cannot parse as svmlight, with what to do for the usual causes: a feature
    index beyond 32-bit integers (OverflowError), a line without its label (``1:0.5`` where the label should be)."""
    hint = ""
    if isinstance(err, OverflowError):
        hint = (f"; a feature index (or qid) is beyond {2**31 - 1:,} (2^31 - 1), the largest scikit-learn reads: "
                "is it a mistake?")
    elif re.search(r"could not convert string to float: b?'[^']*:", str(err)):
        hint = ("; every line starts with its label (a line starts with index:value)."
                + _unlabelled_hint("a label on each line", "e.g. 0"))
    return DataError(f"{name}: not a valid svmlight file ({type(err).__name__}: {err}){hint}")


def _indexing(setting, files: list[Path], parsed) -> bool:
    """Whether ``files`` index features from 0: ``data.zero_based``, or on "auto" scikit-learn's rule for files
    read together (from 1 only when every file has entries and none uses index 0)."""
    uses_zero = [bool(m.nnz) and m.indices.min() == 0 for m, _ in parsed]
    if setting is False and any(uses_zero):
        raise DataError(f"{files[uses_zero.index(True)]}: feature index 0 appears, but data.zero_based is false "
                        "(indices from 1); set data.zero_based: true, or auto")
    if setting != "auto":
        return bool(setting)
    return not all(m.nnz and m.indices.min() > 0 for m, _ in parsed)


def _svmlight_pair(cfg) -> list[Path] | None:
    """The run's source and target svmlight files (one when they are the same), when both exist."""
    if cfg is None or not (cfg.source and cfg.target):
        return None
    pair = list(dict.fromkeys(_domain_path(cfg, n).resolve() for n in (cfg.source, cfg.target)))
    return pair if all(f.is_file() for f in pair) else None


def svmlight_indexing(cfg) -> bool | None:
    """Whether the run's svmlight files index features from 0: ``data.zero_based`` when set, else scikit-learn's
    "auto" rule on the source and target files together (one-based only when every file's smallest index is
    above 0); None when it cannot be told (no config, or the files are gone or not valid)."""
    if cfg is not None and cfg.zero_based != "auto":
        return bool(cfg.zero_based)
    pair = _svmlight_pair(cfg)
    if pair is None:
        return None
    try:
        return _indexing("auto", pair, _parse_svmlight(tuple(pair)))
    except DataError:
        return None


def read_feature_rows(fmt: str, path: Path, cfg=None, n_features: int | None = None,
                      zero_based: bool | None = None) -> tuple[np.ndarray, list[str]]:
    """Feature rows (N, d) of a file to predict on, and an id per row (its image path when the file records it,
    else ``<file stem>/<row>``). Labels are not needed: an ``.npz`` needs only ``feat``; a ``.mat`` its feature
    variable (``data.feature_key`` of ``cfg``, else the usual names); svmlight rows are widened to
    ``n_features`` (a file that never uses the last features is narrower) and read with the run's indexing:
    ``zero_based`` (what the run recorded), else `svmlight_indexing` of ``cfg``. An empty file gives (0, d) rows."""
    if fmt == "npz":
        try:
            with _open_npz(path) as z:
                if "feat" not in z.files:
                    raise DataError(f"{path}: no array 'feat' (the feature rows, N x d); found {z.files}")
                x = real_features(z["feat"], path)
                paths = _npz_image_paths(path, z)
                if paths is not None:
                    return x, paths.tolist()
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise DataError(f"{path}: cannot read as .npz ({type(err).__name__}: {err})") from None
    elif fmt == "mat":
        m = _load_mat(path)
        xk = _mat_key(m, cfg.feature_key if cfg is not None else None, _MAT_X, path.stem, path, "feature")
        x = _mat_matrix(m, xk, path)
        if n_features is not None and x.ndim == 2 and x.shape[1] != n_features and x.shape[0] == n_features:
            x = x.T  # stored d x N
    else:
        from sklearn.datasets import load_svmlight_file

        if zero_based is None:
            zero_based = svmlight_indexing(cfg)
        if zero_based is None:  # a file that never uses feature 0 would be read one-based, shifted by a column
            warnings.warn(f"{path}: the run did not record whether its svmlight feature indices start at 0 or 1 "
                          "(runs of adakit before 2026-12-04) and its source/target files are not where its config "
                          "says, so this file's own indices decide: a file whose rows never use index 0 is read "
                          "as indexed from 1", RuntimeWarning, stacklevel=2)
        try:
            xs, _ = load_svmlight_file(str(_require(path)), n_features=n_features,
                                       zero_based="auto" if zero_based is None else zero_based)
        except (ValueError, OverflowError) as err:
            if "Invalid index 0" in str(err):
                raise DataError(f"{path}: uses feature index 0, but the run's files were indexed from 1; write it "
                                "with indices from 1, as the run's files") from None
            if "n_features was set to" in str(err):
                raise DataError(f"{path}: has features beyond the {n_features} that the run's model takes (the "
                                "widest index of its source and target files)") from None
            raise _not_svmlight(path, err) from None
        x = _dense(xs, path)
    _check_matrix(x, path)
    return x, [f"{path.stem}/{i}" for i in range(len(x))]


# -- the shared label coding ----------------------------------------------------------------------------
def _domain_path(cfg, name: str) -> Path:
    from adakit.config import DEFAULT_PATTERNS
    from adakit.paths import expand, pattern_root

    return expand(cfg.path_of(name, str(pattern_root(cfg.root, cfg.pattern or DEFAULT_PATTERNS[cfg.format]))))


def npz_extractor(path: Path) -> str | None:
    """The ``extractor`` record of an ``.npz`` written by `adakit features` (None: none recorded, or unreadable)."""
    try:
        with _open_npz(path) as z:
            return str(z["extractor"]) if "extractor" in z.files else None
    except (DataError, OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def run_source_extractor(cfg) -> str | None:
    """The ``extractor`` record of an ``npz`` run's source file (None: another format, none recorded, or the file
    is not where the config says)."""
    if cfg.format != "npz":
        return None
    try:
        return npz_extractor(_domain_path(cfg, cfg.source))
    except (DataError, ConfigError, OSError):
        return None


def check_same_extractor(cfg) -> None:
    """Refuse a source and a target ``.npz`` that `adakit features` made in two ways (another model, weights or
    image size: the feature spaces do not match, whatever their widths); files without the record pass."""
    if cfg.source == cfg.target:
        return
    made = {}
    for name in (cfg.source, cfg.target):
        try:
            with _open_npz(_domain_path(cfg, name)) as z:
                made[name] = str(z["extractor"]) if "extractor" in z.files else None
        except (DataError, OSError, ValueError, EOFError, zipfile.BadZipFile):
            return  # (the loader names an unreadable file)
    (a, ea), (b, eb) = made.items()
    if ea is not None and eb is not None and not same_extractor(ea, eb):
        raise DataError(f"the source features ({a}: {ea}) and the target features ({b}: {eb}) were extracted in "
                        "two ways, so they live in different feature spaces; extract both with the same adakit "
                        "features options (--model / --backbone, --weights, --image-size, --resize)")


#: a torchvision/timm extractor's record (`adakit.features.TorchFeatureExtractor.origin` and the image sizes)
_TORCH_RECORD = re.compile(r"(?P<model>[^,]*), weights (?P<weights>.*)(?P<sizes>; images resized to .*)", re.DOTALL)
_FILE_RECORD = re.compile(r"(?P<name>.*) \(sha256 (?P<hash>[0-9a-f]+)\)", re.DOTALL)
#: ImageNet weights as recorded since 2026-12-05 09:00 UTC: ``imagenet (<checkpoint file or timm name.tag>)``
_IMAGENET_RECORD = re.compile(r"imagenet \((?!sha256 )[^()]+\)")


def same_extractor(a: str, b: str) -> bool:
    """Whether two ``extractor`` records name one feature space. Weights files are recorded by name and sha256
    (`adakit.features.file_record`), so any path to the same bytes matches; a file written before 2026-12-05 recorded
    the path as typed: against a newer record its file name is compared, what both record. ImageNet weights are
    recorded with the checkpoint (torchvision) or ``name.tag`` (timm) they were; a record of only ``imagenet`` (older
    files) matches any of the same model."""
    if a == b:
        return True
    ma, mb = _TORCH_RECORD.fullmatch(a), _TORCH_RECORD.fullmatch(b)
    if ma is None or mb is None or (ma["model"], ma["sizes"]) != (mb["model"], mb["sizes"]):
        return False
    if "imagenet" in (ma["weights"], mb["weights"]) \
            and all(w == "imagenet" or _IMAGENET_RECORD.fullmatch(w) for w in (ma["weights"], mb["weights"])):
        return True  # a file written before 2026-12-05 09:00 UTC did not record which ImageNet weights
    fa, fb = _FILE_RECORD.fullmatch(ma["weights"]), _FILE_RECORD.fullmatch(mb["weights"])
    if fa is not None and fb is not None:
        return fa["hash"] == fb["hash"]
    if (fa is None) == (fb is None):  # two paths as typed (older files), imagenet or none
        return False
    old, new = (ma["weights"], fb) if fa is None else (mb["weights"], fa)
    return Path(old).name == new["name"]


def _codes_in(fmt: str, path: Path, name: str, cfg) -> np.ndarray:
    """The label codes of the other domain's file: its raw labels, or the class names of an ``.npz`` that stores
    ``classes`` (its ``y`` holds class indices, -1 = unlabelled: not codes)."""
    if fmt == "npz":
        _, y, classes, _ = _read_npz(path, labels_only=True)
        if classes is None:
            return y
        named = [c for c in classes if not _INT.match(c)]
        if named:
            raise DataError(f"{path}: its classes are names ({', '.join(named[:5])}), but the other domain's file "
                            "holds integer label codes (no classes array), so the two cannot be matched; store "
                            "the same classes in both files (y as class indices into them), e.g. with "
                            "np.savez(..., feat=feat, y=index, classes=names); a file whose y only marks unknown "
                            "labels (an unlabelled target) takes the names with data.unlabelled_value set to its code")
        return np.array([int(c) for c in classes], dtype=np.int64)
    if fmt == "mat":
        return _read_mat(path, name, cfg, labels_only=True)[1]
    return _read_svmlight(path, labels_only=True, cfg=cfg)[1]


def label_codes(fmt: str, path: Path, name: str, y: np.ndarray, cfg=None) -> list[int]:
    """The label codes in class order: ``data.label_values``, else the sorted union of the codes of this file
    and (with a config) of the source and target files, without ``data.unlabelled_value``."""
    if cfg is not None and cfg.label_values is not None:
        values = list(cfg.label_values)
        if len(set(values)) != len(values):
            raise ConfigError(f"data.label_values: {values} lists a code more than once")
        return values
    codes = set(np.unique(y).tolist())
    if cfg is not None:
        for other in dict.fromkeys((cfg.source, cfg.target)):
            if other != name:
                codes |= set(np.unique(_codes_in(fmt, _domain_path(cfg, other), other, cfg)).tolist())
    unlabelled = cfg.unlabelled_value if cfg is not None else None
    codes.discard(unlabelled)
    return sorted(codes)


def encode_labels(y: np.ndarray, codes: list[int], path: Path, unlabelled: int | None = None) -> np.ndarray:
    """Raw codes -> class indices (position in ``codes``); ``unlabelled`` -> -1."""
    known = np.ones(len(y), bool) if unlabelled is None else y != unlabelled
    order = np.asarray(codes, dtype=np.int64)
    if not len(order):
        raise DataError(f"{path}: no class codes: every sample is unlabelled (data.unlabelled_value={unlabelled})")
    sorter = np.argsort(order)
    idx = sorter[np.searchsorted(order, y, sorter=sorter).clip(0, len(order) - 1)]
    ok = order[idx] == y
    bad = known & ~ok
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path}: label {int(y[i])} (row {i}) is not one of the class codes {codes} "
                        "(data.label_values); add it there, or set data.unlabelled_value if it marks "
                        "unlabelled samples")
    return np.where(known, idx, -1).astype(np.int64)


def _coded(fmt: str, path: Path, name: str, x: np.ndarray, y: np.ndarray, cfg, paths=None) -> TensorDomain:
    codes = label_codes(fmt, path, name, y, cfg)
    unlabelled = cfg.unlabelled_value if cfg is not None else None
    return _features(name, x, encode_labels(y, codes, path, unlabelled), [str(c) for c in codes], path, paths)


@register_loader("npz")
def load_npz(path: Path, name: str, cfg=None) -> TensorDomain:
    """``.npz`` with ``feat`` (N, d), ``y`` (N,) and optional ``classes`` (C,).

    With ``classes``, ``y`` holds class indices (-1 = unlabelled); without, ``y`` holds label codes mapped as
    the module docstring says. ``adakit features`` also writes ``ids`` (image paths relative to the image
    folder) and ``image_root``; with both, each row knows its image file (`TensorDomain.paths`, shown by
    `adakit label`). Sample ids stay ``name/index`` either way. A relative ``image_root`` is taken from the
    ``.npz``'s folder.
    """
    x, y, classes, paths = _read_npz(path)
    if classes is None:
        named = _named_classes_for_unlabelled(path, name, y, cfg)
        if named is not None:
            return _features(name, x, np.full(len(y), -1, dtype=np.int64), named, path, paths)
        return _coded("npz", path, name, x, y, cfg, paths)
    return _features(name, x, y, classes, path, paths)


def _named_classes_for_unlabelled(path: Path, name: str, y: np.ndarray, cfg) -> list[str] | None:
    """The class names of the other domain's ``.npz`` when this file (no ``classes``) marks every sample with
    ``data.unlabelled_value``: it has no codes to match with those names, so it takes them (an unlabelled target
    beside a source saved with ``classes=names``). None otherwise: the label codes are mapped as usual."""
    if cfg is None or cfg.unlabelled_value is None or cfg.label_values is not None or len(y) == 0 \
            or not bool((y == cfg.unlabelled_value).all()):
        return None
    for other in dict.fromkeys((cfg.source, cfg.target)):
        if other == name:
            continue
        _, _, classes, _ = _read_npz(_domain_path(cfg, other), labels_only=True)
        if classes is not None and any(not _INT.match(c) for c in classes):
            return classes
    return None


@register_loader("mat")
def load_mat(path: Path, name: str, cfg=None) -> TensorDomain:
    """MATLAB ``.mat`` with a feature matrix (N, d) or (d, N) and a label vector of integer codes.

    ``data.feature_key`` / ``data.label_key`` name the variables (``{domain}`` is replaced by the domain
    name, so one file can hold both domains: ``X_{domain}`` with source ``src``, target ``tar``).
    """
    x, y = _read_mat(path, name, cfg)
    return _coded("mat", path, name, x, y, cfg)


@register_loader("svmlight")
def load_svmlight(path: Path, name: str, cfg=None) -> TensorDomain:
    """svmlight / libsvm text format (``label idx:value ...``), integer label codes."""
    x, y = _read_svmlight(path, cfg=cfg)
    return _coded("svmlight", path, name, x, y, cfg)


def _check_matrix(x: np.ndarray, path: Path) -> None:
    """Features must be a 2-d array (N, d) with at least one column."""
    if x.ndim != 2:
        raise DataError(f"{path}: features must be a 2-d array (N, d), got shape {x.shape}")
    if x.shape[1] == 0:
        raise DataError(f"{path}: the features have no columns (shape {x.shape}); each row needs at least one "
                        "feature value: save the (N, d) feature matrix")


def _features(name: str, x: np.ndarray, y: np.ndarray, classes: list[str], path: Path,
              paths: np.ndarray | None = None) -> TensorDomain:
    _check_matrix(x, path)
    if len(x) != len(y):
        raise DataError(f"{path}: {len(x)} feature rows but {len(y)} labels; the file needs one label per row")
    ids = np.char.add(f"{name}/", np.arange(len(y)).astype(str))
    try:
        return TensorDomain(name=name, classes=classes, ids=ids, y=y, x=x, paths=paths)
    except DataError as err:
        raise DataError(f"{path}: {err}") from None

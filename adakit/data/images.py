"""Image-file domains: an image folder (``<root>/<class>/<image>``) or an image-list file (``path label``).

Images stay on disk; `FileImageDomain.load` reads a batch with PIL and applies the standard transforms
(`adakit.data.transforms`). Loaders check the files before training: a missing or empty folder, a
malformed list line (with its line number), a label outside the class list and, unless
``data.verify_images`` is off, an image that cannot be decoded are `DataError`s naming the file. A class
folder without images is kept as a class (class indices must line up across domains) with a warning.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from adakit.data.domain import Domain
from adakit.data.registry import register_loader
from adakit.data.transforms import DEFAULT_IMAGE_SIZE, default_resize, image_transform, strong_image_transform
from adakit.errors import ConfigError, DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})
_INT = re.compile(r"^[+-]?\d+$")
_SUFFIXES = "|".join(e[1:] for e in sorted(IMAGE_EXTENSIONS))  # (a regular expression's alternatives)
#: a line ``<image path>,<label>`` of a CSV file (an image list separates path and label by white space)
_CSV_ROW = re.compile(r"^.*\.(" + _SUFFIXES + r")\s*,\s*[^,\s]+$", re.I)
#: the path of an image-list entry followed by more text: a label holding a space ("a.jpg back pack")
_IMAGE_THEN_TEXT = re.compile(r"^.*\.(" + _SUFFIXES + r")\s+(\S.*)$", re.I)


#: what transparent pixels are composited on (white, as the labelling page and most viewers show them)
BACKGROUND = (255, 255, 255)
#: folders of thumbnails and metadata that file managers leave beside images (never images of a class)
JUNK_FOLDERS = frozenset({"__MACOSX", "@eaDir", "$RECYCLE.BIN", "System Volume Information"})


def read_image(path: str | os.PathLike, size_hint: int | None = None):
    """Open one image as RGB, as photo viewers show it; a missing or corrupt file is a `DataError` naming it.

    The EXIF orientation of phone and camera photos is applied (`ImageOps.exif_transpose`); transparent
    pixels are composited on white (`BACKGROUND`; PIL's ``convert("RGB")`` would keep whatever colour is
    stored under them, often black); 16/32-bit integer pixels are scaled to 8 bits (65535 or the 8-bit range
    → 255) and float pixels from [0, 1] (values above 1 are taken as 0..255). ``size_hint`` (the shorter side the
    transforms resize to): a JPEG at least four times that size is decoded at a reduced scale that keeps at
    least twice that size (PIL ``draft``), so a 48-megapixel photo loads in milliseconds instead of a second.
    """
    from PIL import Image

    path = os.fspath(path)
    path = str(path) if isinstance(path, str) else path  # (a numpy str_ path: PIL's messages name it by its repr)
    try:
        with Image.open(path) as im:
            if size_hint and im.format == "JPEG":
                im.draft(im.mode, (2 * size_hint, 2 * size_hint))
            return to_rgb(im)
    except Image.DecompressionBombError as err:
        raise DataError(f"cannot read image {path}: {err}. It is only too large: downscale it (adakit resizes "
                        "to a few hundred pixels anyway), or raise PIL.Image.MAX_IMAGE_PIXELS.") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"cannot read image {path}: {err}. Replace it with a readable copy of the same image (a "
                        "started run refuses a changed file list).") from None


#: warned once per process (one message): 16-bit images whose pixels stay below 4096 are likely 12-bit camera or
#: scanner data, which the 16-bit scale (÷ 65535) turns nearly black
LOW_BIT_DEPTH = ("a 16-bit image has no pixel above 4095: 12-bit (or 10- or 8-bit) data stored in a 16-bit file? "
                 "adakit scales 16-bit pixels by 65535, so such images reach the model at 1/16 of their brightness "
                 "or less (no file records its real bit depth in a way the reader sees). If your images are like "
                 "that, rescale them to the full 16-bit or an 8-bit range before training")


def to_rgb(im):
    """A PIL image as the RGB image `read_image` makes of it (EXIF orientation, transparency on white, 16-bit
    and float pixels scaled)."""
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I") or im.mode == "F":  # PIL's convert would clip these to 0..255
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        if im.mode == "F":
            a = a * 255.0 if a.max(initial=0.0) <= 1.0 else a
        else:
            top = a.max(initial=0.0)
            if im.mode.startswith("I;16") and 0 < top < 4096:
                warnings.warn(LOW_BIT_DEPTH, UserWarning, stacklevel=2)
            a = a / (65535.0 if im.mode.startswith("I;16") or top > 255 else 255.0) * 255.0
        return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8)).convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (*BACKGROUND, 255)), rgba).convert("RGB")
    return im.convert("RGB")


def check_decodes(path: str) -> str | None:
    """Why the image at ``path`` cannot be read, or None: a decode of the whole file (JPEGs at 1/8 scale, about
    0.4 ms each), since PIL's header ``verify`` misses truncated JPEG, GIF, BMP and TIFF files."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft(im.mode, (1, 1))
            im.load()
    except Image.DecompressionBombError as err:
        return f"{err}; it is only too large: downscale it, or raise PIL.Image.MAX_IMAGE_PIXELS"
    except Exception as err:  # PIL raises many types for corrupt files
        return str(err).replace(repr(path), path).replace(f"np.str_({path!r})", path) + _format_hint(path)
    return None


def _format_hint(path: str) -> str:
    """A hint for image formats PIL cannot read that phones write (HEIC/HEIF, AVIF), whatever the file's name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except OSError:
        return ""
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"hevc", b"mif1", b"msf1", b"avif", b"avis"):
        return "; it is an HEIC/AVIF photo (as iPhones save them), which adakit cannot read: convert it to JPEG or PNG"
    return ""


@dataclass
class FileImageDomain(Domain):
    """Images on disk, loaded by batch as (N, 3, image_size, image_size) ImageNet-normalised tensors.

    ``paths`` are the files (absolute or relative to the working directory); ``ids`` are stable
    paths relative to the domain root (image folder) or as written in the list file.
    """

    paths: np.ndarray = field(default=None)  # type: ignore[assignment]
    image_size: int = DEFAULT_IMAGE_SIZE
    resize: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.paths = np.asarray(self.paths).astype(str)
        if len(self.paths) != len(self.ids):
            raise DataError(f"domain {self.name!r}: {len(self.paths)} files but {len(self.ids)} ids")
        if self.resize is None:
            self.resize = default_resize(self.image_size)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)

    def _read(self, idx: np.ndarray, tf) -> torch.Tensor:
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        if len(idx) == 0:
            return torch.empty((0, *self.input_shape))
        return torch.stack([tf(read_image(self.paths[i], self.resize)) for i in idx])

    def load(self, idx: np.ndarray, train: bool = False) -> torch.Tensor:
        return self._read(idx, image_transform(bool(train), self.image_size, self.resize))

    def load_strong(self, idx: np.ndarray) -> torch.Tensor:
        """LADA's strong view: the training transform with RandAugment(n=1, m=2) (`strong_image_transform`)."""
        return self._read(idx, strong_image_transform(self.image_size, self.resize))

    def subset(self, idx: np.ndarray, name: str | None = None) -> FileImageDomain:
        idx = np.asarray(idx, dtype=np.int64)
        return FileImageDomain(name=name or self.name, classes=self.classes, ids=self.ids[idx], y=self.y[idx],
                               paths=self.paths[idx], image_size=self.image_size, resize=self.resize)

    def describe(self, i: int) -> str:
        return str(self.paths[i])

    def image_path(self, i: int) -> str | None:
        return str(self.paths[i])

    def verify(self) -> None:
        """Decode every file (`check_decodes`: JPEGs at 1/8 scale, about 0.4 ms per image), so that a corrupt or
        truncated image stops the run before training. Raises a `DataError` naming the unreadable files (the
        first five and the count)."""
        bad = [f"{p} ({why})" for p in self.paths.tolist() if (why := check_decodes(p)) is not None]
        if bad:
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise DataError(f"domain {self.name!r}: {len(bad)} unreadable image(s): {'; '.join(bad[:5])}{more}. "
                            "Replace them with readable copies (or list only readable files).")


def image_inputs(items: list, image_size: int, resize: int, ids: list[str] | None = None,
                 verify: bool = True, name: str = "input") -> Domain:
    """Image files (paths) or PIL images to predict on or extract features from, as a domain that reads them as
    adakit reads image files (`to_rgb`, then the evaluation transform); ``ids`` default to positions. Files are
    decoded first (`FileImageDomain.verify`) unless ``verify`` is off; missing files and a list mixing paths with
    PIL images are `DataError`s."""
    from PIL import Image

    from adakit.data.domain import TensorDomain

    n = len(items)
    ids = np.arange(n).astype(str) if ids is None else np.array(ids)
    if all(isinstance(i, (str, os.PathLike)) for i in items):
        missing = [str(i) for i in items if not Path(i).is_file()]
        if missing:
            raise DataError(f"input: {len(missing)} image file(s) not found, e.g. {missing[0]}")
        dom = FileImageDomain(name=name, classes=[], ids=ids, y=np.full(n, -1),
                              paths=np.array([str(i) for i in items]), image_size=image_size, resize=resize)
        if verify:
            dom.verify()
        return dom
    if not all(isinstance(i, Image.Image) for i in items):
        raise DataError("input: a list mixing image paths and PIL images; pass one kind")
    tf = image_transform(False, image_size, resize)
    return TensorDomain(name=name, classes=[], ids=ids, y=np.full(n, -1),
                        x=torch.stack([tf(to_rgb(i)) for i in items]))


def read_image_inputs(path: Path, image_size: int, resize: int, cfg=None, image_list: bool = False) -> Domain | None:
    """The images at ``path`` to predict on or extract features from (`image_inputs`), or None when ``path`` holds
    none of these: a folder (images at any depth, ids relative to it, in `load_image_folder`'s order: each class
    sub-folder's in class order, after the images directly in the folder; `folder_images`), one image file, or an
    image list (``image_list``, or a ``.txt`` file; read as training reads lists: `parse_image_list`, paths
    resolved as `load_image_list` resolves them with ``cfg``; labels, if any, ignored)."""
    if path.is_dir():
        files = folder_images(path, loose=True)
        if not files:
            raise DataError(f"{path}: no images found (looked for .jpg, .png, ... at any depth)")
        return image_inputs(files, image_size, resize, ids=[f.relative_to(path).as_posix() for f in files])
    if not path.is_file():
        return None
    if not image_list and path.suffix.lower() in IMAGE_EXTENSIONS:
        return image_inputs([path], image_size, resize, ids=[path.name])
    if image_list or path.suffix.lower() == ".txt":
        entries, linenos = parse_image_list(path)[:2]
        return image_inputs([Path(p) for p in _resolve(entries, linenos, path, cfg)], image_size, resize, ids=entries)
    return None


def _sizes(cfg) -> tuple[int, int]:
    image_size = (cfg.image_size if cfg is not None else None) or DEFAULT_IMAGE_SIZE
    resize = (cfg.resize if cfg is not None else None) or default_resize(image_size)
    if resize < image_size:
        raise ConfigError(f"data.resize={resize} is smaller than data.image_size={image_size}; the shorter "
                          "side is resized first and then cropped, so resize must be >= image_size")
    return image_size, resize


def _finish(domain: FileImageDomain, cfg) -> FileImageDomain:
    if cfg is None or cfg.verify_images:
        domain.verify()
    return domain


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()


def junk_folder(name: str) -> bool:
    """A hidden folder or one of the thumbnail / metadata folders file managers leave (`JUNK_FOLDERS`)."""
    return name.startswith(".") or name in JUNK_FOLDERS


#: photo formats that phones and cameras write and adakit cannot read: named when a folder holds them
UNREADABLE_PHOTOS = frozenset({".heic", ".heif", ".avif", ".jxl"})
#: JPEG files under suffixes that browsers save (.jfif) but that are not among `IMAGE_EXTENSIONS` (adding them would
#: change the file lists, and so the fingerprints, of existing runs): left out with a warning saying to rename them
OTHER_JPEG_SUFFIXES = frozenset({".jfif", ".jpe", ".pjpeg", ".pjp"})


def find_images(folder: Path) -> list[Path]:
    """The image files under ``folder`` at any depth, sorted by relative path; hidden and `JUNK_FOLDERS`
    sub-folders are skipped, symlinked sub-folders followed (each real folder once). Photos in formats adakit
    cannot read (`UNREADABLE_PHOTOS`) and broken links to images are left out with a warning."""
    found: list[Path] = []
    left: list[str] = []
    renamable: list[str] = []
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link back up the tree, or a second link to the same folder
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = [d for d in dirs if not junk_folder(d)]
        for f in files:
            p = Path(root) / f
            if _is_image(p):
                found.append(p)
            elif not f.startswith(".") and p.suffix.lower() in OTHER_JPEG_SUFFIXES:
                renamable.append(p.relative_to(folder).as_posix())
            elif not f.startswith(".") and (p.suffix.lower() in UNREADABLE_PHOTOS
                                            or (p.suffix.lower() in IMAGE_EXTENSIONS and not p.exists())):
                left.append(p.relative_to(folder).as_posix())
    if left:
        warnings.warn(f"{folder}: {len(left)} file(s) left out: photos in a format adakit cannot read (HEIC, AVIF, "
                      f"JPEG XL: convert them to JPEG or PNG) or links to images that no longer exist: "
                      f"{sorted(left)[:5]}{' ...' if len(left) > 5 else ''}", UserWarning, stacklevel=2)
    if renamable:
        warnings.warn(f"{folder}: {len(renamable)} JPEG file(s) left out for their suffix "
                      f"({', '.join(sorted({Path(r).suffix for r in renamable}))}): rename them to .jpg to use them: "
                      f"{sorted(renamable)[:5]}{' ...' if len(renamable) > 5 else ''}", UserWarning, stacklevel=2)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def class_folders(path: Path) -> list[Path]:
    """The class sub-folders of an image folder in class order: sorted by name, hidden and `JUNK_FOLDERS` skipped.
    A link to a folder that does not exist (an unmounted drive) is a `DataError` naming it: skipped, its class
    would be missing from the class list."""
    entries = list(path.iterdir())
    broken = sorted(d for d in entries if d.is_symlink() and not d.exists() and not junk_folder(d.name)
                    and d.suffix.lower() not in IMAGE_EXTENSIONS | UNREADABLE_PHOTOS)  # (a link to a photo: warned)
    if broken:
        raise DataError(f"image folder {path}: the class folder {broken[0]} is a link to {os.readlink(broken[0])}, "
                        f"which does not exist{f' ({len(broken)} such links)' if len(broken) > 1 else ''}; mount "
                        "or restore the folder it points to, or remove the link if it is not a class")
    return sorted((d for d in entries if d.is_dir() and not junk_folder(d.name)), key=lambda d: d.name)


def class_images(class_dirs: list[Path]) -> tuple[list[Path], list[int]]:
    """The images of each class folder, class after class (`find_images` within each), and their class indices:
    the rows of `load_image_folder`."""
    files: list[Path] = []
    labels: list[int] = []
    for c, d in enumerate(class_dirs):
        found = find_images(d)
        files.extend(found)
        labels.extend([c] * len(found))
    return files, labels


def folder_images(path: Path, loose: bool = False) -> list[Path]:
    """The images `load_image_folder` reads from ``path``, in its order: those of the class sub-folders
    (`class_images`), or every image of a folder without class sub-folders (`find_images`). ``loose``: also the
    images directly in a folder with class sub-folders (which `load_image_folder` leaves out), first."""
    class_dirs = class_folders(path)
    if not class_dirs:
        return find_images(path)
    files = class_images(class_dirs)[0]
    return (sorted(p for p in path.iterdir() if _is_image(p)) + files) if loose else files


def same_file_twice(paths: Sequence[str | Path]) -> tuple[int, int] | None:
    """Positions (i, j), i < j, of the first two paths that name one file (through a link, ``./``, ``//`` or an
    absolute path), or None: that image would be two samples."""
    first: dict[str, int] = {}
    folders: dict[str, str] = {}  # each folder resolved once: a file's own link is the only other lookup
    for j, p in enumerate(paths):
        head, tail = os.path.split(os.path.abspath(p))
        real = folders.get(head) or folders.setdefault(head, os.path.realpath(head))
        i = first.setdefault(os.path.realpath(p) if os.path.islink(p) else os.path.join(real, tail), j)
        if i != j:
            return i, j
    return None


def refuse_unusable_names(files: list[Path], root: Path, what: str) -> None:
    """File or folder names that cannot be sample ids: a line break (the query CSVs people answer in could not
    hold the id on one line; their import refuses rows spanning lines) or bytes that are not UTF-8 (an archive
    made on an old system: the ledger, the CSVs and the page store ids as UTF-8 text). A `DataError` naming
    them, before any work. ``what`` names the files' folder in the message."""
    broken = [f for f in files if "\n" in str(f) or "\r" in str(f)]
    if broken:
        raise DataError(f"{what}: {len(broken)} image path(s) hold a line break, e.g. "
                        f"{str(broken[0].relative_to(root))!r}; rename them (a sample id must fit on one line of the "
                        "CSV files people answer in)")
    undecodable = [f for f in files if not str(f).isascii() and _not_utf8(str(f))]
    if undecodable:
        shown = os.fsencode(undecodable[0].relative_to(root))
        raise DataError(f"{what}: {len(undecodable)} image path(s) are not UTF-8, e.g. {shown!r} (written by a system "
                        "with another encoding, such as Latin-1); rename them to UTF-8, e.g. with "
                        f"`convmv -r -f latin1 -t utf8 --notest {root}`")


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


@register_loader("image_folder")
def load_image_folder(path: Path, name: str, cfg=None) -> FileImageDomain:
    """``<path>/<class>/**/<image>``: classes are the sorted sub-folder names; files sorted within each. A folder
    with images but no class sub-folders is an unlabelled domain without a class list (labels -1): as a target,
    `adakit.data.load_domains` gives it the source's classes."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"image folder not found: {path} (domain {name!r}). Check data.root / data.pattern or "
                        "set ADAKIT_DATA; the folder must hold one sub-folder of images per class.")
    class_dirs = class_folders(path)
    stray = [p.name for p in path.iterdir() if _is_image(p)]
    if not class_dirs:
        if not stray:
            raise DataError(f"image folder {path} (domain {name!r}) is empty (no class sub-folders); expected "
                            f"{path}/<class>/<image>, or the images themselves for an unlabelled domain")
        files = find_images(path)  # unlabelled photos, no class folders
        refuse_unusable_names(files, path, f"image folder {path} (domain {name!r})")
        return image_inputs(files, *_sizes(cfg), ids=[f.relative_to(path).as_posix() for f in files],
                            verify=cfg is None or cfg.verify_images, name=name)
    if stray:
        warnings.warn(f"image folder {path} (domain {name!r}): {len(stray)} image(s) directly in {path} belong to no "
                      f"class folder and are left out: {stray[:5]}{' ...' if len(stray) > 5 else ''}. Move them into "
                      "their class folders (or, for an unlabelled domain, use a folder without class folders).",
                      UserWarning, stacklevel=2)
    files, labels = class_images(class_dirs)
    if not files:
        raise DataError(f"image folder {path} (domain {name!r}) has {len(class_dirs)} class folders but no images "
                        f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
    refuse_unusable_names(files, path, f"image folder {path} (domain {name!r})")
    twice = same_file_twice(files)
    if twice is not None:
        first, second = (files[k].relative_to(path).as_posix() for k in twice)
        raise DataError(f"image folder {path} (domain {name!r}): the image file {os.path.realpath(files[twice[1]])} "
                        f"is reached as {first} and as {second} (a symbolic link); it would count twice, under the "
                        "class of each path. Remove the link or keep one copy in its class folder")
    present = set(labels)
    empty = [d.name for c, d in enumerate(class_dirs) if c not in present]
    if empty:
        warnings.warn(f"image folder {path} (domain {name!r}): {len(empty)} class folder(s) hold no images: "
                      f"{empty[:10]}{' ...' if len(empty) > 10 else ''}. They stay in the class list (so that class "
                      "indices line up with the other domain); the model learns such a class only from labelled "
                      "samples of another domain. Remove the folders if they are not meant to be classes.",
                      UserWarning, stacklevel=2)
    image_size, resize = _sizes(cfg)
    ids = [f.relative_to(path).as_posix() for f in files]
    domain = FileImageDomain(name=name, classes=[d.name for d in class_dirs], ids=np.array(ids),
                             y=np.array(labels, dtype=np.int64), paths=np.array([str(f) for f in files]),
                             image_size=image_size, resize=resize)
    return _finish(domain, cfg)


def _read_classes(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]  # (a BOM is dropped)
    names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise DataError(f"{path} is empty; it should list one class name per line")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"{path}: class names listed twice: {dup[:10]}")
    return names


def _labels(tokens: list[str], linenos: list[int], classes: list[str] | None, list_path: Path,
            classes_path: Path) -> tuple[np.ndarray, list[str]]:
    """Class indices of the label tokens, and the class list (from classes.txt or from the labels)."""
    if classes is not None:
        index = {c: i for i, c in enumerate(classes)}
        if all(t in index for t in tokens):
            return np.array([index[t] for t in tokens], dtype=np.int64), classes
        # classes named by numbers other than their position ("1", "2", ...): a number is read as a name only,
        # in every list, or "1" would be class "1" in one list and index 1 in another
        by_name = any(_INT.match(c) and c != str(i) for i, c in enumerate(classes))
        for t, n in zip(tokens, linenos):
            if by_name and t not in index:
                raise DataError(f"{list_path}, line {n}: label {t!r} is not a class name in {classes_path}; its "
                                f"classes are named by numbers ({', '.join(classes[:5])}...), so labels must be those "
                                "names, not indices")
        for t, n in zip(tokens, linenos):  # the first label that is neither a name nor a number
            if t not in index and not _INT.match(t):
                raise DataError(f"{list_path}, line {n}: label {t!r} is neither a class name in {classes_path} "
                                f"nor an integer index")
        for t, n in zip(tokens, linenos):
            if not _INT.match(t):
                raise DataError(f"{list_path}, line {n}: label {t!r} is a class name, but other lines give integer "
                                "indices; write every label of the list the same way (names, or indices)")
            if not 0 <= int(t) < len(classes):
                raise DataError(f"{list_path}, line {n}: label {t} is outside the class list 0..{len(classes) - 1} "
                                f"({len(classes)} classes in {classes_path})")
        return np.array([int(t) for t in tokens], dtype=np.int64), classes
    if tokens and all(_INT.match(t) for t in tokens):
        limit = max(1000, 10 * len(tokens))  # class indices 0..C-1 of a list without classes.txt
        for t, n in zip(tokens, linenos):
            if int(t) >= limit:
                raise DataError(f"{list_path}, line {n}: label {t} would make {t} classes for {len(tokens)} labelled "
                                f"images; if the labels are codes, list the class names in {classes_path} (one per "
                                "line) and give the names as labels")
        y = np.array([int(t) for t in tokens], dtype=np.int64)
        if (y < 0).any():
            n = linenos[int(np.flatnonzero(y < 0)[0])]
            raise DataError(f"{list_path}, line {n}: negative label; labels are class indices 0..C-1 or names")
        if y.min() > 0:
            warnings.warn(f"{list_path}: the labels start at {y.min()}, so classes 0..{y.min() - 1} have no sample; "
                          f"if they are codes 1..C, list the class names in {classes_path} (one per line)",
                          UserWarning, stacklevel=2)
        return y, [str(i) for i in range(int(y.max()) + 1)]
    names = sorted(set(tokens))
    index = {c: i for i, c in enumerate(names)}
    return np.array([index[t] for t in tokens], dtype=np.int64), names


def _resolve(entries: list[str], linenos: list[int], list_path: Path, cfg) -> list[str]:
    """Paths relative to the list's folder, its parent, or the data root: the first base holding the first file."""
    from adakit.paths import data_root, expand

    bases = [list_path.parent, list_path.parent.parent]
    if cfg is not None and cfg.root:
        bases.append(expand(cfg.root))
    root = data_root(required=False)
    if root is not None:
        bases.append(root)
    rel = next((e for e in entries if not os.path.isabs(e)), None)
    base = next((b for b in bases if rel is not None and (b / rel).is_file()), bases[0])
    paths = [e if os.path.isabs(e) else str(base / e) for e in entries]
    missing = [i for i, p in enumerate(paths) if not os.path.isfile(p)]
    if missing:
        i = missing[0]
        hint = "; the list uses Windows backslashes: write paths with /" if "\\" in entries[i] else ""
        if i == 0 and not Path(entries[i]).suffix:
            hint += f"; if line {linenos[i]} is a header, remove it or start it with #"
        if (more := _IMAGE_THEN_TEXT.match(entries[i])) is not None:
            hint += (f"; the text after the image's name ({more.group(2)!r}) looks like part of a label holding a "
                     "space: labels are one word, so give class indices (0, 1, ...) and list the class names, one "
                     f"per line, in {list_path.parent / 'classes.txt'}")
        raise DataError(f"{list_path}, line {linenos[i]}: image not found: {entries[i]} (looked in "
                        f"{', '.join(str(b) for b in dict.fromkeys(bases))}); {len(missing)} listed file(s) missing"
                        + hint)
    return paths


def parse_image_list(path: Path, name: str = "input") -> tuple[list[str], list[int], list[str], list[int], list[int]]:
    """The lines of an image list: (image entries, their line numbers, label tokens, the tokens' line numbers,
    positions of the entries without a label). A path may hold spaces ("my photos/a.jpg 3"); blank lines and
    ``#`` comments are skipped; a missing, non-UTF-8 or empty list and an entry listed twice are `DataError`s."""
    if not path.is_file():
        raise DataError(f"image list not found: {path} (domain {name!r}). Check data.root / data.pattern or set "
                        "ADAKIT_DATA; the file should hold one 'path label' line per image.")
    entries, tokens, linenos, tok_lines, unlabelled = [], [], [], [], []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not a UTF-8 text file ({err}); expected 'path label' lines") from None
    for n, line in enumerate(lines, start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if _CSV_ROW.match(line):
            raise DataError(f"{path}, line {n}: {line!r} is comma-separated (a CSV row?); an image list holds "
                            "'path label' lines with white space between path and label: replace the comma with a "
                            "space (and remove a header line, or start it with #)")
        parts = line.rsplit(maxsplit=1)
        # a path without a label (an unlabelled sample), also when the path holds a space ("my photos/a.jpg")
        if len(parts) == 1 or Path(parts[1]).suffix.lower() in IMAGE_EXTENSIONS:
            entries.append(line)
            unlabelled.append(len(entries) - 1)
        else:
            entries.append(parts[0])
            tokens.append(parts[1])
            tok_lines.append(n)
        linenos.append(n)
    if not entries:
        raise DataError(f"image list {path} (domain {name!r}) lists no images; expected 'path label' lines")
    first: dict[str, int] = {}
    for e, n in zip(entries, linenos):
        if e in first:
            raise DataError(f"{path}, line {n}: {e} is listed twice (first at line {first[e]})")
        first[e] = n
    return entries, linenos, tokens, tok_lines, unlabelled


@register_loader("image_list")
def load_image_list(path: Path, name: str, cfg=None) -> FileImageDomain:
    """Text file of ``path label`` lines (the Office-31 / Office-Home / DomainNet list format).

    ``label`` is a class index or a class name; a line with a path only is an unlabelled sample.
    Class names come from ``classes.txt`` beside the list file (one per line) when present, else from
    the labels (indices 0..max, or the sorted set of names). Blank lines and ``#`` comments are skipped.
    """
    path = Path(path)
    entries, linenos, tokens, tok_lines, unlabelled = parse_image_list(path, name)
    classes_path = path.parent / "classes.txt"
    classes = _read_classes(classes_path) if classes_path.is_file() else None
    if not tokens and classes is None:
        raise DataError(f"{path}: no line has a label and there is no {classes_path} to give the class list")
    y_lab, classes = _labels(tokens, tok_lines, classes, path, classes_path)
    y = np.full(len(entries), -1, dtype=np.int64)
    labelled = np.setdiff1d(np.arange(len(entries)), np.array(unlabelled, dtype=np.int64))
    y[labelled] = y_lab
    paths = _resolve(entries, linenos, path, cfg)
    twice = same_file_twice(paths)
    if twice is not None:
        raise DataError(f"{path}, line {linenos[twice[1]]}: {paths[twice[1]]} is the image of line "
                        f"{linenos[twice[0]]} too (the same file written another way); list each image once")
    image_size, resize = _sizes(cfg)
    domain = FileImageDomain(name=name, classes=classes, ids=np.array(entries), y=y, paths=np.array(paths),
                             image_size=image_size, resize=resize)
    return _finish(domain, cfg)

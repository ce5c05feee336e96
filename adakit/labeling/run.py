"""A run folder opened for labelling: its config, target pool, class list, ledger and open queries.

Images are only ever served through `LabelingRun.image_data(sample_id)` and
`LabelingRun.neighbour_file(domain, sample_id)`: maps from the ids the ledger queried (and from the
labelled neighbours shown for feature rows) to the files their domain describes, or, for images held in
memory (digit arrays, image tensors and Datasets given from Python), to a PNG drawn from the sample.
Nothing taken from a URL is ever used as a path.
"""

from __future__ import annotations

import secrets
import threading
import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from adakit.config import ExperimentConfig
from adakit.data import Domains, load_domains
from adakit.data.domain import Domain, TensorDomain
from adakit.data.images import IMAGE_EXTENSIONS, FileImageDomain, read_image
from adakit.errors import ConfigError, DataError, LedgerBusy, NotQueried
from adakit.ledger import BUSY_TIMEOUT_S, DROPPED, Ledger, Query, label_name, means_drop
from adakit.oracle import class_lookup, close_class, resolve_label
from adakit.rundir import sh, stored_experiment

IMAGE_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png", ".gif": "image/gif",
               ".bmp": "image/bmp", ".webp": "image/webp"}
TOKEN_KEY = "labeling/token"


def open_run(run_dir: str | Path, domains: Domains | None = None) -> tuple[ExperimentConfig, Domains, Ledger]:
    """Config, domains (loaded as the run loads them) and ledger of an existing run folder; data that is not what
    the run started with (another class list, rows or files added or removed) is refused, as `adakit resume`
    refuses it."""
    run_dir = Path(run_dir)
    cfg = stored_experiment(run_dir)  # named errors for a missing, damaged or config-less ledger
    if domains is None and cfg.data.format == "objects":
        raise ConfigError(f"{run_dir} was started from Python objects, which adakit does not store. Answer its "
                          f"queries/round-K.csv and `adakit import-labels {sh(run_dir)} FILE`, or serve the labelling "
                          "page from Python with the same objects: LabelingRun(loop=ActiveLoop.resume(run_dir, "
                          "source=..., target=..., ...)) (README: Labelling with people)")
    ledger = Ledger(run_dir / "ledger.sqlite")
    try:
        if domains is None:  # (domains from Python come from an ActiveLoop, which checked them)
            from adakit.loop import check_class_list, check_file_data

            domains = load_domains(cfg.data, cfg.seed)
            # before anything maps a stored pool index to a file or a class name
            check_file_data(run_dir, ledger.get_meta("data_fingerprint"), domains.fingerprint, cfg.data)
            check_class_list(run_dir, ledger.classes(), domains.classes, objects=False)
    except BaseException:
        ledger.close()
        raise
    return cfg, domains, ledger


def image_file_of(locator: str) -> Path | None:
    """The image file a domain's `describe(i)` names, or None (feature rows, missing files)."""
    p = Path(locator)
    if p.suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    try:
        p = p.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    return p if p.is_file() else None


def file_data(path: Path) -> tuple[bytes, str] | None:
    """(bytes, content type) of an image file the run may serve, or None when it cannot be read. Formats
    browsers show (`IMAGE_TYPES`) are sent as they are (browsers apply the EXIF orientation and show
    transparency on the page's white, as adakit reads them); others (TIFF, PPM, PGM) as a PNG of what the
    model reads (`read_image`)."""
    ctype = IMAGE_TYPES.get(Path(path).suffix.lower())
    try:
        return (Path(path).read_bytes(), ctype) if ctype is not None else (browser_png(path), "image/png")
    except (OSError, DataError):
        return None


def browser_png(path: str | Path) -> bytes:
    """An image file in a format browsers cannot show, as PNG bytes of what adakit reads from it."""
    import io

    buf = io.BytesIO()
    read_image(path).save(buf, format="PNG")
    return buf.getvalue()


def _is_features(d: Domain) -> bool:
    return isinstance(d, TensorDomain) and d.is_features


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=1)


@dataclass
class Neighbour:
    """A labelled sample near a queried feature row: ``domain`` is ``source`` or ``pool``."""

    domain: str
    sample_id: str
    label: int
    similarity: float
    image: Path | None


@dataclass
class Item:
    """One query as the labelling page shows it."""

    sample_id: str
    pool_index: int
    round: int
    rank: int
    score: float | None
    locator: str
    image: Path | None
    suggestions: list[tuple[int, float | None]]
    drawn: bool = False  # no file, but the domain holds the image's pixels: served as a PNG

    @property
    def has_image(self) -> bool:
        return self.image is not None or self.drawn


#: an in-memory image smaller than this (pixels, longer side) is enlarged for the page, nearest-neighbour
MIN_SHOWN = 160


def png_of(x: torch.Tensor) -> bytes:
    """One image tensor (C, H, W), 1 or 3 channels, as PNG bytes. Values in [0, 1] are shown as they are;
    others (a normalised image) are rescaled from their own min..max. Small images are enlarged."""
    import io

    from PIL import Image

    x = x.detach().float().cpu()
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        x = (x - lo) / max(hi - lo, 1e-12)
    a = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    img = Image.fromarray(a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).contiguous().numpy())
    scale = -(-MIN_SHOWN // max(img.size))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _drawable(d: Domain) -> bool:
    """Whether the domain's samples are images it can hand out as pixels (C, H, W), C = 1 or 3 (feature rows
    with a ``pixel_shape``, as the demo's 8×8 digits, included)."""
    try:
        shape = getattr(d, "pixel_shape", None) or d.input_shape
    except Exception:  # noqa: BLE001 - a Dataset that fails to load: nothing to draw
        return False
    return len(shape) == 3 and shape[0] in (1, 3)


def pixels(pool: Domain, index: int) -> torch.Tensor:
    """Sample ``index`` of the pool as an image (C, H, W) to draw (feature rows reshaped by ``pixel_shape``)."""
    x = pool.load(np.array([index]))[0]
    shape = getattr(pool, "pixel_shape", None)
    if not shape:
        return x
    standardized = getattr(pool, "standardized_with", None)  # data.standardize: back to the pixel values
    if standardized is not None:
        x = x * standardized[1] + standardized[0]
    return x.reshape(shape)


def draws_images(pool: Domain) -> bool:
    """Whether the pool's images are held in memory (no files) and can be drawn as PNG: digit datasets,
    image arrays, tensors or Datasets from Python."""
    return not isinstance(pool, FileImageDomain) and _drawable(pool)


#: how long an answer waits for another process's write transaction on the ledger before it is refused (503),
#: in tries of `BUSY_TRY_S`
BUSY_WAIT_S, BUSY_TRY_S = BUSY_TIMEOUT_S, 0.2


class LabelingRun:
    """The open queries of a run and everything needed to answer them.

    The items are the queries of every round still waiting for labels (status ``queried``): answered
    ones stay visible (navigating back, corrections) until `adakit resume` trains on them. The model's
    top-k suggestions come from the last checkpoint when ``with_model`` (else the stored argmax).
    A run started from Python objects is opened from its `ActiveLoop` (``LabelingRun(loop=loop)``):
    the loop brings the data and the model that the run folder does not store.
    """

    def __init__(self, run_dir: str | Path | None = None, domains: Domains | None = None, with_model: bool = True,
                 top_k: int = 3, *, loop=None):
        if loop is not None:
            run_dir, domains = loop.run_dir, loop.domains
        elif run_dir is None:
            raise TypeError("LabelingRun needs a run folder or loop=ActiveLoop(...)")
        self.run_dir = Path(run_dir)
        self.cfg, self.domains, self.ledger = open_run(self.run_dir, domains)
        self.classes = list(self.domains.classes)
        self._by_name = class_lookup(self.classes)
        self.pool = self.domains.pool
        self.top_k = top_k
        self.lock = threading.RLock()  # one ledger connection shared by the server's threads
        self._closed = False
        self._loop, self._own_loop = loop, loop is None
        self._restored: tuple[int, str] | None = None  # the checkpoint the suggestions come from
        self._with_model = with_model
        self._items: dict[str, Item] = {}
        self._unit: dict[str, torch.Tensor] = {}  # L2-normalised feature rows of source and pool
        self._neighbour_files: dict[tuple[str, str], Path] = {}
        from adakit.oracle import export_missing

        try:  # a process killed between recording queries and writing their CSV: write it now
            export_missing(self.ledger, self.pool, self.classes, self.run_dir)
        except OSError as e:  # a read-only run folder: the page works without the CSV
            warnings.warn(f"could not write the missing queries CSV in {self.run_dir / 'queries'}: {e}", stacklevel=2)
        except BaseException:
            self.ledger.close()
            raise

    def close(self) -> None:
        with self.lock:  # (an answer being written finishes first; later ones get LedgerBusy)
            self._closed = True
            self.ledger.close()
            if self._loop is not None and self._own_loop:
                self._loop.ledger.close()

    # -- token ------------------------------------------------------------------------------------
    def token(self, renew: bool = False) -> str:
        """The run's labelling token (stored in the ledger, so a restarted server keeps its URL)."""
        with self.lock:
            tok = None if renew else self.ledger.get_meta(TOKEN_KEY)
            if not tok:
                tok = secrets.token_urlsafe(18)
                self.ledger.set_meta(TOKEN_KEY, tok)
            return tok

    # -- queries ----------------------------------------------------------------------------------
    def pending_queries(self) -> list[Query]:
        """Queries of the rounds that wait for labels (answered ones included), by round and rank."""
        with self.lock:
            rounds = [r for (r,) in self.ledger.conn.execute(
                "SELECT round FROM rounds WHERE status='queried' ORDER BY round")]
            return [q for r in rounds for q in self.ledger.queries(r)]

    def _model(self):
        """The run's model on its last checkpoint: reloaded when `adakit resume` has trained a round since the
        page opened (new rounds' suggestions come from the model that chose them). A loop given by the caller
        trains in this process and is current: its checkpoint is loaded once."""
        if self._loop is None:
            from adakit.loop import ActiveLoop

            self._loop = ActiveLoop.resume(self.run_dir, show_progress=False, domains=self.domains)
        last = self.ledger.last_checkpoint()
        if self._restored is None or (self._own_loop and last != self._restored):
            self._loop.restore()
            self._restored = last
        return self._loop

    def _suggest(self, queries: list[Query]) -> dict[str, list[tuple[int, float | None]]]:
        k = min(self.top_k, len(self.classes))
        if self._with_model and queries and self.ledger.last_checkpoint() is not None:
            try:
                probs = self._model().pool_probabilities([q.pool_index for q in queries])
            except (OSError, RuntimeError) as e:  # checkpoint missing or unreadable: the stored argmax will do
                warnings.warn(f"model suggestions unavailable ({e}); showing the stored prediction only", stacklevel=2)
                self._with_model = False
            else:
                p, c = probs.topk(k, dim=1)
                return {q.sample_id: [(int(ci), float(pi)) for ci, pi in zip(c[j], p[j])]
                        for j, q in enumerate(queries)}
        return {q.sample_id: ([(q.suggested, None)] if q.suggested is not None else []) for q in queries}

    def items(self) -> list[Item]:
        with self.lock:
            qs = self.pending_queries()
            new = [q for q in qs if q.sample_id not in self._items]
            if new:
                sugg = self._suggest(new)
                for q in new:
                    loc = self.pool.describe(q.pool_index)
                    file = image_file_of(loc)
                    self._items[q.sample_id] = Item(q.sample_id, q.pool_index, q.round, q.rank, q.score, loc,
                                                    file, sugg[q.sample_id], drawn=file is None and self._draws)
            return [self._items[q.sample_id] for q in qs]

    @cached_property
    def _draws(self) -> bool:
        return draws_images(self.pool)

    def image_data(self, sample_id: str) -> tuple[bytes, str] | None:
        """(bytes, content type) of a queried sample's image: its file, or a PNG drawn from the pixels the
        domain holds; None for feature rows, unknown ids and unreadable files. Never derived from the request."""
        if not isinstance(sample_id, str):
            return None
        item = next((i for i in self.items() if i.sample_id == sample_id), None)
        if item is None or not item.has_image:
            return None
        if item.image is not None:
            return file_data(item.image)
        with self.lock:  # a user's Dataset is read from one thread at a time
            x = pixels(self.pool, item.pool_index)
        return png_of(x), "image/png"

    # -- nearest labelled neighbours (feature pools) ----------------------------------------------
    @property
    def has_feature_pool(self) -> bool:
        return _is_features(self.pool) and _is_features(self.domains.source)

    def neighbours(self, items: list[Item] | None = None, k: int = 3) -> dict[str, list[Neighbour]]:
        """The ``k`` nearest labelled samples (cosine on the features) of each item, for feature pools.

        Labelled = every source sample plus the pool samples labelled in the ledger (the item itself
        excluded). One matrix product of the items' rows against the labelled set. Their image files
        (where the domain knows them) become servable by `neighbour_file`. Empty for image pools.
        """
        items = self.items() if items is None else items
        if not items or not self.has_feature_pool:
            return {}
        src, pool = self.domains.source, self.pool
        with self.lock:
            pidx, plab = self.ledger.labelled_pool()
        if not self._unit:
            self._unit = {"source": _unit_rows(src.x), "pool": _unit_rows(pool.x)}
        pidx_t = torch.as_tensor(pidx, dtype=torch.long)
        bank = torch.cat([self._unit["source"], self._unit["pool"][pidx_t]])
        rows = [i.pool_index for i in items]
        sims = self._unit["pool"][torch.as_tensor(rows, dtype=torch.long)] @ bank.T
        at = {p: len(src) + j for j, p in enumerate(pidx)}
        for r, p in enumerate(rows):  # a labelled item is not its own neighbour
            if p in at:
                sims[r, at[p]] = -torch.inf
        kk = min(k, bank.shape[0] - (1 if at else 0))
        if kk <= 0:
            return {i.sample_id: [] for i in items}
        top_s, top_j = sims.topk(kk, dim=1)
        out: dict[str, list[Neighbour]] = {}
        for r, item in enumerate(items):
            found = []
            for s, j in zip(top_s[r].tolist(), top_j[r].tolist()):
                if s == -np.inf:
                    continue
                dom, i, label = ("source", j, int(src.y[j])) if j < len(src) else \
                    ("pool", pidx[j - len(src)], int(plab[j - len(src)]))
                d = src if dom == "source" else pool
                sid = str(d.ids[i])
                loc = d.image_path(i)
                image = image_file_of(loc) if loc is not None else None
                if image is not None:
                    self._neighbour_files[(dom, sid)] = image
                found.append(Neighbour(dom, sid, label, float(s), image))
            out[item.sample_id] = found
        return out

    def neighbour_file(self, domain: str, sample_id: str) -> Path | None:
        """The image of a neighbour `neighbours` has shown, or None. Never derived from the request."""
        if not isinstance(domain, str) or not isinstance(sample_id, str):
            return None
        return self._neighbour_files.get((domain, sample_id))

    def progress(self, items: list[Item] | None = None) -> tuple[int, int]:
        """(answered, total) over the pending items."""
        items = self.items() if items is None else items
        labels = self.current_labels()
        return sum(i.sample_id in labels for i in items), len(items)

    def current_labels(self) -> dict[str, int]:
        with self.lock:
            return self.ledger.current_labels()

    # -- answers ----------------------------------------------------------------------------------
    def class_index(self, value) -> int:
        """A class given by index (int) or name, or `DROPPED` (-1, or "drop" when no class has that name)
        for a sample nobody can label; `DataError` otherwise."""
        if isinstance(value, bool):
            raise DataError(f"label {value!r} is not a class")
        if isinstance(value, (int, np.integer)):
            if DROPPED <= int(value) < len(self.classes):
                return int(value)
            raise DataError(f"label {int(value)} is outside the class list 0..{len(self.classes) - 1} "
                            f"({DROPPED}: drop the query)")
        if isinstance(value, str):  # a name (as written, stripped or in NFC form) or an index in decimal digits ("3"),
            named = resolve_label(value, self.classes, self._by_name)  # read as answer files are read
            if named is not None:
                return named
        if means_drop(value, self.classes):
            return DROPPED
        close = close_class(value, self.classes)
        raise DataError(f"label {value!r} is not in the class list ({len(self.classes)} classes)"
                        + (f"; did you mean {close!r}?" if close else ""))

    def label_name(self, label: int) -> str:
        """A recorded label as people read it: its class name, or "drop"."""
        return label_name(label, self.classes)

    def answer(self, sample_id: str, label, replaces=None, annotator: str = "web") -> tuple[str, int | None]:
        """Validate and write one answer (its own transaction, committed before this returns)."""
        label = self.class_index(label)
        replaces = None if replaces is None else self.class_index(replaces)
        deadline = time.monotonic() + BUSY_WAIT_S
        while True:
            with self.lock:  # (re-entrant: `items` takes it too)
                if self._closed:
                    raise LedgerBusy("the labelling server is stopping; this answer was not recorded, send it "
                                     "again once the page runs again")
                if sample_id not in {i.sample_id for i in self.items()}:
                    raise NotQueried(f"{sample_id!r} is not an open query of this run (the labels of rounds "
                                     "already trained are corrected with `adakit import-labels --correct`)")
                # another process writing (import-labels, resume): wait for it in short tries, without the lock,
                # so that the page's reads and other answers are not held for the whole wait
                self.ledger.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TRY_S * 1000)}")
                try:
                    return self.ledger.answer(sample_id, label, annotator, replaces=replaces)
                except LedgerBusy:
                    if time.monotonic() >= deadline:
                        raise
                finally:
                    self.ledger.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")  # (the ledger's)
            time.sleep(BUSY_TRY_S / 2)

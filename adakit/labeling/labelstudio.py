"""Label Studio interchange: tasks for a run's queries (import them into a Label Studio project) and
the matching labelling config. Answers come back through `adakit import-labels` (JSON or JSON-MIN export).

Each task: ``data.image`` (or ``data.text`` for feature rows), ``data.sample_id``, ``meta.sample_id`` /
``meta.round`` / ``meta.score``, and the model's suggestion as a ``predictions`` entry (pre-annotation).
Images held in memory (digit datasets, arrays or tensors from Python) are written as PNG files into a folder
beside the tasks file, which the tasks then reference like image files.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from adakit.data import Domains
from adakit.errors import ConfigError, DataError
from adakit.labeling.run import IMAGE_TYPES, browser_png, draws_images, image_file_of, open_run, pixels, png_of
from adakit.ledger import DROP
from adakit.rundir import check_not_ledger, replaced_atomically

FROM_NAME = "label"


def labeling_config(classes: list[str], kind: str) -> str:
    """Label Studio labelling config (XML): one image (or text) and a single choice among the classes, plus
    a last choice "drop" for a sample nobody can label (unless a class has that name)."""
    obj = '<Image name="image" value="$image"/>' if kind == "image" else '<Text name="text" value="$text"/>'
    choices = "\n".join([f"    <Choice value={quoteattr(c)}/>" for c in classes] +
                        ([] if DROP in classes else [f'    <Choice value="{DROP}" hint="nobody can label it"/>']))
    return (f'<View>\n  {obj}\n  <Choices name="{FROM_NAME}" toName="{kind}" choice="single" showInline="true">\n'
            f"{choices}\n  </Choices>\n</View>\n")


def _image_ref(locator: str, root: Path | None, url_prefix: str | None) -> str:
    path = Path(os.path.abspath(locator))
    ref = path
    if root is not None:
        for p, r in ((path, Path(os.path.abspath(root))), (path.resolve(), root.resolve())):
            try:
                ref = p.relative_to(r)
                break
            except ValueError:
                continue
        else:
            raise DataError(f"--root {root}: image {path} is not inside it; choose the folder holding the "
                            "images") from None
    if url_prefix is None:
        return str(ref)
    return url_prefix + quote(ref.as_posix(), safe="/")


def _write_png(pool, index: int, sample_id: str, folder: Path, data: bytes | None = None) -> Path:
    """A pool image held in memory (or the PNG ``data`` of a file browsers cannot show), written as
    ``folder/<index>-<sample id>.png`` (replaced atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{index:07d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', sample_id)[:80]}.png"
    with replaced_atomically(path, binary=True) as fh:
        fh.write(png_of(pixels(pool, index)) if data is None else data)
    return path


def export_labelstudio(run_dir: str | Path, out: str | Path, open_only: bool = True, root: str | Path | None = None,
                       url_prefix: str | None = None, domains: Domains | None = None, *,
                       overwrite: bool = False) -> tuple[int, Path]:
    """Write Label Studio tasks for the run's open queries (all queries when not ``open_only``) to ``out``
    and the labelling config next to it (``<out stem>.label-config.xml``). Returns (tasks, config path). An
    existing ``out`` is replaced only with ``overwrite=True`` (it may be an export holding annotations).

    Image references: the absolute path by default; relative to ``root`` when given; prefixed with
    ``url_prefix`` when given (e.g. ``/data/local-files/?d=`` with ``root`` = Label Studio's
    LOCAL_FILES_DOCUMENT_ROOT, or an http URL where the images are served). Images held in memory are
    written to ``<out stem>-images/`` as PNG (pool index and sample id in the name) and referenced the same way.
    """
    out = Path(out)
    if out.is_dir():
        raise ConfigError(f"{out} is a folder; give the tasks file to write in it (e.g. {out / 'tasks.json'})")
    setup = out.with_name(out.stem + ".label-config.xml")
    for f in (out, setup):
        check_not_ledger(f, "the tasks file" if f is out else "the labelling setup")
    if not overwrite:  # the tasks may be a Label Studio export holding people's annotations; the setup, edited
        taken = [str(f) for f in (out, setup) if f.exists()]
        if taken:
            raise ConfigError(f"{' and '.join(taken)} exist(s) (a Label Studio export may hold annotations, the "
                              "labelling setup your edits); choose another file or pass overwrite=True (--force) to "
                              "replace them")
    _, doms, ledger = open_run(run_dir, domains)
    try:
        classes = list(doms.classes)
        queries = ledger.open_queries() if open_only else ledger.queries()
        root_p = Path(root) if root is not None else None
        drawn = out.with_name(out.stem + "-images") if draws_images(doms.pool) else None
        tasks, kinds = [], set()
        for q in queries:
            loc = doms.pool.describe(q.pool_index)
            img = image_file_of(loc)
            if img is None and drawn is not None:
                loc = img = _write_png(doms.pool, q.pool_index, q.sample_id, drawn)
            elif img is not None and img.suffix.lower() not in IMAGE_TYPES:  # TIFF, PPM...: browsers cannot show it
                loc = img = _write_png(doms.pool, q.pool_index, q.sample_id,
                                       out.with_name(out.stem + "-images"), browser_png(img))
            kinds.add("image" if img is not None else "text")
            data = ({"image": _image_ref(loc, root_p, url_prefix)} if img is not None
                    else {"text": f"sample {q.sample_id} ({loc})"})
            data.update(sample_id=q.sample_id, round=q.round)
            task = {"data": data, "meta": {"sample_id": q.sample_id, "round": q.round, "score": q.score}}
            if q.suggested is not None:
                kind = "image" if img is not None else "text"
                task["predictions"] = [{"model_version": f"adakit-round-{q.round - 1}", "result": [
                    {"from_name": FROM_NAME, "to_name": kind, "type": "choices",
                     "value": {"choices": [classes[q.suggested]]}}]}]
            tasks.append(task)
    finally:
        ledger.close()
    if len(kinds) > 1:
        raise DataError("the queries mix image files and rows without an image; Label Studio needs one kind "
                        "per project")
    out.parent.mkdir(parents=True, exist_ok=True)
    with replaced_atomically(out) as fh:
        fh.write(json.dumps(tasks, indent=1))
    cfg_path = out.with_name(out.stem + ".label-config.xml")
    with replaced_atomically(cfg_path) as fh:
        fh.write(labeling_config(classes, kinds.pop() if kinds else "image"))
    return len(tasks), cfg_path

"""``adakit predict RUN INPUT --out preds.csv``: a finished run's model on new images or feature rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import typer

from adakit.cli import _fail, app, flag, out
from adakit.data.domain import Domain
from adakit.errors import AdakitError, DataError

FEATURE_SUFFIXES = {".npz": "npz", ".mat": "mat", ".svmlight": "svmlight", ".svm": "svmlight", ".libsvm": "svmlight"}


def _image_domain(paths: list[Path], ids: list[str], data_cfg) -> Domain:
    from adakit.data.images import FileImageDomain, _sizes

    image_size, resize = _sizes(data_cfg)
    dom = FileImageDomain(name="input", classes=[], ids=np.array(ids), y=np.full(len(paths), -1),
                          paths=np.array([str(p) for p in paths]), image_size=image_size, resize=resize)
    dom.verify()
    return dom


def input_domain(path: Path, data_cfg, image_list: bool = False,
                 n_features: int | None = None) -> Domain | tuple[np.ndarray, list[str]]:
    """What ``adakit predict`` reads: one image, an image folder (any depth, sorted), an image list (read as
    training reads one: ``path [label]`` lines, paths relative to the list's folder, its parent, ``data.root`` or
    $ADAKIT_DATA) or a feature file (.npz / .mat / svmlight; its rows and their ids, labels not needed)."""
    from adakit.data.features import read_feature_rows
    from adakit.data.images import IMAGE_EXTENSIONS, _resolve, find_images, parse_image_list

    if path.is_dir():
        files = find_images(path)
        if not files:
            raise DataError(f"{path}: no images found (looked for .jpg, .png, ... at any depth)")
        return _image_domain(files, [f.relative_to(path).as_posix() for f in files], data_cfg)
    if not path.is_file():
        raise DataError(f"input not found: {path}; give an image folder, an image list (.txt) or a feature file "
                        f"({', '.join(sorted(FEATURE_SUFFIXES))})")
    if not image_list and path.suffix.lower() in IMAGE_EXTENSIONS:
        return _image_domain([path], [path.name], data_cfg)
    if image_list or path.suffix.lower() == ".txt":  # read as training reads lists (labels, if any, ignored)
        entries, linenos = parse_image_list(path)[:2]
        return _image_domain([Path(p) for p in _resolve(entries, linenos, path, data_cfg)], entries, data_cfg)
    fmt = FEATURE_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"{path}: unknown input type {path.suffix!r}; give an image folder, an image list (.txt, or "
                        f"--list) or a feature file ({', '.join(sorted(FEATURE_SUFFIXES))})")
    return read_feature_rows(fmt, path.resolve(), data_cfg, n_features)


def write_predictions(out_file: Path, ids: list[str], probs: np.ndarray, classes: list[str]) -> None:
    """CSV: id, predicted (class name), probability (of the prediction), then one p_<class> column per class."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    pred = probs.argmax(1)
    tmp = out_file.with_name(out_file.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "predicted", "probability", *(f"p_{c}" for c in classes)])
        for i, row in enumerate(probs):
            w.writerow([ids[i], classes[pred[i]], f"{row[pred[i]]:.6f}", *(f"{p:.6f}" for p in row)])
    tmp.replace(out_file)


@app.command()
def predict(run_dir: Path = typer.Argument(..., help="run folder (its last checkpoint is used)"),
            input_path: Path = typer.Argument(..., metavar="INPUT",
                                              help="image, image folder, image list (.txt) or feature file "
                                                   "(.npz/.mat/.svmlight)"),
            out_file: Path = typer.Option(..., "--out", help="CSV to write: id, predicted, probability, p_<class>"),
            image_list: bool = flag("INPUT is an image list even without a .txt suffix", "--list"),
            device: str = typer.Option(None, "--device", help="cpu | cuda | cuda:N [default: the run's]"),
            batch_size: int = typer.Option(None, "--batch-size", min=1, help="[default: the run's eval batch size]"),
            force: bool = flag("replace the --out file if it exists", "--force"),
            checkpoint: str = typer.Option(None, "--checkpoint", help="another saved model than the last: a round "
                                           "number, 'round R' or 'warm-up step K' (as adakit sweep names them)"),
            ) -> None:
    """Predict classes for new images or feature rows with a run's model (its last checkpoint)."""
    from adakit.errors import ConfigError
    from adakit.run_model import load_run

    try:
        if out_file.exists() and not force:  # before any work: it may be a file someone made (e.g. answers)
            raise ConfigError(f"--out {out_file} exists; choose another file or add --force to replace it")
        model = load_run(run_dir, device=device, batch_size=batch_size, checkpoint=checkpoint)
        width = model.input_shape[0] if len(model.input_shape) == 1 else None
        dom = input_domain(input_path, model.config.data, image_list, width)
        if isinstance(dom, tuple):  # feature rows and their ids
            rows, ids = dom
            probs = model.predict_proba(rows)
        else:
            probs = model.predict_proba(dom)
            ids = [dom.image_path(i) or str(dom.ids[i]) for i in range(len(dom))]
        write_predictions(out_file, ids, probs, model.classes)
    except AdakitError as e:
        _fail(e)
    out.print(f"{len(ids)} predictions ({len(model.classes)} classes) written to {out_file}", highlight=False,
              soft_wrap=True)

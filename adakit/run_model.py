"""A finished run as a model: `load_run` rebuilds the network from the ledger and its last checkpoint.

No experiment data is loaded: the ledger meta ``model`` records the input shape, class list, head and
backbone of the run (`ActiveLoop.rebuild_info`). A run whose backbone was your own ``nn.Module`` needs
an instance of the same module class (``backbone=``); its weights come from the checkpoint.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from adakit.csvcells import safe_cell
from adakit.data.domain import Domain
from adakit.data.objects import is_sparse as _sparse
from adakit.errors import ConfigError, DataError
from adakit.ledger import DROPPED
from adakit.params import whole_number
from adakit.rundir import LEDGER_NAME, CheckpointError, check_writable_folder, checkpoint_file, replaced_atomically, sh

__all__ = ["RunModel", "load_run", "read_inputs", "write_predictions"]


class _Standardized(nn.Module):
    """The run's model on raw feature rows: z-scored with the source mean and std stored by the run."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor):
        return self.model((x - self.mean) / self.std)


class RunModel:
    """The model of a run: ``predict``, ``predict_proba`` and ``embed`` on arrays, tensors or Datasets.

    Inputs are what the run trained on: feature rows (N, d) or images (N, C, H, W) (uint8 images are
    scaled to [0, 1]); a run with ``data.standardize`` standardises raw feature rows with the source
    statistics it stored, as in training. A run on image files (``image_folder`` / ``image_list``) also takes
    image paths and PIL images, read and transformed as its evaluation reads its own images (resize, center
    crop, ImageNet mean/std); uint8 arrays (N, 3, H, W) of such a run get the ImageNet mean/std too.
    Outputs are numpy arrays. ``labels`` is the ledger's label table, ``metrics`` its metrics per round.
    """

    def __init__(self, run_dir: Path, model: nn.Module, config, classes: list[str], input_shape: tuple[int, ...],
                 device: torch.device, round_index: int, batch_size: int, svmlight_zero_based: bool | None = None,
                 extractor: str | None = None):
        self.run_dir, self.model, self.config = run_dir, model, config
        #: npz runs: how `adakit features` made the run's features (None: not recorded)
        self.extractor = extractor
        #: svmlight runs: whether the run's files were indexed from 0 (None: not recorded)
        self.svmlight_zero_based = svmlight_zero_based
        self.classes, self.input_shape, self.device = classes, input_shape, device
        self.round, self.batch_size = round_index, batch_size
        self.model.eval()

    def _ledger(self):
        from adakit.ledger import Ledger

        return Ledger.read_only(self.run_dir / "ledger.sqlite")

    @property
    def labels(self) -> list[dict]:
        """Current label per answered query: sample_id, pool_index, round, label, class, annotator (a dropped
        query, which nobody could label: label -1, class None)."""
        with self._ledger() as led:
            current = led.current_labels()
            annotators = {r["sample_id"]: r["annotator"] for r in led.label_rows()}  # the latest row wins
            queries = led.queries()
        return [{"sample_id": q.sample_id, "pool_index": q.pool_index, "round": q.round,
                 "label": current[q.sample_id],
                 "class": None if current[q.sample_id] == DROPPED else self.classes[current[q.sample_id]],
                 "annotator": annotators[q.sample_id]} for q in queries if q.sample_id in current]

    @property
    def metrics(self) -> list[dict]:
        """Per round: round, labels, accuracy, mean_class_accuracy, val/<name> per validator (as in metrics.jsonl)."""
        with self._ledger() as led:
            return led.metrics()

    def _domain(self, X: Any) -> Domain | None:
        """``X`` as a `Domain` (None for an empty array of the run's sample shape)."""
        from adakit.data.domain import TensorDomain
        from adakit.data.objects import DatasetDomain, _is_dataset, _to_tensor

        if isinstance(X, Mapping):
            raise DataError(f"input: got a {type(X).__name__}; pass the samples as an array (N, "
                            f"*{tuple(self.input_shape)}), a tuple (X, y) or a torch Dataset of (x, y) / x")
        if isinstance(X, tuple) and not self._xy_pair(X):  # a tuple of rows, as a list of rows
            X = list(X)
        if isinstance(X, tuple) and X and _sparse(X[0]):  # (X, y) as load_svmlight_file returns it
            X = X[0]
        if _sparse(X):  # a scipy sparse matrix: its dense rows
            X = X.toarray()
        images = self._image_inputs(X)
        if images is not None:
            dom = images
        elif isinstance(X, Domain):
            dom = X
        elif _is_dataset(X):
            n = len(X)
            data = self.config.data  # a Dataset of PIL images is read at the run's sizes, as in training
            dom = DatasetDomain(name="input", classes=[], ids=np.arange(n).astype(str), y=np.full(n, -1),
                                dataset=X, image_size=data.image_size, resize=data.resize)
        else:
            x = _to_tensor(X[0] if isinstance(X, tuple) else X, "input")  # a tuple is (X, y); a list is rows
            if tuple(x.shape) == tuple(self.input_shape):  # one sample without its batch dimension
                raise DataError(f"input: one sample of shape {tuple(x.shape)}; pass a batch of shape (N, "
                                f"*{tuple(self.input_shape)}), e.g. X[None] for this one")
            if x.dim() < 1:
                raise DataError(f"input: expected a batch of samples of shape (N, *{tuple(self.input_shape)}), "
                                f"got shape {tuple(x.shape)}")
            if len(x) == 0:
                if tuple(x.shape[1:]) != tuple(self.input_shape):
                    raise DataError(f"input: samples of shape {tuple(x.shape[1:])}, but the run {self.run_dir} was "
                                    f"trained on samples of shape {tuple(self.input_shape)}")
                return None
            if x.dtype == torch.uint8 and self._image_files_run and x.dim() == 4 and x.shape[1] == 3:
                from adakit.data.transforms import normalize_uint8_images

                x = normalize_uint8_images(x)  # the run trained on normalised images: as they were
            if not (x.is_floating_point() or x.dtype == torch.uint8):
                x = x.float()
            dom = TensorDomain(name="input", classes=[], ids=np.arange(len(x)).astype(str), y=np.full(len(x), -1),
                               x=x)
        if tuple(dom.input_shape) != tuple(self.input_shape):
            hint = ("; pass the image files or PIL images instead (read as the run read its own), or arrays "
                    "channels first, resized and cropped to that size" if self._image_files_run else "")
            raise DataError(f"input: samples of shape {tuple(dom.input_shape)}, but the run {self.run_dir} was "
                            f"trained on samples of shape {tuple(self.input_shape)}{hint}")
        return dom

    def _xy_pair(self, X: tuple) -> bool:
        """Whether a tuple is an ``(X, y)`` pair (two items, the first a batch or a Dataset), not a tuple of rows."""
        from adakit.data.objects import _is_dataset

        if len(X) != 2:
            return False
        if _is_dataset(X[0]) or isinstance(X[0], Domain):
            return True
        try:
            shape = np.shape(X[0]) if not _sparse(X[0]) else X[0].shape
        except (TypeError, ValueError):  # (a Dataset, ragged rows: not one sample)
            return True
        return tuple(shape) != tuple(self.input_shape)

    @property
    def _image_files_run(self) -> bool:
        return self.config.data.format in ("image_folder", "image_list")

    def _image_inputs(self, X: Any) -> Domain | None:
        """Image paths or PIL images of a run on image files, as a domain that reads them as the run did."""
        from PIL import Image

        from adakit.data.images import _sizes, image_inputs

        items = [X] if isinstance(X, (str, Path, Image.Image)) else X
        if not isinstance(items, (list, tuple)) or not items or not all(
                isinstance(i, (str, Path, Image.Image)) for i in items):
            return None
        if not self._image_files_run:
            raise DataError(f"input: image paths or PIL images, but the run {self.run_dir} did not train on image "
                            f"files (data.format={self.config.data.format!r}); pass arrays of shape "
                            f"(N, *{tuple(self.input_shape)}) prepared as its training data were, or a Dataset "
                            "like the one it trained on")
        folders = [str(i) for i in items if isinstance(i, (str, Path)) and Path(i).is_dir()]
        if folders:
            raise DataError(f"input: {folders[0]} is a folder; pass its image files, or predict a whole folder "
                            f"with predict_file({str(folders[0])!r}, 'predictions.csv') (or `adakit predict`)")
        return image_inputs(items, *_sizes(self.config.data), verify=False)  # (a bad file is named when loaded)

    @torch.no_grad()
    def _forward(self, X: Any) -> tuple[torch.Tensor, torch.Tensor]:
        from adakit.inference import forward_domain

        dom = self._domain(X)
        if dom is None:  # no samples: empty outputs of the right widths
            net = self.model.model if isinstance(self.model, _Standardized) else self.model
            return torch.zeros(0, net.feature_dim), torch.zeros(0, len(self.classes))
        return forward_domain(self.model, dom, self.batch_size, self.device)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (N, C), columns in the order of ``classes``."""
        return torch.softmax(self._forward(X)[1], 1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class indices (N,); ``classes[i]`` names them."""
        return self._forward(X)[1].argmax(1).numpy()

    def embed(self, X: Any) -> np.ndarray:
        """Features f (N, m) after the bottleneck, the space strategies work in."""
        return self._forward(X)[0].numpy()

    def _warn_other_classes(self, path: Path) -> None:
        """A feature file that names classes the run does not have (another data set's features?) is predicted
        with the run's classes, and a warning says so (a file of some of the run's classes is fine)."""
        theirs = _npz_classes(path)
        unknown = [c for c in theirs or [] if c not in set(self.classes)]
        if unknown:
            warnings.warn(f"{path} names classes the run does not have ({', '.join(unknown[:6])}"
                          f"{' ...' if len(unknown) > 6 else ''}): the predictions are among the run's "
                          f"{len(self.classes)} classes (is it the run you meant?)", RuntimeWarning, stacklevel=3)

    def _check_extractor(self, path: Path) -> None:
        """Refuse an ``.npz`` that `adakit features` made in another way than the run's features (another model,
        weights or image size): its features live in another space, whatever their width, and the predictions
        would be meaningless (as training refuses such a source and target)."""
        from adakit.data.features import npz_extractor, same_extractor

        theirs = npz_extractor(path) if path.suffix.lower() == ".npz" else None
        if theirs is not None and self.extractor is not None and not same_extractor(self.extractor, theirs):
            raise DataError(f"{path}: its features were extracted as {theirs}, but the run {self.run_dir} trained on "
                            f"features extracted as {self.extractor}; they live in different feature spaces. Extract "
                            "the new images with the run's adakit features options (--model / --backbone, --weights, "
                            "--image-size, --resize)")

    def predict_file(self, input_path: str | Path, out_file: str | Path, *, image_list: bool = False,
                     overwrite: bool = False) -> int:
        """Predict every sample of a file or folder and write the CSV ``adakit predict`` writes (`read_inputs`,
        `write_predictions`): id, predicted, probability, p_<class>. Returns the number of rows. An existing
        ``out_file`` is replaced only with ``overwrite=True`` (it may be a file someone made)."""
        input_path, out_file = Path(input_path), Path(out_file)
        if out_file.is_dir():  # before any work (--force would not help)
            raise ConfigError(f"--out {out_file} is a folder: give the CSV file to write, e.g. "
                              f"{out_file / 'predictions.csv'}")
        if out_file.exists() and input_path.exists() and out_file.samefile(input_path):  # --force would destroy it
            raise ConfigError(f"--out {out_file} is the input {input_path}; write the predictions to another file, "
                              f"e.g. {out_file.with_name(out_file.stem + '-predictions.csv')}")
        if out_file.exists() and not overwrite:
            raise ConfigError(f"--out {out_file} exists; choose another file or add --force (overwrite=True) to "
                              "replace it")
        # a file in the way, or a folder that cannot be written: before any work
        check_writable_folder(out_file.parent, "--out", "the predictions")
        width = self.input_shape[0] if len(self.input_shape) == 1 else None
        dom = read_inputs(input_path, self.config.data, image_list, width, self.svmlight_zero_based)
        if isinstance(dom, tuple):  # feature rows and their ids
            rows, ids = dom
            self._check_extractor(input_path)
            self._warn_other_classes(input_path)
            probs = self.predict_proba(rows)
        else:
            probs = self.predict_proba(dom)
            ids = [dom.image_path(i) or str(dom.ids[i]) for i in range(len(dom))]
        write_predictions(out_file, ids, probs, self.classes)
        return len(ids)


def _npz_classes(path: Path) -> list[str] | None:
    """The ``classes`` an adakit ``.npz`` names (None: another file, or none recorded)."""
    if path.suffix.lower() != ".npz":
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return [str(c) for c in z["classes"]] if "classes" in z.files else None
    except (OSError, ValueError, EOFError, KeyError):
        return None


FEATURE_SUFFIXES = {".npz": "npz", ".mat": "mat", ".svmlight": "svmlight", ".svm": "svmlight", ".libsvm": "svmlight"}


def read_inputs(path: Path, data_cfg, image_list: bool = False, n_features: int | None = None,
                zero_based: bool | None = None) -> Domain | tuple[np.ndarray, list[str]]:
    """What `RunModel.predict_file` (``adakit predict``) reads: one image, an image folder (any depth, in the order
    training reads it), an image list (read as training reads one: ``path [label]`` lines, paths relative to the
    list's folder, its parent, ``data.root`` or $ADAKIT_DATA) or a feature file (.npz / .mat / svmlight; its rows
    and their ids, labels not needed). A run on feature files takes feature files only; an svmlight run reads a
    file of any other name as svmlight (libsvm files come as ``.txt``, ``.t``, ...); ``zero_based``: how its files
    were indexed."""
    from adakit.data.features import read_feature_rows
    from adakit.data.images import IMAGE_EXTENSIONS, _sizes, read_image_inputs

    if not path.exists():
        raise DataError(f"input not found: {path}; give an image folder, an image list (.txt) or a feature file "
                        f"({', '.join(sorted(FEATURE_SUFFIXES))})")
    if path.is_dir() and (path / LEDGER_NAME).is_file():  # (its curve.png would be predicted as the new images)
        raise DataError(f"INPUT {path} is a run folder, not images to predict; give the folder (or list, or feature "
                        "file) of the new samples: adakit predict RUN INPUT --out preds.csv")
    feature_run = data_cfg.format in set(FEATURE_SUFFIXES.values())  # its model takes feature rows, never images
    if feature_run and (image_list or path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS):
        cmd = (f"adakit features {sh(path)}{' --list' if image_list else ''}" if image_list or path.is_dir()
               else "adakit features FOLDER")  # (it reads a folder or a list, not one image)
        raise DataError(f"{path}: images, but the run's model takes feature rows ({data_cfg.format} files); extract "
                        f"the images' features as the run's were made (`{cmd} --out new.npz` with the run's "
                        "options) and predict on that file")
    images = None if feature_run else read_image_inputs(path, *_sizes(data_cfg), data_cfg, image_list)
    if images is not None:
        return images
    fmt = FEATURE_SUFFIXES.get(path.suffix.lower())
    if fmt is None and data_cfg.format == "svmlight" and path.is_file():  # libsvm files come as .txt, .t, ...
        fmt = "svmlight"
    if fmt is None:
        kinds = "" if feature_run else "an image folder, an image list (.txt, or --list) or "
        rows = {".npy": "np.load", ".csv": "np.loadtxt", ".tsv": "np.loadtxt", ".txt": "np.loadtxt"}
        how = ""
        if feature_run and path.suffix.lower() in rows:  # feature rows as numpy or a spreadsheet saves them
            load = rows[path.suffix.lower()]
            sep = ", delimiter=..." if load == "np.loadtxt" else ""
            how = (f"; for feature rows in a {path.suffix} file, save them as an .npz, "
                   f"np.savez('new.npz', feat={load}({str(path)!r}{sep})),"
                   " and predict on that file, or from Python: "
                   f"adakit.load_run(RUN).predict({load}(...))")
        raise DataError(f"{path}: unknown input type {path.suffix!r}; give {kinds}a feature file "
                        f"({', '.join(sorted(FEATURE_SUFFIXES))})" + (" (this run's model takes feature rows)"
                                                                      if feature_run else "") + how)
    return read_feature_rows(fmt, path.resolve(), data_cfg, n_features, zero_based)


def write_predictions(out_file: Path, ids: list[str], probs: np.ndarray, classes: list[str]) -> None:
    """CSV: id, predicted (class name), probability (of the prediction), then one p_<class> column per class
    (written to a temporary file, then renamed)."""
    out_file.parent.mkdir(parents=True, exist_ok=True)
    pred = probs.argmax(1)
    with replaced_atomically(out_file) as fh:
        w = csv.writer(fh)
        w.writerow(["id", "predicted", "probability", *(safe_cell(f"p_{c}") for c in classes)])
        for i, row in enumerate(probs):
            w.writerow([safe_cell(ids[i]), safe_cell(classes[pred[i]]), f"{row[pred[i]]:.6f}",
                        *(f"{p:.6f}" for p in row)])


def load_run(run_dir: str | Path, *, backbone: nn.Module | None = None, device: str | torch.device | None = None,
             batch_size: int | None = None, checkpoint: int | str | None = None) -> RunModel:
    """The model of the run in ``run_dir`` at its last checkpoint, on ``device`` (default: the run's).

    ``batch_size``: samples per forward pass (a whole number ≥ 1; default the run's ``train.eval_batch_size``).
    ``backbone``: for a run trained with your own module (``model.backbone=custom``), an instance of the same
    module class (its weights are replaced by the checkpoint's). ``checkpoint``: another saved model than the
    last, as ``adakit sweep`` names them: a round number or ``"round R"``, or ``"warm-up step K"`` (saved with
    ``train.eval_checkpoints``); a run keeps round 0, its last round and the warm-up checkpoints.
    """
    from adakit.ledger import Ledger
    from adakit.loop import resolve_device
    from adakit.models import build_model
    from adakit.probe import stored_probe_config
    from adakit.rundir import holder, load_checkpoint, stored_experiment

    if batch_size is not None:
        size = whole_number(batch_size)
        if size is None or size < 1:
            raise ConfigError(f"load_run: batch_size= must be a whole number ≥ 1 (samples per forward pass; None: "
                              f"the run's train.eval_batch_size), got {batch_size!r}")
        batch_size = size
    run_dir = Path(run_dir)
    if stored_probe_config(run_dir) is not None:
        raise ConfigError(f"{run_dir} is a linear-probe run (runner: linear_probe), which keeps no model to predict "
                          "with; its results are in summary.json and report.md")
    cfg = stored_experiment(run_dir)
    with Ledger.read_only(run_dir / "ledger.sqlite") as led:
        info = led.get_meta("model")
        last = led.last_checkpoint()
        if checkpoint is not None and last is not None:
            last = _chosen_checkpoint(run_dir, led, checkpoint)
    if info is None:  # a run of an adakit before rebuild info was stored: read it from the data once
        from adakit.data import load_domains

        if cfg.data.format == "objects":
            raise ConfigError(f"{run_dir}: the ledger holds no model description; this run cannot be loaded")
        d = load_domains(cfg.data, cfg.seed)
        info = {"input_shape": list(d.source.input_shape), "classes": list(d.classes), "head": cfg.model.head}
    if last is None:
        raise CheckpointError(f"{run_dir} has no checkpoint yet (its warm-up round did not finish); resume the run "
                              "first")
    if checkpoint is None and not (run_dir / "summary.json").is_file():
        busy = holder(run_dir)
        rest = (f"it is training now, in {busy}" if busy else f"`adakit resume {sh(run_dir)}` trains the rest")
        warnings.warn(f"{run_dir} is not finished: predicting with its last checkpoint, round {last[0]} of "
                      f"{cfg.budget.rounds} ({rest})", UserWarning, stacklevel=2)
    if cfg.model.backbone == "custom":
        if backbone is None:
            what = info.get("backbone_class", "an nn.Module")
            raise ConfigError(f"{run_dir} was trained with your own backbone ({what}); pass an instance of that "
                              "module class: load_run(run_dir, backbone=MyNet(...)) (adakit predict cannot build "
                              "your module: from Python, load_run(run_dir, backbone=MyNet(...)).predict_file(INPUT, "
                              "'preds.csv') writes its CSV)")
        stored_cls = info.get("backbone_class")
        if not isinstance(backbone, nn.Module):
            hint = f"{backbone.__name__}(...)" if isinstance(backbone, type) else "MyNet(...)"
            raise ConfigError(f"backbone=: expected an instance of the run's module ({stored_cls or 'an nn.Module'}), "
                              f"got {backbone!r}; pass backbone={hint}")
        cls = type(backbone)
        if stored_cls and stored_cls.rsplit(".", 1)[-1] != cls.__qualname__.rsplit(".", 1)[-1]:
            raise ConfigError(f"backbone=: the run was trained with a {stored_cls}, not a "
                              f"{cls.__module__}.{cls.__qualname__}")
    elif backbone is not None:
        raise ConfigError(f"backbone=: {run_dir} uses adakit's {cfg.model.backbone!r} backbone; leave backbone= out")
    try:
        dev = resolve_device(device if device is not None else cfg.train.device, "device" if device is not None
                             else "train.device")
    except ConfigError:
        if device is not None:
            raise
        raise ConfigError(f"{run_dir} trained on train.device={cfg.train.device!r}, which this machine cannot use "
                          "(no such CUDA device); predict on another device: --device cpu (device='cpu'), auto or "
                          "cuda") from None
    shape = tuple(info["input_shape"])
    model_cfg = cfg.model.model_copy(update={"head": info.get("head", cfg.model.head), "weights": None})
    model = build_model(model_cfg, shape, len(info["classes"]), backbone=backbone)
    if "backbone_dim" in info and model.backbone.out_dim != info["backbone_dim"]:
        raise ConfigError(f"backbone=: gives {model.backbone.out_dim} features, but the run's backbone gave "
                          f"{info['backbone_dim']}; construct it with the same arguments as for the run")
    path = checkpoint_file(run_dir, last[1])
    if checkpoint is None and not path.is_file():  # a run training now saves a round, then deletes the one before
        with Ledger.read_only(run_dir / "ledger.sqlite") as led:
            newer = led.last_checkpoint()
        if newer is not None and tuple(newer) != tuple(last):
            last = newer
            path = checkpoint_file(run_dir, last[1])
    warmup = str(checkpoint).strip() if str(checkpoint).strip().startswith("warm-up step ") else None
    state = load_checkpoint(path, last[0], run_dir, map_location="cpu", name=warmup)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint of {warmup or f'round {last[0]}'} does not fit the rebuilt model: {path} "
                              f"({type(e).__name__}: {str(e)[:300]})") from None
    if "standardize" in info:
        model = _Standardized(model, info["standardize"]["mean"], info["standardize"]["std"])
    from adakit.data.features import run_source_extractor

    # (a run of an adakit before the extractor was recorded: its source file's, when it is where the config says)
    extractor = info.get("extractor") or run_source_extractor(cfg.data)
    return RunModel(run_dir, model.to(dev), cfg, list(info["classes"]), shape, dev, last[0],
                    batch_size if batch_size is not None else cfg.train.eval_batch_size,
                    info.get("svmlight_zero_based"), extractor)


def _chosen_checkpoint(run_dir: Path, led, checkpoint: int | str) -> tuple[int, str]:
    """(round, path) of ``load_run``'s ``checkpoint=``: a round (number or ``"round R"``) or ``"warm-up step K"``."""
    text = str(checkpoint).strip()
    if text == "last":
        return led.last_checkpoint()
    if text.startswith("warm-up step "):
        step = text.rsplit(" ", 1)[1]
        saved = {str(row["step"]): row["checkpoint"] for row in led.get_meta("warmup_checkpoints", [])}
        if step not in saved:
            raise ConfigError(f"checkpoint={checkpoint!r}: {run_dir} saved no warm-up checkpoint at step {step} "
                              f"(saved: {', '.join(sorted(saved, key=int)) or 'none; see train.eval_checkpoints'})")
        return 0, saved[step]
    r = text.removeprefix("round ").strip()
    if isinstance(checkpoint, bool) or not r.isdigit():
        raise ConfigError(f"checkpoint={checkpoint!r}: give a round number, 'round R', 'warm-up step K' or 'last'")
    row = led.conn.execute("SELECT round, path FROM checkpoints WHERE round = ?", (int(r),)).fetchone()
    if row is None:
        last = led.last_checkpoint()[0]
        raise ConfigError(f"checkpoint={checkpoint!r}: {run_dir} has no round {r} (its rounds: 0..{last})")
    path = checkpoint_file(run_dir, row[1])
    if not path.is_file() and int(r) in (0, led.last_checkpoint()[0]):  # kept by the run: deleted or moved since
        raise CheckpointError(f"checkpoint={checkpoint!r}: the model of round {r} is missing: {path} (a run keeps "
                              "round 0 and its last round; was the file deleted or moved?); restore it from a backup, "
                              "or choose another checkpoint")
    if not path.is_file():
        raise CheckpointError(f"checkpoint={checkpoint!r}: the model of round {r} is not kept in {run_dir} (a run "
                              "keeps round 0 and its last round; an intermediate round's weights are deleted once the "
                              "next round is trained)")
    return int(r), row[1]

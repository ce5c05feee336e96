"""`ActiveLoop`: warm-up, then for each round query → label → train → evaluate, resumable.

Every step's outcome lands in the ledger before the next step starts: the selection, then the labels,
then the checkpoint, then the metrics. After a crash (even SIGKILL) `ActiveLoop.resume` loads the last
checkpoint and continues; rounds use seeds derived from (seed, round), so a resumed run queries and
trains exactly as an uninterrupted one.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import pickle
import random
import shutil
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from adakit import distributed
from adakit.callbacks import MLflowLogger, TensorBoardLogger, loggers_from_config
from adakit.config import (
    ExperimentConfig,
    ModelConfig,
    ObjectiveConfig,
    QueryConfig,
    batch_norm_error,
    build_config,
    check_unread_settings,
    merge,
    user_changed,
)
from adakit.data import Domains, load_domains
from adakit.devices import check_device
from adakit.errors import ConfigError, DataError, WaitingForLabels
from adakit.inference import accuracy, forward_domain
from adakit.ledger import DROP, Ledger
from adakit.models import build_model
from adakit.oracle import CallableOracle, FileOracle, RejectedAnswers, SimulatedOracle
from adakit.params import whole_number
from adakit.pool import PoolView
from adakit.progress import shown, status
from adakit.provenance import environment
from adakit.query.base import check_selection
from adakit.registry import OBJECTIVES, STRATEGIES
from adakit.rundir import (
    SWITCHABLE_KEYS,
    apply_checkpoint,
    check_out_dir,
    checkpoint_file,
    clean_checkpoints,
    config_changes,
    continued_config,
    locked,
    replaced_atomically,
    resume_hint,
    run_lock,
    run_timings,
    sh,
    stored_config,
    stored_experiment,
    write_atomically,
)
from adakit.train import Trainer, check_index_memory


def round_budgets(total: float, rounds: int, pool_size: int) -> list[int]:
    """Per-round budgets b = B // R with the remainder in the last round (docs/methods.md, Protocols).

    ``total`` < 1 is a fraction of the pool, otherwise a count.
    """
    if rounds == 0:
        return []
    budget = int(round(total * pool_size)) if total < 1 else int(total)
    if budget > pool_size:
        raise DataError(f"budget.total={total} asks for {budget} labels but the target pool has only "
                        f"{pool_size} samples; lower budget.total")
    if budget < rounds:
        raise ConfigError(f"budget.total={total} gives {budget} labels, fewer than budget.rounds={rounds}; "
                          "raise the budget or use fewer rounds")
    b = budget // rounds
    return [b] * (rounds - 1) + [budget - b * (rounds - 1)]


def query_params_for_run(cfg: ExperimentConfig, budgets: list[int], pool_size: int):
    """The strategy's validated params; ``budget_ratio`` (LAS's total budget B, for M) from the run's budget
    unless the config gives it: ``budget.total`` itself when it is a fraction (M = 10 at 5 % whatever the pool
    size; the rounded count over the pool, 70 of 1,408 = 4.97 %, gave 11), the count over the pool when it is a
    count."""
    params = cfg.query_params()
    if "budget_ratio" in type(params).model_fields and "budget_ratio" not in cfg.query.params() and budgets:
        total = cfg.budget.total
        params.budget_ratio = float(total) if 0 < total < 1 else sum(budgets) / pool_size
    return params


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str | torch.device, what: str = "train.device") -> torch.device:
    """`adakit.devices.check_device`'s device for ``name``; in a torchrun run ``cuda`` is this process's GPU."""
    return distributed.local_device(check_device(name, what))  # torchrun: one GPU per process, cuda:LOCAL_RANK


#: the ``train`` keys that round 0 (the warm-up) never reads: runs differing only there train the same warm-up
NOT_WARMUP_TRAIN_KEYS = ("round_iters",)


def _warmup_key(config: dict) -> str:
    """What determines a run's warm-up (round 0), of its config as a dict: seed, data, model, objective and the
    ``train`` section without `NOT_WARMUP_TRAIN_KEYS` (``train.round_iters``: the rounds after the warm-up)."""
    train = {k: v for k, v in config["train"].items() if k not in NOT_WARMUP_TRAIN_KEYS}
    return json.dumps({**{k: config[k] for k in ("seed", "data", "model", "objective")}, "train": train},
                      sort_keys=True)


def _stored_classes(ledger_path: Path) -> list[str] | None:
    """The class list a run stored in its ledger (None: none stored, or a ledger that later checks refuse)."""
    try:
        with Ledger.read_only(ledger_path) as led:
            return led.classes()
    except Exception:  # a damaged ledger: `stored_config` names the problem
        return None


def _shown(names: list[str], limit: int = 8) -> str:
    return repr(names[:limit])[:-1] + (f", ... ({len(names)} in all)]" if len(names) > limit else "]")


def check_class_list(run_dir: Path, stored: list[str] | None, classes: Sequence[Any], objects: bool) -> None:
    """Refuse a run whose class list (``stored`` in its ledger) is not the data's: its labels are indices into
    the stored list."""
    now = [str(c) for c in classes]
    if stored is None or stored == now:
        return
    how = ("pass classes= as the run started (or leave it out: the run's own list is used)"
           if objects else "restore the data's class folders/names as they were")
    raise ConfigError(f"{run_dir} was started with the classes {_shown(stored)}; the data now gives "
                      f"{_shown(now)}. Its labels are class indices into the first list, so they would change "
                      f"meaning: {how}")


def check_file_data(run_dir: Path, stored: dict | None, now: dict | None, data: Any) -> None:
    """Refuse a run's files when they are not the data it started with (``stored``: the fingerprints in its
    ledger; ``now``: those of the data as loaded): its labels belong to sample ids, which for rows of a feature
    file are row numbers, and its queries name files by their position in the pool."""
    from adakit.data.objects import fingerprint_diff

    if stored is None or now is None:
        return
    for name in sorted(set(stored) & set(now)):
        diff = fingerprint_diff(stored[name], now[name])
        if diff:
            raise DataError(f"the {name} data (data.{name}={getattr(data, name)!r}) is not what {run_dir} was "
                            f"started with: {diff}. Its labels belong to sample ids (for a feature file: row "
                            "numbers), so they would go to other samples; restore the data as it was, or start a "
                            "new run in another folder")


@dataclass
class _Objects:
    """What the caller handed to `ActiveLoop` beside the config (None where the config decides)."""

    backbone: nn.Module | None = None
    objective: Any = None
    strategy: Any = None
    oracle: Callable | None = None
    fingerprint: dict | None = None


def _as_config(config: ExperimentConfig | dict | None) -> ExperimentConfig:
    if isinstance(config, ExperimentConfig):
        return config
    if config is None or isinstance(config, dict):
        return build_config(config or {})
    raise ConfigError(f"ActiveLoop(config=...): expected an ExperimentConfig, a dict of config sections or None, "
                      f"got {type(config).__name__}; load a YAML file with adakit.config.load_config(path)")


def _method(values: dict, section: str, key: str, given: Any, registry) -> Any:
    """Put an objective/strategy given as a name, (name, params) or an instance/class into ``values``;
    returns the instance to use (None when adakit builds it from the config)."""
    if given is None:
        return None
    base = importlib.import_module("adakit.adapt.base" if section == "objective" else "adakit.query.base")
    base_cls = base.Objective if section == "objective" else base.Strategy
    arg = "objective" if section == "objective" else "strategy"  # (the ActiveLoop keyword)
    instance = None
    if isinstance(given, str):
        name, params = given, {}
    elif isinstance(given, tuple) and len(given) == 2 and isinstance(given[0], str) and isinstance(given[1], dict):
        name, params = given
    elif isinstance(given, base_cls) or (isinstance(given, type) and issubclass(given, base_cls)):
        cls = given if isinstance(given, type) else type(given)
        name = getattr(cls, "name", None)
        if name is None or name not in registry.names() or registry.get(name) is not cls:
            deco = "register_objective" if section == "objective" else "register_strategy"
            raise ConfigError(f"{arg}=: {cls.__name__} is not registered; decorate it with "
                              f"@adakit.{deco}('a_name') so the run can record and resume it")
        if isinstance(given, type):
            params = {}
        else:
            instance = given
            params = given.params.model_dump(mode="json", exclude_unset=True)
    else:
        example = "('dann', {'trade_off': 0.5})" if section == "objective" else "('las', {'k': 5})"
        raise ConfigError(f"{arg}=: expected a name ({'dann' if section == 'objective' else 'margin'!r}), (name, "
                          f"params dict) ({example}), or a registered {base_cls.__name__} class or instance; got "
                          f"{type(given).__name__}")
    fields = (ObjectiveConfig if section == "objective" else QueryConfig).model_fields
    kept = {k: v for k, v in values.get(section, {}).items() if k in fields and k != key}  # e.g. query.probs_from
    values[section] = {**kept, key: name, **params}  # (the old method's own parameters are dropped)
    return instance


def _object_domains(cfg: ExperimentConfig, source: Any, target: Any, test: Any,
                    classes: Sequence[str] | None) -> tuple[Domains, dict, dict]:
    """Source, pool and test domains from arrays / Datasets, their fingerprints and the config's data section."""
    from adakit.data import split_target
    from adakit.data.domain import check_same_classes
    from adakit.data.objects import as_domain, fingerprint, infer_classes

    if source is None or target is None:
        raise ConfigError("give both source= and target= (arrays (X, y) or torch Datasets), or neither to use "
                          "the config's data: section")
    sizes = {"image_size": cfg.data.image_size, "resize": cfg.data.resize}  # a Dataset of PIL images
    src = as_domain(source, "source", classes, labelled=True, **sizes)
    tgt = as_domain(target, "target", classes, **sizes)
    tst = as_domain(test, "test", classes, **sizes) if test is not None else None
    doms = [d for d in (src, tgt, tst) if d is not None]
    if classes is None:
        names = infer_classes(*[d.y for d in doms])
        for d in doms:
            d.classes = names
        only_test = sorted(set(tst.y[tst.y >= 0].tolist()) - set(src.y.tolist()) - set(tgt.y.tolist())) \
            if tst is not None else []
        if only_test:
            warnings.warn(f"test: label(s) {only_test[:10]} occur in neither the source nor the target pool's known "
                          f"labels; the class list inferred from all labels has {len(names)} classes. Pass "
                          "classes=[...] to state the class list (or check the test labels)", UserWarning,
                          stacklevel=4)  # the caller of ActiveLoop(...)
    for d in doms[1:]:
        check_same_classes(src, d)
        if tuple(d.input_shape) != tuple(src.input_shape):
            raise DataError(f"{d.name}: samples have shape {tuple(d.input_shape)} but source samples have "
                            f"{tuple(src.input_shape)}; both domains must give inputs of one shape")
    prints = {d.name: fingerprint(d) for d in doms}
    protocol = "inductive" if tst is not None else cfg.data.protocol
    if tst is not None:
        pool = tgt
    elif protocol == "inductive":
        pool, tst = split_target(tgt, cfg.data.test_fraction, cfg.seed)
    else:
        pool = tst = tgt
    if cfg.data.standardize:
        from adakit.data import _standardize

        _standardize(src, [pool] if pool is tst else [pool, tst])
    data = {**cfg.data.model_dump(mode="json"), "format": "objects", "source": "source", "target": "target",
            "root": None, "pattern": None, "protocol": protocol}
    return Domains(source=src, pool=pool, test=tst, protocol=protocol), prints, data


def _check_class_names(classes: Any) -> None:
    """``classes=`` is an ordered collection of non-blank names: a text would be read as one class per character, a
    set has no fixed order (string hashing changes it between processes, and labels are indices into the list), and
    a blank name is what labelling functions and answer files give for "no answer"."""
    if classes is None:
        return
    if isinstance(classes, (str, bytes)):
        raise ConfigError(f"classes=: got the text {classes!r}; pass a list of class names in label order, e.g. "
                          "classes=['cat', 'dog'] (a text would make each character a class)")
    if isinstance(classes, (set, frozenset)):
        raise ConfigError(f"classes=: got a {type(classes).__name__}, whose order is not fixed (it changes between "
                          "Python processes) while labels are indices into the class list; pass a list in label order, "
                          f"e.g. classes={sorted(map(str, classes))[:6]!r}")
    try:
        names = [str(c) for c in classes]
    except TypeError:
        raise ConfigError(f"classes=: expected a list of class names, got {type(classes).__name__}") from None
    blank = [i for i, c in enumerate(names) if not c.strip()]
    if blank:
        raise ConfigError(f"classes=: class {blank[0]} has a blank name {names[blank[0]]!r} (a blank answer means "
                          "'no answer yet'); give every class a name")


def _check_oracle_signature(oracle: Callable) -> None:
    """A labelling function must take the array of pool indices as its one required argument (checked before the
    warm-up trains, not when round 1 asks it)."""
    try:
        inspect.signature(oracle).bind(np.zeros(0, dtype=np.int64))
    except TypeError:
        name = getattr(oracle, "__name__", type(oracle).__name__)
        raise ConfigError(f"oracle=: {name}() cannot be called as labels_for(indices) (one argument: the int64 array "
                          "of target pool indices; return one label per index)") from None
    except ValueError:  # (no signature to read, e.g. some built-ins)
        pass


def _with_objects(config, domains: Domains | None, source: Any, target: Any, test: Any,
                  classes: Sequence[str] | None, model: Any, objective: Any, strategy: Any,
                  oracle: Any) -> tuple[ExperimentConfig, Domains | None, _Objects]:
    """The run's config with the sections the given objects replace, the object domains and the objects."""
    cfg = _as_config(config)
    values, objs = cfg.to_dict(), _Objects()
    _check_class_names(classes)
    if callable(oracle) and not isinstance(oracle, str):
        _check_oracle_signature(oracle)
    if source is not None or target is not None or test is not None:
        if domains is not None:
            raise ConfigError("give either domains= or source=/target=, not both")
        domains, objs.fingerprint, values["data"] = _object_domains(cfg, source, target, test, classes)
    elif classes is not None:
        raise ConfigError("classes= names the classes of source=/target= arrays; the config's data: section "
                          "brings its own class list")
    if isinstance(model, nn.Module):
        objs.backbone = model
        mlp_width = ModelConfig.model_fields["hidden_dim"].default
        if user_changed(cfg.model, "hidden_dim"):  # (a config shared with runs of the built-in mlp: not an error)
            warnings.warn(f"model.hidden_dim={cfg.model.hidden_dim} is the width of the mlp backbone, which your own "
                          "module (model=) replaces, so this run ignores it (its config keeps the default "
                          f"{mlp_width}); leave model.hidden_dim out of the config of runs with your own module",
                          UserWarning, stacklevel=3)  # the caller of ActiveLoop(...)
        values["model"] = {**values["model"], "backbone": "custom", "weights": None, "hidden_dim": mlp_width}
    elif isinstance(model, dict):
        values["model"] = merge(values["model"], model)
    elif model is not None:
        raise ConfigError(f"model=: expected a torch nn.Module (your backbone) or a dict of model: settings, got "
                          f"{type(model).__name__}")
    objs.objective = _method(values, "objective", "name", objective, OBJECTIVES)
    objs.strategy = _method(values, "query", "strategy", strategy, STRATEGIES)
    if isinstance(oracle, str):
        values["oracle"] = {"kind": oracle}
    elif callable(oracle):
        objs.oracle = oracle
        values["oracle"] = {"kind": "callable"}
    elif oracle is not None:
        raise ConfigError(f"oracle=: expected 'simulated', 'file' or a function labels_for(indices) -> labels, "
                          f"got {type(oracle).__name__}")
    cfg = build_config(values) if values != cfg.to_dict() else cfg
    check_run_config(cfg)  # (with the objects applied: your module reads train.backbone_lr_mult)
    return cfg, domains, objs


def check_run_config(cfg: ExperimentConfig, where: str | Path | None = None) -> None:
    """The checks of a network run's config (``cfg``, with `ActiveLoop`'s Python objects applied) beyond its
    validation, before any work: settings the run would never read (`adakit.config.check_unread_settings`) and step
    counts whose drawn sample indices exceed the machine's memory (`adakit.train.check_index_memory`). ``where``
    (the config file, a run folder) prefixes the error. A linear-probe config (``runner: linear_probe``) passes."""
    if cfg.runner != "loop":
        return
    try:
        check_unread_settings(cfg)
        check_index_memory(cfg.train)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}" if where is not None else str(e)) from None


#: the user modules that runs of this process have trained (`ActiveLoop(model=...)` trains them in place)
_TRAINED_MODULES: weakref.WeakSet = weakref.WeakSet()


def _check_user_module(model: Any, new_run: bool) -> None:
    """Warn when a new run starts from a module another run of this process has trained (a comparison of runs
    would then start them from different weights)."""
    if new_run and isinstance(model, nn.Module) and model in _TRAINED_MODULES:
        warnings.warn("ActiveLoop(model=...): this module was trained in place by an earlier run in this process, "
                      "so this run starts from that run's final weights, not from the weights it was created with; "
                      "create a new module per run (or pass copy.deepcopy of an untrained one)", RuntimeWarning,
                      stacklevel=3)


#: the weights your own module (``model=``) had when its run was created, kept until the warm-up's checkpoint
#: exists: a run continued before then starts from them, not from the module object as it is now
INITIAL_MODULE = "initial-module.pt"


def _callbacks(callbacks: Any, on_event: Any) -> list[Callable[[str, dict], None]]:
    """``callbacks=`` (a function, a list of them or None) and ``on_event=`` as one checked list."""
    given = [] if callbacks is None else [callbacks] if callable(callbacks) else callbacks
    try:
        given = [*given, *([on_event] if on_event is not None else [])]
    except TypeError:
        raise ConfigError(f"callbacks=: expected a list of functions callback(kind, info), got "
                          f"{type(callbacks).__name__}") from None
    for cb in given:
        if not callable(cb):
            raise ConfigError(f"callbacks= / on_event=: {cb!r} is not a function callback(kind, info)")
        try:
            inspect.signature(cb).bind("started", {})
        except TypeError:
            raise ConfigError(f"callbacks= / on_event=: {cb!r} cannot be called as callback(kind, info) (two "
                              "arguments: the event's name and its info dict)") from None
        except ValueError:  # (no signature to read, e.g. some built-ins)
            pass
    return given


#: how the place a logger of ``callbacks=`` writes to is named in an error of its check
_LOGGER_PLACE = {TensorBoardLogger: "TensorBoardLogger(log_dir)", MLflowLogger: "MLflowLogger(tracking_uri)"}


def _config_key(logger: TensorBoardLogger | MLflowLogger) -> str:
    """The config key of a logger the ``log:`` section made (how its errors name it)."""
    return "log.tensorboard" if isinstance(logger, TensorBoardLogger) else "log.mlflow"


def _check_each_once(config_loggers: list, given: list, run_dir: Path, name: str) -> None:
    """Refuse a callback given twice, or two loggers writing to one place (one from the config's ``log:``, one in
    ``callbacks=``, say): every event was handled twice, every TensorBoard scalar and MLflow metric recorded twice."""
    seen: list[tuple[Any, str]] = []
    for where, cb in [*((_config_key(c), c) for c in config_loggers), *(("callbacks=", c) for c in given)]:
        key = cb.destination(run_dir, name) if isinstance(cb, TensorBoardLogger | MLflowLogger) else cb
        earlier = next((w for k, w in seen if type(k) is type(key) and k == key), None)
        if earlier is not None and isinstance(key, str):
            raise ConfigError(f"{where}: {key} is given twice (also by {earlier}): it would record everything "
                              "twice; keep one")
        if earlier is not None:
            raise ConfigError(f"callbacks= / on_event=: {cb!r} is given twice: it would be called twice on every "
                              "event; give it once")
        seen.append((key, where))


def _check_workers_can_have(domains: Domains, workers: int) -> None:
    """Loader worker processes started by spawn / forkserver (macOS; Linux from Python 3.14) get each domain
    pickled: a Dataset holding a lambda or a local function fails there, at the first batch. Named before work."""
    import multiprocessing
    from multiprocessing.reduction import ForkingPickler

    from adakit.data.objects import DatasetDomain

    # (allow_none: asking must not fix the start method the user's script may still set)
    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    if workers == 0 or method == "fork":
        return
    for dom in (domains.source, domains.pool, domains.test):
        if not isinstance(dom, DatasetDomain):  # (adakit's own domains pickle)
            continue
        try:
            ForkingPickler.dumps(dom)
        except Exception as e:  # noqa: BLE001 - pickle raises several kinds (PicklingError, AttributeError, ...)
            raise ConfigError(f"train.num_workers={workers}: loader worker processes are started by "
                              f"{method!r} here and get the {dom.name!r} data pickled, "
                              f"which fails ({type(e).__name__}: {' '.join(str(e).split())[:200]}); use module-level "
                              "functions and classes in your Dataset (no lambdas), or train.num_workers=0") from None


def _evaluated_info(row: dict) -> dict:
    """The ``evaluated`` event's info for a round's metrics row (accuracy None when the test set has no labels)."""
    return {"accuracy": None, "mean_class_accuracy": None, **row}


def _check_same_config_on_every_rank(cfg: ExperimentConfig) -> None:
    """Under torchrun every rank must run the same config: ranks given other settings (another config file on a
    node, another ``--set``) trained silently on different batches (another seed) or waited forever in a
    collective for steps the other rank never takes (another ``train.round_iters``). Raised on every rank."""
    ranks, cfgs = distributed.differing_ranks(cfg.to_dict())
    if ranks:
        r = ranks[0]
        raise ConfigError(f"the processes of this torchrun run were started with different configs: rank {r} differs "
                          f"from rank 0 ({config_changes(cfgs[0], cfgs[r])}, rank 0's value first)"
                          + (f" and so do ranks {', '.join(map(str, ranks[1:]))}" if len(ranks) > 1 else "")
                          + "; give every process the same config file and --set values")


class ActiveLoop:
    """One experiment in ``run_dir``: config.yaml, ledger.sqlite, metrics.jsonl, summary.json, report."""

    def __init__(self, config: ExperimentConfig | dict | None = None, run_dir: str | Path | None = None, *,
                 source: Any = None, target: Any = None, test: Any = None, classes: Sequence[str] | None = None,
                 model: nn.Module | dict | None = None, objective: Any = None, strategy: Any = None,
                 oracle: Any = None,
                 callbacks: Callable[[str, dict], None] | Sequence[Callable[[str, dict], None]] | None = (),
                 show_progress: bool = True, on_event: Callable[[str, dict], None] | None = None,
                 domains: Domains | None = None):
        """An experiment in ``run_dir`` from a config (an `ExperimentConfig`, a dict of sections or None for the
        defaults) and/or Python objects, which replace the matching config sections:

        ``source``/``target``/``test``: ``(X, y)`` arrays (numpy or torch; features (N, d) or images (N, C, H, W))
        or torch Datasets of ``(x, y)`` (the target may give ``x`` only, or ``y`` = -1 for unknown); ``test``
        defaults to the target (transductive). ``classes``: class names (default ``"0"..."C-1"``; a run folder
        that already holds a run keeps its stored list).
        ``model``: your ``nn.Module`` mapping an input batch to features (adakit adds bottleneck and head) or a
        dict of ``model:`` settings. ``objective``/``strategy``: a name, ``(name, params)`` or an instance of a
        registered class. ``oracle``: ``"simulated"``, ``"file"`` or a function ``labels_for(pool_indices) ->
        labels``. ``callbacks`` (one function or a list; ``on_event`` adds one more): functions ``(kind, info)``
        called on every event. ``show_progress``: False prints nothing (no progress bars or round lines).
        """
        if run_dir is None:
            raise ConfigError("ActiveLoop: run_dir is required (the folder for the ledger, checkpoints and reports)")
        ledger_path = Path(run_dir) / "ledger.sqlite"
        _check_user_module(model, new_run=not ledger_path.is_file())
        stored_classes = _stored_classes(ledger_path) if ledger_path.is_file() else None
        if classes is None and (source is not None or target is not None):
            classes = stored_classes  # a resumed run keeps its class list (labels are its indices)
        cfg, domains, self._objects = _with_objects(config, domains, source, target, test, classes, model,
                                                    objective, strategy, oracle)
        self.cfg = cfg
        self.run_dir = Path(run_dir).absolute()  # (a later os.chdir must not split the run over two folders)
        self.dist = distributed.init(cfg.train.device)  # torchrun: join the process group (no-op otherwise)
        _check_same_config_on_every_rank(cfg)
        self.show_progress = show_progress and self.dist.main
        loggers = loggers_from_config(cfg.log) if self.dist.main else []
        given = _callbacks(callbacks, on_event)
        _check_each_once(loggers, given, self.run_dir, cfg.name)
        # a log folder under a file, a server that does not answer: before any work. A new run: before its folder
        # exists; a continued one when it trains (`run`): `adakit query` and the labelling page log nothing
        self._loggers_to_check = [*((c, _config_key(c)) for c in loggers),
                                  *((c, place) for c in (given if self.dist.main else [])
                                    for kind, place in _LOGGER_PLACE.items() if isinstance(c, kind))]
        if not ledger_path.is_file():
            self._check_loggers()
        self.callbacks: list[Callable[[str, dict], None]] = [*loggers, *given] \
            if self.dist.main else []  # torchrun: events (and loggers) on rank 0 only
        if ledger_path.is_file():
            stored = stored_config(self.run_dir, required=False)  # read-only: a damaged ledger stays untouched
            if stored is not None:
                same = continued_config(stored, cfg)
                if same is None:
                    objects = isinstance(stored.get("data"), dict) and stored["data"].get("format") == "objects"
                    what = ("a finished run" if (self.run_dir / "summary.json").is_file() else
                            f"a run (continue it with {resume_hint(self.run_dir, objects)})")
                    raise ConfigError(f"{self.run_dir} holds {what} with a different config "
                                      f"({config_changes(stored, cfg, ignore=SWITCHABLE_KEYS)}); run the new "
                                      "config in another folder")
                self.cfg = cfg = same  # (keys added since the run was stored: as it ran)
            self._check_fingerprint(ledger_path)
        else:
            check_out_dir(self.run_dir, "run_dir")  # never write into a folder of other files
        self._setup(domains)  # everything that can fail on bad input fails before the run folder exists
        if self._objects.fingerprint is None and self.domains.fingerprint is not None:
            self._objects.fingerprint = self.domains.fingerprint  # data from files: the same check on resume
            if ledger_path.is_file():
                self._check_fingerprint(ledger_path, from_files=True)
        self._check_classes(stored_classes)
        distributed.barrier()  # torchrun: every rank has checked the folder before rank 0 writes to it
        self.ledger: Ledger | None = None  # other ranks get what they need from rank 0 (`_on_main`)
        self._on_main(lambda: self._init_ledger(cfg, ledger_path))

    def _check_loggers(self) -> None:
        """Each logger's `check` (its folder, its server), once."""
        for logger, flag in self._loggers_to_check:  # (flag: how the logger is named in an error)
            logger.check(flag, run_dir=self.run_dir)
        self._loggers_to_check = []

    def _on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on rank 0 only (ledger reads/writes, the strategy, checkpoints), its result (or its
        exception) handed to every rank. In one process: just ``fn()``."""
        if not self.dist.enabled:
            return fn()
        if self.dist.main:
            try:
                out = ("ok", fn())
            except BaseException as e:
                try:
                    pickle.dumps(e)
                    err = e
                except Exception:
                    err = RuntimeError(f"rank 0 failed: {type(e).__name__}: {e}")
                distributed.broadcast_object(("error", err))
                raise
            return distributed.broadcast_object(out)[1]
        kind, value = distributed.broadcast_object()
        if kind == "error":
            raise value
        return value

    def _init_ledger(self, cfg: ExperimentConfig, ledger_path: Path) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(ledger_path)
        stored = self.ledger.get_meta("config")
        if stored is None:
            with run_lock(self.run_dir):  # a second new run in this folder fails with "in use by PID"
                stored = self.ledger.get_meta("config")
                if stored is None:
                    if self._objects.backbone is not None:
                        with replaced_atomically(self.run_dir / INITIAL_MODULE, binary=True) as fh:
                            torch.save(self._objects.backbone.state_dict(), fh)
                    self.ledger.set_meta("model", self.rebuild_info())
                    if self._objects.fingerprint is not None:
                        self.ledger.set_meta("data_fingerprint", self._objects.fingerprint)
                    self.ledger.set_meta("config", cfg.to_dict())
        if stored is not None and continued_config(stored, cfg) is None:  # stored by another process meanwhile
            raise ConfigError(f"{self.run_dir}: another process started a run of a different config here meanwhile "
                              f"({config_changes(stored, cfg, ignore=SWITCHABLE_KEYS)}); run this config in another "
                              "folder")
        if stored is not None:
            self._check_same_model(self.ledger.get_meta("model") or {})
        if not (self.run_dir / "config.yaml").is_file():  # (also when a kill came between the ledger and the file)
            write_atomically(self.run_dir / "config.yaml",
                             yaml.safe_dump(self.ledger.get_meta("config"), sort_keys=False))
        if self.ledger.classes() is None:  # lets `adakit ledger check` verify labels against the class list
            self.ledger.set_classes(list(self.domains.classes))

    def on_event(self, kind: str, info: dict) -> None:
        """Hand one event to every callback (see the README's list of events and their fields); rank 0 only. A
        callback that raises stops the run with its error once every callback got the event."""
        if not self.dist.main:
            return
        failed: Exception | None = None
        for callback in self.callbacks:  # each its own copy: a callback that changes what it gets changes nothing
            try:  # for the others, the run or what run() returns
                callback(kind, copy.deepcopy(info))
            except Exception as e:  # noqa: BLE001 - the callbacks after it get the event (it is not sent again on
                if failed is None:  # resume), then the first error stops the run
                    failed = e
        if failed is not None:
            raise failed

    def close(self) -> None:
        """Close the run's ledger (also on leaving a ``with ActiveLoop(...) as loop:`` block); the loop cannot run
        afterwards. A run folder's ledger stays consistent without it: every change is committed when made."""
        if getattr(self, "ledger", None) is not None:
            self.ledger.close()

    def __enter__(self) -> ActiveLoop:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @classmethod
    def resume(cls, run_dir: str | Path, *, changes: str | Sequence[str] = (), **kwargs) -> ActiveLoop:
        """Continue the run in ``run_dir``. A run started from Python objects (arrays/Datasets, your model, a
        callable oracle) takes the same objects again: ``resume(run_dir, source=..., target=..., model=...)``.
        ``changes``: ``key=value`` settings (one, or a list) the run may change as it continues
        (`SWITCHABLE_KEYS`: the oracle, ``train.device``, ``train.threads``, ``train.eval_batch_size``, ``log``)."""
        run_dir = Path(run_dir)
        if "config" in kwargs:
            raise ConfigError("ActiveLoop.resume continues a run with the config stored in its ledger; leave "
                              "config= out (to change settings, start a new run in another folder)")
        # the stored config, read-only; never a default one (a damaged ledger is a named error)
        cfg = stored_experiment(run_dir)
        changes = [changes] if isinstance(changes, str) else list(changes)
        if changes:
            fixed = [c for c in changes if not any(c.split("=", 1)[0].strip() == k or c.strip().startswith(k + ".")
                                                   for k in SWITCHABLE_KEYS)]
            if fixed:
                raise ConfigError(f"resume: {', '.join(fixed)}: a run continues with its own settings except "
                                  f"{', '.join(SWITCHABLE_KEYS)}; run another config in another folder")
            cfg = build_config(cfg.to_dict(), changes)
        objects = cfg.data.format == "objects"
        with Ledger.read_only(run_dir / "ledger.sqlite") as led:
            with_test = objects and "test" in (led.get_meta("data_fingerprint") or {})
        missing = [name for name, needed in (("source", objects), ("target", objects), ("test", with_test),
                                             ("model", cfg.model.backbone == "custom"),
                                             ("oracle", cfg.oracle.kind == "callable"))
                   if needed and kwargs.get(name) is None]
        if missing:
            raise ConfigError(f"{run_dir} was started from Python objects; adakit keeps a fingerprint of them, not "
                              f"the objects. Resume it from Python with the same objects: "
                              f"ActiveLoop.resume({str(run_dir)!r}, {', '.join(m + '=...' for m in missing)})")
        return cls(cfg, run_dir, **kwargs)

    def _check_classes(self, stored: list[str] | None) -> None:
        """Refuse to continue a run whose class list (``stored`` in its ledger) changed: its labels are indices
        into the stored list."""
        check_class_list(self.run_dir, stored, self.domains.classes, self.cfg.data.format == "objects")

    def _check_fingerprint(self, ledger_path: Path, from_files: bool = False) -> None:
        """Refuse to continue a run on other data than it started with (named domain and difference): the
        labels in its ledger belong to sample ids, which for rows of a feature file are row numbers."""
        from adakit.data.objects import fingerprint_diff

        with Ledger.read_only(ledger_path) as led:
            stored = led.get_meta("data_fingerprint")
        now = self._objects.fingerprint
        if stored is None or now is None:
            return
        if from_files:
            check_file_data(self.run_dir, stored, now, self.cfg.data)
            return
        for name in sorted(set(stored) | set(now)):
            if name not in now:
                raise ConfigError(f"{self.run_dir} was started with a separate {name}= domain; pass it again")
            if name not in stored:
                raise ConfigError(f"{self.run_dir} was started without {name}=; resume it without one")
            diff = fingerprint_diff(stored[name], now[name])
            if diff:
                raise ConfigError(f"{name}= is not the data {self.run_dir} was started with: {diff}; resume it "
                                  "with the same arrays/Dataset")

    def _check_same_model(self, stored: dict) -> None:
        """A continued run has the model it started with: another module (class or widths) would train on, and its
        checkpoints could never be loaded (`adakit.load_run` rebuilds the stored one)."""
        now = self.rebuild_info()

        def same(k: str) -> bool:  # a class by its name (a script's __main__.Net is the same Net imported)
            a, b = stored[k], now.get(k)
            return str(a).rsplit(".", 1)[-1] == str(b).rsplit(".", 1)[-1] if k == "backbone_class" else a == b

        changed = [f"{k} {stored[k]!r} → {now.get(k)!r}" for k in ("backbone_class", "backbone_dim", "feature_dim")
                   if k in stored and not same(k)]
        if changed:
            what = "model=" if self._objects.backbone is not None else "model settings"
            raise ConfigError(f"{self.run_dir}: the run was started with another model ({', '.join(changed)}); "
                              f"continue it with the same {what} (for your own module: the same class, built "
                              "with the same sizes)")

    def rebuild_info(self) -> dict:
        """What `adakit.load_run` needs to rebuild the model without the data (stored in the ledger meta)."""
        backbone = self.model.backbone
        info = {"input_shape": list(self.domains.source.input_shape), "classes": list(self.domains.classes),
                "feature_dim": int(self.model.feature_dim), "backbone_dim": int(backbone.out_dim),
                "backbone": self.cfg.model.backbone, "head": "cosine" if hasattr(self.model.head, "temperature")
                else "linear"}
        if self._objects.backbone is not None:
            cls = type(self._objects.backbone)
            info["backbone_class"] = f"{cls.__module__}.{cls.__qualname__}"
        if self.cfg.data.format == "svmlight":  # how its files were read, for adakit predict on new files
            from adakit.data.features import svmlight_indexing

            info["svmlight_zero_based"] = svmlight_indexing(self.cfg.data)
        if self.cfg.data.format == "npz":  # how `adakit features` made its features, for adakit predict on new ones
            from adakit.data.features import run_source_extractor

            extractor = run_source_extractor(self.cfg.data)
            if extractor is not None:
                info["extractor"] = extractor
        standardized = getattr(self.domains.source, "standardized_with", None)  # data.standardize: source stats
        if standardized is not None:
            info["standardize"] = {"mean": standardized[0].tolist(), "std": standardized[1].tolist()}
        return info

    # -- set-up: everything that can fail on bad input fails here, before training ----------------
    def _build_model_and_objective(self, obj_cls: type, obj_params) -> None:
        """``self.model`` with the head the objective needs (cosine for MME / omega=mme), then ``self.objective``."""
        model_cfg, d = self.cfg.model, self.domains
        head = obj_cls.head_for(obj_params)
        if head and model_cfg.head != head:
            model_cfg = model_cfg.model_copy(update={"head": head})
        user = self._objects.backbone
        if user is not None:  # a rebuild (BIWAA-I's warm-up runs) starts again from the module's initial weights
            if not hasattr(self, "_backbone_init"):
                self._backbone_init = {k: v.detach().clone() for k, v in user.state_dict().items()}
            else:
                user.load_state_dict(self._backbone_init)
        sample = d.source.load(np.arange(min(2, len(d.source)))) if user is not None else None
        try:
            self.model = build_model(model_cfg, tuple(d.source.input_shape), len(d.classes), backbone=user,
                                     sample=sample).to(self.device)
        except RuntimeError as e:  # (a raw allocator error and traceback; a GPU's OutOfMemoryError is one)
            if "allocate" not in str(e):
                raise
            raise ConfigError(f"model: no memory for the model's weights ({str(e).splitlines()[0]}"
                              f"); with model.backbone={model_cfg.backbone}, model.hidden_dim={model_cfg.hidden_dim} "
                              f"(mlp) and model.bottleneck_dim={model_cfg.bottleneck_dim}, lower the width that is "
                              "too large") from None
        given = self._objects.objective
        if given is not None and not hasattr(self, "objective"):
            if (given.feature_dim, given.num_classes) != (self.model.feature_dim, len(d.classes)):
                raise ConfigError(f"objective=: the {type(given).__name__} instance was built for feature_dim="
                                  f"{given.feature_dim}, num_classes={given.num_classes}, but the model has "
                                  f"{self.model.feature_dim} and {len(d.classes)}; pass the objective by name with "
                                  "its parameters instead: objective=(name, params)")
            if given.per_sample_memory and getattr(given, "pool_size", 0) != len(d.pool):
                raise ConfigError(f"objective=: the {type(given).__name__} instance keeps a memory of "
                                  f"pool_size={getattr(given, 'pool_size', 0)} target samples, but the target pool "
                                  f"has {len(d.pool)}; build it with pool_size={len(d.pool)}, or pass it by name: "
                                  "objective=(name, params)")
            self.objective = given.to(self.device)
            return
        self.objective = obj_cls(obj_params, feature_dim=self.model.feature_dim, num_classes=len(d.classes),
                                 pool_size=len(d.pool)).to(self.device)

    def _setup(self, domains: Domains | None) -> None:
        cfg = self.cfg
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.seed)
        self.device = resolve_device(cfg.train.device)
        if cfg.runner != "loop":
            raise ConfigError(f"runner={cfg.runner}: this baseline runs through `adakit run` / `bench` / `sweep` (or "
                              "adakit.probe.run_probe), not as an ActiveLoop; remove runner: for a network run")
        if domains is None and cfg.data.format == "objects":
            raise ConfigError("data.format=objects: this run takes its data from Python objects; pass them as "
                              "ActiveLoop(..., source=..., target=...)")
        self.domains = domains or load_domains(cfg.data, cfg.seed)
        self.source_val = None  # the held-out source split of the validators (data.source_val), never trained on
        if cfg.data.source_val > 0:
            from adakit.validate._run import split_source_val

            self.domains, self.source_val = split_source_val(self.domains, cfg.data.source_val, cfg.seed)
        d = self.domains
        if len(d.source) < 2:
            raise DataError(f"source: {len(d.source)} sample; training needs at least 2 labelled source samples")
        _check_workers_can_have(d, cfg.train.num_workers)
        self.budgets = round_budgets(cfg.budget.total, cfg.budget.rounds, len(d.pool))
        obj_cls = OBJECTIVES.get(cfg.objective.name)
        strat_cls = STRATEGIES.get(cfg.query.strategy)
        obj_params = cfg.objective_params()
        missing = set(strat_cls.needs) - set(obj_cls.provides_for(obj_params))
        if missing and self.budgets:
            providers = [n for n in OBJECTIVES.names() if set(strat_cls.needs) <= set(OBJECTIVES.get(n).provides)]
            probe = " (or set objective.probe_domain=true)" if missing == {"domain_discriminator"} else ""
            raise ConfigError(f"query.strategy={cfg.query.strategy!r} needs {sorted(missing)}, which "
                              f"objective.name={cfg.objective.name!r} does not provide; use one of: "
                              f"{', '.join(providers) or '(none)'}{probe}")
        if cfg.query.probs_from == "probe":
            given = self._objects.strategy
            self._check_probe_probs(strat_cls if given is None else type(given))
        torch.manual_seed(cfg.seed)
        self._build_model_and_objective(obj_cls, obj_params)
        batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.model.modules())
        if cfg.train.batch_size == 1 and batch_norm:
            given = "the module given as ActiveLoop(model=...)" if self._objects.backbone is not None else \
                f"model.backbone={cfg.model.backbone}"  # (timm; the built-in ones are refused by the config)
            raise ConfigError(batch_norm_error(f"{given} (it has BatchNorm layers)"))
        query_params = query_params_for_run(cfg, self.budgets, len(d.pool))
        self.strategy = strat_cls(query_params) if self._objects.strategy is None else self._objects.strategy
        if self._objects.strategy is not None and query_params is not self.strategy.params \
                and "budget_ratio" in type(query_params).model_fields:
            self.strategy.params.budget_ratio = query_params.budget_ratio
        self.trainer = Trainer(self.model, self.objective, cfg.train, self.device, anchor=cfg.anchor)
        if self.dist.enabled and cfg.train.eval_checkpoints and cfg.train.warmup_iters:  # (before the folder exists)
            raise ConfigError("train.eval_checkpoints is not supported in a torchrun (multi-process) run; set it to "
                              "0 or run in one process")
        k, w = cfg.train.eval_checkpoints, cfg.train.warmup_iters
        if k > max(w - 1, 0):  # (checkpoints sit at distinct steps strictly inside the warm-up)
            warnings.warn(f"train.eval_checkpoints={k}: a warm-up of train.warmup_iters={w} steps holds only "
                          f"{max(w - 1, 0)} checkpoints (steps strictly inside it); the run records those. Lower "
                          "train.eval_checkpoints or raise train.warmup_iters", UserWarning, stacklevel=2)
        runs = getattr(self.objective, "warmup_runs", 1)
        if k and w and runs > 1:  # (`_warmup_runs` has no checkpoint hook: the run recorded none, silently)
            warnings.warn(f"train.eval_checkpoints={k}: objective.name={cfg.objective.name} trains its warm-up "
                          f"{runs} times from scratch (objective.runs), and such a warm-up records no checkpoints; "
                          "set train.eval_checkpoints: 0, or objective.runs: 1 for checkpoints", UserWarning,
                          stacklevel=2)
        if cfg.oracle.kind == "file":
            self.oracle = FileOracle(d.pool, self.run_dir, d.classes)
        elif cfg.oracle.kind == "callable":
            if self._objects.oracle is None:
                raise ConfigError("oracle.kind=callable: pass the labelling function as ActiveLoop(oracle=...)")
            self.oracle = CallableOracle(self._objects.oracle, d.pool, d.classes)
        else:
            unknown = int((np.asarray(d.pool.y) < 0).sum()) if self.budgets else 0
            if unknown:
                raise DataError(f"target: {unknown} of {len(d.pool)} pool samples have no label (-1), but the "
                                "simulated oracle answers queries with the target's labels; give every target "
                                "label, or have people label: oracle='file' (`--set oracle.kind=file`) or a "
                                "function ActiveLoop(oracle=labels_for)")
            self.oracle = SimulatedOracle(d.pool)

    def _check_probe_probs(self, strat_cls: type) -> None:
        """``query.probs_from: probe`` needs feature vectors and a strategy that reads only probabilities."""
        from adakit.data.domain import TensorDomain

        d = self.domains
        if not all(isinstance(x, TensorDomain) and x.is_features for x in (d.source, d.pool)):
            raise ConfigError(f"query.probs_from=probe needs feature vectors in memory (data.format npz, mat, "
                              f"svmlight or feature arrays); this run's data ({self.cfg.data.format}) are not: use "
                              "query.probs_from=model, or extract features first (`adakit features`)")
        if not strat_cls.probs_only:
            allowed = [n for n in STRATEGIES.names() if STRATEGIES.get(n).probs_only]
            raise ConfigError(f"query.probs_from=probe: query.strategy={self.cfg.query.strategy!r} reads more than "
                              f"the pool probabilities; use one that reads only them ({', '.join(allowed)}) or "
                              "query.probs_from=model (a strategy of your own that reads only view.probs: set "
                              "probs_only = True on its class)")

    # -- the loop ---------------------------------------------------------------------------------
    @locked
    def run(self) -> dict:
        """Train, query and evaluate every round not yet done. Under torchrun every rank calls it: rank 0 holds
        the lock and writes; all ranks train and infer; the decisions below come from rank 0's ledger."""
        if self._objects.backbone is not None:
            _TRAINED_MODULES.add(self._objects.backbone)
        with shown(self.show_progress):  # in a terminal: bars for long inference passes, a spinner for queries
            return self._run_rounds()

    def _run_rounds(self) -> dict:
        led = self.ledger

        def start() -> None:
            self._check_loggers()  # (a continued run's loggers, before any work)
            clean_checkpoints(self.run_dir, led)  # files a killed process left behind
            self.on_event("started", {"run_dir": str(self.run_dir), "config": self.cfg.to_dict(),
                                       "rounds": len(self.budgets), "budgets": list(self.budgets),
                                       "evaluated": [_evaluated_info(m) for m in led.metrics()]})

        self._on_main(start)
        last = self.restore()
        if last is not None:
            self.on_event("resumed", {"round": last})
        else:
            self._restore_initial_module()
        # rounds beyond the schedule exist when `adakit query` added them: they are trained too
        for r in range(last or 0, self._on_main(lambda: max(len(self.budgets), led.last_round())) + 1):
            if last is None or r > last:
                if r > 0:
                    self._query_and_label(r)
                self._train(r)
            if not self._on_main(lambda: led.round_reached(r, "evaluated")):  # noqa: B023 - called at once
                self._evaluate(r)
        self._pool_cache = None  # the last pool pass: no query of this run follows (frees its host or GPU memory)

        def finish() -> dict:
            summary = self.write_outputs()
            self.on_event("done", summary)
            return summary

        return self._on_main(finish)

    def _labelled(self) -> tuple[np.ndarray, np.ndarray]:
        idx, y = self.ledger.labelled_pool()
        return np.asarray(idx, dtype=np.int64), np.asarray(y, dtype=np.int64)

    def _query_and_label(self, r: int) -> None:
        led = self.ledger
        if not self._on_main(lambda: led.round_reached(r, "queried")):
            self._select(r, self.budgets[r - 1], people=self.cfg.oracle.kind == "file")
        self._on_main(lambda: self._label(r))

    def _label(self, r: int) -> None:
        led = self.ledger
        if led.round_reached(r, "labelled"):  # (a callback failed on its event: it is not sent again)
            return
        pending, answered = led.open_queries(r), 0
        if pending:
            try:
                answers = self.oracle.label(pending, r)
            except RejectedAnswers as e:  # the valid answers are saved before the error surfaces
                self._record(r, e.answers)
                raise
            if answers is None:
                objects = self.cfg.data.format == "objects"
                then = resume_hint(self.run_dir, objects)
                listed = getattr(self.oracle, "exported", None) or self.run_dir / "queries" / f"round-{r}.csv"
                page = "" if objects else f"on the labelling page (`adakit label {sh(self.run_dir)}`), or "
                raise WaitingForLabels(
                    f"round {r}: {len(pending)} queries wait for labels in {listed}; answer them {page}fill its "
                    f"label column and `adakit import-labels {sh(self.run_dir)} {sh(listed)}`; then {then}",
                    round=r, open=tuple(q.sample_id for q in pending), run_dir=str(self.run_dir))
            self._record(r, answers)
            answered = len(answers)
            if answered < len(pending):
                still = tuple(q.sample_id for q in led.open_queries(r))
                raise WaitingForLabels(
                    f"round {r}: {len(pending) - answered} of {len(pending)} queries got no answer (None, NaN, '' "
                    f"or -1); the {answered} answer(s) are saved in the ledger. Resume the run with the same "
                    f"objects, ActiveLoop.resume({str(self.run_dir)!r}, ..., oracle=...), to be asked for the rest "
                    f"(answer {DROP!r} for a sample nobody can label)",
                    round=r, open=still, run_dir=str(self.run_dir))
        with led.transaction() as c:
            led.set_round_status(r, "labelled", conn=c)
        self.on_event("labelled", {"round": r, "count": answered, "labels": len(self._labelled()[0])})

    def _record(self, r: int, answers: dict[str, int]) -> None:
        """The oracle's answers into the ledger. An answer that differs from one given meanwhile (a person on the
        labelling page or `import-labels` while a labelling function was thinking) is left out, the first answer
        kept, and named in a warning; the other answers are committed."""
        outcome = self.ledger.record_labels(answers, self.oracle.annotator, keep_first=True)
        clash = [sid for sid, how in outcome.items() if how == "conflict"]
        if clash:
            now = self.ledger.current_labels()
            shown = ", ".join(f"{sid} (kept {now.get(sid)}, {self.oracle.annotator} said {answers[sid]})"
                              for sid in clash[:5]) + (f" and {len(clash) - 5} more" if len(clash) > 5 else "")
            warnings.warn(f"round {r}: {len(clash)} answer(s) of the {self.oracle.annotator} differ from answers "
                          f"given meanwhile, which are kept: {shown}; to change one, import it with "
                          f"`adakit import-labels {sh(self.run_dir)} FILE --correct`", RuntimeWarning, stacklevel=2)

    def _select(self, r: int, budget: int, people: bool = False) -> None:
        """Round r's selection with the current model, recorded in the ledger as open queries. ``people``: the
        queries go to people (`_refuse_diverged`)."""
        pool = self.domains.pool
        # one read of rank 0's ledger: the labelled samples, and the dropped ones (never asked again)
        idx, y, gone = self._on_main(lambda: (*self._labelled(), self.ledger.dropped_pool()))
        mask = np.zeros(len(pool), dtype=bool)
        mask[idx] = True
        labels = np.full(len(pool), -1, dtype=np.int64)
        labels[idx] = y
        dropped = np.zeros(len(pool), dtype=bool)
        dropped[gone] = True
        view = PoolView(self.model, pool, mask, labels, objective=self.objective, source=self.domains.source,
                        device=self.device, batch_size=self.cfg.train.eval_batch_size,
                        outputs_on_device=self.outputs_on_device,  # CUDA: strategies compute on the GPU
                        unavailable=dropped, num_workers=self.cfg.train.num_workers)
        cached = getattr(self, "_pool_cache", None)
        if cached is not None and cached[0] == r - 1 and not self.dist.enabled:  # round r-1's pool pass: same model
            view.__dict__["_outputs"] = cached[1]
        with distributed.sharded_inference():  # torchrun: every rank infers its share of the pool, gathered
            view.embeddings  # noqa: B018 - computes and caches the pool outputs
        def on_main() -> None:
            if people:
                self._refuse_diverged(r, view, len(idx))
            self._select_on_main(r, budget, view, mask | dropped)

        self._on_main(on_main)

    def _refuse_diverged(self, r: int, view: PoolView, given: int) -> None:
        """`ConfigError` when the model's pool probabilities are not finite (its training diverged, as the training
        warned): a selection from them is arbitrary, and people would label it. Nothing is recorded or exported;
        with a simulated oracle or a labelling function the run goes on (a sweep records the diverged setting).
        ``given``: how many labels the ledger holds."""
        from adakit.selection import all_finite

        if all_finite(view.probs):
            return
        raise ConfigError(
            f"round {r}: the model's outputs on the target pool are NaN or infinite (its training diverged: see the "
            f"warning about the training loss), so its picks would be arbitrary; no queries were recorded or "
            f"exported for people to label. The {given} label(s) given so far are kept in {self.ledger.path}. Start "
            f"a new run with a lower train.lr (now {self.cfg.train.lr:g}) or train.weight_decay (now "
            f"{self.cfg.train.weight_decay:g}), or look for NaN / inf values in your data; at each of its rounds, "
            f"`adakit import-labels NEW_RUN FILE --skip-unqueried` with FILE from `adakit ledger export "
            f"{sh(self.run_dir)} FILE` answers the queries people already answered here")

    def _select_on_main(self, r: int, budget: int, view: PoolView, mask: np.ndarray) -> None:
        """The strategy's selection (on rank 0 only under torchrun), recorded as open queries."""
        led, pool = self.ledger, self.domains.pool
        t0 = time.perf_counter()
        model_probs = view.probs  # the suggested labels always come from the network
        if self.cfg.query.probs_from == "probe":
            from adakit.probe import probe_pool_probs

            p = probe_pool_probs(self.domains.source, pool, view.labelled_indices,
                                 view.labels[view.labelled_indices], self.cfg.probe.c, self.cfg.probe.standardize,
                                 self.cfg.seed)
            view.__dict__["probs"] = torch.as_tensor(p, device=model_probs.device)  # float64, as the probe gives
        with status(f"round {r}: {self.cfg.query.strategy} picks {budget:,} of {len(pool) - int(mask.sum()):,} "
                    "unlabelled samples"):
            sel = self.strategy.select(view, budget, np.random.default_rng([self.cfg.seed, r]))
        seconds = time.perf_counter() - t0
        sel = check_selection(sel, mask, budget, f"query.strategy={self.cfg.query.strategy!r}")
        suggested = model_probs[torch.as_tensor(sel.indices)].argmax(1).tolist()
        led.set_meta(f"query_seconds/{r}", seconds)  # before the queries: a recorded round always has its timing
        led.record_queries(r, pool.ids[sel.indices].tolist(), sel.indices.tolist(), sel.scores.tolist(),
                           suggested)
        self.on_event("queried", {"round": r, "count": len(sel.indices), "seconds": seconds})

    # -- working on a stopped run without training (adakit query / adakit label) ------------------
    def restore(self) -> int | None:
        """Load the last checkpoint's weights (no training); its round, or None when there is none."""
        last = self._on_main(lambda: self.ledger.last_checkpoint())
        if last is None:
            return None
        path = self._checkpoint(last[1])
        if not path.is_file() and (self.run_dir / "checkpoints" / path.name).is_file():
            path = self.run_dir / "checkpoints" / path.name  # a run folder of an older adakit, moved
        apply_checkpoint(self.trainer, path, last[0], self.run_dir, map_location=self.device)
        return last[0]

    def _checkpoint(self, stored: str) -> Path:
        return checkpoint_file(self.run_dir, stored)

    @locked
    def select_round(self, budget: int) -> int:
        """One selection round on the last checkpoint (``adakit query``): records round K's queries as
        open and exports ``queries/round-K.csv`` + ``.json``; returns K. `run` (resume) trains on them
        once they are answered, also when K lies beyond the configured rounds.
        """
        from adakit.errors import LedgerError
        from adakit.oracle import export_missing, export_round

        if self.dist.enabled:  # (rank 0 alone holds the ledger; the other ranks would fail on it, or wait)
            raise ConfigError("select_round (adakit query) runs in one process: call it outside torchrun; "
                              "`ActiveLoop.run` / `adakit resume` under torchrun then train on the answers")
        # a process killed between recording a round's queries and writing their CSV: write it now
        export_missing(self.ledger, self.domains.pool, self.domains.classes, self.run_dir)
        done = self.restore()
        if done is None:
            raise ConfigError(f"{self.run_dir} has no trained model yet; `adakit resume {sh(self.run_dir)}` trains "
                              "the warm-up round first")
        r = done + 1
        if self.ledger.round_status(r) is not None:
            n_open = len(self.ledger.open_queries(r))
            if n_open == 0:  # answered, not yet trained on
                raise LedgerError(f"round {r} was already queried and all its queries are answered; `adakit resume "
                                  f"{sh(self.run_dir)}` trains on them, then `adakit query` asks round {r + 1}")
            raise LedgerError(f"round {r} was already queried ({n_open} of its queries still open); answer them "
                              f"(`adakit label` or `adakit import-labels`), then `adakit resume {sh(self.run_dir)}`")
        free = len(self.domains.pool) - len(self._labelled()[0]) - len(self.ledger.dropped_pool())
        count = whole_number(budget)
        if count is None or count < 1 or count > free:
            raise DataError(f"select_round: budget={budget!r} (adakit query --budget): choose a whole number between 1 "
                            f"and {free} (samples of the target pool not yet queried)")
        with shown(self.show_progress):
            self._select(r, count, people=True)
        export_round(self.domains.pool, self.domains.classes, self.ledger.queries(r),
                     self.run_dir / "queries" / f"round-{r}")
        return r

    @torch.no_grad()
    def pool_probabilities(self, indices) -> torch.Tensor:
        """Class probabilities (len(indices), C) of target-pool samples under the current model."""
        idx, bs = np.asarray(indices, dtype=np.int64), self.cfg.train.eval_batch_size
        was_training = self.model.training
        self.model.eval()
        out = []
        for s in range(0, len(idx), bs):
            _, z = self.model(self.domains.pool.load(idx[s:s + bs]).to(self.device))
            out.append(torch.softmax(z.float(), 1).cpu())
        self.model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, len(self.domains.classes))

    def _warmup_hook(self, r: int, iters: int) -> Callable[[int], None] | None:
        """Round 0 with ``train.eval_checkpoints`` = K: record accuracy + validators and save the model at K evenly
        spaced warm-up steps (evaluation in eval mode draws no random numbers: training is unchanged)."""
        from adakit.validate._run import checkpoint_steps, warmup_checkpoint

        steps = set(checkpoint_steps(iters, self.cfg.train.eval_checkpoints)) if r == 0 else set()
        return (lambda k: warmup_checkpoint(self, k) if k in steps else None) if steps else None

    def _train(self, r: int) -> None:
        self._pool_cache = None
        cfg = self.cfg
        idx, y = self._on_main(self._labelled)
        iters = cfg.train.warmup_iters if r == 0 else cfg.train.round_iters
        if r == 0 and getattr(self.objective, "warmup_runs", 1) > 1:
            stats = self._warmup_runs(idx, y, iters)
        else:
            self.objective.on_round_start(r)
            stats = self.trainer.fit(self.domains.source, self.domains.pool, idx, y, iters,
                                     seed=cfg.seed * 100_003 + r, desc=f"round {r} train",
                                     show_progress=self.show_progress, on_step=self._warmup_hook(r, iters))
        self._on_main(lambda: self._save_round(r, iters, stats))

    def _restore_initial_module(self) -> None:
        """No checkpoint yet: your module starts from the weights it had when the run was created (the object
        passed again may have been trained in place by the interrupted process, or built without a seed)."""
        path = self.run_dir / INITIAL_MODULE
        if self._objects.backbone is None or not path.is_file():
            return
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self._objects.backbone.load_state_dict(state)
            if hasattr(self, "_backbone_init"):  # (BIWAA-I's later warm-up runs start from them too)
                self._backbone_init = {k: v.detach().clone() for k, v in state.items()}
        except (RuntimeError, OSError, pickle.UnpicklingError) as e:
            raise ConfigError(f"{path}: cannot restore your module's initial weights ({' '.join(str(e).split())[:200]})"
                              "; pass the module the run was started with, or delete this file to start the warm-up "
                              "from the module as it is") from None

    def _save_round(self, r: int, iters: int, stats: dict) -> None:
        """Round r's checkpoint and training stats (rank 0 only under torchrun)."""
        ck_dir = self.run_dir / "checkpoints"
        ck_dir.mkdir(exist_ok=True)
        path = ck_dir / f"round-{r}.pt"
        with replaced_atomically(path, binary=True) as fh:
            torch.save(self.trainer.state_dict(), fh)
        prev = self.ledger.last_checkpoint()
        self.ledger.set_meta(f"train/{r}", stats)  # before the checkpoint row: a trained round always has its stats
        self.ledger.set_meta(f"processes/{r}", {"world_size": self.dist.world_size,
                                                "backend": self.dist.backend or "none",
                                                "environment": environment(self.device)})
        self.ledger.record_checkpoint(r, str(path.relative_to(self.run_dir)))
        if prev is not None and prev[0] not in (0, r):  # the warm-up checkpoint is kept (see adopt_warmup)
            self._checkpoint(prev[1]).unlink(missing_ok=True)
        (self.run_dir / INITIAL_MODULE).unlink(missing_ok=True)  # a checkpoint now holds what a resume needs
        self.on_event("trained", {"round": r, "iters": iters, **stats})

    def _warmup_runs(self, idx: np.ndarray, y: np.ndarray, iters: int) -> dict:
        """Warm-up of an objective with ``warmup_runs`` > 1 (BIWAA-I, Westfechtel et al. §3.3): train from scratch that
        many times. Run 0 is the plain warm-up (same seeds); run k ≥ 1 rebuilds model, objective and trainer
        with seeds derived from (seed, k), gets ``begin_warmup_run(k, carry)`` -> sampling weights over the pool
        for the unlabelled stream, and hands ``end_warmup_run(pool probabilities)`` -> carry to the next run.
        The last run's model goes on; the warm-up stays one round-0 checkpoint (a crash restarts all runs).
        """
        cfg, d = self.cfg, self.domains
        runs = int(self.objective.warmup_runs)
        carry, stats, accs = None, {}, {}
        for k in range(runs):
            seed = cfg.seed * 100_003
            if k > 0:
                seed = int(np.random.SeedSequence([cfg.seed, 0, k]).generate_state(1)[0])
                seed_everything(seed)
                self._build_model_and_objective(type(self.objective), self.objective.params)
                self.trainer = Trainer(self.model, self.objective, cfg.train, self.device, anchor=cfg.anchor)
            weights = self.objective.begin_warmup_run(k, carry)
            self.objective.on_round_start(0)
            stats = self.trainer.fit(d.source, d.pool, idx, y, iters, seed=seed, desc=f"round 0 run {k + 1}/{runs}",
                                     show_progress=self.show_progress, target_weights=weights)
            with distributed.sharded_inference():
                _, logits = self.infer(d.pool)
                _, test_logits = self.infer(d.test)
            carry = self.objective.end_warmup_run(torch.softmax(logits, 1))
            accs[f"run{k}_accuracy"] = accuracy(test_logits, d.test.y)["accuracy"]
            self.on_event("warmup_run", {"round": 0, "run": k, "runs": runs, "accuracy": accs[f"run{k}_accuracy"]})
        return {**stats, **accs, "warmup_runs": runs}

    def infer(self, domain, keep_on_device: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's (features, logits) on ``domain`` (`adakit.inference.forward_domain` with the run's
        ``train.eval_batch_size``, device and ``train.num_workers`` loader workers)."""
        return forward_domain(self.model, domain, self.cfg.train.eval_batch_size, self.device,
                              keep_on_device=keep_on_device, num_workers=self.cfg.train.num_workers)

    @property
    def outputs_on_device(self) -> bool:
        """Whether the test and pool outputs stay on the model's device (a CUDA run): accuracy and the strategies
        compute there, the pool pass cached for the next query stays there, and the validators take the one host
        copy numpy needs (`adakit.validate._run.validator_scores`). False on the CPU (nothing to move)."""
        return self.device.type == "cuda"

    def _evaluate(self, r: int) -> None:
        with distributed.sharded_inference():  # torchrun: every rank infers its share of the test set
            test_out = self.infer(self.domains.test, keep_on_device=self.outputs_on_device)
        self._on_main(lambda: self._record_evaluation(r, test_out))

    def _record_evaluation(self, r: int, test_out: tuple[torch.Tensor, torch.Tensor]) -> None:
        logits = test_out[1]
        # a test set without labels (a target given as x only) has no accuracy: the round is recorded without metrics
        metrics = accuracy(logits, self.domains.test.y) if (self.domains.test.y >= 0).any() else {}
        n_labels = len(self._labelled()[0])
        if metrics:
            metrics.update(self._validators(r, test_out))
        else:  # no accuracy row (reports need one): the validators go to summary.json's unlabelled_rounds
            self.ledger.set_meta(f"validators/{r}", {"round": r, "labels": n_labels,
                                                     **self._validators(r, test_out)})
        self.ledger.record_metrics(r, metrics, n_labels)
        write_atomically(self.run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in self.ledger.metrics()))
        self.on_event("evaluated", _evaluated_info({"round": r, "labels": n_labels, **metrics}))

    def _validators(self, r: int, test_out: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        """``val/<name>`` of every validator the run's data allow (no target labels; see adakit.validate)."""
        from adakit.validate._run import pool_outputs, validator_scores

        outs = pool_outputs(self, test_out, keep_on_device=self.outputs_on_device)
        self._pool_cache = (r, outs)  # the next query's pool pass (same model; on the GPU in a CUDA run)
        return validator_scores(self, outs, r)

    def warmup_key(self) -> str:
        """What determines the warm-up (round 0): runs with equal keys train the same round-0 model."""
        return _warmup_key(self.cfg.to_dict())

    @locked
    def adopt_warmup(self, other_run_dir: str | Path) -> bool:
        """Start from another run's finished warm-up instead of training the same one again.

        Exact, not an approximation: the warm-up depends only on `warmup_key`, which is checked.
        Returns False (and does nothing) when this run already has a checkpoint, the keys differ or
        the other run has no evaluated warm-up.
        """
        other_run_dir = Path(other_run_dir)
        src = other_run_dir / "checkpoints" / "round-0.pt"
        if self.ledger.last_checkpoint() is not None or not src.is_file():
            return False
        with Ledger(other_run_dir / "ledger.sqlite") as other:
            if (_warmup_key(other.get_meta("config")) != self.warmup_key()
                    or other.get_meta("data_fingerprint") != self._objects.fingerprint  # object runs: same data
                    or self._objects.backbone is not None  # a user module's initial weights are not in the config
                    or not other.round_reached(0, "evaluated")):
                return False
            stats, m = other.get_meta("train/0"), other.metrics()[0]
            warm_checkpoints = other.get_meta("warmup_checkpoints", [])
        ck_dir = self.run_dir / "checkpoints"
        ck_dir.mkdir(exist_ok=True)
        dst = ck_dir / "round-0.pt"
        shutil.copyfile(src, dst)
        self.ledger.record_checkpoint(0, str(dst.relative_to(self.run_dir)))
        self.ledger.set_meta("train/0", stats)
        for row in warm_checkpoints:  # train.eval_checkpoints: the warm-up's saved models and their scores
            shutil.copyfile(other_run_dir / row["checkpoint"], self.run_dir / row["checkpoint"])
        self.ledger.set_meta("warmup_checkpoints", warm_checkpoints)
        self.ledger.record_metrics(0, {k: v for k, v in m.items() if k not in ("round", "labels")}, 0)
        return True

    # -- outputs ----------------------------------------------------------------------------------
    def summary(self) -> dict:
        """The run's summary as ``summary.json`` holds it (also what `run` returns and the ``done`` event carries):
        name, strategy, objective, budget, ``rounds`` (the metrics per scored round), ``final_accuracy``, the test
        set's size and how many of its samples have a label (``test_samples``, ``test_labelled``: accuracy counts
        those), ``unlabelled_rounds`` (validators of rounds without test labels), timings, processes and
        environment."""
        cfg = self.cfg
        rounds = self.ledger.metrics()
        processes = self._processes()
        return {
            "name": cfg.name, "label": cfg.label, "strategy": cfg.query.strategy, "objective": cfg.objective.name,
            "protocol": cfg.data.protocol, "seed": cfg.seed,
            "data": {"format": cfg.data.format, "source": cfg.data.source, "target": cfg.data.target},
            "budget": {"total": cfg.budget.total, "rounds": cfg.budget.rounds, "per_round": self.budgets},
            "rounds": rounds,
            "final_accuracy": rounds[-1]["accuracy"] if rounds else None,
            # accuracy counts the test samples with a label only (a target given partly unlabelled)
            "test_samples": len(self.domains.test), "test_labelled": int((self.domains.test.y >= 0).sum()),
            "warmup_checkpoints": self.ledger.get_meta("warmup_checkpoints", []),  # train.eval_checkpoints
            "unlabelled_rounds": [v for v in (self.ledger.get_meta(f"validators/{r}") for r in
                                              range(max(len(self.budgets), self.ledger.last_round()) + 1)) if v],
            **run_timings(self.ledger, len(self.budgets)),  # from the ledger rows that exist (also after a resume)
            # the processes that trained the last round (torchrun: WORLD_SIZE, gloo/nccl; else 1, none) and their
            # environment (versions, CPU, kernels, threads: why a re-run elsewhere may differ), not those of a
            # process that only wrote this summary (a finished run continued); older runs: those that wrote it
            "world_size": processes["world_size"], "backend": processes["backend"],
            "environment": processes.get("environment") or environment(self.device),
        }

    def _processes(self) -> dict:
        last = self.ledger.last_checkpoint()
        stored = self.ledger.get_meta(f"processes/{last[0]}") if last is not None else None
        return stored or {"world_size": self.dist.world_size, "backend": self.dist.backend or "none"}

    def write_outputs(self) -> dict:
        """Write ``metrics.jsonl``, ``summary.json`` and the report (``report.md``, ``curve.png``) from the ledger;
        returns the summary."""
        from adakit.report import write_run_report

        summary = self.summary()
        write_atomically(self.run_dir / "metrics.jsonl", "".join(json.dumps(m) + "\n" for m in summary["rounds"]))
        write_atomically(self.run_dir / "summary.json", json.dumps(summary, indent=1))
        write_run_report(self.run_dir, summary)
        return summary

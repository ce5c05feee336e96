"""`adakit sweep`: a grid of settings of one experiment, each run into its own folder, and the setting and
checkpoint a validator picks without target labels.

Every run records its validators (``val/<name>`` per round, and at the ``train.eval_checkpoints`` warm-up
checkpoints); the pick maximises the chosen validator over the candidates (`candidates`: every checkpoint of a run
without queries; the last round of an active run, the model it keeps) (a tie goes to the config default's
setting, else to the first in grid order: `pick`). Target accuracy is read only for the oracle columns of the
table (the oracle best, the pick's and the default's accuracy), never for the pick. Runs land in
``OUT/<setting>``; finished runs are skipped, so an interrupted sweep continues.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
import os
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from adakit.bench import DATA_OBJECTS, check_plan, check_set_keys, run_plan, slug
from adakit.config import ExperimentConfig, build_config, load_config, read_yaml
from adakit.errors import AdakitError, ConfigError, WaitingForLabels
from adakit.rundir import mark_out_of_date, write_atomically


@dataclass
class Setting:
    """One grid point: its ``key=value`` overrides, display name and run folder."""

    values: dict[str, Any]
    name: str
    run_dir: Path
    config: ExperimentConfig
    is_default: bool = False
    summary: dict = field(default_factory=dict)
    #: a sweep on Python objects: the fingerprints of its data and two source inputs (to measure your module's output)
    objects_seen: dict | None = None
    #: a point of the grid (False: the config's own values, added because they are not one)
    in_grid: bool = True


def parse_grid(items: list[str], flag: str = "--grid") -> dict[str, list[Any]]:
    """``["train.lr=0.01,0.003", "seed=0,1"]`` -> ``{"train.lr": [0.01, 0.003], "seed": [0, 1]}`` (YAML scalars);
    ``flag``: the option the items came from, as errors name it (``--grid``, ``--only``)."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ConfigError(f"{flag} {item!r}: expected key=v1,v2,..., e.g. {flag} train.lr=0.01,0.003")
        if key in grid:
            raise ConfigError(f"{flag} {key}: given twice; put all its values in one {flag} {key}=v1,v2")
        if raw.rstrip().endswith(","):  # (YAML reads "[0.1, ]" as one value: the empty one was dropped silently)
            raise ConfigError(f"{flag} {item!r}: an empty value after the last comma; give every value, e.g. "
                              f"{flag} {key}={raw.rstrip().rstrip(',').strip()},<another value>")
        try:  # a YAML flow list: "a,b" in quotes is one value
            values = read_yaml(f"[{raw}]")
        except yaml.YAMLError as e:
            raise ConfigError(f"{flag} {item!r}: the values are not YAML scalars separated by commas ({e.problem}); "
                              f"quote a value that holds a comma or brackets, e.g. {flag} 'name=\"a,b\",c'") from None
        values = _grid_values(key, values)
        if len({json.dumps(v) for v in values}) != len(values):
            raise ConfigError(f"{flag} {item!r}: a value is listed twice")
        grid[key] = values
    if not grid:
        raise ConfigError(f"give at least one {flag} key=v1,v2,...")
    return grid


def _lookup(cfg: dict, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _default_value(cfg: ExperimentConfig, key: str) -> Any:
    """The config's own value of ``key``; a method parameter not in the file gives its ``Params`` default."""
    section, _, rest = key.partition(".")
    own = type(getattr(cfg, section)).model_fields if section in ("objective", "query") else {}
    if section in ("objective", "query") and rest.split(".")[0] not in own:  # (query.probs_from is the section's)
        params = cfg.objective_params() if section == "objective" else cfg.query_params()
        return _lookup(params.model_dump(mode="json"), rest)
    return _lookup(cfg.to_dict(), key)


def _fmt_value(v: Any) -> str:
    return yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()


def _config_with(config: str | Path | dict | ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """``config`` (a YAML file, a dict of sections or an `ExperimentConfig`) with ``key=value`` overrides."""
    if isinstance(config, ExperimentConfig):
        return build_config(config.to_dict(), overrides)
    if isinstance(config, dict):
        return build_config(config, overrides)
    return load_config(config, overrides)


def _grid_values(key: str, values: Any) -> list[Any]:
    """A grid key's values as a list of plain scalars (a numpy array or tuple too); one value, a string or an empty
    list is a `ConfigError` naming the key."""
    if hasattr(values, "tolist"):
        values = values.tolist()
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise ConfigError(f"grid {key!r}: give a list of values, e.g. {{{key!r}: [0.01, 0.003]}}; got {values!r}")
    if not values:
        raise ConfigError(f"grid {key!r}: the list of values is empty")
    values = [v.item() if hasattr(v, "item") else v for v in values]  # numpy scalars
    bad = [v for v in values if not isinstance(v, (str, int, float, bool)) and v is not None]
    if bad:
        raise ConfigError(f"grid {key!r}: values must be numbers, strings or booleans, got {bad[0]!r}")
    return list(values)


def plan_sweep(config: str | Path | dict | ExperimentConfig, grid: dict[str, list[Any]], out_dir: str | Path,
               extra: list[str] | None = None, only: list[str] | None = None,
               objects: dict[str, Any] | None = None) -> list[Setting]:
    """Every setting of the grid (plus the config's own values, when they are not a grid point), each config
    validated before any run starts. ``only`` (``key=value`` filters) keeps the matching settings. ``objects``
    (`ActiveLoop`'s ``source``, ``target``, ``test``, ``classes``, ``model``, ``oracle``): each setting's config is
    the one a run with these objects records."""
    out_dir = Path(out_dir).absolute()  # sweep.json's paths hold from any working folder
    grid = {k: _grid_values(k, v) for k, v in grid.items()}
    check_set_keys(extra, {k: f"--grid sets {k} for each setting; give it in --set or in --grid, not both"
                           for k in grid})
    base = _config_with(config, list(extra or []))
    filters = parse_grid(only, "--only") if only else {}
    for key in filters:
        if key not in grid:
            raise ConfigError(f"--only {key}: not a --grid key; grid keys: {', '.join(grid)}")
    def resolved(key: str, value: Any, flag: str) -> Any:
        """``value`` as the config holds it once validated (``1e-2`` → 0.01), so equal settings compare equal."""
        try:
            return _default_value(_config_with(config, [*(extra or []), f"{key}={_fmt_value(value)}"]), key)
        except ConfigError as e:
            raise ConfigError(f"{flag} {key}: {e}") from None

    for key, values in list(grid.items()):  # each value checked alone first, so the error names its key
        grid[key] = [resolved(key, v, "--grid") for v in values]
        if len({json.dumps(v) for v in grid[key]}) != len(values):
            raise ConfigError(f"--grid {key}={','.join(map(_fmt_value, values))}: two values are the same setting "
                              f"(as the config reads them: {', '.join(map(_fmt_value, grid[key]))})")
    filters = {k: [resolved(k, v, "--only") if k in grid else v for v in vs] for k, vs in filters.items()}
    for key, vs in filters.items():
        stray = [v for v in vs if v not in grid[key]]
        if stray:
            raise ConfigError(f"--only {key}={_fmt_value(stray[0])}: not a value of --grid {key} "
                              f"({', '.join(map(_fmt_value, grid[key]))})")
    default = {k: _default_value(base, k) for k in grid}
    combos = [dict(zip(grid, vs)) for vs in itertools.product(*grid.values())]
    grid_points = len(combos)
    if default not in combos:
        combos.append(default)
    settings = []
    for point, values in enumerate(combos):
        if any(values[k] not in vs for k, vs in filters.items()):
            continue
        name = " ".join(f"{k}={_fmt_value(v)}" for k, v in values.items())
        seen = None
        try:
            cfg = _config_with(config, [*(extra or []), *(f"{k}={_fmt_value(v)}" for k, v in values.items())])
            if objects:
                from adakit.loop import _with_objects

                used = DATA_OBJECTS if cfg.runner == "linear_probe" else OBJECT_KEYS  # (the probe: data only)
                cfg, doms, objs = _with_objects(cfg, None, **{k: objects.get(k) if k in used else None
                                                              for k in OBJECT_KEYS}, objective=None, strategy=None)
                seen = {"fingerprint": objs.fingerprint,
                        "sample": doms.source.load(np.arange(min(2, len(doms.source))))}
                if cfg.data.source_val > 0:  # (`_check_data` does this for data read from files)
                    from adakit.validate._run import split_source_val

                    split_source_val(doms, cfg.data.source_val, cfg.seed)
        except ConfigError as e:
            raise ConfigError(f"setting {name}: {e}") from None
        settings.append(Setting(values, name, _folder(out_dir, values), cfg, values == default, objects_seen=seen,
                                in_grid=point < grid_points))
    if not settings:
        raise ConfigError(f"--only {only}: no setting of the grid matches")
    folders = [s.run_dir for s in settings]
    if len(set(folders)) != len(folders):
        raise ConfigError("two --grid settings map to one run folder name; use values that differ in letters or "
                          "digits, not only in punctuation")
    _check_data(settings)
    return settings


def _folder(out_dir: Path, values: dict[str, Any]) -> Path:
    """A setting's run folder, named by its keys in sorted order (the same sweep with its --grid flags in another
    order continues the same runs); a folder of an earlier adakit, named in the flags' order, is used when it
    exists."""
    def named(keys) -> Path:
        return out_dir / slug("_".join(f"{k}={_fmt_value(values[k])}" for k in keys))

    canonical, given = named(sorted(values)), named(values)
    return given if given != canonical and given.is_dir() and not canonical.exists() else canonical


def _check_data(settings: list[Setting]) -> None:
    """Load each distinct data section of the settings once (and its held-out source split) before any run, so a
    value that fails only on the data (e.g. ``data.source_val`` too large) is an error before training (data given
    as Python objects: checked by `plan_sweep` as it reads them)."""
    from adakit.data import load_domains

    seen = set()
    for s in settings:
        data = s.config.data
        key = (data.model_dump_json(), s.config.seed)
        if data.format == "objects" or key in seen:
            continue
        seen.add(key)
        try:
            domains = load_domains(data, s.config.seed)
            if data.source_val > 0:
                from adakit.validate._run import split_source_val

                split_source_val(domains, data.source_val, s.config.seed)
        except AdakitError as e:
            raise type(e)(f"setting {s.name}: {e}") from None


_stop: Any = None  # a worker of --jobs: the sweep's stop event (set on Ctrl-C or a failed setting)


def _init_worker(stop: Any) -> None:
    global _stop
    _stop = stop


def _init_pool_worker(stop: Any) -> None:
    """A --jobs worker: the sweep's stop event, and a thread that ends the worker when the sweep process is gone
    (killed with SIGKILL, its workers trained on as orphans, took further settings and held their run folders)."""
    import threading

    _init_worker(stop)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)  # (a run stopped here resumes: its ledger and checkpoints are committed as it goes)

    threading.Thread(target=watch, name="adakit-sweep-parent-watch", daemon=True).start()


def _run_one(config: dict, run_dir: str, finished: tuple[tuple[dict, str], ...] = ()) -> float | None:
    """Run one setting unless the sweep was stopped (a call already handed to this worker must not start it);
    returns its seconds (None: not started). ``finished``: (config, run folder) of finished settings whose warm-up
    it may adopt (`run_plan` skips them and adopts one with the same warm-up). Ctrl-C here stops the whole sweep.
    (A --jobs worker process.)"""
    from adakit.config import build_config

    if _stop is not None and _stop.is_set():
        return None
    t0 = time.perf_counter()
    try:  # (checked by `run_settings`)
        run_plan([*((build_config(c), Path(d)) for c, d in finished), (build_config(config), Path(run_dir))],
                 checked=True)
    except BaseException:
        if _stop is not None:
            _stop.set()
        raise
    return time.perf_counter() - t0


def warmup_groups(settings: list[Setting]) -> list[list[Setting]]:
    """The settings that train the same warm-up (equal `adakit.loop._warmup_key`: they differ only in keys round 0
    never reads, such as ``query.strategy`` or ``train.round_iters``), one list per warm-up in grid order; a
    linear-probe setting (no warm-up) is a group of its own."""
    from adakit.loop import _warmup_key

    groups: dict[Any, list[Setting]] = {}
    for i, s in enumerate(settings):
        key = i if s.config.runner == "linear_probe" else _warmup_key(s.config.to_dict())
        groups.setdefault(key, []).append(s)
    return list(groups.values())


def _has_warmup(s: Setting) -> bool:
    """Whether the setting's run folder holds its trained warm-up (a started run resumes from it, adopting none)."""
    return (s.run_dir / "checkpoints" / "round-0.pt").is_file()


def run_settings(settings: list[Setting], jobs: int = 1,
                 on_run: Callable[[str, float], None] | None = None, objects: dict[str, Any] | None = None,
                 checked: bool = False) -> int:
    """Run every unfinished setting (in ``jobs`` processes; Python ``objects``: in this one); returns how many were
    run. ``checked``: the caller ran `check_plan` on the settings already.

    Settings with the same warm-up (`warmup_groups`) train it once: the others adopt it (`ActiveLoop.adopt_warmup`,
    the same checkpoint, so the same results), also the warm-up of a setting finished before the sweep was
    interrupted. With ``jobs`` > 1, one setting of each group runs first (one that already holds its warm-up, else
    the first); when it finishes, the group's others start, in parallel with each other."""
    if not checked:
        check_plan([(s.config, s.run_dir) for s in settings])  # finished runs too: never reuse another setting's run
    todo = [s for s in settings if not (s.run_dir / "summary.json").is_file()]
    if jobs <= 1 or objects:  # (finished settings too: run_plan skips them, and its runs adopt their warm-ups)
        run_plan([(s.config, s.run_dir) for s in settings],
                 lambda i, d, summary, sec: on_run(settings[i].name, sec) if on_run else None, objects=objects,
                 checked=True)
        return len(todo)
    left = {id(s) for s in todo}
    first: list[tuple[Setting, tuple]] = []  # (setting, finished settings whose warm-up it may adopt)
    waiting: dict[int, list[Setting]] = {}  # id of the setting training a group's warm-up -> the group's others
    for group in warmup_groups(settings):
        finished = tuple((s.config.to_dict(), str(s.run_dir)) for s in group if id(s) not in left)
        group_todo = [s for s in group if id(s) in left]
        if finished or len(group_todo) < 2:
            first += [(s, finished) for s in group_todo]
            continue
        started = [s for s in group_todo if _has_warmup(s)] or group_todo[:1]  # (a started run adopts nothing)
        first += [(s, ()) for s in started]
        waiting[id(started[0])] = [s for s in group_todo if all(s is not t for t in started)]
    ctx = get_context("spawn")
    stop = ctx.Event()
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_pool_worker, initargs=(stop,))
    futures: dict[Any, Setting] = {}
    pending: set = set()

    def submit(s: Setting, finished: tuple) -> None:
        fut = pool.submit(_run_one, s.config.to_dict(), str(s.run_dir), finished)
        futures[fut] = s
        pending.add(fut)

    try:
        for s, finished in first:
            submit(s, finished)
        while pending:
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            pending.difference_update(ready)
            for fut in ready:
                seconds, s = fut.result(), futures[fut]
                if seconds is None:  # (the sweep was stopped before it started)
                    continue
                if on_run:
                    on_run(s.name, seconds)
                for other in waiting.pop(id(s), []):  # its warm-up is trained: the others of its group adopt it
                    submit(other, ((s.config.to_dict(), str(s.run_dir)),))
    except BaseException as e:  # Ctrl-C or a failed setting: start no further setting (the running ones stop on
        stop.set()  # their own SIGINT, or finish; each is resumable)
        pool.shutdown(wait=False, cancel_futures=True)
        if isinstance(e, BrokenProcessPool):
            done = sum(f.done() and not f.cancelled() and f.exception() is None for f in futures)
            raise AdakitError(f"a worker process of --jobs {jobs} died (killed, or out of memory); the settings that "
                              f"were running stopped with it ({done} of {len(todo)} finished). Run the same command "
                              "again: finished settings are kept and the others resume (with fewer --jobs if memory "
                              "ran out)") from None
        raise
    pool.shutdown()
    return len(todo)


def checkpoints(summary: dict, validators: list[str]) -> list[dict]:
    """The run's checkpoints (warm-up steps, then rounds) with each validator's score *of that checkpoint's model*:
    a queried-batch validator recorded on round r scores round r-1's model, so it is credited there."""
    from adakit.registry import VALIDATORS

    rounds = summary["rounds"] or summary.get("unlabelled_rounds", [])  # a target without labels: no accuracy
    rows = []
    for c in summary.get("warmup_checkpoints", []):
        rows.append({"checkpoint": f"warm-up step {c['step']}", "labels": 0, "accuracy": c.get("accuracy"),
                     **{v: c.get(f"val/{v}") for v in validators if not VALIDATORS.get(v).previous_round}})
    for i, m in enumerate(rounds):
        row = {"checkpoint": f"round {m['round']}", "labels": m["labels"], "accuracy": m.get("accuracy")}
        for v in validators:
            if VALIDATORS.get(v).previous_round:
                row[v] = rounds[i + 1].get(f"val/{v}") if i + 1 < len(rounds) else None
            else:
                row[v] = m.get(f"val/{v}")
        rows.append(row)
    return rows


def is_active(summary: dict) -> bool:
    """Whether the run queried labels (rounds after round 0)."""
    return len(summary["rounds"] or summary.get("unlabelled_rounds", [])) > 1


def _offered(summary: dict, rows: list[dict]) -> list[dict]:
    """Of a run's `checkpoints` rows, those a pick may choose: all of them, or an active run's last round."""
    return rows[-1:] if is_active(summary) else rows


def _finite(v: float | None) -> bool:
    return v is not None and not math.isnan(v)


def candidates(summary: dict, select: str) -> list[dict]:
    """The checkpoints of one run that ``select`` may pick, each with its score under ``select``.

    A run without queries offers every checkpoint (warm-up checkpoints, round 0). An active run offers one: its
    last round, the model trained on every label bought (an earlier round's model is superseded by the labels
    after it, and its weights are not kept). A queried-batch validator (``queried_acc``) cannot score that model
    itself (no batch is queried after it), so the run is scored by its mean over the rounds; with 28-141 labels
    per batch one round's value is also too noisy to rank settings (benchmarks/results/model-selection.md judges
    active settings the same way). Checkpoints without a finite score are left out.
    """
    from adakit.registry import VALIDATORS

    rows = checkpoints(summary, [select])
    offered = [dict(r) for r in _offered(summary, rows)]
    if is_active(summary) and VALIDATORS.get(select).previous_round:
        vals = [r[select] for r in rows if _finite(r.get(select))]
        offered[0][select] = sum(vals) / len(vals) if vals else None
    return [r for r in offered if _finite(r.get(select))]


def pick(settings: list[Setting], select: str) -> dict:
    """The (setting, checkpoint) among the `candidates` that the validator ``select`` scores highest; reads no
    accuracy.

    Ties (several candidates at the best score, equal up to float rounding) go to the config default's setting, at
    its latest tied checkpoint (its last checkpoint when that one is tied); when the default is not among them, to
    the first in grid order (`grid_order`: grid keys in sorted order, so the order of the --grid flags does not
    matter, as for the run folders; each key's values in the order given; checkpoints in time order). ``tied``
    lists every candidate at the best score and ``tie_break`` says which rule chose (``"default"``, ``"first"``;
    None without a tie).
    """
    cands = [(s, c) for s in settings for c in candidates(s.summary, select)]
    if not cands:
        nan = sum(1 for s in settings for c in _offered(s.summary, checkpoints(s.summary, [select]))
                  if c.get(select) is not None and not _finite(c[select]))
        raise ConfigError(f"--select {select}: none of the {len(settings)} finished setting(s) has a score of it to "
                          "pick by" + (f" ({nan} checkpoint(s) scored NaN)" if nan else "")
                          + "; a run records no validator when its model's outputs are not probabilities (training "
                          "diverged to NaN, say: the run then warns that its training loss was not finite). The runs "
                          "are kept (their scores in each folder's summary.json); rerun the command with another "
                          "--select or grid: finished settings are not trained again")
    top = max(c[select] for _, c in cands)
    tied = [(s, c) for s, c in cands if math.isclose(c[select], top, rel_tol=1e-12, abs_tol=1e-15)]
    of_default = [sc for sc in tied if sc[0].is_default]
    rule = None if len(tied) == 1 else "default" if of_default else "first"
    s, c = of_default[-1] if rule == "default" else min(tied, key=grid_order(settings))  # (min: the first of equals)
    return {"setting": s.name, "checkpoint": c["checkpoint"], "score": c[select], "run_dir": str(s.run_dir),
            "weights": weights_file(s, c["checkpoint"]),
            "tied": [{"setting": ts.name, "checkpoint": tc["checkpoint"]} for ts, tc in tied] if rule else [],
            "tie_break": rule}


def grid_order(settings: list[Setting]) -> Callable[[tuple[Setting, dict]], tuple[int, ...]]:
    """Sort key of a (setting, checkpoint) in grid order: by the grid keys in sorted order, each key's values in
    the order they were given (their order of first appearance among the planned ``settings``; the config's own
    value, when not a grid value, last)."""
    seen: dict[str, dict[str, int]] = {}
    for s in settings:
        for k, v in s.values.items():
            seen.setdefault(k, {}).setdefault(json.dumps(v, sort_keys=True), len(seen[k]))
    return lambda sc: tuple(seen[k][json.dumps(sc[0].values[k], sort_keys=True)] for k in sorted(sc[0].values))


def weights_file(setting: Setting, checkpoint: str) -> str | None:
    """The saved model of a checkpoint, or None: a run keeps round 0, its last round and the warm-up checkpoints
    (the weights of an intermediate round are deleted once the next round is trained)."""
    if checkpoint.startswith("warm-up step "):
        path = setting.run_dir / "checkpoints" / f"warmup-{checkpoint.rsplit(' ', 1)[1]}.pt"
    else:
        path = setting.run_dir / "checkpoints" / f"round-{checkpoint.rsplit(' ', 1)[1]}.pt"
    return str(path) if path.is_file() else None


#: the Python objects a sweep passes to every setting's `ActiveLoop`
OBJECT_KEYS = ("source", "target", "test", "classes", "model", "oracle")


def run_sweep(config: str | Path | dict | ExperimentConfig, grid_items: list[str] | dict[str, list[Any]],
              select: str, out_dir: str | Path,
              extra: list[str] | None = None, only: list[str] | None = None, jobs: int = 1,
              on_run: Callable[[str, float], None] | None = None, **objects: Any) -> dict:
    """Plan, run (resumable) and tabulate a sweep; writes ``sweep.md``, ``sweep.csv`` and ``sweep.json`` into
    ``out_dir`` and returns the ``sweep.json`` content (``pick``, ``oracle_best``, ``default``, ``ran``).

    ``config``: a YAML file, a dict of sections (as `ActiveLoop` takes) or an `ExperimentConfig`; ``grid_items``:
    ``{"train.lr": [0.01, 0.003], ...}`` or the command line's ``["train.lr=0.01,0.003", ...]``; ``extra``:
    ``key=value`` overrides of every setting; ``select``: the name of the validator that picks (one; call
    again with another on the same ``out_dir`` to compare: nothing is trained again). ``**objects``: your data, model
    and labelling function as `ActiveLoop` takes them (``source``, ``target``, ``test``, ``classes``, ``model``,
    ``oracle``), passed to every setting's run (your ``model`` copied, so each setting starts from its weights);
    such a sweep runs in this process (``jobs=1``) and continues with the same objects."""
    from adakit.registry import VALIDATORS

    unknown = sorted(set(objects) - set(OBJECT_KEYS))
    if unknown:
        raise ConfigError(f"run_sweep: unknown keyword(s) {unknown}; the objects a sweep takes: "
                          f"{', '.join(OBJECT_KEYS)}")
    objects = {k: v for k, v in objects.items() if v is not None}
    if not isinstance(select, str):
        raise ConfigError(f"select={select!r}: give one validator's name (e.g. 'bnm'; `adakit methods` lists them). "
                          "To compare validators, call run_sweep once per validator with the same out folder: finished "
                          "settings are not trained again, and sweep.csv has a column for every validator")
    cls = VALIDATORS.get(select)  # unknown names fail before any work
    grid = grid_items if isinstance(grid_items, dict) else parse_grid(grid_items)
    if not grid:
        raise ConfigError("give at least one grid key with its values")
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give 1 or more processes")
    if objects and jobs > 1:
        raise ConfigError(f"jobs={jobs}: a sweep on Python objects runs in this process (they cannot be sent to "
                          "others); use jobs=1")
    settings = plan_sweep(config, grid, out_dir, extra, only, objects)
    _check_select(select, cls, settings)
    _check_jobs(jobs, settings)
    check_plan([(s.config, s.run_dir) for s in settings])  # (refusals first: then the old tables stay as they are)
    if objects:
        _check_same_objects(settings, objects.get("model"))
    if any(not (s.run_dir / "summary.json").is_file() for s in settings):  # runs to do: the old tables are stale
        mark_out_of_date(Path(out_dir) / "sweep.md", "adakit sweep")
    try:
        ran = run_settings(settings, jobs, on_run, objects, checked=True)
    except WaitingForLabels as e:  # a setting of an active sweep answered by people (oracle: file)
        again = ("call run_sweep again with the same objects" if objects else
                 "run the same `adakit sweep` command again")
        raise WaitingForLabels(
            f"{e}. Or, once they are answered, {again}: it continues this setting and keeps the finished ones "
            "(with people as the oracle, every setting asks them for its own queries, round by round)",
            round=e.round, open=e.open, run_dir=e.run_dir) from None
    for s in settings:
        s.summary = json.loads((s.run_dir / "summary.json").read_text())
    validators = VALIDATORS.names()
    table = [(s, c) for s in settings for c in checkpoints(s.summary, validators)]
    try:
        chosen = pick(settings, select)
    except ConfigError as e:  # no setting has a score: the table still shows the runs (which diverged, what they
        # recorded)
        _write(Path(out_dir), {"select": select, "pick": None, "ran": ran, "settings": [s.name for s in settings],
                               **({"only": list(only)} if only else {})}, table, validators)
        raise ConfigError(f"{e}; {Path(out_dir) / 'sweep.md'} lists what each setting recorded") from None
    # the oracle best among what the pick chose from
    offered = {(s.name, c["checkpoint"]) for s in settings for c in _offered(s.summary, checkpoints(s.summary, []))}
    scored = [(s, c) for s, c in table if c["accuracy"] is not None and (s.name, c["checkpoint"]) in offered]
    result: dict[str, Any] = {"select": select, "pick": chosen, "ran": ran, "settings": [s.name for s in settings]}
    if only:
        result["only"] = list(only)  # the table and the pick cover the filtered settings only: said in sweep.md
    active = [s.name for s in settings if is_active(s.summary)]
    if active:
        result["active_settings"] = active
    for s, c in table:
        if (s.name, c["checkpoint"]) == (chosen["setting"], chosen["checkpoint"]):
            chosen["oracle_accuracy"] = c["accuracy"]
    if scored:
        s, c = max(scored, key=lambda sc: sc[1]["accuracy"])
        result["oracle_best"] = {"setting": s.name, "checkpoint": c["checkpoint"], "oracle_accuracy": c["accuracy"]}
    default = next((s for s in settings if s.is_default), None)
    if default is not None:
        last = checkpoints(default.summary, [])[-1]
        result["default"] = {"setting": default.name, "checkpoint": last["checkpoint"],
                             "oracle_accuracy": last["accuracy"]}
    _write(Path(out_dir), result, table, validators)
    return result


def _check_same_objects(settings: list[Setting], model: Any) -> None:
    """Refuse a setting's run (finished or not) that was made on other Python objects than a sweep now gets: a
    finished one is not run again, so its scores and oracle accuracy would stand for these objects. Compares the
    data fingerprints the run's ledger keeps (size, shape, labels, sampled rows of each domain), the class of your
    module and the size of its output (its initial weights are not recorded: the same module built anew passes)."""
    from adakit.data.objects import fingerprint_diff
    from adakit.ledger import Ledger
    from adakit.rundir import LEDGER_NAME

    out_dim: list[int] = []  # your module's output size, measured once when a run to compare with exists
    for s in settings:
        path = s.run_dir / LEDGER_NAME
        if s.objects_seen is None or not path.is_file():  # (a linear probe keeps no ledger)
            continue
        with Ledger.read_only(path) as led:
            stored, info = led.get_meta("data_fingerprint") or {}, led.get_meta("model") or {}
        again = ("pass the objects it ran on, or use another out folder for these (a finished setting is not run "
                 "again, so its scores would stand for the new objects)")
        now = s.objects_seen["fingerprint"] or {}
        for name in sorted(set(stored) | set(now)):
            if name not in stored or name not in now:
                diff = "is given now but was not then" if name in now else "was given then but not now"
            else:
                diff = fingerprint_diff(stored[name], now[name])
                diff = diff and f"has {diff}"
            if diff:
                raise ConfigError(f"{s.run_dir} (setting {s.name}) was run on other data: {name}= {diff}; {again}")
        if model is None or isinstance(model, dict) or "backbone_class" not in info:
            continue
        # a class by its name, as a resumed run compares it (a script's __main__.Net is the same Net imported; a class
        # defined in a function, make.<locals>.Net, is stored as module.make.<locals>.Net)
        then, given = str(info["backbone_class"]).rsplit(".", 1)[-1], type(model).__qualname__.rsplit(".", 1)[-1]
        if then != given:
            raise ConfigError(f"{s.run_dir} (setting {s.name}) was run with another model: model= is a "
                              f"{given}, the run's was a {then}; {again}")
        if not out_dim:
            from adakit.models import CustomBackbone

            out_dim.append(CustomBackbone(model, s.objects_seen["sample"]).out_dim)
        if info.get("backbone_dim") not in (None, out_dim[0]):
            raise ConfigError(f"{s.run_dir} (setting {s.name}) was run with another model: model= gives "
                              f"{out_dim[0]} features per input, the run's {type(model).__qualname__} gave "
                              f"{info['backbone_dim']}; {again}")


#: validators that reward confident target predictions
CONFIDENCE_VALIDATORS = ("entropy", "im", "bnm")


def _check_select(select: str, cls: type, settings: list[Setting]) -> None:
    pseudo = [s for s in settings if s.config.anchor.kind != "none"]
    if select in CONFIDENCE_VALIDATORS and pseudo:
        warnings.warn(f"--select {select} rewards confident target predictions, but {len(pseudo)} setting(s) train "
                      f"on pseudo-labels (e.g. {pseudo[0].name}: anchor.kind={pseudo[0].config.anchor.kind}): a "
                      "setting that admits more pseudo-labels looks better to it without being right. In adakit's "
                      "model-selection benchmark it picked the worst LAS + LAA setting in every sweep; prefer "
                      "--select queried_acc, dev or source_acc for such pipelines", UserWarning, stacklevel=3)
    for s in settings:
        cfg = s.config
        if {"source_probs", "source_labels"} & set(cls.needs) and cfg.data.source_val == 0:
            if "data.source_val" in s.values and s.in_grid:  # (0 is one of the grid's values)
                raise ConfigError(f"--select {select} needs a held-out source split, but --grid data.source_val lists "
                                  f"0 (setting {s.name}); remove 0 from the grid"
                                  + (", and set data.source_val in the config to one of the grid's other values "
                                     "(the config's own value is always a setting)" if s.is_default else ""))
            if "data.source_val" in s.values:  # (the config's own value, run as the default setting)
                raise ConfigError(f"--select {select} needs a held-out source split, but the config's own "
                                  f"data.source_val ({cfg.data.source_val}) is a setting too (the config's values "
                                  "always are); set data.source_val in the config to one of the grid's values")
            raise ConfigError(f"--select {select} needs a held-out source split: add --set data.source_val=0.1 "
                              f"(setting {s.name} has data.source_val=0)")
        if cls.previous_round and cfg.budget.rounds == 0:
            raise ConfigError(f"--select {select} scores queried batches, but setting {s.name} has budget.rounds=0")
        if "queried_inclusion" in cls.needs and cfg.query.strategy != "random":
            raise ConfigError(f"--select {select} needs selection probabilities, which only query.strategy=random "
                              f"has (setting {s.name} uses {cfg.query.strategy}); select queried_acc instead")


def _check_jobs(jobs: int, settings: list[Setting]) -> None:
    """Warn when ``jobs`` parallel runs would use more torch threads than there are CPUs (each run uses
    ``train.threads``, or torch's default, which is every core): they then compete for the cores and the sweep
    runs slower than with fewer jobs. Only the unfinished settings run, so no more than that many at once."""
    todo = [s for s in settings if not (s.run_dir / "summary.json").is_file()]
    parallel = min(jobs, len(todo))
    if parallel <= 1:
        return
    import torch

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_run = max((s.config.train.threads or torch.get_num_threads()) for s in todo)
    if parallel * per_run > cpus:
        fewer_threads = (f", or --set train.threads={cpus // parallel} (a run's numbers can differ slightly with "
                         "its thread count)") if 1 <= cpus // parallel < per_run else ""
        warnings.warn(f"--jobs {jobs} runs at up to {per_run} torch thread(s) each on {cpus} CPU(s): they compete "
                      f"for the cores. Use --jobs {max(1, cpus // per_run)}{fewer_threads}", UserWarning,
                      stacklevel=3)


def _num(v: float | None) -> str:
    """A table cell: the value as recorded (4 significant digits), ``–`` when absent."""
    return "–" if v is None else f"{v:.4g}"


def _pct(v: float | None) -> str:
    """An oracle accuracy in percent for the lines above the table; ``n/a`` without target labels."""
    return "n/a" if v is None else f"{100 * v:.2f}%"


def _md_row(cells: list[Any]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def _write(out_dir: Path, result: dict, table: list[tuple[Setting, dict]], validators: list[str]) -> None:
    """``sweep.md`` (validators no row recorded left out) and ``sweep.csv`` (a column for every validator)."""
    from adakit.registry import VALIDATORS

    out_dir.mkdir(parents=True, exist_ok=True)
    pick_, best, default = result["pick"], result.get("oracle_best"), result.get("default")

    tied = {(t["setting"], t["checkpoint"]) for t in (pick_ or {}).get("tied", [])}

    def marks(s: Setting, c: dict) -> list[str]:
        key = (s.name, c["checkpoint"])
        return [m for m, ref in (("pick", pick_), ("oracle best", best), ("default", default))
                if ref and key == (ref["setting"], ref["checkpoint"])] + (["tied best"] if key in tied else [])

    def reads_bought(v: str) -> bool:  # a validator of the labels bought for queried batches
        return "queried_labels" in VALIDATORS.get(v).needs

    lines = [f"# Sweep: selection by `{result['select']}` (higher is better; "
             + ("reads only the target labels the runs bought, never the test labels" if reads_bought(result["select"])
                else "no target labels") + ")", ""]
    # a run on your own module: load_run rebuilds it only with an instance of it (backbone=)
    own = pick_ is not None and any(s.name == pick_["setting"] and s.config.model.backbone == "custom"
                                    for s, _ in table)
    if pick_ is None:
        lines.append(f"- **no pick**: none of the settings has a finite `{result['select']}` score (training "
                     "diverged, say); the rows below show what each run recorded")
    else:
        lines.append(f"- **pick**: {pick_['setting']}, {pick_['checkpoint']} ({result['select']} = "
                     f"{_num(pick_['score'])}; oracle accuracy {_pct(pick_.get('oracle_accuracy'))}); load it with "
                     f"`adakit.load_run(\"{pick_['run_dir']}\", checkpoint=\"{pick_['checkpoint']}\""
                     + (", backbone=<your module>)`" if own else ")`") + "; weights: "
                     + (f"`{pick_['weights']}`" if pick_["weights"] else "none saved for this checkpoint"))
    if result.get("only"):
        lines.append(f"- **filtered** by --only {' '.join(result['only'])}: this table and its pick cover "
                     f"{len(result['settings'])} setting(s) of the grid; run the command without --only for all")
    if tied:
        lines.append(f"- **tie**: {len(tied)} checkpoints share the best {result['select']} score (`tied best`); "
                     + ("the pick is the config default's setting, at its latest tied checkpoint"
                        if pick_["tie_break"] == "default" else
                        "the default is not among them, so the pick is the first in grid order"))
    if best:
        regret = 100 * (best["oracle_accuracy"] - (pick_.get("oracle_accuracy") or 0))
        lines.append(f"- **oracle best** (uses target labels): {best['setting']}, {best['checkpoint']} "
                     f"({_pct(best['oracle_accuracy'])}); regret of the pick {regret:.2f} points")
    if default:
        lines.append(f"- **default** (the config's own values, last checkpoint): {default['setting']}, "
                     f"{default['checkpoint']} ({_pct(default['oracle_accuracy'])})")
    if result.get("active_settings"):
        how = ("its mean over the run's rounds (no batch is queried after the last one)"
               if VALIDATORS.get(result["select"]).previous_round else "the last round's value")
        lines.append(f"- **active runs** ({len(result['active_settings'])} of the settings) are judged by the model "
                     f"they keep, their last round; {result['select']} is {how}")
    shown = [v for v in validators if any(c.get(v) is not None for _, c in table)]
    queried = [f"`{v}`" for v in shown if VALIDATORS.get(v).previous_round]
    def named(vs: list[str]) -> str:
        return ", ".join(f"`{v}`" for v in vs) + (" reads" if len(vs) == 1 else " read")

    bought, blind = [v for v in shown if reads_bought(v)], [v for v in shown if not reads_bought(v)]
    source = [v for v in blind if "source_labels" in VALIDATORS.get(v).needs]
    reads = ["`accuracy (oracle)` reads the test labels (the pick never does)",
             *([f"{named(bought)} the labels bought for each queried batch"] if bought else []),
             *([f"{named(blind)} none" + (f" ({named(source)} held-out source labels)" if source else "")]
               if blind else [])]
    lines += ["", "`accuracy` is the oracle column: it uses the test set's labels, which a user does not have; the "
              "pick never reads it. Numbers are as the runs record them: accuracies (`accuracy` and the validators "
              "`source_acc`, `queried_acc*`) are fractions (0.85 = 85%); the lines above give percentages.",
              f"Target labels: {'; '.join(reads)}.",
              *([f"A queried-batch score ({', '.join(queried)}) recorded at round r sits on round r−1's row: "
                 "that model predicted the batch before its labels were bought."] if queried else []),
              *([f"Not recorded by any run, so not shown: {', '.join(f'`{v}`' for v in validators if v not in shown)}"
                 " (sweep.csv keeps their empty columns)."] if len(shown) < len(validators) else []),
              *(["`–`: no score recorded for that checkpoint (a queried-batch score on a warm-up checkpoint or on the "
                 "last round, after which nothing was queried; a score that was not finite, such as a diverged "
                 "model's; `dev` with fewer than 2 held-out source samples); sweep.csv leaves such cells empty."]
                if any(c.get(v) is None for _, c in table for v in shown) else []),
              "`folder`: the setting's run folder, beside this file; "
              "`adakit.load_run(\"<this folder>/<folder>\", checkpoint=\"<checkpoint>\""
              + (", backbone=<your module>" if any(s.config.model.backbone == "custom" for s, _ in table) else "")
              + ")` loads a row's model "
              "(kept: the warm-up checkpoints, round 0 and the last round).", "",
              _md_row(["setting", "checkpoint", "labels", *shown, "accuracy (oracle)", "marks", "folder"]),
              _md_row(["---", "---", "---:", *["---:"] * len(shown), "---:", "---", "---"])]
    for s, c in table:
        lines.append(_md_row([s.name, c["checkpoint"], c["labels"], *(_num(c.get(v)) for v in shown),
                              _num(c["accuracy"]), ", ".join(marks(s, c)), f"`{s.run_dir.name}`"]))
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(["setting", "checkpoint", "labels", *validators, "accuracy_oracle", "marks", "run_dir"])
    for s, c in table:
        w.writerow([s.name, c["checkpoint"], c["labels"], *("" if c.get(v) is None else c[v] for v in validators),
                    "" if c["accuracy"] is None else c["accuracy"], ";".join(marks(s, c)), str(s.run_dir)])
    # every file composed before any is written, each written whole (a temporary file renamed over it): a sweep
    # killed or failing here leaves the previous tables or the new ones, never a truncated one
    texts = {"sweep.md": "\n".join(lines) + "\n", "sweep.csv": f.getvalue(), "sweep.json": json.dumps(result, indent=1)}
    for name, text in texts.items():
        write_atomically(out_dir / name, text)

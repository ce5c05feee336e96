"""`adakit bench`: a grid of methods × domain pairs × seeds, run into one folder, then one table.

A bench file (YAML) names a base experiment config, the grid, and optional overrides::

    base: configs/office31-features.yaml      # relative to the bench file
    set: [train.warmup_iters=1000]            # applied to every run
    pairs: [[amazon, webcam], [webcam, amazon]]
    seeds: [0, 1, 2]
    methods:
      source only: [objective.name=source_only, budget.rounds=0]
      random: [query.strategy=random]
      margin: [query.strategy=margin]

Runs land in ``OUT/<source>-<target>/<method>/seed-<k>``; finished runs (summary.json present) are
skipped and unfinished ones resumed, so an interrupted bench continues where it stopped.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adakit.config import ExperimentConfig, load_config, read_yaml_file
from adakit.data import load_domains
from adakit.errors import ConfigError
from adakit.loop import ActiveLoop, check_run_config
from adakit.params import format_validation_error
from adakit.report import compare
from adakit.rundir import mark_out_of_date


class BenchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: str
    set: list[str] = Field(default_factory=list)
    pairs: list[tuple[str, str]] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=lambda: [0])
    methods: dict[str, list[str]]
    title: str = ""


def load_bench(path: str | Path | dict) -> tuple[BenchSpec, Path]:
    """The grid of a bench YAML file, or of a dict with the same keys (its ``base`` relative to the working
    folder), and the path of its base config."""
    if isinstance(path, dict):
        values, path = path, Path.cwd() / "<bench given in Python>"
    else:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"bench file not found: {path}")
        values = read_yaml_file(path, "bench")
    try:
        spec = BenchSpec.model_validate(values)
    except ValidationError as err:
        raise ConfigError(f"{path}: {format_validation_error(err, '', BenchSpec)}") from None
    if not spec.methods:
        raise ConfigError(f"{path}: methods: is empty; give at least one, e.g. methods: {{random: "
                          "[query.strategy=random]}")
    if not spec.seeds:
        raise ConfigError(f"{path}: seeds: is empty; give at least one, e.g. seeds: [0]")
    twice = next((s for i, s in enumerate(spec.seeds) if s in spec.seeds[:i]), None)
    if twice is not None:
        raise ConfigError(f"{path}: seeds: {spec.seeds} lists seed {twice} twice; list each seed once")
    twice = next((p for i, p in enumerate(spec.pairs) if p in spec.pairs[:i]), None)
    if twice is not None:
        raise ConfigError(f"{path}: pairs: lists [{twice[0]}, {twice[1]}] twice; list each pair once")
    folders: dict[str, list[str]] = {}
    for name in spec.methods:
        folders.setdefault(slug(name), []).append(name)
    clash = next((names for names in folders.values() if len(names) > 1), None)
    if clash:
        raise ConfigError(f"{path}: methods {' and '.join(repr(n) for n in clash)} would share the run folder "
                          f"{slug(clash[0])!r} (names are folder names with other characters as '_'); rename one")
    base = (path.parent / spec.base) if not Path(spec.base).is_absolute() else Path(spec.base)
    return spec, base


#: file systems take names of at most 255 bytes
NAME_BYTES = 255


def slug(text: str, max_bytes: int = NAME_BYTES) -> str:
    """A folder name for a method or pair label: letters (any script), digits and ``_.+-``, other characters as
    ``_``; never empty and never starting with ``-`` (a shell would read it as an option). A name longer than
    ``max_bytes`` (UTF-8) is cut and ends in ``_`` and 12 hex digits of the label's SHA-256, so distinct long
    labels keep distinct names (shorter names are unchanged)."""
    import hashlib

    name = re.sub(r"[^\w.+-]+", "_", text).strip("_").lstrip("-")
    if not name:
        raise ConfigError(f"{text!r} gives an empty folder name; use a name with letters or digits")
    if len(name.encode()) > max_bytes:
        cut = name.encode()[:max_bytes - 13].decode(errors="ignore")
        name = f"{cut}_{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    return name


def check_set_keys(extra: list[str] | None, owned: dict[str, str], where: str = "--set") -> None:
    """Refuse a ``key=value`` of ``extra`` (``--set`` items; ``where`` names them in the error) of a key a grid sets
    for its runs (``owned``: key -> who sets it and what to do instead), of a section above one or a key inside
    one: the grid's value would win silently."""
    for item in extra or []:
        key = item.partition("=")[0].strip()
        for k, why in owned.items():
            if key == k or k.startswith(key + ".") or key.startswith(k + "."):
                raise ConfigError(f"{where} {item}: {why}")


def check_plan(plan: list[tuple[ExperimentConfig, Path]]) -> None:
    """Refuse, before any work, a run folder of the plan that holds a run (finished or not) of another config:
    its results would be counted as this setting's. The error names the folder and the keys that differ."""
    import yaml

    from adakit.rundir import EXECUTION_KEYS, LEDGER_NAME, config_changes, stored_config

    shared = {cfg.log.tensorboard for cfg, _ in plan if not isinstance(cfg.log.tensorboard, bool)}
    if len(plan) > 1 and shared:
        raise ConfigError(f"log.tensorboard={sorted(shared)[0]!r}: every run of this grid would write its TensorBoard "
                          "logs into that one folder, mixing their curves; set log.tensorboard: true (each run's "
                          "folder gets its own tensorboard/, and `tensorboard --logdir` on the output folder shows "
                          "them side by side)")
    for cfg, run_dir in plan:
        check_run_config(cfg, run_dir)  # (a setting one run would ignore: before the first run trains)
        if (run_dir / LEDGER_NAME).is_file():
            stored = stored_config(run_dir, required=False)
        elif (run_dir / "config.yaml").is_file() and cfg.runner == "linear_probe":  # a probe keeps no ledger
            stored = yaml.safe_load((run_dir / "config.yaml").read_text())
        else:
            continue
        changes = config_changes(stored, cfg, ignore=EXECUTION_KEYS) if isinstance(stored, dict) else ""
        if changes:  # (threads, device and the like may differ: the same experiment)
            raise ConfigError(f"{run_dir} holds a run of another config ({changes}); move it away (or use another "
                              "--out) to run this one")


#: the Python objects that describe data (what the linear probe takes of a sweep's objects)
DATA_OBJECTS = ("source", "target", "test", "classes")


def run_plan(plan: list[tuple[ExperimentConfig, Path]],
             on_run: Callable[[int, Path, dict, float], object] | None = None,
             objects: dict | None = None, checked: bool = False) -> None:
    """Run every unfinished ``(config, run folder)`` of ``plan`` in order (the one run loop of benchmarks).

    Finished runs (summary.json) are skipped and unfinished ones continue from their ledger; consecutive runs on
    the same data share the loaded domains, and runs with the same warm-up key adopt the first one's trained
    warm-up. ``on_run(index, run_dir, summary, seconds)`` is called after each run. ``objects``: `ActiveLoop`'s
    Python objects for every run (a ``model`` module is copied per run, so each starts from its weights).
    ``checked``: the caller ran `check_plan` on these runs already (it reads every run folder's stored config).
    """
    import copy

    if not checked:
        check_plan(plan)
    domains_cache: dict = {}
    warmups: dict[str, Path] = {}  # run folder holding the trained warm-up of each warm-up key

    def domains_of(cfg: ExperimentConfig):
        key = (cfg.data.model_dump_json(), cfg.seed)
        if key not in domains_cache:
            domains_cache.clear()
            domains_cache[key] = load_domains(cfg.data, cfg.seed)
        return domains_cache[key]

    for cfg, run_dir in plan:  # a resumed plan: the runs to do adopt the warm-up a finished run trained
        if cfg.runner != "linear_probe" and (run_dir / "summary.json").is_file():
            from adakit.loop import _warmup_key

            warmups.setdefault(_warmup_key(cfg.to_dict()), run_dir)
    for i, (cfg, run_dir) in enumerate(plan):
        if (run_dir / "summary.json").is_file():
            continue
        t0 = time.perf_counter()
        if cfg.runner == "linear_probe":  # the linear-probe baseline (adakit.probe), no network
            from adakit.probe import run_probe

            data = {k: objects.get(k) for k in DATA_OBJECTS} if objects else {"domains": domains_of(cfg)}
            summary = run_probe(cfg, run_dir, **data)
            if on_run:
                on_run(i, run_dir, summary, time.perf_counter() - t0)
            continue
        if objects:
            given = {**objects, "model": copy.deepcopy(objects["model"])} if "model" in objects else objects
            loop = ActiveLoop(cfg, run_dir, show_progress=False, **given)
        else:
            loop = ActiveLoop(cfg, run_dir, show_progress=False, domains=domains_of(cfg))
        if loop.warmup_key() in warmups:
            loop.adopt_warmup(warmups[loop.warmup_key()])
        summary = loop.run()
        warmups.setdefault(loop.warmup_key(), run_dir)
        if on_run:
            on_run(i, run_dir, summary, time.perf_counter() - t0)


def run_bench(path: str | Path | dict, out_dir: str | Path, extra: list[str] | None = None,
              only: list[str] | None = None, on_run: Callable[[str, dict], None] | None = None,
              pairs: list[str] | None = None, table_only: bool = False) -> str:
    """Run (or continue) every run of the grid (a bench YAML file, or a dict with its keys); returns the
    comparison markdown.

    ``only`` keeps these methods and ``pairs`` these ``source-target`` pairs (both: all when empty), so
    one grid can be split across processes that share ``out_dir``. ``table_only``: run nothing, write the
    table and curves of the grid's finished runs (the cells show how many seeds they hold, a note under the table
    names the runs left out).
    """
    out_dir = Path(out_dir)
    plan = plan_bench(path, out_dir, extra, only, pairs)
    note = _filtered_note(path, len(plan), only, pairs)

    def report(i: int, run_dir: Path, summary: dict, seconds: float) -> None:
        if on_run:
            on_run(f"[{i + 1}/{len(plan)}] {run_dir.relative_to(out_dir)}",
                   {"final_accuracy": summary["final_accuracy"], "seconds": seconds})

    if table_only:
        check_plan(plan)
        done = [d for _, d in plan if (d / "summary.json").is_file()]
        if not done:
            raise ConfigError(f"{out_dir}: no finished run of this grid yet (no */*/seed-*/summary.json); run the "
                              "bench without --table-only first")
        left = [f"{d.relative_to(out_dir).as_posix()} ("
                f"{'started, not finished' if (d / 'ledger.sqlite').is_file() else 'not started'})"
                for _, d in plan if d not in done]
        return compare(done, out_dir, note, left_out=left)
    check_plan(plan)  # (refusals first: a plan that cannot run leaves the table as it is)
    if any(not (d / "summary.json").is_file() for _, d in plan):  # runs to do: the old table is stale meanwhile
        mark_out_of_date(out_dir / "comparison.md", "adakit bench")
    run_plan(plan, report, checked=True)
    return compare([d for _, d in plan], out_dir, note)


def _filtered_note(path: str | Path | dict, runs: int, only: list[str] | None, pairs: list[str] | None) -> str:
    """The line under a table of part of the grid (``only`` methods, ``pairs``) saying so: a grid split over
    processes that share an output folder ends with the table of the last one to finish, which holds only its part."""
    if not only and not pairs:
        return ""
    spec, _ = load_bench(path)
    total = len(spec.seeds) * max(1, len(spec.pairs)) * len(spec.methods)
    flags = " ".join([*(f"--only {m}" for m in only or []), *(f"--pair {p}" for p in pairs or [])])
    return (f"Filtered by {flags}: this table covers {runs} of the grid's {total} runs; without these filters, "
            "`--table-only` tabulates every finished run of the grid.")


def plan_bench(path: str | Path | dict, out_dir: str | Path, extra: list[str] | None = None,
               only: list[str] | None = None, pairs: list[str] | None = None) -> list[tuple[ExperimentConfig, Path]]:
    """Every run of the grid (``only`` methods, ``pairs``; all when empty) as (config, run folder), each config
    validated and no two runs sharing a folder, before any work."""
    spec, base = load_bench(path)
    out_dir = Path(out_dir)
    unknown = sorted(set(only or []) - set(spec.methods))
    if unknown:
        raise ConfigError(f"{path}: no method named {unknown}; methods: {sorted(spec.methods)}")
    grid_pairs = [f"{s}-{t}" for s, t in spec.pairs]
    unknown = sorted(set(pairs or []) - set(grid_pairs))
    if unknown:
        raise ConfigError(f"{path}: no pair named {unknown}; pairs: {grid_pairs}")
    methods = {k: v for k, v in spec.methods.items() if not only or k in only}
    owned = {"seed": f"the bench sets seed for each run from its seeds: {spec.seeds}; change them in {path}",
             "label": f"the bench sets label for each run to its method's name in {path}"}
    if spec.pairs:
        owned["data.source"] = owned["data.target"] = (
            f"the bench sets data.source and data.target for each run from its pairs: {', '.join(grid_pairs)}; run "
            f"some of them with --pair SOURCE-TARGET, or change pairs: in {path}")
    for where, items in [("set:", spec.set), *((f"method {name!r}:", sets) for name, sets in spec.methods.items())]:
        # the grid's own keys: a value here was replaced by the grid's without a word
        check_set_keys([item.strip() for item in items], owned, f"{path}: {where}")
    for name, sets in methods.items():
        for item in sets:
            owned.setdefault(item.partition("=")[0].strip(), f"method {name!r} of {path} sets {item.strip()} for its "
                             "runs, over --set; change it there, or leave the method out with --only")
    check_set_keys(extra, owned)
    # validate every run's config before any work starts
    plan = []
    where: dict[Path, list[str]] = {}
    kept_pairs = [p for p, name in zip(spec.pairs, grid_pairs) if not pairs or name in pairs]
    for seed in spec.seeds:
        for pair in kept_pairs or [None]:
            for name, sets in methods.items():
                pair_set = [f"data.source={pair[0]}", f"data.target={pair[1]}"] if pair else []
                try:
                    cfg = load_config(base, [*spec.set, *(extra or []), *pair_set, *sets, f"seed={seed}",
                                             f"label={json.dumps(name)}"])  # (quoted: "null", "#x" stay names)
                except ConfigError as e:  # a key of the base config that only some methods have, say
                    where = f", pair {pair[0]}-{pair[1]}" if pair else ""
                    raise ConfigError(f"method {name!r} ({', '.join(sets) or 'no settings'}){where}: {e}") from None
                run_dir = out_dir / slug(f"{cfg.data.source}-{cfg.data.target}") / slug(name) / f"seed-{seed}"
                plan.append((cfg, run_dir))
                where.setdefault(run_dir, []).append(f"{name!r} on {cfg.data.source}-{cfg.data.target}")
    twice = next((w for w in where.values() if len(w) > 1), None)
    if twice:
        raise ConfigError(f"{path}: {' and '.join(twice)} would share one run folder (folder names keep letters, "
                          "digits and _.+-); rename a domain or method")
    return plan

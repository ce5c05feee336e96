"""Command-line interface: thin wrappers over the library (parse, call, print)."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from adakit.errors import AdakitError, ConfigError, WaitingForLabels


class _BareHelp:
    """``--help`` shown as a bare flag: typer prints a ``<bool>`` placeholder beside it, as beside any boolean
    option without a metavar (`flag`)."""

    def get_help_option(self, ctx: typer.Context) -> typer.core.TyperOption | None:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option


class _Command(_BareHelp, typer.core.TyperCommand):
    pass


class _Group(_BareHelp, typer.core.TyperGroup):
    pass


class Typer(typer.Typer):
    """A typer app (adakit's and its sub-commands') whose commands show ``--help`` as a bare flag."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=_Group, **kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        return super().command(*args, cls=_Command, **kwargs)


app = Typer(add_completion=False, no_args_is_help=True, help="adakit: active and unsupervised domain adaptation.")
#: markup off: paths and names print as they are ("runs/a2w [test]" lost its "[test]", "x[/red]" crashed); styled
#: prefixes are Text objects (`tagged`)
out = Console(markup=False)
err = Console(stderr=True, markup=False)


def flag(help: str, *names: str) -> Any:
    """An on/off switch for a command: present = on, absent = off; shown in ``--help`` as a bare flag.

    typer prints a ``<bool>`` value placeholder beside boolean options unless they have an (empty) metavar;
    these flags take no value, so every boolean option of adakit is declared through this helper.
    """
    return typer.Option(False, *names, help=help, metavar="", show_default=False)


def _print_version(value: bool) -> None:
    if value:
        from adakit import __version__

        out.print(f"adakit {__version__}", highlight=False)
        raise typer.Exit()


def tagged(console: Console, tag: str, style: str, text: str) -> None:
    """One line: ``tag`` in ``style``, then ``text`` as it is (paths and names with brackets print unchanged)."""
    console.print(Text(tag, style=style) + Text(" " + text), highlight=False, soft_wrap=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on the command line: one "warning:" line, without Python's file name and source line."""
    tagged(err, "warning:", "yellow", str(message))


@app.callback()
def _main(ctx: typer.Context,
          version: bool = typer.Option(False, "--version", help="print the version and exit", metavar="",
                                       show_default=False, is_eager=True, callback=_print_version)) -> None:
    warnings.showwarning = _show_warning
    from adakit import distributed

    if distributed.launched() and ctx.invoked_subcommand not in MULTI_PROCESS_COMMANDS:
        _fail(ConfigError(f"adakit {ctx.invoked_subcommand} runs in one process; start it without torchrun (only "
                          f"{' and '.join(MULTI_PROCESS_COMMANDS)} run under torchrun)"))


#: the commands that run data-parallel under torchrun; the others would do their work once per process
MULTI_PROCESS_COMMANDS = ("run", "resume")


def _fail(e: Exception) -> None:
    """Print ``e`` and exit with code 2. Under torchrun rank 0 prints the errors every rank has (a config error,
    one found on every rank and shared: one message); any other error is printed by the rank that has it (an
    image only it reads, say), which leaves the process group at once (torchrun then stops the others; they
    waited for it until the group timeout, and its message was lost)."""
    from adakit import distributed

    main = distributed.is_main()
    shared = isinstance(e, ConfigError) or getattr(e, "on_every_rank", False)
    own = getattr(e, "on_every_rank", None) is False  # this process's alone (joining the group failed)
    if not (main or own or distributed.info().enabled) and distributed.launched():
        # before the group exists an error is taken to be every rank's, printed by rank 0, which then stops and
        # torchrun ends this process. When rank 0 does not have it (its config file, its --set differ), nobody
        # printed it: after a while (still alive, so rank 0 went on), this rank says it itself.
        time.sleep(float(os.environ.get("ADAKIT_DIST_ERROR_WAIT_S", "10")))
        own = True
    if main or own or (distributed.info().enabled and not shared):
        rank = distributed.info().rank if distributed.info().enabled else os.environ.get("RANK", "?").strip()
        tagged(err, "error:" if main else f"error (rank {rank}):", "bold red", str(e))
    distributed.mark_failed()
    raise typer.Exit(code=2)


@contextmanager
def _main_lock(run_dir: Path, take: bool = True) -> Iterator[None]:
    """The run folder's lock, held by rank 0 (by the one process outside torchrun) when ``take``; under torchrun
    a failure to take it (the folder is in use) is raised on every rank, so no rank waits in a collective for
    one that stopped."""
    from adakit import distributed
    from adakit.rundir import run_lock

    with ExitStack() as stack:
        error = None
        if take and distributed.is_main():
            try:
                stack.enter_context(run_lock(run_dir))
            except AdakitError as e:
                error = e
        error = distributed.broadcast_object(error)
        if error is not None:
            error.on_every_rank = True  # (printed once, by rank 0)
            raise error
        yield


@contextmanager
def _leave_alone_on_error() -> Iterator[None]:
    """Under torchrun, a process stopping on any exception (Ctrl-C reaching one rank's Python, an error of its own)
    leaves the group at exit without waiting for the others: click turns a KeyboardInterrupt into a plain exit, so
    the interrupted rank waited in the exit barrier while the other waited in a training collective, for the 2 h
    group timeout."""
    from adakit import distributed

    try:
        yield
    except BaseException:
        distributed.mark_failed()
        raise


def _printer(label: str = ""):
    def on_event(kind: str, info: dict) -> None:
        tag = f"[{label}] " if label else ""
        if kind == "evaluated":
            out.print(f"{tag}round {info['round']}: {info['labels']} labels, target accuracy "
                      f"{_accuracy(info['accuracy'])}", highlight=False)
        elif kind == "queried":
            out.print(f"{tag}round {info['round']}: queried {info['count']} samples "
                      f"({info['seconds']:.2f} s)", highlight=False)
        elif kind == "resumed":
            out.print(f"{tag}resuming after round {info['round']} (from its checkpoint)", highlight=False)

    return on_event


def _run_loop(make) -> dict | None:
    try:
        loop = make()
        return loop.run()
    except WaitingForLabels as e:
        from adakit import distributed

        if distributed.is_main():  # (torchrun: once)
            tagged(out, "waiting for labels:", "yellow", str(e))
        return None
    except AdakitError as e:
        _fail(e)


def _print_probe_rounds(s: dict) -> None:
    on_event = _printer()
    for r in s["rounds"]:
        on_event("evaluated", {"round": r["round"], "labels": r["labels"], "accuracy": r.get("accuracy")})


def _accuracy(acc: float | None) -> str:
    return "n/a (no labelled test samples)" if acc is None else f"{100 * acc:.2f}%"


def _final_line(s: dict, out_dir: Path) -> str:
    return f"final target accuracy {_accuracy(s.get('final_accuracy'))}; results in {out_dir}"


@app.command()
def run(config: Path = typer.Argument(..., metavar="CONFIG", help="experiment YAML"),
        out_dir: Path = typer.Option(..., "--out", help="run folder: new, empty, or one holding this run"),
        set_: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                       help="override, e.g. --set query.strategy=margin (repeatable)"),
        quiet: bool = flag("no progress bars", "--quiet")) -> None:
    """Run the experiment described by CONFIG into a run folder (new, empty, or one holding this run).

    A 'runner: linear_probe' config ('--set runner=linear_probe') runs the logistic-regression baseline instead.
    """
    from adakit import distributed
    from adakit.config import load_config
    from adakit.errors import ConfigError
    from adakit.loop import ActiveLoop, check_run_config
    from adakit.probe import run_probe, stored_probe_config
    from adakit.rundir import check_out_dir

    with _leave_alone_on_error():  # (torchrun: Ctrl-C or an error of this rank's own)
        try:
            probe_cfg = stored_probe_config(out_dir)  # a linear-probe run folder (it keeps no ledger) or None
            # before any work: never overwrite a folder that is not a run
            is_run = probe_cfg is not None or check_out_dir(out_dir)
            cfg = load_config(config, set_)
            check_run_config(cfg, config)
            if probe_cfg is not None and cfg.runner != "linear_probe":
                raise ConfigError(f"--out {out_dir} holds a linear-probe run (runner: linear_probe in its "
                                  "config.yaml); choose another --out for a network run")
            if cfg.runner == "linear_probe":
                s = run_probe(cfg, out_dir, flag="--out")
                _print_probe_rounds(s)
                out.print(_final_line(s, out_dir), highlight=False)
                return
            main = distributed.init(cfg.train.device).main  # torchrun: join the process group (no-op otherwise)
            distributed.barrier()  # every rank checked --out before rank 0 writes to it
            # a new folder is locked when the loop creates it; under torchrun rank 0 holds the lock
            with _main_lock(out_dir, take=is_run):
                s = _run_loop(lambda: ActiveLoop(cfg, out_dir, show_progress=not quiet,
                                                 on_event=_printer() if main else None))
        except AdakitError as e:
            _fail(e)
    if s and main:
        out.print(_final_line(s, out_dir), highlight=False)


@app.command()
def resume(run_dir: Path = typer.Argument(..., metavar="RUN_DIR", help="run folder of a stopped run"),
           sets: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                          help="change how the run goes on: train.device, train.threads, "
                                               "train.eval_batch_size, log.*, oracle.* (repeatable)"),
           quiet: bool = flag("no progress bars", "--quiet")) -> None:
    """Continue a stopped or killed run from its ledger and last checkpoint."""
    from adakit import distributed
    from adakit.loop import ActiveLoop
    from adakit.probe import stored_probe_config
    from adakit.rundir import sh, stored_config

    with _leave_alone_on_error():  # (torchrun: Ctrl-C or an error of this rank's own)
        try:
            if stored_probe_config(run_dir) is not None:
                from adakit.errors import ConfigError

                raise ConfigError(f"{run_dir} holds a linear-probe run (runner: linear_probe), which keeps no ledger "
                                  f"to resume from; run it again (seconds) with `adakit run "
                                  f"{sh(run_dir / 'config.yaml')} --out {sh(run_dir)}`")
            stored = stored_config(run_dir)  # a run folder with a readable stored config, checked without writing
            device = next((v.strip() for k, _, v in (c.partition("=") for c in sets or ())
                           if k.strip() == "train.device"), stored.get("train", {}).get("device", "auto"))
            main = distributed.init(device).main  # torchrun: join the group
            # before loading data: a second process fails at once (under torchrun rank 0 holds the lock)
            with _main_lock(run_dir):
                s = _run_loop(lambda: ActiveLoop.resume(run_dir, changes=sets or (), show_progress=not quiet,
                                                        on_event=_printer() if main else None))
        except AdakitError as e:
            _fail(e)
    if s and main:
        out.print(_final_line(s, run_dir), highlight=False)


def paragraphs(doc: str) -> str:
    """A docstring with the lines of each paragraph joined, for the terminal to wrap (the source's line breaks,
    wrapped again by rich, gave ragged lines); indented lines (formulas) stay lines of their own."""
    import inspect

    lines: list[str] = []
    for line in inspect.cleandoc(doc).splitlines():
        if lines and lines[-1] and line and not line[0].isspace() and not lines[-1][0].isspace():
            lines[-1] += " " + line
        else:
            lines.append(line)
    return "\n".join(lines)


@app.command()
def methods(name: str = typer.Argument(None, metavar="NAME",
                                       help="a method's name: print its parameters (type, default, meaning)")
            ) -> None:
    """List every strategy, objective and validator with one line each, or one method's parameters."""
    from adakit.errors import ConfigError
    from adakit.registry import OBJECTIVES, STRATEGIES, VALIDATORS

    regs = (("objective", "objective", OBJECTIVES), ("strategy", "query", STRATEGIES),
            ("validator", "validator", VALIDATORS))
    titles = {"objective": "objectives (objective.name)", "strategy": "strategies (query.strategy)",
              "validator": "validators, higher is better, no target labels (adakit sweep --select, adakit.validate)"}
    if name is None:
        for kind, _key, reg in regs:
            t = Table(title=titles[kind], show_header=False, title_justify="left")
            for method, line in reg.describe():
                t.add_row(Text(method, style="bold"), line)
            out.print(t)
        out.print("`adakit methods NAME` prints a method's parameters.", highlight=False)
        return
    found = [(kind, key, reg) for kind, key, reg in regs if name in reg.names()]
    if not found:
        _fail(ConfigError(f"unknown method {name!r}; objectives: {', '.join(OBJECTIVES.names())}; "
                          f"strategies: {', '.join(STRATEGIES.names())}; validators: "
                          f"{', '.join(VALIDATORS.names())}"))
    for kind, key, reg in found:
        cls = reg.get(name)
        how = {"objective": f"objective.name: {name}",
               "strategy": f"query.strategy: {name}, or adakit.select({name!r}, ...)",
               "validator": f"adakit sweep --select {name}, or adakit.validate({name!r}, ...); higher is better"}[kind]
        out.print(Text(kind + " " + name, style="bold") + Text(f" ({how})"), highlight=False)
        out.print(paragraphs(cls.__doc__ or ""), highlight=False)
        if kind == "validator":
            out.print(f"inputs: {', '.join(cls.needs)}", highlight=False)
        elif getattr(cls, "needs", None):
            out.print(f"needs an objective that provides: {', '.join(sorted(cls.needs))}", highlight=False)
        if getattr(cls, "provides", None):
            out.print(f"provides: {', '.join(sorted(cls.provides))}", highlight=False)
        rows = reg.parameters(name)
        if not rows:
            out.print("parameters: none\n", highlight=False)
            continue
        where = "adakit.validate(..., params={KEY: value})" if kind == "validator" else f"{key}.KEY in a config"
        t = Table(title=f"parameters ({where})", title_justify="left")
        for col in ("key", "type", "default", "description"):
            t.add_column(col, overflow="fold")
        for row in rows:
            t.add_row(*row)
        out.print(t)


@app.command()
def report(run_dirs: list[Path] = typer.Argument(..., metavar="RUN_DIRS", help="one or more run folders"),
           out_dir: Path = typer.Option(Path("."), "--out",
                                        help="folder for comparison.md and the curves (default: the current folder)",
                                        show_default=False)) -> None:
    """Compare runs side by side (mean ± std over seeds) and rebuild their tables and learning curves.

    Writes comparison.md and one curve-<pair>.png per domain pair into --out (default: the current folder).
    Each run folder gets its report.md and curve.png rebuilt (a read-only one is skipped, with a warning).
    """
    from adakit.report import check_report_dir, compare, curve_file, load_summary, pair_label, rebuild_run_reports

    try:
        summaries = [load_summary(d) for d in run_dirs]  # every folder checked before anything is written
        check_report_dir(out_dir)
        md = compare(run_dirs, out_dir)  # (first: it refuses runs that are not comparable before writing)
        rebuilt = rebuild_run_reports(run_dirs, summaries)  # (a read-only run folder: a warning)
    except AdakitError as e:
        _fail(e)
    out.print(md, highlight=False, soft_wrap=True)
    curves = sorted({curve_file(pair_label(s)) for s in summaries})
    runs = ("each run's report.md and curve.png were rebuilt in its folder" if len(rebuilt) == len(run_dirs) else
            f"{len(rebuilt)} of the {len(run_dirs)} runs had their report.md and curve.png rebuilt (see the warnings)")
    out.print(f"wrote {(out_dir / 'comparison.md').resolve()} and {', '.join(curves)} there; {runs}", highlight=False,
              soft_wrap=True)


@app.command()
def demo(out_dir: Path = typer.Option(Path("adakit-demo"), "--out", help="folder for the demo runs"),
         seeds: int = typer.Option(5, "--seeds", min=1, metavar="N",
                                   help="number of seeds (0..N-1); the table shows mean ± std"),
         quiet: bool = flag("no progress bars", "--quiet")) -> None:
    """Built-in ADA run on real data (scikit-learn digits -> partly tilted digits): margin vs random."""
    from adakit.demo import run_demo

    try:
        run_demo(out_dir, show_progress=not quiet, console=out, seeds=tuple(range(seeds)), flag="--out")
    except AdakitError as e:
        _fail(e)


@app.command()
def bench(bench_file: Path = typer.Argument(..., metavar="BENCH_FILE", help="bench YAML (see benchmarks/*.yaml)"),
          out_dir: Path = typer.Option(..., "--out", help="folder for all runs and the table"),
          set_: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE", help="override applied to every run "
                                         "(repeatable; not of a key the grid sets)"),
          only: list[str] = typer.Option(None, "--only", metavar="METHOD", help="run only this method (repeatable)"),
          pair: list[str] = typer.Option(None, "--pair", metavar="SOURCE-TARGET",
                                         help="run only this pair (repeatable)"),
          table_only: bool = flag("run nothing: write the table and curves of the finished runs", "--table-only"),
          ) -> None:
    """Run a grid of methods x pairs x seeds (resumable) and write comparison.md with curves."""
    from adakit.bench import run_bench

    def on_run(name: str, info: dict) -> None:
        out.print(f"{name}: final accuracy {_accuracy(info['final_accuracy'])} ({info['seconds']:.0f} s)",
                  highlight=False)

    try:
        md = run_bench(bench_file, out_dir, set_, only, on_run, pairs=pair, table_only=table_only)
    except AdakitError as e:
        _fail(e)
    out.print(md, highlight=False, soft_wrap=True)


def main() -> None:  # pragma: no cover
    app()


# commands defined in their own modules register themselves on `app`
from adakit import cli_data, cli_datasets, cli_labeling, cli_predict, cli_sweep  # noqa: E402,F401

"""Command-line interface: thin wrappers over the library (parse, call, print)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from adakit.errors import AdakitError, WaitingForLabels

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="adakit: active and unsupervised domain adaptation.")
out = Console()
err = Console(stderr=True)


def _fail(e: Exception) -> None:
    err.print("[bold red]error:[/] " + escape(str(e)), highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _printer(label: str = ""):
    def on_event(kind: str, info: dict) -> None:
        tag = f"[{label}] " if label else ""
        if kind == "evaluated":
            out.print(f"{tag}round {info['round']}: {info['labels']} labels, target accuracy "
                      f"{100 * info['accuracy']:.2f}%", highlight=False)
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
        out.print("[yellow]waiting for labels:[/] " + escape(str(e)), highlight=False)
        return None
    except AdakitError as e:
        _fail(e)


@app.command()
def run(config: Path = typer.Argument(..., help="experiment YAML"),
        out_dir: Path = typer.Option(..., "--out", help="run folder to create"),
        set_: list[str] = typer.Option(None, "--set", help="override, e.g. --set query.strategy=margin"),
        quiet: bool = typer.Option(False, "--quiet", help="no progress bars")) -> None:
    """Run the experiment described by CONFIG into a run folder."""
    from adakit.config import load_config
    from adakit.loop import ActiveLoop

    try:
        cfg = load_config(config, set_)
    except AdakitError as e:
        _fail(e)
    s = _run_loop(lambda: ActiveLoop(cfg, out_dir, show_progress=not quiet, on_event=_printer()))
    if s:
        out.print(f"final target accuracy {100 * s['final_accuracy']:.2f}%; results in {out_dir}", highlight=False)


@app.command()
def resume(run_dir: Path = typer.Argument(..., help="run folder of a stopped run"),
           quiet: bool = typer.Option(False, "--quiet")) -> None:
    """Continue a stopped or killed run from its ledger and last checkpoint."""
    from adakit.loop import ActiveLoop

    s = _run_loop(lambda: ActiveLoop.resume(run_dir, show_progress=not quiet, on_event=_printer()))
    if s:
        out.print(f"final target accuracy {100 * s['final_accuracy']:.2f}%; results in {run_dir}", highlight=False)


@app.command()
def methods() -> None:
    """List every strategy and objective with one line each."""
    from adakit.registry import OBJECTIVES, STRATEGIES

    for title, reg in (("objectives (objective.name)", OBJECTIVES), ("strategies (query.strategy)", STRATEGIES)):
        t = Table(title=title, show_header=False, title_justify="left")
        for name, line in reg.describe():
            t.add_row(f"[bold]{name}[/]", line)
        out.print(t)


@app.command()
def report(run_dirs: list[Path] = typer.Argument(..., help="one or more run folders"),
           out_dir: Path = typer.Option(None, "--out", help="where to write comparison.md and curves")) -> None:
    """Rebuild tables and learning curves, comparing runs side by side (mean ± std over seeds)."""
    from adakit.report import compare, load_summary, write_run_report

    try:
        for d in run_dirs:
            write_run_report(d, load_summary(d))
        md = compare(run_dirs, out_dir or run_dirs[0])
    except AdakitError as e:
        _fail(e)
    out.print(md, highlight=False, soft_wrap=True)


@app.command()
def demo(out_dir: Path = typer.Option(Path("adakit-demo"), "--out", help="folder for the demo runs"),
         quiet: bool = typer.Option(False, "--quiet")) -> None:
    """Built-in ADA run on real data (scikit-learn digits -> shifted digits): margin vs random."""
    from adakit.demo import run_demo

    try:
        run_demo(out_dir, show_progress=not quiet, console=out)
    except AdakitError as e:
        _fail(e)


@app.command()
def bench(bench_file: Path = typer.Argument(..., help="bench YAML (see benchmarks/*.yaml)"),
          out_dir: Path = typer.Option(..., "--out", help="folder for all runs and the table"),
          set_: list[str] = typer.Option(None, "--set", help="override applied to every run"),
          only: list[str] = typer.Option(None, "--only", help="run only these methods (repeatable)"),
          pair: list[str] = typer.Option(None, "--pair", help="run only this SOURCE-TARGET pair (repeatable)"),
          ) -> None:
    """Run a grid of methods x pairs x seeds (resumable) and write comparison.md with curves."""
    from adakit.bench import run_bench

    def on_run(name: str, info: dict) -> None:
        out.print(f"{name}: final accuracy {100 * info['final_accuracy']:.2f}% ({info['seconds']:.0f} s)",
                  highlight=False)

    try:
        md = run_bench(bench_file, out_dir, set_, only, on_run, pairs=pair)
    except AdakitError as e:
        _fail(e)
    out.print(md, highlight=False, soft_wrap=True)


def main() -> None:  # pragma: no cover
    app()


# commands defined in their own modules register themselves on `app`
from adakit import cli_data, cli_labeling  # noqa: E402,F401

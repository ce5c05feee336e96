"""CLI command ``adakit sweep`` (registered on adakit.cli.app): a grid of settings, picked by a validator."""

from __future__ import annotations

from pathlib import Path

import typer

from adakit.cli import _fail, app, out, tagged
from adakit.errors import AdakitError, WaitingForLabels


@app.command()
def sweep(config: Path = typer.Argument(..., metavar="CONFIG", help="experiment YAML"),
          grid: list[str] = typer.Option(..., "--grid", metavar="KEY=V1,V2,...",
                                         help="a key's values (repeatable; the grid is their product)"),
          select: str = typer.Option(..., "--select", help="the validator that picks (`adakit methods` lists them)"),
          out_dir: Path = typer.Option(..., "--out", help="folder for one run per setting and the table"),
          set_: list[str] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                         help="override applied to every setting (repeatable; not of a --grid key)"),
          only: list[str] = typer.Option(None, "--only", metavar="KEY=V1,V2",
                                         help="run only settings with these values of a --grid key (repeatable)"),
          jobs: int = typer.Option(1, "--jobs", min=1, metavar="N", help="runs in parallel processes"),
          ) -> None:
    """Run CONFIG for every --grid setting (resumable), pick the setting and checkpoint by a validator (no target
    labels; an active run offers its last round), and write sweep.md / sweep.csv / sweep.json with each setting's
    scores and oracle accuracy."""
    from adakit.sweep import run_sweep

    def on_run(name: str, seconds: float) -> None:
        out.print(f"{name}: done ({seconds:.0f} s)", highlight=False)

    try:
        res = run_sweep(config, grid, select, out_dir, set_, only, jobs, on_run)
    except WaitingForLabels as e:  # a setting answered by people (oracle.kind: file) stopped, as `adakit run` does
        tagged(out, "waiting for labels:", "yellow", str(e))
        return
    except AdakitError as e:
        _fail(e)
    p = res["pick"]
    acc = p.get("oracle_accuracy")
    out.print(f"pick by {select}: {p['setting']}, {p['checkpoint']} ("
              + ("no target labels to check it" if acc is None else f"oracle accuracy {100 * acc:.2f}%") + ")",
              highlight=False)
    if "oracle_best" in res:
        b = res["oracle_best"]
        out.print(f"oracle best (uses target labels): {b['setting']}, {b['checkpoint']} "
                  f"({100 * b['oracle_accuracy']:.2f}%)", highlight=False)
    out.print(f"table: {out_dir / 'sweep.md'} and sweep.csv; {res['ran']} run(s) trained now", highlight=False)
    if res.get("only"):
        out.print(f"(filtered by --only: the table and the pick cover {len(res['settings'])} setting(s); run without "
                  "--only for the whole grid)", highlight=False)

"""The training progress bar (rich), the same for the CLI and the Python API.

It draws in a terminal and in Jupyter; elsewhere (output piped to a file or a CI log) it stays silent, so
logs get no bar redraws. ``enabled=False`` (``show_progress=False``, ``--quiet``) silences it everywhere.
"""

from __future__ import annotations

import contextlib

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True)


class _Bar:
    def __init__(self, progress: Progress | None, task):
        self.progress, self.task = progress, task

    def advance(self, **fields: float) -> None:
        if self.progress is not None:
            info = " ".join(f"{k}={v:.3f}" for k, v in fields.items())
            self.progress.update(self.task, advance=1, info=info)


def bar_visible(enabled: bool = True) -> bool:
    """Whether `progress_bar` draws: enabled, and the console is a terminal or a Jupyter notebook."""
    return enabled and (console.is_terminal or console.is_jupyter)


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True):
    """A transient bar of ``total`` steps labelled ``desc``; ``bar.advance(loss=...)`` moves it one step."""
    if not bar_visible(enabled):
        yield _Bar(None, None)
        return
    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[info]}")]
    with Progress(*cols, console=console, transient=True) as p:
        yield _Bar(p, p.add_task(desc, total=total, info=""))

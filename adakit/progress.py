"""A small progress bar over rich, silent when disabled or when output is not a terminal."""

from __future__ import annotations

import contextlib
import sys

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


@contextlib.contextmanager
def progress_bar(total: int, desc: str, enabled: bool = True):
    if not enabled or not sys.stderr.isatty():
        yield _Bar(None, None)
        return
    cols = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[info]}")]
    with Progress(*cols, console=console, transient=True) as p:
        yield _Bar(p, p.add_task(desc, total=total, info=""))

"""The training progress bar (rich), the same for the CLI and the Python API.

It draws in a terminal and in Jupyter; elsewhere (output piped to a file or a CI log) it stays silent, so
logs get no bar redraws. ``enabled=False`` (``show_progress=False``, ``--quiet``) silences it everywhere.
"""

from __future__ import annotations

import contextlib
import contextvars

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True)


#: whether the long passes inside a run (inference over a domain, a query) show progress; set by `shown`
_SHOWN: contextvars.ContextVar[bool] = contextvars.ContextVar("adakit_progress_shown", default=False)

#: a pass over a domain gets a bar from this many batches on (shorter ones finish before a bar helps)
PASS_BAR_MIN_BATCHES = 20


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
    with shown(False), Progress(*cols, console=console, transient=True) as p:  # one live display at a time
        yield _Bar(p, p.add_task(desc, total=total, info=""))


@contextlib.contextmanager
def shown(enabled: bool = True):
    """Within it, `pass_bar` and `status` draw (in a terminal or notebook): an `ActiveLoop` run wraps its work in
    it, so long inference passes and queries show progress; outside (plain `adakit.select`, `forward_domain`
    calls of your own) they stay silent."""
    token = _SHOWN.set(enabled)
    try:
        yield
    finally:
        _SHOWN.reset(token)


def pass_bar(batches: int, desc: str):
    """`progress_bar` over the batches of one inference pass, shown inside `shown` for ≥ PASS_BAR_MIN_BATCHES."""
    return progress_bar(batches, desc, enabled=_SHOWN.get() and batches >= PASS_BAR_MIN_BATCHES)


@contextlib.contextmanager
def status(desc: str):
    """A transient spinner with ``desc`` for work without steps to count (a strategy's selection), inside `shown`."""
    if not bar_visible(_SHOWN.get()):
        yield
        return
    with shown(False), console.status(desc):  # one live display at a time: passes inside stay silent
        yield

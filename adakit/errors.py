"""Errors a user can act on. The CLI prints their message without a traceback."""


class AdakitError(Exception):
    """Base class: the message says what is wrong and what to do."""


class ConfigError(AdakitError):
    """A config key, type or value is wrong (the message names the key path)."""


class DataError(AdakitError):
    """Input data is missing, unreadable or inconsistent (the message names the file or field)."""


class LedgerError(AdakitError):
    """The label ledger refuses an operation (conflicting label, unknown id, ...)."""


class LedgerBusy(LedgerError):
    """The ledger is locked by another writer for longer than the wait, or its server is stopping: retry."""


class NotQueried(LedgerError):
    """An answer names a sample that is not a (still open) query of the run."""


class WaitingForLabels(AdakitError):
    """A round's queries were exported and the run waits for people to answer them.

    ``round``: the round waiting; ``open``: sample ids of its queries still without an answer; ``run_dir``: the
    run folder (its ``queries/round-K.csv`` lists them for people)."""

    def __init__(self, message: str, *, round: int | None = None, open: tuple[str, ...] = (),  # noqa: A002
                 run_dir: str | None = None):
        super().__init__(message)
        self.round, self.open, self.run_dir = round, tuple(open), run_dir

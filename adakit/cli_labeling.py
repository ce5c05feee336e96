"""CLI commands: cli_labeling (registered on adakit.cli.app)."""

from adakit.cli import app  # noqa: F401

"""CLI commands: cli_data (registered on adakit.cli.app)."""

from adakit.cli import app  # noqa: F401

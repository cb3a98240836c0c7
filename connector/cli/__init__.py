"""The ``connector`` command: its commands, the checks and the read-only reports.

Importing the command modules registers their commands on ``app``.
"""

from connector.cli import backfill, check, report, run, sandbox, sessions, status  # noqa: F401  (registers)
from connector.cli.app import app


def main() -> None:
    app()


__all__ = ["app", "main"]

"""Terminal output of the CLI: colour only on a terminal, plain text when piped or with --no-color."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["checkpoint_table", "console"]

_console: Console | None = None


def console(*, no_color: bool = False) -> Console:
    """Return the shared console; colour is off when stdout is not a terminal, NO_COLOR is set or asked."""
    global _console
    if _console is None or no_color:
        plain = no_color or bool(os.environ.get("NO_COLOR")) or not sys.stdout.isatty()
        _console = Console(no_color=plain, highlight=False, soft_wrap=True, emoji=False)
    return _console


_STATUS_STYLE = {
    "completed": "green",
    "failed": "red",
    "unknown": "yellow",
    "running": "cyan",
    "queued": "blue",
    "cancelled": "magenta",
    "resumed": "dim",
}


def checkpoint_table(checkpoints: list[dict[str, Any]], when: Any) -> Table:
    """Build the `checkpoints` table: job id, status, turns/max, messages, last updated, can resume."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("JOB ID", "STATUS", "TURNS", "MESSAGES", "LAST UPDATED", "CAN RESUME"):
        table.add_column(column)
    for checkpoint in checkpoints:
        status = str(checkpoint["jobStatus"])
        table.add_row(
            str(checkpoint["jobId"]),
            f"[{_STATUS_STYLE.get(status, 'default')}]{status}[/]",
            f"{checkpoint['turns']}/{checkpoint['maxTurns']}",
            str(checkpoint["messages"]),
            when(checkpoint.get("lastUpdated")),
            "✅ Yes" if checkpoint["canResume"] else "❌ No",
        )
    return table

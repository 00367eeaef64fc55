"""`dasklaunch logs`."""

from __future__ import annotations

import os
import sys
from contextlib import suppress
from typing import Annotated

import typer

from ..errors import UsageError
from .options import StateDirOpt

LOG_KINDS = ("scheduler", "workers", "all")
DEFAULT_LINES = 20


def parse_lines(value: str) -> int | None:
    """--lines: a count of lines (0: none, e.g. with -f for new lines only), or 'all' (None)."""
    if value.strip().lower() == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise UsageError(f"--lines takes a number of lines (0 or more) or 'all', not {value!r}")
    return count


def _complete_kinds() -> list[str]:
    return list(LOG_KINDS)


def logs_command(
    which: Annotated[str, typer.Argument(
        metavar="[scheduler|workers|all]", autocompletion=_complete_kinds,
        help="Whose logs: the scheduler's, the current worker pools', or both.")] = "all",
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new lines (and new logs after restart-workers) "
                               "until Ctrl-C.")] = False,
    lines: Annotated[str, typer.Option(
        "--lines", "-n", metavar="N|all", show_default=False,
        help="Print the last N lines of each log, or all of it with 'all' "
             f"[default: {DEFAULT_LINES}].")] = str(DEFAULT_LINES),
    state_dir: StateDirOpt = None,
) -> None:
    """Show the scheduler and worker logs of this job (kept after `down`)."""
    if which not in LOG_KINDS:
        raise UsageError(f"logs takes scheduler, workers or all, not {which!r}")
    count = parse_lines(lines)
    from ..ops.logs import show_logs

    try:
        show_logs(state_dir, which, count, follow)
    except BrokenPipeError:
        # The reader (head, less) is gone: stop quietly, and keep Python's exit-time flush of
        # stdout from failing on the closed pipe.
        with suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        pass  # the way to end --follow

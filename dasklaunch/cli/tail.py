"""`dasklaunch logs`."""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated, Optional

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
    pool: Annotated[Optional[str], typer.Option(
        "--pool", metavar="NAME", help="Only this worker pool's logs.")] = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Show the scheduler and worker logs of this job (kept after `down`)."""
    if which not in LOG_KINDS:
        raise UsageError(f"logs takes scheduler, workers or all, not {which!r}")
    if pool is not None and which == "scheduler":
        raise UsageError("--pool shows a worker pool's logs, not the scheduler's")
    count = parse_lines(lines)
    from ..ops.logs import show_logs

    # a reader that closes the pipe (head, less) is handled where every command's is
    with suppress(KeyboardInterrupt):   # the way to end --follow
        show_logs(state_dir, which, count, follow, pool)

"""Domain errors. The CLI turns each into a one-line message and its exit code, in one place."""

from __future__ import annotations

import os
import sys


class DasklaunchError(Exception):
    """Base class: `str(err)` is the one-line message shown to the user."""

    exit_code = 1


class UsageError(DasklaunchError):
    """Bad input from the user: options, files, environment."""

    exit_code = 2


class NoAllocationError(UsageError):
    """The Slurm backend was asked for outside an allocation."""


class InterfaceError(UsageError):
    """The requested network interface does not exist where Dask runs."""


class StateDirError(DasklaunchError):
    """The per-job state directory cannot be used safely."""

    exit_code = 2


class BusyError(DasklaunchError):
    """Another dasklaunch command holds this job's lock."""

    exit_code = 3


class LimitError(DasklaunchError):
    """A request Slurm's limits for this user (association, QOS) would refuse or hold forever."""

    exit_code = 3


class AlreadyUpError(DasklaunchError):
    """A live scheduler already serves this job."""

    exit_code = 3


class NotUpError(DasklaunchError):
    """There is no cluster (or no scheduler) for this job."""


class CommandError(DasklaunchError):
    """An external command (srun, squeue, scancel, ...) failed or is missing."""


class StartupError(DasklaunchError):
    """A scheduler or worker pool exited before it became ready."""


class StartupTimeout(DasklaunchError):
    """Readiness was not reached within --timeout."""


class Interrupted(DasklaunchError):
    """SIGINT/SIGTERM arrived while a command was changing the cluster."""

    exit_code = 130


def print_error(err: DasklaunchError) -> None:
    """The one format for a domain error on stderr: one line, then any detail lines."""
    first, _, rest = str(err).partition("\n")
    print(f"dasklaunch: error: {first}", file=sys.stderr)
    if rest:
        print(rest, file=sys.stderr)


# What a command killed by SIGPIPE exits with (128 + 13), as `ls | head -1` leaves `ls`.
CLOSED_PIPE_EXIT = 141


def closed_pipe() -> None:
    """End quietly after the reader closed standard output (`dasklaunch status | head -1`)."""
    # nothing more reaches the reader; the interpreter's own flush at exit must not fail
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(CLOSED_PIPE_EXIT)

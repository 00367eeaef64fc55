"""The timing of rolling worker jobs (`scale-out --keep`): when a kept job's replacement is due,
and which walltimes leave room for it. Pure arithmetic; ops/rolling.py acts on it."""

from __future__ import annotations

from ..errors import UsageError
from .units import slurm_time_seconds

# Seconds between the end of a worker job's drain and its walltime: for the workers to exit.
WALLTIME_MARGIN_SECONDS = 10
# Slurm sends a job's --signal up to 60 s before the time asked (its timer's resolution).
SIGNAL_RESOLUTION_SECONDS = 60
# What a replacement job needs to start and connect when the queue is short.
START_ALLOWANCE_SECONDS = 30


def lead_seconds(drain_timeout: float) -> float:
    """How long before a kept job's end its replacement is submitted: its own --signal margin
    (drain + exit), Slurm's resolution for that signal, and the time to start the new one."""
    return (max(0.0, drain_timeout) + WALLTIME_MARGIN_SECONDS + SIGNAL_RESOLUTION_SECONDS
            + START_ALLOWANCE_SECONDS)


def check_walltime(walltime: str, drain_timeout: float) -> None:
    """Refuse a walltime that leaves a kept job no time between its start and the moment its
    replacement is due."""
    seconds = slurm_time_seconds(walltime)
    if seconds is None:
        raise UsageError(f"--keep needs a finite --walltime, not {walltime!r}")
    lead = lead_seconds(drain_timeout)
    if seconds <= lead + START_ALLOWANCE_SECONDS:
        raise UsageError(f"--walltime {walltime} is too short for --keep: each job is replaced "
                         f"{lead:.0f} s before its end (--drain-timeout + {WALLTIME_MARGIN_SECONDS}"
                         f" s + {SIGNAL_RESOLUTION_SECONDS + START_ALLOWANCE_SECONDS} s); give "
                         f"more than {lead + START_ALLOWANCE_SECONDS:.0f} s")

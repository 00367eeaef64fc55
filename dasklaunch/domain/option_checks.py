"""The values `up` passes through to Dask, checked before anything starts: Dask checks them
only when its processes start, where a bad one ends in a traceback (`--dashboard-address foo`),
a misleading failure (`--lifetime 2x`: "Nanny failed to start"), or is taken silently
(`--port 99999` becomes a random port). Each refusal is one line that names the option and
what it takes."""

from __future__ import annotations

import re

from ..errors import UsageError
from .container import check_container_options
from .settings import UpOptions
from .units import check_memory_limit

# Dask's parse_timedelta units (dask/utils.py timedelta_sizes), written out so that checking
# an option does not import dask
_TIME_UNITS = ("ns", "nanosecond", "nanoseconds", "us", "microsecond", "microseconds",
               "ms", "millisecond", "milliseconds", "s", "second", "seconds", "sec",
               "m", "minute", "minutes", "min", "h", "hour", "hours", "hr",
               "d", "day", "days", "w", "week", "weeks")
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*([A-Za-z]*)\s*")
_HOST = re.compile(r"[A-Za-z0-9_.\-]*|\[[0-9A-Fa-f:.]*\]")
PORT_RANGE = "0-65535"


def check_duration(option: str, value: str) -> str:
    """A Dask duration: a number of seconds, or a number and a unit (90s, 5m, 2h, 1d)."""
    match = _DURATION.fullmatch(str(value))
    if not match or match.group(2).lower() not in ("", *_TIME_UNITS) or float(
            match.group(1)) <= 0:
        raise UsageError(f"{option} takes a duration above 0 such as 90s, 5m, 2h or 1d, "
                         f"not {value!r}")
    return value


def check_port(option: str, port: int) -> int:
    if not 0 <= port <= 65535:
        raise UsageError(f"{option} takes a port in {PORT_RANGE} (0: a free one), not {port}")
    return port


def check_address(option: str, value: str) -> str:
    """PORT, :PORT or HOST:PORT, as `dask scheduler --dashboard-address` takes it."""
    host, sep, port = str(value).rpartition(":")
    if not sep:
        host, port = "", str(value)
    if not port.isdigit() or not _HOST.fullmatch(host) or not 0 <= int(port) <= 65535:
        raise UsageError(f"{option} takes PORT, :PORT or HOST:PORT with a port in "
                         f"{PORT_RANGE}, not {value!r}")
    return value


def check_wait_workers(value: str) -> str:
    text = str(value).strip()
    if text in ("all", "") or (text.isdigit() and int(text) >= 0):
        return text or "all"
    raise UsageError(f"--wait-workers takes a number of workers (0 or more) or all, "
                     f"not {value!r}")


def check_seconds(option: str, value: float, *, zero: bool = False) -> float:
    if value < 0 or (value == 0 and not zero):
        bound = "0 or more" if zero else "above 0"
        raise UsageError(f"{option} takes seconds {bound}, not {value:g}")
    return value


def check_up_values(opts: UpOptions) -> UpOptions:
    """Every value of `opts` that must hold whatever the allocation, checked at once."""
    check_seconds("--timeout", opts.timeout)
    check_seconds("--death-timeout", opts.death_timeout)
    check_seconds("--drain-timeout", opts.drain_timeout, zero=True)
    check_port("--port", opts.port)
    check_address("--dashboard-address", opts.dashboard_address)
    check_wait_workers(opts.wait_workers)
    if opts.memory_limit is not None:
        check_memory_limit("--memory-limit", opts.memory_limit)
    for option, value in (("--lifetime", opts.lifetime),
                          ("--lifetime-stagger", opts.lifetime_stagger)):
        if value is not None:
            check_duration(option, value)
    if opts.lifetime_stagger and not opts.lifetime:
        raise UsageError("--lifetime-stagger needs --lifetime")
    if opts.nworkers < 1:
        raise UsageError(f"--nworkers must be at least 1, not {opts.nworkers}")
    if opts.nthreads is not None and opts.nthreads < 1:
        raise UsageError(f"--nthreads must be at least 1, not {opts.nthreads}")
    if opts.local_tasks is not None and opts.local_tasks < 1:
        raise UsageError(f"--local-tasks must be at least 1, not {opts.local_tasks}")
    check_container_options(opts.container, opts.container_runtime, opts.container_args)
    return opts

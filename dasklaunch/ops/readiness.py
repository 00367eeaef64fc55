"""Real readiness: the scheduler file parses, the scheduler answers, and the workers are counted
live; a step that exits early or a deadline that passes is reported with its log's last lines.

The probe is injectable: `HttpProbe` asks the scheduler over HTTP (without importing
distributed); tests of `up` use the in-process launcher's probe instead.
"""

from __future__ import annotations

import time
from typing import Protocol

from ..domain.settings import UpOptions
from ..errors import InterfaceError, StartupError, StartupTimeout
from ..launch.base import Launcher
from ..runtime import schedfile
from ..runtime.record import Step
from ..runtime.report import Reporter
from ..runtime.state import StateDir
from .common import log_tail

POLL_SECONDS = 0.05
LIVENESS_SECONDS = 0.5


class Probe(Protocol):
    def scheduler(self, state: StateDir) -> schedfile.SchedulerInfo | None:
        """The scheduler's facts once its file parses and it answers; else None."""

    def workers(self, info: schedfile.SchedulerInfo) -> set[str] | None:
        """Addresses of the connected workers; None when the scheduler does not answer."""


class HttpProbe:
    def scheduler(self, state: StateDir) -> schedfile.SchedulerInfo | None:
        info = schedfile.read(state.scheduler_file)
        return info if info is not None and schedfile.answers(info) else None

    def workers(self, info: schedfile.SchedulerInfo) -> set[str] | None:
        ident = schedfile.identity(info)
        return None if ident is None else set(ident.get("workers", {}))


def wait_ready(launcher: Launcher, state: StateDir, sched: Step, pools: list[Step],
               wait_for: int, opts: UpOptions, report: Reporter, deadline: float,
               known: set[str], probe: Probe | None = None) -> schedfile.SchedulerInfo:
    """Wait until the scheduler answers and `wait_for` new workers are connected.

    `known` holds worker addresses that were connected before (restart-workers): only new
    ones count. Raises StartupError when a step exits early, StartupTimeout at the deadline.
    """
    probe = probe or HttpProbe()
    info: schedfile.SchedulerInfo | None = None
    next_liveness = 0.0
    connected = 0
    while True:
        now = time.monotonic()
        if info is None:
            info = probe.scheduler(state)
            if info is not None:
                report.info(f"scheduler ready at {info.address}")
        if info is not None:
            workers = probe.workers(info)
            if workers is not None:
                connected = len(workers - known)
                report.progress(connected, wait_for)
                if connected >= wait_for:
                    report.done()
                    return info
        if now >= next_liveness:
            next_liveness = now + LIVENESS_SECONDS
            check_alive(launcher, sched, pools, opts, connected, wait_for)
        if now >= deadline:
            report.done()
            if info is None:
                raise StartupTimeout(f"scheduler not ready after {opts.timeout:g}s; last lines of "
                                     f"{sched.log}:\n{log_tail(sched.log)}")
            raise StartupTimeout(f"only {connected}/{wait_for} workers connected after "
                                 f"{opts.timeout:g}s; last lines of {pools[0].log}:\n"
                                 f"{log_tail(pools[0].log)}")
        time.sleep(POLL_SECONDS)


def check_alive(launcher: Launcher, sched: Step, pools: list[Step], opts: UpOptions,
                connected: int, wait_for: int) -> None:
    if not launcher.running(sched):
        raise (interface_error(opts, sched.log) or
               StartupError(f"scheduler exited before it was ready; last lines of {sched.log}:\n"
                            f"{log_tail(sched.log)}"))
    for pool in pools:
        if not launcher.running(pool) and connected < wait_for:
            raise (interface_error(opts, pool.log) or
                   StartupError(f"worker pool exited with {connected}/{wait_for} workers "
                                f"connected; last lines of {pool.log}:\n{log_tail(pool.log)}"))


def interface_error(opts: UpOptions, *logs: str) -> InterfaceError | None:
    """Dask's own complaint about --interface in a log, as a one-line InterfaceError."""
    for log in logs:
        for line in log_tail(log, 60).splitlines():
            # the exception's own line: Python 3.13's tracebacks also quote the source line
            # that raises it, which holds the same words in an f-string
            if "ValueError:" in line and "is not a valid network interface" in line:
                detail = line.split("ValueError:", 1)[-1].strip()
                return InterfaceError(f"--interface {opts.interface}: {detail}")
    return None

"""Real readiness: the scheduler file parses, the scheduler answers, and the workers are counted
live; a step that exits early or a deadline that passes is reported with its log's last lines.

The probe is injectable: `HttpProbe` asks the scheduler over HTTP (without importing
distributed); tests of `up` use the in-process launcher's probe instead. Once the scheduler
answers, each probe is one long request (/dasklaunch/count.json?n=...&wait=...) that the
scheduler answers as soon as the workers are there, or after LIVENESS_SECONDS: ~150 bytes and
O(1) scheduler CPU each, whatever the number of workers, and no poll interval added to `up`.
"""

from __future__ import annotations

import time
from typing import Protocol

from ..domain.settings import UpOptions
from ..errors import InterfaceError, StartupError, StartupTimeout
from ..launch.base import Launcher
from ..runtime import schedfile
from ..runtime.record import StepRun
from ..runtime.report import Reporter
from ..runtime.state import StateDir
from .common import log_tail

POLL_SECONDS = 0.05
LIVENESS_SECONDS = 0.5


class Probe(Protocol):
    def scheduler(self, state: StateDir) -> schedfile.SchedulerInfo | None:
        """The scheduler's facts once its file parses and it answers; else None."""

    def count(self, info: schedfile.SchedulerInfo, since: int, pools: list[str] | None,
              wait_for: int, wait: float) -> int | None:
        """Connected workers that joined after join number `since` (of `pools`, if given); may
        wait up to `wait` seconds for `wait_for` of them. None when the scheduler does not
        answer."""


class HttpProbe:
    def scheduler(self, state: StateDir) -> schedfile.SchedulerInfo | None:
        info = schedfile.read(state.scheduler_file)
        return info if info is not None and schedfile.answers(info) else None

    def count(self, info: schedfile.SchedulerInfo, since: int, pools: list[str] | None,
              wait_for: int, wait: float) -> int | None:
        answer = schedfile.count(info, since=since, pools=pools, wait_for=wait_for, wait=wait)
        return None if answer is None else int(answer.get("count", 0))


def wait_ready(launcher: Launcher, state: StateDir, sched: StepRun, pools: list[StepRun],
               wait_for: int, opts: UpOptions, report: Reporter, deadline: float,
               since: int = 0, pools_named: list[str] | None = None,
               probe: Probe | None = None) -> schedfile.SchedulerInfo:
    """Wait until the scheduler answers and `wait_for` new workers are connected.

    Only workers that joined after join number `since` count (restart-workers passes the
    number from before it stopped the old ones), and only those of `pools_named` when given.
    Raises StartupError when a step exits early, StartupTimeout at the deadline.
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
        answered = None
        if info is not None:
            wait = max(0.0, min(LIVENESS_SECONDS, deadline - now))
            answered = probe.count(info, since, pools_named, wait_for, wait)
            if answered is not None:
                connected = answered
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
        if answered is None or time.monotonic() - now < POLL_SECONDS:
            time.sleep(POLL_SECONDS)  # no scheduler yet, or one that cannot wait (older)


def check_alive(launcher: Launcher, sched: StepRun, pools: list[StepRun], opts: UpOptions,
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

"""The supervisor: stays in the foreground and brings worker pools back by itself.

It relaunches a pool when its step exits, or when fewer than --min-workers stay connected for
longer than --grace, with exponential backoff between consecutive failures and a cap on
restarts. It never fights another command: it acts only while holding the job lock, re-checks
under the lock, exits when `down` has run, and leaves the cluster running when it gets SIGTERM
(the end of a job stops the cluster anyway). Its state is `<state dir>/supervisor.json`, which
`status` reads.
"""

from __future__ import annotations

import datetime
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import (
    BusyError,
    DasklaunchError,
    Interrupted,
    NotUpError,
    StartupError,
    StartupTimeout,
    UsageError,
)
from ..launch.factory import launcher_for
from ..runtime import proc, schedfile
from ..runtime.record import ClusterRecord
from ..runtime.report import Reporter
from ..runtime.state import StateDir, find_state_dir
from ..slurm import queue
from .common import SUPERVISOR_FILE, interrupts_raise, load_record, memory_restarts
from .down import down
from .restart import relaunch_pools
from .up import up

MAX_EVENTS = 50


@dataclass(frozen=True)
class SuperviseOptions:
    min_workers: int | None = None      # default: every expected worker
    grace: float = 30.0                 # seconds below min_workers before acting
    max_restarts: int = 5
    backoff: float = 5.0                # first wait after a failed relaunch; doubles
    backoff_cap: float = 300.0
    interval: float = 2.0
    restart_scheduler: bool = False
    walltime_margin: float | None = None

    def check(self) -> None:
        if self.min_workers is not None and self.min_workers < 0:
            raise UsageError(f"--min-workers must be >= 0, not {self.min_workers}")
        if self.interval <= 0:
            raise UsageError(f"--interval must be > 0, not {self.interval:g}")
        if self.grace < 0 or self.backoff < 0:
            raise UsageError("--grace and --backoff must be >= 0")
        if self.walltime_margin is not None and self.walltime_margin < 0:
            raise UsageError(f"--walltime-margin must be >= 0, not {self.walltime_margin:g}")
        if self.max_restarts < 0:
            raise UsageError(f"--max-restarts must be >= 0, not {self.max_restarts}")


def job_end_time(job_id: str, environ: dict[str, str] | None = None) -> float | None:
    """When Slurm will end the job (epoch seconds), or None when unknown/unlimited."""
    env = os.environ if environ is None else environ
    if env.get("SLURM_JOB_END_TIME", "").isdigit():
        return float(env["SLURM_JOB_END_TIME"])
    return queue.end_time(job_id)


class Supervisor:
    def __init__(self, state: StateDir, opts: SuperviseOptions, report: Reporter):
        self.state = state
        self.opts = opts
        self.report = report
        me = proc.identify(os.getpid())
        self.data = {"process": me.to_dict(), "started": time.time(), "restarts": 0,
                     "last_reason": None, "events": [], "options": asdict(opts)}
        self.failures = 0           # consecutive relaunches that did not hold
        self.next_try = 0.0
        self.below_since: float | None = None
        self.last_relaunch = 0.0

    def event(self, message: str) -> None:
        stamp = datetime.datetime.now().strftime("%H:%M:%S")
        self.report.info(f"[{stamp}] supervise: {message}")
        self.data["events"] = (self.data["events"] + [{"time": time.time(),
                                                      "message": message}])[-MAX_EVENTS:]
        self.save()

    def save(self) -> None:
        try:
            self.state.write_text(SUPERVISOR_FILE, json.dumps(self.data, indent=2) + "\n")
        except DasklaunchError as err:  # a full disk must not stop the supervision
            self.report.warn(str(err))

    def run(self) -> int:
        self.opts.check()
        record = load_record(self.state, self.report)
        end = None
        if self.opts.walltime_margin is not None and record.backend == "slurm":
            end = job_end_time(record.job_id)
        self.event(f"watching job {record.job_id} ({record.expected_workers} workers"
                   f"{'' if end is None else ', job ends ' + time.ctime(end)})")
        try:
            with interrupts_raise():
                while True:
                    outcome = self.tick(end)
                    if outcome is not None:
                        return outcome
                    time.sleep(self.opts.interval)
        except (KeyboardInterrupt, Interrupted):
            self.event("stopping on a signal; the cluster keeps running")
            return 0

    def tick(self, end: float | None) -> int | None:
        """One look at the cluster; returns an exit code when supervision is over."""
        now = time.time()
        record, _ = self.state.read_record_or_backup()
        if record is None or record.status in ("down", "failed"):
            self.event("the cluster was brought down; nothing left to supervise")
            return 0
        if end is not None and now >= end - (self.opts.walltime_margin or 0):
            self.event(f"{self.opts.walltime_margin:g}s before the job's end: bringing the "
                       f"cluster down cleanly")
            down(self.state.path, report=self.report)
            return 0
        info = schedfile.read(self.state.scheduler_file)
        counts = schedfile.count(info) if info else None  # O(1): a count, not a listing
        if counts is None:
            return self.scheduler_gone(record)
        self.log_drains(info, counts)
        if record.scale_out_keep:
            self.roll(counts.get("n_workers", 0))
        problem = self.diagnose(record, counts, now)
        if problem is None:
            self.data["checked"] = now  # the last look that found nothing to do
            self.save()
            return None
        return self.relaunch(problem, now)

    def roll(self, connected: int) -> None:
        """scale-out --keep: replace kept worker jobs before their end (ops/rolling.py)."""
        from .rolling import keep_rolling

        try:
            with self.state.lock("supervise (rolling worker jobs)"):
                record = load_record(self.state, self.report)
                done = keep_rolling(self.state, record, connected, self.report)
                if done:
                    self.state.write_record(record)
        except BusyError:
            return  # another command has the job: next time
        except DasklaunchError as err:
            self.event(f"rolling worker jobs: {err}")
            return
        for line in done:
            self.event(line)

    def log_drains(self, info: schedfile.SchedulerInfo, counts: dict) -> None:
        """Log the drains the scheduler did since the last look (workers, keys moved, time)."""
        seen = self.data.get("drains_seen", 0)
        total = counts.get("drains", 0)
        if total <= seen:
            return
        from ..runtime.drain import describe

        events = ((schedfile.summary(info) or {}).get("drains") or {}).get("last") or []
        self.data["drains_seen"] = total
        for event in events[-(total - seen):]:
            self.event(describe(event))

    def diagnose(self, record: ClusterRecord, counts: dict, now: float) -> str | None:
        launcher = launcher_for(record)
        pools = record.pools
        expected = record.expected_workers
        connected = counts.get("n_workers", 0)
        for pool in pools:
            if not launcher.running(pool):
                return f"worker step {pool.name} exited ({connected}/{expected} connected)"
        wanted = expected if self.opts.min_workers is None else self.opts.min_workers
        started = max([p.started for p in pools] + [0.0])
        if connected >= wanted:
            self.below_since = None
            if self.failures and now - self.last_relaunch > max(self.opts.grace, 60.0):
                self.failures = 0  # the last relaunch held
            return None
        self.below_since = self.below_since or max(now, started)
        if now - self.below_since >= self.opts.grace:
            return (f"only {connected}/{expected} workers connected for "
                    f"{now - self.below_since:.0f}s (minimum {wanted})")
        return None

    def relaunch(self, problem: str, now: float) -> int | None:
        record, _ = self.state.read_record_or_backup()
        oom = memory_restarts(record.pools if record else [])
        reason = problem + (f"; {oom} nanny restarts for memory in its log" if oom else "")
        if self.data["restarts"] >= self.opts.max_restarts:
            self.data["last_reason"] = reason
            self.event(f"giving up after {self.data['restarts']} restarts (--max-restarts): "
                       f"{reason}")
            return 1
        if now < self.next_try:
            return None
        try:
            with self.state.lock("supervise"):
                record = load_record(self.state, self.report)
                info = schedfile.read(self.state.scheduler_file)
                fresh = self.diagnose(record, (schedfile.count(info) if info else None)
                                      or {"n_workers": 0}, now)
                if fresh is None:  # someone (restart-workers) fixed it meanwhile
                    return None
                self.data["restarts"] += 1
                self.data["last_reason"] = reason
                self.event(f"relaunching the worker pool (restart {self.data['restarts']}/"
                           f"{self.opts.max_restarts}): {reason}")
                self.last_relaunch = time.time()
                result = relaunch_pools(self.state, record, report=self.report,
                                                  reason=f"supervisor: {reason}")
        except BusyError:
            self.event("another dasklaunch command holds the job; not interfering")
            return None
        except (StartupError, StartupTimeout, NotUpError) as err:
            wait = self.back_off()
            self.event(f"relaunch failed ({str(err).splitlines()[0]}); next try in {wait:g}s")
            return None
        # Counted as a failure until the pool has held for a while (diagnose resets it), so a
        # pool that dies again at once is retried with backoff, never in a tight loop.
        self.back_off()
        self.below_since = None
        self.event(f"{result['workers']} workers back")
        return None

    def back_off(self) -> float:
        self.failures += 1
        wait = min(self.opts.backoff_cap, self.opts.backoff * 2 ** (self.failures - 1))
        self.next_try = time.time() + wait
        return wait

    def scheduler_gone(self, record: ClusterRecord) -> int | None:
        # `down` stops the scheduler under the job lock before it records "down": look again
        # once nobody holds the lock, so a deliberate stop is not mistaken for a crash.
        try:
            with self.state.lock("supervise"):
                record, _ = self.state.read_record_or_backup()
        except BusyError:
            return None
        if record is None or record.status in ("down", "failed"):
            self.event("the cluster was brought down; nothing left to supervise")
            return 0
        info = schedfile.read(self.state.scheduler_file)
        if info is not None and schedfile.count(info) is not None:
            return None  # a new scheduler (another `up`) answers now
        if not self.opts.restart_scheduler:
            self.event("the scheduler is gone; run `dasklaunch down` then `dasklaunch up` "
                       "(or supervise with --restart-scheduler)")
            return 1
        if self.data["restarts"] >= self.opts.max_restarts:
            self.event(f"the scheduler is gone and --max-restarts {self.opts.max_restarts} is "
                       f"used up")
            return 1
        self.data["restarts"] += 1
        self.data["last_reason"] = "scheduler gone"
        self.event("the scheduler is gone: restarting the whole cluster; clients must "
                   "reconnect (the scheduler's address changes)")
        try:
            down(self.state.path, report=self.report)
            facts = up(record.options, state_dir=self.state.path, report=self.report)
        except BusyError:
            self.event("another dasklaunch command holds the job; not interfering")
            return None
        except DasklaunchError as err:
            self.event(f"restarting the cluster failed: {str(err).splitlines()[0]}")
            return 1
        self.event(f"cluster back at {facts['scheduler']['address']}")
        return None


def supervise(state_dir: Path | str | None = None, opts: SuperviseOptions | None = None,
              report: Reporter | None = None) -> int:
    state = find_state_dir(state_dir)
    return Supervisor(state, opts or SuperviseOptions(), report or Reporter()).run()

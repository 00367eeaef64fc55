"""A launcher that starts nothing, for tests of the use cases' failure paths (rollback, early
exit, timeouts, interrupts) without starting Dask, in the spirit of dask-gateway's
failure-injection backends.

Steps "run" until stopped. `fail_at` picks what goes wrong:
    "start"      starting the step of `fail_role` raises CommandError
    "readiness"  the scheduler never answers (`up` times out)
    "early-exit" the step of `fail_role` exits right after it started
    "interrupt"  a Ctrl-C (KeyboardInterrupt) arrives while `up` waits for readiness
Its `probe` (for ops.readiness) reports the scheduler ready and every started task's workers
connected, unless told otherwise.
"""

from __future__ import annotations

import time

from dasklaunch.domain.step_plan import StepPlan
from dasklaunch.errors import CommandError
from dasklaunch.launch.base import Launcher
from dasklaunch.runtime.record import StepRun
from dasklaunch.runtime.schedfile import SchedulerInfo

STAGES = ("start", "readiness", "early-exit", "interrupt")


class InProcessLauncher(Launcher):
    backend = "inprocess"

    def __init__(self, job_id: str = "inprocess", fail_at: str | None = None,
                 fail_role: str = "workers", workers_per_task: int = 1):
        if fail_at is not None and fail_at not in STAGES:
            raise ValueError(f"fail_at must be one of {STAGES}, not {fail_at!r}")
        super().__init__(job_id)
        self.fail_at, self.fail_role = fail_at, fail_role
        self.workers_per_task = workers_per_task
        self.running_steps: set[str] = set()
        self.steps: dict[str, StepRun] = {}
        self.started: list[str] = []
        self.stopped: list[tuple[str, str]] = []     # (step name, how)
        self.probe = InProcessProbe(self)

    def argv(self, step: StepPlan) -> list[str]:
        return ["inprocess", step.name, *step.command]

    def start(self, plan: StepPlan) -> StepRun:
        if self.fail_at == "start" and plan.role == self.fail_role:
            raise CommandError(f"injected failure: cannot start {plan.role} {plan.name}")
        step = StepRun(plan=plan, argv=self.argv(plan), started=time.time())
        self.started.append(step.name)
        self.steps[step.name] = step
        if not (self.fail_at == "early-exit" and step.role == self.fail_role):
            self.running_steps.add(step.name)
        return step

    def running(self, step: StepRun) -> bool:
        return step.name in self.running_steps

    def signal_graceful(self, step: StepRun) -> None:
        if step.name in self.running_steps:
            self.running_steps.discard(step.name)
            self.stopped.append((step.name, "graceful"))

    def kill(self, step: StepRun) -> None:
        if step.name in self.running_steps:
            self.running_steps.discard(step.name)
            self.stopped.append((step.name, "killed"))


class InProcessProbe:
    """Readiness as the in-process launcher's steps dictate (see ops.readiness.Probe)."""

    def __init__(self, launcher: InProcessLauncher):
        self.launcher = launcher

    def scheduler(self, state) -> SchedulerInfo | None:
        launcher = self.launcher
        if launcher.fail_at == "interrupt":
            raise KeyboardInterrupt("injected interrupt")
        scheduler_runs = any(launcher.steps[name].role == "scheduler"
                             for name in launcher.running_steps)
        if launcher.fail_at == "readiness" or not scheduler_runs:
            return None
        return SchedulerInfo(address="inprocess://scheduler", dashboard_port=None,
                             scheduler_id="inprocess")

    def count(self, info: SchedulerInfo, since: int, pools: list[str] | None, wait_for: int,
              wait: float) -> int | None:
        launcher = self.launcher
        return sum(launcher.steps[name].ntasks * launcher.workers_per_task
                   for name in launcher.running_steps
                   if launcher.steps[name].role == "workers"
                   and (pools is None or launcher.steps[name].pool in pools))

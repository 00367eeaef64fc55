"""The Launcher interface: how a step (the scheduler, or a pool of workers) is started, watched
and stopped. The cluster logic (ops/) sees only this interface."""

from __future__ import annotations

import os
import signal
import time
from abc import ABC, abstractmethod
from pathlib import Path

from ..domain.step_plan import StepPlan
from ..runtime import proc
from ..runtime.record import StepRun


class Launcher(ABC):
    """One backend. Everything it needs (job id, the first node) is given at construction."""

    backend: str

    def __init__(self, job_id: str):
        self.job_id = job_id

    @abstractmethod
    def argv(self, plan: StepPlan) -> list[str]:
        """The full command line for a planned step (pure: used for --dry-run and to launch)."""

    def start(self, plan: StepPlan) -> StepRun:
        """Launch the planned step detached, leading its own process group: its run."""
        argv = self.argv(plan)
        started = time.time()
        child = proc.spawn(argv, log=Path(plan.log), env={**os.environ, **plan.env})
        try:
            leader = proc.identify(child.pid).to_dict()
        except BaseException:
            # not yet in any record: nothing else could ever stop it
            proc.signal_group(child.pid, signal.SIGKILL)
            raise
        return StepRun(plan=plan, argv=argv, started=started, pgid=child.pid, leader=leader,
                       task_pids=[child.pid])

    @abstractmethod
    def running(self, step: StepRun) -> bool:
        """True while any task of the step runs."""

    @abstractmethod
    def signal_graceful(self, step: StepRun) -> None:
        """Ask every task to shut down cleanly (SIGTERM), as the end of a job would."""

    @abstractmethod
    def kill(self, step: StepRun) -> None:
        """Kill what is left of the step, now."""

    def describe(self, step: StepRun) -> str:
        """A short where/how for status lines."""
        leader = step.leader_id.pid if step.leader_id else "?"
        return f"pid {leader}"

    def check_backend(self) -> str:
        """The version of what runs the steps (`Slurm 24.11.5`), "" when it has none worth
        saying; raises UsageError when it is unusable (a Slurm too old)."""
        return ""

    def current_nodes(self, het_group: int | None = None) -> list[str] | None:
        """The nodes the job (or its component `het_group`) has now, when they can shrink
        (Slurm's --no-kill); None: as recorded."""
        return None

    def stop(self, step: StepRun, grace: float = 10.0, hard: bool = False) -> str:
        """Stop a step: graceful signal, wait up to `grace`, then kill. Returns how it ended."""
        if not self.running(step):
            return "not running"
        if not hard:
            self.signal_graceful(step)
            if proc.wait_until(lambda: not self.running(step), grace, interval=0.1):
                return "stopped"
        self.kill(step)
        if proc.wait_until(lambda: not self.running(step), 15.0, interval=0.1):
            return "killed"
        return "still running after SIGKILL"

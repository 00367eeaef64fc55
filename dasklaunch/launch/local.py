"""The local backend: the same steps as under Slurm, run on this machine.

`dasklaunch.launch.localstep` stands in for srun: it runs N tasks with SLURM_* set, in one new
process group whose id is recorded, so stopping a step is one killpg, like scancel.
"""

from __future__ import annotations

import sys

from ..domain.step_plan import StepPlan
from ..runtime import proc
from ..runtime.record import StepRun
from .base import Launcher


def localstep_argv(step: StepPlan, python: str = sys.executable) -> list[str]:
    gpus = [f"--gpus-per-task={step.gpus_per_task}"] if step.gpus_per_task else []
    return [python, "-m", "dasklaunch.launch.localstep", f"--ntasks={step.ntasks}",
            f"--job-name={step.name}", *gpus, "--", *step.command]


class LocalLauncher(Launcher):
    backend = "local"

    def argv(self, step: StepPlan) -> list[str]:
        if step.role == "scheduler" or step.placement == "here":
            return list(step.command)
        return localstep_argv(step)

    def running(self, step: StepRun) -> bool:
        if step.pgid is None:
            return False
        # The leader (localstep, which waits for its tasks, or the scheduler itself) runs while
        # the step does: one lookup. The walk of the whole process table (13 ms on a busy
        # machine, twice a second while `up` waits) only once the leader is gone.
        leader = step.leader_id
        if leader is not None and proc.alive(leader):
            return True
        return bool(proc.group_members(step.pgid, not_before=step.started))

    def signal_graceful(self, step: StepRun) -> None:
        # Only the step's leader: localstep passes the signal on to each task once, as srun
        # does. Signalling the whole group as well would give every task a second SIGTERM a
        # moment later, and `dask worker` restores the default handler on the first one, so
        # the second kills it before it has closed its nanny (more often on a loaded machine).
        leader = step.leader_id
        if leader is not None and proc.alive(leader):
            proc.signal_process(leader, proc.SIGTERM)
        elif step.pgid is not None:
            proc.signal_group(step.pgid, proc.SIGTERM, not_before=step.started)

    def kill(self, step: StepRun) -> None:
        if step.pgid is not None:
            proc.signal_group(step.pgid, proc.SIGKILL, not_before=step.started)

    def describe(self, step: StepRun) -> str:
        alive = len(proc.group_members(step.pgid, step.started)) if step.pgid else 0
        return f"process group {step.pgid} ({alive} processes)"

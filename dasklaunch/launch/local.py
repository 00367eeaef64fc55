"""The local backend: the same steps as under Slurm, run on this machine.

`dasklaunch.launch.localstep` stands in for srun: it runs N tasks with SLURM_* set, in one new
process group whose id is recorded, so stopping a step is one killpg, like scancel.
"""

from __future__ import annotations

import sys

from ..runtime import proc
from ..runtime.record import Step
from .base import Launcher


def localstep_argv(step: Step, python: str = sys.executable) -> list[str]:
    return [python, "-m", "dasklaunch.launch.localstep", f"--ntasks={step.ntasks}",
            f"--job-name={step.name}", "--", *step.command]


class LocalLauncher(Launcher):
    backend = "local"

    def argv(self, step: Step) -> list[str]:
        if step.role == "scheduler":
            return list(step.command)
        return localstep_argv(step)

    def running(self, step: Step) -> bool:
        if step.pgid is None:
            return False
        return bool(proc.group_members(step.pgid, not_before=step.started))

    def signal_graceful(self, step: Step) -> None:
        if step.pgid is not None:
            proc.signal_group(step.pgid, proc.SIGTERM, not_before=step.started)

    def kill(self, step: Step) -> None:
        if step.pgid is not None:
            proc.signal_group(step.pgid, proc.SIGKILL, not_before=step.started)

    def describe(self, step: Step) -> str:
        alive = len(proc.group_members(step.pgid, step.started)) if step.pgid else 0
        return f"process group {step.pgid} ({alive} processes)"

"""The local backend: the same steps as under Slurm, run on this machine.

`dasklaunch.localstep` stands in for srun: it runs N tasks with SLURM_* set, in one new process
group whose id is recorded, so stopping a step is one killpg, like scancel.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .. import proc
from .base import Launcher, Step, now


def localstep_argv(step: Step, python: str = sys.executable) -> list[str]:
    return [python, "-m", "dasklaunch.localstep", f"--ntasks={step.ntasks}",
            f"--job-name={step.name}", "--", *step.command]


class LocalLauncher(Launcher):
    backend = "local"

    def argv(self, step: Step) -> list[str]:
        if step.role == "scheduler":
            return list(step.command)
        return localstep_argv(step)

    def start(self, step: Step) -> Step:
        step.argv = self.argv(step)
        step.started = now()
        env = dict(os.environ)
        env.update(step.env)
        child = proc.spawn(step.argv, log=Path(step.log), env=env)
        step.pgid = child.pid
        step.leader = proc.identify(child.pid).to_dict()
        step.task_pids = [child.pid]
        return step

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

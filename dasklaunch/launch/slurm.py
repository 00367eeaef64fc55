"""The Slurm backend: srun/scancel/squeue argv built by pure functions, run through `proc`.

Steps are named uniquely (`--job-name` on srun names the step), so their ids are found with
`squeue -s` by name rather than by parsing srun's output.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from .. import proc
from .base import Launcher, Step, now


def scontrol_hostnames(nodelist: str) -> list[str]:
    result = proc.run(["scontrol", "show", "hostnames", nodelist], timeout=30)
    return result.stdout.split()


def scontrol_job(job_id: str) -> str:
    return proc.run(["scontrol", "show", "job", "--oneliner", job_id], timeout=30).stdout


def srun_argv(step: Step, job_id: str, nodelist: str | None = None) -> list[str]:
    """srun for one step. --overlap: the scheduler step and the worker step share CPUs."""
    argv = ["srun", f"--jobid={job_id}", f"--job-name={step.name}", "--overlap"]
    if step.placement == "first-node":
        argv += ["--nodes=1", "--ntasks=1"]
        if nodelist:
            argv.append(f"--nodelist={nodelist}")
        # one task: if it dies the step is over anyway
        argv.append("--kill-on-bad-exit=1")
    else:
        # --no-kill: a failed node ends only its own workers (in a job submitted with
        # --no-kill); the pool on the other nodes keeps working.
        argv += [f"--nodes={step.nnodes}", f"--ntasks={step.ntasks}"]
        if step.placement == "per-node":
            argv.append("--ntasks-per-node=1")
        argv += ["--kill-on-bad-exit=0", "--no-kill"]
    return argv + list(step.command)


def guard_argv(job_id: str, command: list[str], python: str = sys.executable) -> list[str]:
    """Wrap a process that runs outside any step so that it ends with the job."""
    return [python, "-m", "dasklaunch.guard", "--job-id", job_id, "--", *command]


def squeue_steps_argv(job_id: str) -> list[str]:
    return ["squeue", "--noheader", "--steps", f"--jobs={job_id}", "--format=%i %j"]


def scancel_argv(step_id: str, signal: str | None = None) -> list[str]:
    argv = ["scancel"]
    if signal:
        argv.append(f"--signal={signal}")
    return argv + [step_id]


def parse_steps(output: str) -> dict[str, str]:
    """`squeue -s -o '%i %j'` lines -> {step name: JOB.STEP}."""
    steps = {}
    for line in output.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            steps[parts[1].strip()] = parts[0]
    return steps


class SlurmLauncher(Launcher):
    backend = "slurm"

    def __init__(self, job_id: str, first_node: str | None = None):
        super().__init__(job_id)
        self.first_node = first_node

    def argv(self, step: Step) -> list[str]:
        if step.placement == "here":
            return guard_argv(self.job_id, step.command)
        return srun_argv(step, self.job_id, self.first_node)

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

    def current_nodes(self) -> list[str] | None:
        """The job's nodes now: Slurm drops a failed node from a --no-kill job."""
        try:
            record = scontrol_job(self.job_id)
        except Exception:  # slurmctld unreachable: keep the recorded layout
            return None
        match = re.search(r"\bNodeList=(\S+)", record)
        if not match or match.group(1) in ("(null)", ""):
            return None
        return scontrol_hostnames(match.group(1))

    def live_steps(self) -> dict[str, str] | None:
        try:
            result = proc.run(squeue_steps_argv(self.job_id), timeout=20)
        except Exception:  # slurmctld unreachable or job gone: no answer, not "no steps"
            return None
        return parse_steps(result.stdout)

    def step_id(self, step: Step) -> str | None:
        if step.placement == "here":
            return None
        if step.step_id is None:
            steps = self.live_steps()
            if steps:
                step.step_id = steps.get(step.name)
        return step.step_id

    def running(self, step: Step) -> bool:
        leader = step.leader_id
        if leader is not None and proc.alive(leader):
            return True
        if step.placement == "here":
            return False
        # srun is gone (killed, or started from another host): ask Slurm about the step itself
        steps = self.live_steps()
        return bool(steps) and step.name in steps

    def signal_graceful(self, step: Step) -> None:
        if step.placement == "here":
            if step.pgid is not None:
                proc.signal_group(step.pgid, proc.SIGTERM, not_before=step.started)
            return
        step_id = self.step_id(step)
        if step_id:
            # scancel may exit 225 although the signal was delivered (a race with a fast exit):
            # the caller checks the step itself.
            proc.run(scancel_argv(step_id, "TERM"), check=False, timeout=20)
        elif step.pgid is not None:
            proc.signal_group(step.pgid, proc.SIGTERM, not_before=step.started)

    def kill(self, step: Step) -> None:
        step_id = self.step_id(step)
        if step_id:
            proc.run(scancel_argv(step_id), check=False, timeout=20)
        if step.pgid is not None:
            proc.signal_group(step.pgid, proc.SIGKILL, not_before=step.started)

    def describe(self, step: Step) -> str:
        if step.placement == "here":
            return f"process {step.leader_id.pid if step.leader_id else '?'} (outside any step)"
        return f"step {self.step_id(step) or step.name}"

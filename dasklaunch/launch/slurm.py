"""The Slurm backend: steps run with srun inside the allocation. It only calls into slurm/:
command lines are built in slurm.commands and run by slurm.queue.

Steps are named uniquely (`--job-name` on srun names the step), so their ids are found with
`squeue -s` by name rather than by parsing srun's output.
"""

from __future__ import annotations

import sys

from ..domain.container_argv import PODMAN_START, podman_names, podman_remove_argv
from ..domain.step_plan import StepPlan
from ..runtime import proc
from ..runtime.record import StepRun
from ..slurm import queue
from ..slurm.commands import srun_argv, srun_per_node_argv
from .base import Launcher


def guard_argv(job_id: str, command: list[str], python: str = sys.executable) -> list[str]:
    """Wrap a process that runs outside any step so that it ends with the job."""
    return [python, "-m", "dasklaunch.launch.guard", "--job-id", job_id, "--", *command]


def podman_cleanup_argv(step: StepRun, step_id: str, job_id: str,
                        first_node: str | None = None) -> list[str] | None:
    """`podman rm --force` of a step's containers on each of its nodes (in job `job_id`);
    None for a step whose tasks do not run `podman run` through PODMAN_START."""
    if PODMAN_START not in step.command or step.placement == "here":
        return None
    job, _, number = step_id.partition(".")   # the names carry the step's own job id
    nodelist = first_node if step.placement == "first-node" else step.nodelist
    return srun_per_node_argv(job_id, step.nnodes, nodelist, step.het_group,
                              podman_remove_argv(podman_names(job, number, step.ntasks)))


class SlurmLauncher(Launcher):
    backend = "slurm"

    def __init__(self, job_id: str, first_node: str | None = None, het: bool = False):
        super().__init__(job_id)
        self.first_node = first_node
        self.het = het
        self._step_jobs: str | None = None

    def _steps(self) -> dict[str, str] | None:
        """The job's live steps, those of every component of a heterogeneous job included."""
        if self._step_jobs is None:
            self._step_jobs = ",".join(queue.component_ids(self.job_id)) if self.het \
                else self.job_id
        return queue.steps(self._step_jobs)

    def argv(self, step: StepPlan) -> list[str]:
        if step.placement == "here":
            return guard_argv(self.job_id, step.command)
        return srun_argv(step, self.job_id, self.first_node)

    def check_backend(self) -> str:
        return f"Slurm {queue.version()[2]}"

    def current_nodes(self, het_group: int | None = None) -> list[str] | None:
        return queue.job_nodes(self.job_id, het_group)

    def step_id(self, step: StepRun) -> str | None:
        if step.placement == "here":
            return None
        if step.step_id is None:
            steps = self._steps()
            if steps:
                step.step_id = steps.get(step.name)
        return step.step_id

    def running(self, step: StepRun) -> bool:
        leader = step.leader_id
        if leader is not None and proc.alive(leader):
            return True
        if step.placement == "here":
            return False
        # srun is gone (killed, or started from another host): ask Slurm about the step itself
        steps = self._steps()
        return bool(steps) and step.name in steps

    def signal_graceful(self, step: StepRun) -> None:
        step_id = self.step_id(step)
        leader = step.leader_id
        if step_id:
            queue.cancel(step_id, signal="TERM")
        elif leader is not None and proc.alive(leader):
            # the guard (or srun) passes it on once; see LocalLauncher.signal_graceful
            proc.signal_process(leader, proc.SIGTERM)
        elif step.pgid is not None:
            proc.signal_group(step.pgid, proc.SIGTERM, not_before=step.started)

    def kill(self, step: StepRun) -> None:
        step_id = self.step_id(step)
        if step_id:
            queue.cancel(step_id)
        if step.pgid is not None:
            proc.signal_group(step.pgid, proc.SIGKILL, not_before=step.started)
        if step_id:
            self.remove_containers(step, step_id)

    def remove_containers(self, step: StepRun, step_id: str) -> None:
        """Podman's containers run under conmon, outside what scancel ends: each is removed by
        its name (domain/container_argv.PODMAN_NAME) on the step's nodes: a second line behind
        the watcher in each container (launch/container_watch.py), which ends it already."""
        argv = podman_cleanup_argv(step, step_id, self.job_id, self.first_node)
        if argv:
            queue.run_quietly(argv)

    def describe(self, step: StepRun) -> str:
        if step.placement == "here":
            return f"process {step.leader_id.pid if step.leader_id else '?'} (outside any step)"
        return f"step {self.step_id(step) or step.name}"

"""Pure argv builders and output parsers for srun, scancel, squeue, sbatch and scontrol.

Nothing here runs a process: `slurm.queue` runs these command lines, and tests check them
against exact lists. One format per question: `%i %j` for a job's steps, `%i %T %e %r` for jobs
(id, state, end time), so every caller reads squeue's answer through one parser.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..domain.job_limits import ASSOC_FIELDS, QOS_FIELDS, QUEUE_FORMAT
from ..errors import CommandError

# The oldest Slurm dasklaunch supports: steps that share an allocation's CPUs need
# `srun --overlap`, which Slurm 20.11 introduced (and made necessary).
OLDEST_SUPPORTED = (20, 11)

JOB_FORMAT = "%i %T %e %r"  # the reason last: it may hold spaces
STEP_FORMAT = "%i %j"

# States in which a job no longer runs anything (squeue shows them briefly, then forgets it).
ENDED_STATES = frozenset({"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL",
                          "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"})


class SrunSpec(Protocol):
    """What srun needs to know about one step (domain.step_plan.StepPlan has it)."""

    name: str
    placement: str     # "first-node" | "tasks" | "per-node"
    ntasks: int
    nnodes: int
    command: Sequence[str]
    nodelist: str | None
    het_group: int | None
    gpus_per_node: int
    gpus_per_task: int
    cpus_per_task: int | None


def srun_argv(step: SrunSpec, job_id: str, nodelist: str | None = None) -> list[str]:
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
        if getattr(step, "het_group", None) is not None:
            argv.append(f"--het-group={step.het_group}")
        argv += [f"--nodes={step.nnodes}", f"--ntasks={step.ntasks}"]
        if getattr(step, "nodelist", None):
            argv.append(f"--nodelist={step.nodelist}")
        if step.placement == "per-node":
            argv.append("--ntasks-per-node=1")
        if getattr(step, "cpus_per_task", None):
            # what a step gets without it differs by version: 22.05's srun gives each step
            # every CPU of the job's nodes, 23.11+ inherits the job's --cpus-per-task again
            argv.append(f"--cpus-per-task={step.cpus_per_task}")
        if getattr(step, "gpus_per_task", 0):
            # one worker per task, its GPUs chosen by Slurm (CUDA_VISIBLE_DEVICES per task);
            # the same number of tasks on every node
            argv += [f"--ntasks-per-node={step.ntasks // max(1, step.nnodes)}",
                     f"--gpus-per-task={step.gpus_per_task}"]
        elif getattr(step, "gpus_per_node", 0):
            # the node's GPUs for the step's one task per node (Slurm sets
            # CUDA_VISIBLE_DEVICES); the node launcher splits them among its workers
            argv.append(f"--gpus-per-node={step.gpus_per_node}")
        argv += ["--kill-on-bad-exit=0", "--no-kill"]
    # a container's (Pyxis: --container-image=..., domain/container_argv.py)
    return argv + list(getattr(step, "srun_options", ())) + list(step.command)


def srun_version_argv() -> list[str]:
    return ["srun", "--version"]


def srun_help_argv() -> list[str]:
    return ["srun", "--help"]


def has_pyxis(help_text: str) -> bool:
    """Whether `srun --help` lists Pyxis's options (a SPANK plugin adds them to srun's)."""
    return re.search(r"^\s*--container-image[=\s]", help_text, re.MULTILINE) is not None


def srun_per_node_argv(job_id: str, nnodes: int, nodelist: str | None, het_group: int | None,
                       command: Sequence[str]) -> list[str]:
    """One task on each of a step's nodes, after the step: the removal of its Podman
    containers, which outlive a killed step (domain/container_argv.podman_remove_argv)."""
    argv = ["srun", f"--jobid={job_id}", "--job-name=dl-cleanup", "--overlap"]
    argv += [f"--het-group={het_group}"] if het_group is not None else []
    argv += [f"--nodes={nnodes}", f"--ntasks={nnodes}", "--ntasks-per-node=1"]
    argv += [f"--nodelist={nodelist}"] if nodelist else []
    return [*argv, "--kill-on-bad-exit=0", *command]


def srun_once_argv(job_id: str, options: Sequence[str], command: Sequence[str]) -> list[str]:
    """One task on one node of the job, in a step beside the others: `up`'s check of a
    container image with Pyxis (`options`: its srun options)."""
    return ["srun", f"--jobid={job_id}", "--job-name=dl-image-check", "--overlap",
            "--nodes=1", "--ntasks=1", "--kill-on-bad-exit=1", *options, *command]


def parse_version(output: str) -> tuple[int, int, str]:
    """`srun --version` prints `slurm 22.05.8` (or `slurm-wlm 24.11.5`): (major, minor, text)."""
    match = re.search(r"\b(\d+)\.(\d+)(?:\.\d+)?\S*", output)
    if not match:
        raise CommandError(f"srun --version printed no version: {output.strip()!r}")
    return int(match.group(1)), int(match.group(2)), match.group(0)


def squeue_steps_argv(job_id: str) -> list[str]:
    return ["squeue", "--noheader", "--steps", f"--jobs={job_id}", f"--format={STEP_FORMAT}"]


def squeue_jobs_argv(job_ids: Iterable[str]) -> list[str]:
    """One query for any number of jobs."""
    return ["squeue", "--noheader", f"--jobs={','.join(job_ids)}", f"--format={JOB_FORMAT}"]


def scancel_argv(*ids: str, signal: str | None = None, batch_shell: bool = False) -> list[str]:
    """scancel of jobs or steps (JOB.STEP); with `signal`, only that signal is sent; with
    `batch_shell`, only to the job's batch shell (what --signal=B:SIG@TIME does)."""
    argv = ["scancel"]
    if signal:
        argv.append(f"--signal={signal}")
    if batch_shell:
        argv.append("--batch")
    return argv + list(ids)


def squeue_ping_argv() -> list[str]:
    """The cheapest question slurmctld answers: this user's jobs, ids only."""
    return ["squeue", "--noheader", "--me", "--format=%i"]


def worker_job_step_argv(cpus: int) -> list[str]:
    """How a worker-only job runs its workers: in one step with all the job's CPUs (and, as a
    plain step, its GPUs), not in the batch shell, so that `scancel --signal=TERM JOB` and the
    walltime `--signal` reach them (Slurm signals a job's steps, not its batch shell)."""
    return ["srun", "--ntasks=1", "--nodes=1", f"--cpus-per-task={cpus}", "--kill-on-bad-exit=1"]


def walltime_signal_directive(seconds: float) -> str:
    """sbatch's --signal: SIGTERM to the job's steps `seconds` before its walltime."""
    return f"--signal=TERM@{max(1, round(seconds))}"


def sbatch_argv(script: str) -> list[str]:
    return ["sbatch", "--parsable", script]


def scontrol_hostnames_argv(nodelist: str) -> list[str]:
    return ["scontrol", "show", "hostnames", nodelist]


def scontrol_job_argv(job_id: str) -> list[str]:
    return ["scontrol", "show", "job", "--oneliner", job_id]


def parse_steps(output: str) -> dict[str, str]:
    """`squeue -s -o '%i %j'` lines -> {step name: JOB.STEP}."""
    steps = {}
    for line in output.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            steps[parts[1].strip()] = parts[0]
    return steps


@dataclass(frozen=True)
class JobInfo:
    state: str
    end_time: float | None      # epoch seconds; None when unlimited or unknown
    reason: str = ""            # why it waits (Resources, Priority, QOSMaxJobsPerUserLimit)

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES


def parse_end_time(text: str) -> float | None:
    try:
        return datetime.datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:  # N/A, Unknown, NONE
        return None


def parse_jobs(output: str) -> dict[str, JobInfo]:
    """`squeue -o '%i %T %e %r'` lines -> {job id: JobInfo}."""
    jobs = {}
    for line in output.splitlines():
        parts = line.split(maxsplit=3)
        if len(parts) >= 2:
            end = parse_end_time(parts[2]) if len(parts) > 2 else None
            reason = parts[3].strip() if len(parts) > 3 else ""
            jobs[parts[0]] = JobInfo(state=parts[1], end_time=end,
                                     reason="" if reason == "None" else reason)
    return jobs


def unknown_job(stderr: str) -> bool:
    """squeue/scancel's answer for a job Slurm no longer knows (vs. Slurm not answering)."""
    return "Invalid job id" in stderr


_JOB_ID = re.compile(r"(\d+)(?:;\S+)?")


def parse_job_id(output: str) -> str:
    """`sbatch --parsable` prints `JOBID` or `JOBID;CLUSTER`."""
    lines = output.strip().splitlines()
    match = _JOB_ID.fullmatch(lines[-1].strip()) if lines else None
    if not match:
        raise CommandError(f"sbatch --parsable printed no job id: {output.strip()!r}")
    return match.group(1)


def parse_het_job_ids(job_record: str) -> list[str]:
    """The job ids of every component of a heterogeneous job (`HetJobIdSet=17-18` in
    `scontrol show job -o`): each component's steps are listed under its own id. Empty for a
    job that is not heterogeneous."""
    match = re.search(r"\bHetJobIdSet=([0-9,\-]+)", job_record)
    if not match:
        return []
    ids: list[str] = []
    for part in match.group(1).split(","):
        first, _, last = part.partition("-")
        if first.isdigit():
            ids += [str(n) for n in range(int(first), int(last or first) + 1)]
    return ids


def parse_nodelist(job_record: str, het_group: int | None = None) -> str | None:
    """The NodeList of `scontrol show job -o`; None when the job has none (or it is gone).

    A heterogeneous job's record has a line per component: `het_group` picks the line of that
    component (HetJobOffset=N), as the job's own NodeList is only its first component's."""
    lines = job_record.splitlines() or [""]
    if het_group is not None:
        lines = [line for line in lines
                 if re.search(rf"\bHetJobOffset={het_group}\b", line)] or [""]
    match = re.search(r"\bNodeList=(\S+)", lines[0])
    if not match or match.group(1) in ("(null)", ""):
        return None
    return match.group(1)


_SLURM_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_job_memory(job_record: str, cpus_on_node: int) -> int | None:
    """Memory per node from `scontrol show job -o` (MinMemoryNode=2000M / MinMemoryCPU=1G).

    salloc exports SLURM_MEM_PER_NODE only when --mem was given, but the job still has a limit
    (DefMemPerNode, DefMemPerCPU): the job record is where it shows."""
    for key, per_cpu in (("MinMemoryNode", False), ("MinMemoryCPU", True)):
        match = re.search(rf"\b{key}=(\d+(?:\.\d+)?)([KMGT]?)\b", job_record)
        if match and float(match.group(1)) > 0:
            value = int(float(match.group(1)) * _SLURM_UNITS.get(match.group(2) or "M", 2**20))
            return value * cpus_on_node if per_cpu else value
    return None


# ------------------------------------------------------------------ accounting (job_limits)

def sacctmgr_qos_argv() -> list[str]:
    return ["sacctmgr", "--noheader", "--parsable2", "show", "qos",
            f"format={','.join(QOS_FIELDS)}"]


def sacctmgr_assoc_argv(user: str, cluster: str | None) -> list[str]:
    where = [f"users={user}"] + ([f"clusters={cluster}"] if cluster else [])
    return ["sacctmgr", "--noheader", "--parsable2", "show", "assoc", "where", *where,
            f"format={','.join(ASSOC_FIELDS)}"]


def sacctmgr_user_argv(user: str) -> list[str]:
    return ["sacctmgr", "--noheader", "--parsable2", "show", "user", user,
            "format=DefaultAccount"]


def squeue_live_argv() -> list[str]:
    """Every job not ended yet, of every user (group limits count them all); a pending array's
    tasks one by one, as Slurm counts them."""
    return ["squeue", "--noheader", "--all", "--array", f"--format={QUEUE_FORMAT}"]


def scontrol_config_argv() -> list[str]:
    return ["scontrol", "show", "config"]

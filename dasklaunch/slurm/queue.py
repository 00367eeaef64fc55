"""Runs Slurm's commands (built and parsed in `slurm.commands`) through runtime.proc.

Every question that can be asked about several jobs is one call for all of them (as
dask-gateway's `check_jobs` and submitit's watcher do). Queries answer None when Slurm does not
answer (slurmctld down, a timeout), which callers must not mistake for "no such job".
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

from ..errors import CommandError, UsageError
from ..runtime import proc
from . import commands as cmd
from .commands import JobInfo


def installed() -> bool:
    """Whether Slurm's client commands are on PATH."""
    return shutil.which(cmd.srun_version_argv()[0]) is not None


def has_pyxis() -> bool:
    """Whether srun here takes Pyxis's --container-image (asked once per `up`)."""
    try:
        result = proc.run(cmd.srun_help_argv(), check=False, timeout=30)
    except CommandError:
        return False
    return cmd.has_pyxis(result.stdout + result.stderr)


def hostnames(nodelist: str) -> list[str]:
    return proc.run(cmd.scontrol_hostnames_argv(nodelist), timeout=30).stdout.split()


def job_record(job_id: str) -> str:
    return proc.run(cmd.scontrol_job_argv(job_id), timeout=30).stdout


def job_nodes(job_id: str, het_group: int | None = None) -> list[str] | None:
    """The job's nodes now (Slurm drops a failed node from a --no-kill job), or those of its
    component `het_group`; None if unknown."""
    try:
        nodelist = cmd.parse_nodelist(job_record(job_id), het_group)
        return hostnames(nodelist) if nodelist else None
    except CommandError:
        return None


def component_ids(job_id: str) -> list[str]:
    """The ids under which the job's steps are listed: its own, or, for a heterogeneous job,
    each component's (a step of component 1 of job 17 is 18.N). [job_id] when Slurm does not
    answer."""
    try:
        return cmd.parse_het_job_ids(job_record(job_id)) or [job_id]
    except CommandError:
        return [job_id]


def steps(job_id: str) -> dict[str, str] | None:
    """{step name: JOB.STEP} of the live steps of job `job_id` (ids, comma-separated: each
    component of a heterogeneous job); None when Slurm does not answer."""
    try:
        result = proc.run(cmd.squeue_steps_argv(job_id), timeout=20)
    except CommandError:
        return None
    return cmd.parse_steps(result.stdout)


def jobs(job_ids: Iterable[str]) -> dict[str, JobInfo] | None:
    """{job id: JobInfo} for the jobs Slurm still lists, in one squeue call; None when Slurm
    does not answer. A job Slurm no longer knows is simply absent."""
    ids = [str(j) for j in job_ids]
    if not ids:
        return {}
    try:
        result = proc.run(cmd.squeue_jobs_argv(ids), timeout=20, check=False)
    except CommandError:
        return None
    if result.returncode != 0 and not cmd.unknown_job(result.stderr):
        return None
    return cmd.parse_jobs(result.stdout)


def reachable() -> bool:
    """Whether slurmctld answers (squeue works) from here."""
    try:
        return proc.run(cmd.squeue_ping_argv(), check=False, timeout=20).returncode == 0
    except CommandError:
        return False


def job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """{job id: state} for the jobs Slurm still lists ({} when it does not answer)."""
    return {job: info.state for job, info in (jobs(job_ids) or {}).items()}


def job_gone(job_id: str) -> bool:
    """True when Slurm says the job has ended; False while it runs or Slurm does not answer."""
    found = jobs([job_id])
    if found is None:
        return False
    info = found.get(job_id)
    return info is None or info.ended


def end_time(job_id: str) -> float | None:
    """When Slurm will end the job (epoch seconds); None when unlimited or unknown."""
    info = (jobs([job_id]) or {}).get(job_id)
    return info.end_time if info else None


def cancel(*ids: str, signal: str | None = None, batch_shell: bool = False) -> int:
    """scancel; its exit code, never raised: scancel --signal may exit 225 although the signal
    was delivered (a race with a fast exit), so callers check the job or step itself."""
    argv = cmd.scancel_argv(*ids, signal=signal, batch_shell=batch_shell)
    try:
        return proc.run(argv, check=False, timeout=20).returncode
    except CommandError:
        return 1


def run_quietly(argv: list[str], timeout: float = 60.0) -> int:
    """A command whose failure changes nothing for the caller (a cleanup): its exit code."""
    try:
        return proc.run(argv, check=False, timeout=timeout).returncode
    except CommandError:
        return 1


def submit(script: Path | str, timeout: float = 60.0) -> str:
    """sbatch a script file; the job id."""
    return cmd.parse_job_id(proc.run(cmd.sbatch_argv(str(script)), timeout=timeout).stdout)


def version() -> tuple[int, int, str]:
    """The Slurm version srun reports; UsageError on one older than dasklaunch supports."""
    major, minor, text = cmd.parse_version(proc.run(cmd.srun_version_argv(), timeout=30).stdout)
    if (major, minor) < cmd.OLDEST_SUPPORTED:
        oldest = ".".join(map(str, cmd.OLDEST_SUPPORTED))
        raise UsageError(f"Slurm {text} is too old: dasklaunch needs Slurm {oldest} or newer "
                         f"(its steps share the allocation's CPUs with srun --overlap)")
    return major, minor, text

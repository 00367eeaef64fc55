"""The notebook cluster's own Slurm job: submitted from a login node, it runs `dasklaunch up`
(the scheduler in its own step, plus the job's first pool) and then `dasklaunch supervise`
until the cluster is brought down. It is `batch`'s script with `supervise` as its command, so
the walltime, scancel and `close()` all end it the same way: SIGTERM to the batch shell, whose
trap runs `dasklaunch down` on the job's own node.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..domain.sbatch import BatchSpec, render
from ..domain.settings import UpOptions
from ..domain.step_env import SCHEDULER_JOB_VARIABLE
from ..domain.up_argv import up_argv
from ..errors import NotUpError, StartupError, StartupTimeout, StateDirError, UsageError
from ..runtime import schedfile
from ..runtime.state import StateDir
from ..slurm import queue
from .batch import (
    check_up_options,
    installed_command,
    job_state_dir,
    jobqueue_defaults,
    node_local_install,
    prologue_defaults,
)

# How often the queue is asked while the job waits or starts: light on slurmctld.
POLL_SECONDS = 2.0
SUPERVISE_INTERVAL = "5"


@dataclass(frozen=True)
class JobRequest:
    """The scheduler job's own request; what is not given comes from jobqueue.yaml (account,
    queue, walltime) as for `batch`."""

    cores: int = 1
    memory: str | None = None          # per node, as sbatch --mem takes it
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    job_name: str = "dasklaunch-cluster"
    sbatch_args: tuple[str, ...] = ()
    prologue: tuple[str, ...] | None = None
    state_dir: str | None = None


def batch_spec(opts: UpOptions, given: set[str], request: JobRequest) -> BatchSpec:
    """The scheduler job's script, as `batch` would render it for `up OPTIONS -- supervise`."""
    command = installed_command()
    jobqueue = jobqueue_defaults({"time": request.time, "partition": request.partition,
                                  "account": request.account})
    prologue = prologue_defaults(list(request.prologue) if request.prologue is not None
                                 else None)
    up_args = up_argv(opts, given)
    # `up` in the job records that it is a notebook cluster's own job (from_job may end it)
    prologue = {**prologue, "prologue": (*prologue["prologue"],
                                         f"export {SCHEDULER_JOB_VARIABLE}=1")}
    if request.state_dir:
        up_args = ["--state-dir", request.state_dir, *up_args]
    return BatchSpec(
        command=(*command, "supervise", "--interval", SUPERVISE_INTERVAL), dasklaunch=command,
        up_args=tuple(up_args), nodes="1", ntasks_per_node=1, cpus_per_task=request.cores,
        mem=request.memory, time=request.time, partition=request.partition,
        account=request.account, qos=request.qos, constraint=request.constraint,
        job_name=request.job_name, sbatch_args=request.sbatch_args,
        state_dir=request.state_dir, output=None, **prologue, **jobqueue)


def check_shared(path: Path, environ: dict[str, str] | None = None,
                 mounts_text: str | None = None) -> None:
    """Refuse a state dir the compute nodes cannot see (where that can be told): the job
    writes its scheduler file and certificates there and this process reads them."""
    from ..domain.scratch import node_local_path
    from .local_directory import node_mounts

    why = node_local_path(str(path), node_mounts(mounts_text) or [],
                          os.environ if environ is None else environ)
    if why is not None:
        raise StateDirError(f"state dir {path} is {why}, which the compute nodes do not share: "
                            f"set SCRATCH (or DASKLAUNCH_STATE_DIR, or state_dir=) to a shared "
                            f"file system")


def submit(opts: UpOptions, given: set[str], request: JobRequest,
           say: Callable[[str], None]) -> tuple[str, StateDir]:
    """Check everything `up` would refuse in the job, then submit it: (job id, state dir)."""
    if not queue.installed() or not queue.reachable():
        raise UsageError("no Slurm reachable from here (sbatch/squeue missing or slurmctld "
                         "not answering); on a laptop, use backend='local'")
    if opts.backend not in ("auto", "slurm"):
        raise UsageError(f"the scheduler's job runs the Slurm backend, not {opts.backend!r}")
    spec = batch_spec(opts, given, request)
    check_up_options(replace(opts, backend="auto"), spec, given)
    where = job_state_dir("0", request.state_dir)
    check_shared(where)
    # the job's output goes beside its state dir, which `up` creates only once the job runs
    where.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    spec = replace(spec, output=str(where.parent / f"{request.job_name}-%j.out"))
    if warning := node_local_install(spec.dasklaunch):
        say(f"warning: {warning}")
    from .batch import submit as sbatch

    job_id = sbatch(render(spec))
    state = StateDir(job_state_dir(job_id, request.state_dir))
    say(f"submitted the scheduler's job {job_id} (state dir {state.path})")
    return job_id, state


def wait_until_up(job_id: str, state: StateDir, say: Callable[[str], None], *,
                  job_name: str = JobRequest.job_name, timeout: float | None = None,
                  started_timeout: float = 300.0) -> None:
    """Wait, saying what Slurm says while the job waits, until `up` in the job has finished
    (the record says up and the scheduler file names a scheduler). `timeout` bounds the whole
    wait (None: as long as the job waits in the queue); once the job runs, `up` has
    `started_timeout` seconds."""
    start = time.monotonic()
    running_since = None
    said = None
    while True:
        info = (queue.jobs([job_id]) or {}).get(job_id)
        if info is not None and info.state == "RUNNING":
            running_since = running_since or time.monotonic()
            record = _record(state)
            if record is not None and record.status == "up" and schedfile.read(
                    state.scheduler_file) is not None:
                return
            if record is not None and record.status in ("failed", "down"):
                raise StartupError(f"the scheduler's job {job_id} could not bring the cluster "
                                   f"up: see its logs (dasklaunch logs --state-dir "
                                   f"{state.path})")
        line = _state_line(job_id, info)
        if line != said:
            say(line)
            said = line
        if info is not None and info.ended or info is None and running_since is not None:
            output = state.path.parent / f"{job_name}-{job_id}.out"
            final = info.state if info is not None else "gone"
            raise StartupError(f"the scheduler's job {job_id} ended ({final}) before its "
                               f"cluster was up; its output: {output}")
        waited = time.monotonic() - start
        if timeout is not None and waited > timeout:
            raise StartupTimeout(f"the scheduler's job {job_id} was not up after {waited:.0f} s "
                                 f"({line}); it is cancelled")
        if running_since is not None and time.monotonic() - running_since > started_timeout:
            raise StartupTimeout(f"the scheduler's job {job_id} runs but its cluster was not up "
                                 f"after {started_timeout:.0f} s: see dasklaunch logs "
                                 f"--state-dir {state.path}")
        time.sleep(POLL_SECONDS)


def _state_line(job_id: str, info) -> str:
    if info is None:
        return f"job {job_id}: not listed by squeue yet"
    if info.state == "RUNNING":
        return f"job {job_id} is RUNNING: starting the scheduler and the job's workers"
    return f"job {job_id} is {info.state}" + (f" ({info.reason})" if info.reason else "")


def _record(state: StateDir):
    try:
        return state.read_record()
    except StateDirError:
        return None


def end_job(job_id: str, timeout: float = 120.0) -> bool:
    """Bring the scheduler's job to its end the way its walltime does: SIGTERM to the batch
    shell, whose trap brings the cluster down (worker jobs included) on the job's node. A job
    still listed after `timeout` is cancelled outright. True when it left the queue."""
    found = queue.jobs([job_id])
    info = (found or {}).get(job_id)
    if found is not None and (info is None or info.ended):
        return True
    if info is None or info.state != "RUNNING":
        # a job still in the queue has no shell to signal, and no cluster to bring down
        queue.cancel(job_id)
        return queue.job_gone(job_id)
    queue.cancel(job_id, signal="TERM", batch_shell=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if queue.job_gone(job_id):
            return True
        time.sleep(1.0)
    queue.cancel(job_id)
    return queue.job_gone(job_id)


def job_ended(job_id: str) -> str | None:
    """The scheduler job's final state once it has ended (or 'gone'); None while it runs or
    when Slurm does not answer."""
    found = queue.jobs([job_id])
    if found is None:
        return None
    info = found.get(job_id)
    if info is None:
        return "gone"
    return info.state if info.ended else None


def attach(job_id: str, state_dir: str | None) -> StateDir:
    """The state dir of a running cluster job (from_job)."""
    state = StateDir(job_state_dir(str(job_id), state_dir))
    record = _record(state)
    if record is None or schedfile.read(state.scheduler_file) is None:
        raise NotUpError(f"no cluster of job {job_id} in {state.path}")
    if record.job_id != str(job_id):
        raise NotUpError(f"state dir {state.path} holds job {record.job_id}, not job {job_id}")
    return state

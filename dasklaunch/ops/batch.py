"""`batch`: check the `up` options a job will run with, render its sbatch script, submit it."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from ..domain.sbatch import BatchSpec, slurm_size
from ..domain.settings import UpOptions
from ..launch.factory import choose_backend
from ..runtime.state import default_state_dir
from ..slurm import queue
from .resolve import Resolution, requested_allocation, resolve


def installed_command(python: str = sys.executable) -> tuple[str, ...]:
    """How the job runs dasklaunch: this installation, by absolute path, never a PATH lookup.

    The console script beside the interpreter (a venv or conda env) is preferred; otherwise the
    same interpreter with -m."""
    script = Path(python).parent / "dasklaunch"
    if script.is_file() and os.access(script, os.X_OK):
        return (str(script),)
    return (python, "-m", "dasklaunch")


def node_local_install(command: tuple[str, ...], *, mounts_text: str | None = None,
                       environ: dict[str, str] | None = None) -> str | None:
    """A warning when the job would run a dasklaunch (or Python) that only this node has: the
    compute nodes run the script's command by its absolute path."""
    from ..domain.scratch import node_local_path
    from .local_directory import node_mounts

    why = node_local_path(command[0], node_mounts(mounts_text) or [],
                          os.environ if environ is None else environ)
    if why is None:
        return None
    return (f"the job runs {command[0]}, which is {why} here: the compute nodes will not have "
            f"it; install dasklaunch into an environment on a file system they share")


def prologue_defaults(given: list[str] | None) -> dict:
    """The prologue lines and where they came from: --prologue, else jobqueue.yaml's."""
    if given is not None:
        return {"prologue": tuple(given), "prologue_source": "--prologue"}
    from ..profiles.jobqueue import job_script_prologue

    return {"prologue": tuple(job_script_prologue()),
            "prologue_source": "jobqueue.slurm.job-script-prologue in the Dask config"}


# batch option <- jobqueue.slurm key, as dask-jobqueue's SLURMJob reads them
JOBQUEUE_KEYS = {"account": "account", "partition": "queue", "time": "walltime"}


def jobqueue_defaults(given: dict[str, str | None]) -> dict:
    """BatchSpec fields from jobqueue.slurm for the options not given on the command line:
    account, queue (--partition), walltime (--time), job-extra-directives and
    job-directives-skip; `directive_sources` says which came from there."""
    from ..profiles.jobqueue import user_jobqueue_slurm

    section = user_jobqueue_slurm()
    values: dict = {}
    used = []
    for field, key in JOBQUEUE_KEYS.items():
        if given.get(field) is None and section.get(key):
            values[field] = str(section[key])
            used.append(f"{key}={section[key]}")
    extra = _strings(section.get("job-extra-directives"))
    skip = _strings(section.get("job-directives-skip"))
    if extra:
        values["extra_directives"] = extra
        used.append("job-extra-directives")
    if skip:
        values["directives_skip"] = skip
        used.append(f"job-directives-skip ({', '.join(skip)})")
    if used:
        values["directive_sources"] = f"from jobqueue.yaml: {', '.join(used)}"
    return values


def _strings(value) -> tuple[str, ...]:
    if not value:
        return ()
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


def check_up_options(opts: UpOptions, spec: BatchSpec,
                     explicit: set[str] | None = None) -> Resolution:
    """`up`'s own resolution of the options the job will run with, on the allocation the
    job's request describes, before anything is submitted: what `up` would refuse inside the
    job is refused here, with `up`'s message."""
    choose_backend(opts.backend, environ={})
    alloc = requested_allocation(
        opts, nodes=spec.nodes, ntasks_per_node=spec.ntasks_per_node,
        gpus_per_node=spec.gpus_per_node, cpus_per_task=spec.cpus_per_task,
        # --mem=0 asks for each node's whole memory, which is not known here
        mem_per_node=(slurm_size(spec.mem) or None) if spec.mem else None)
    return resolve(opts, alloc, explicit)


def submit(text: str, *, timeout: float = 60.0) -> str:
    """Submit the script text; return the job id. sbatch copies the script at submission, so
    the temporary file is removed right after."""
    fd, name = tempfile.mkstemp(prefix="dasklaunch-batch-", suffix=".sh")
    path = Path(name)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return queue.submit(path, timeout=timeout)
    finally:
        path.unlink(missing_ok=True)


def job_state_dir(job_id: str, state_dir: str | None) -> Path:
    """Where the job keeps its state, assuming it inherits this environment (sbatch's default)."""
    if state_dir is not None:
        return Path(state_dir).expanduser().absolute()
    return default_state_dir(job_id)

"""Launchers: how a step (the scheduler, or a pool of workers) is started, watched and stopped.

The cluster logic sees only the `Launcher` interface; `slurm` runs steps with srun inside the
allocation, `local` fakes srun on this machine (tasks with SLURM_* set, one process group).
"""

from __future__ import annotations

import os
import shutil

from ..allocation import Allocation, from_slurm_env, local_allocation
from ..errors import NoAllocationError, UsageError
from .base import Launcher, Step
from .local import LocalLauncher
from .slurm import SlurmLauncher, scontrol_hostnames, scontrol_job

__all__ = ["Launcher", "Step", "LocalLauncher", "SlurmLauncher", "choose_backend",
           "make_launcher", "current_allocation"]


def choose_backend(requested: str, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if requested not in ("auto", "slurm", "local"):
        raise UsageError(f"unknown backend {requested!r} (use auto, slurm or local)")
    if requested != "auto":
        return requested
    return "slurm" if env.get("SLURM_JOB_ID") else "local"


def current_allocation(backend: str, local_tasks: int | None = None,
                       environ: dict[str, str] | None = None) -> Allocation:
    env = dict(os.environ if environ is None else environ)
    if backend == "local":
        return local_allocation(local_tasks)
    if not env.get("SLURM_JOB_ID"):
        raise NoAllocationError("no Slurm allocation: SLURM_JOB_ID is not set "
                                "(run inside salloc/sbatch, or use --backend local)")
    if shutil.which("srun") is None:
        raise NoAllocationError("SLURM_JOB_ID is set but srun is not on PATH")
    conf = env.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        # Slurm's commands would retry for a minute before failing: say it now.
        raise NoAllocationError(f"SLURM_CONF={conf} does not exist")
    return from_slurm_env(env, hostnames=scontrol_hostnames, job_record=scontrol_job)


def make_launcher(backend: str, job_id: str) -> Launcher:
    if backend == "slurm":
        return SlurmLauncher(job_id)
    if backend == "local":
        return LocalLauncher(job_id)
    raise UsageError(f"unknown backend {backend!r}")

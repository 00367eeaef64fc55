"""Choosing and building a launcher, and reading the allocation it runs in: the one place that
knows which backends exist. A launcher gets everything it needs at construction."""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence

from ..domain.allocation import Allocation, local_allocation
from ..domain.gpus import VENDOR_VARIABLES, parse_nvidia_smi, parse_rocm_smi, visible_gpus
from ..errors import CommandError, NoAllocationError, UsageError
from ..runtime import proc
from ..runtime.record import ClusterRecord
from ..slurm import queue
from ..slurm.environment import from_slurm_env
from .base import Launcher
from .local import LocalLauncher
from .slurm import SlurmLauncher

BACKENDS = ("auto", "slurm", "local")
NVIDIA_SMI, ROCM_SMI = "nvidia-smi", "rocm-smi"


def choose_backend(requested: str, environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    if requested not in BACKENDS:
        raise UsageError(f"unknown backend {requested!r} (use auto, slurm or local)")
    if requested != "auto":
        return requested
    return "slurm" if env.get("SLURM_JOB_ID") else "local"


def current_allocation(backend: str, local_tasks: int | None = None,
                       environ: dict[str, str] | None = None) -> Allocation:
    env = dict(os.environ if environ is None else environ)
    if backend == "local":
        return local_allocation(local_tasks, gpu_tokens=local_gpus(env))
    if not env.get("SLURM_JOB_ID"):
        raise NoAllocationError("no Slurm allocation: SLURM_JOB_ID is not set "
                                "(run inside salloc/sbatch, or use --backend local)")
    if not queue.installed():
        raise NoAllocationError("SLURM_JOB_ID is set but srun is not on PATH")
    conf = env.get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        # Slurm's commands would retry for a minute before failing: say it now.
        raise NoAllocationError(f"SLURM_CONF={conf} does not exist")
    return from_slurm_env(env, hostnames=queue.hostnames, job_record=queue.job_record)


def local_gpus(env: dict[str, str]) -> tuple[str, ...]:
    """The GPUs the local backend may use: the vendor's variable when set (even to none),
    else what nvidia-smi or rocm-smi list."""
    if any(name in env for names in VENDOR_VARIABLES.values() for name in names):
        found = visible_gpus(env)
        return found.tokens if found else ()
    for tool, argv, parse in ((NVIDIA_SMI, [NVIDIA_SMI, "-L"], parse_nvidia_smi),
                              (ROCM_SMI, [ROCM_SMI, "--showid"], parse_rocm_smi)):
        if shutil.which(tool):
            try:
                return parse(proc.run(argv, timeout=20).stdout)
            except CommandError:
                continue
    return ()


def make_launcher(backend: str, job_id: str, nodes: Sequence[str] = (),
                  het: bool = False) -> Launcher:
    """The launcher of `backend` for `job_id`; `nodes` are the allocation's, in order; `het`:
    a heterogeneous job (its components' steps are listed under their own ids)."""
    if backend == "slurm":
        return SlurmLauncher(job_id, first_node=nodes[0] if nodes else None, het=het)
    if backend == "local":
        return LocalLauncher(job_id)
    raise UsageError(f"unknown backend {backend!r}")


def launcher_for(record: ClusterRecord) -> Launcher:
    """The launcher that started (and so can watch and stop) the steps of `record`."""
    return make_launcher(record.backend, record.job_id,
                         tuple(record.allocation.get("nodes") or ()),
                         het=bool(record.allocation.get("het_groups")))

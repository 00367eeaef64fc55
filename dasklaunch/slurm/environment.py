"""The allocation as Slurm describes it to a job: its SLURM_* variables (and, for memory that no
variable gives, the job's record from `scontrol show job`)."""

from __future__ import annotations

import re

from ..domain.allocation import Allocation, expand_nodelist
from ..domain.gpus import slurm_gpus_per_node
from ..domain.node_memory import slurm_memory
from ..errors import NoAllocationError, UsageError
from .commands import parse_job_memory


def expand_counts(spec: str) -> list[int]:
    """Expand Slurm count lists: `2(x3),1` -> [2, 2, 2, 1]."""
    counts: list[int] = []
    for item in spec.split(","):
        item = item.strip()
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item)
        if not match:
            raise UsageError(f"malformed Slurm count list: {spec!r}")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def from_slurm_env(env: dict[str, str], hostnames=None, job_record=None) -> Allocation:
    """Build the allocation from SLURM_* variables.

    `hostnames` expands a node list (scontrol show hostnames); `job_record` returns the job's
    `scontrol show job -o` line, asked only when no memory variable is set."""
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if not job_id:
        raise NoAllocationError("no Slurm allocation: SLURM_JOB_ID is not set "
                                "(run inside salloc/sbatch, or use --backend local)")
    het_size = int(env.get("SLURM_HET_SIZE") or env.get("SLURM_PACK_SIZE") or 0)
    groups = list(range(het_size)) if het_size > 1 else [None]
    parts = [_component(env, job_id, group, hostnames) for group in groups]
    nodes = tuple(n for part in parts for n in part["nodes"])
    cpus = tuple(c for part in parts for c in part["cpus"])
    cpus_per_task = int(env["SLURM_CPUS_PER_TASK"]) if env.get("SLURM_CPUS_PER_TASK") else None
    mem, source = slurm_memory(env, cpus[0]) or (None, "unknown")
    if mem is None and job_record is not None:
        mem = parse_job_memory(job_record(job_id), cpus[0])
        source = "the job record (scontrol show job)"
    gpus = tuple(g for part in parts for g in part["gpus"])
    return Allocation(job_id=job_id, nodes=nodes,
                      tasks_per_node=tuple(t for part in parts for t in part["tasks"]),
                      cpus_per_node=cpus, cpus_per_task=cpus_per_task, mem_per_node=mem,
                      submit_host=env.get("SLURM_SUBMIT_HOST"), mem_source=source,
                      gpus_per_node=gpus if any(gpus) else (),
                      het_groups=tuple(g for part in parts for g in part["group"])
                      if het_size > 1 else ())


def _component(env: dict[str, str], job_id: str, group: int | None, hostnames) -> dict:
    """Nodes, tasks, CPUs and GPUs per node of the job, or of its heterogeneous component."""
    def get(name: str) -> str | None:
        if group is None:
            return env.get(name)
        return env.get(f"{name}_HET_GROUP_{group}", env.get(f"{name}_PACK_GROUP_{group}"))

    nodelist = get("SLURM_JOB_NODELIST") or (get("SLURM_NODELIST") if group is None else None)
    nodes = tuple((hostnames or expand_nodelist)(nodelist)) if nodelist else ()
    where = f"job {job_id}" + ("" if group is None else f" component {group}")
    if not nodes:
        raise NoAllocationError(f"{where}: SLURM_JOB_NODELIST is empty")
    nnodes = len(nodes)
    cpus = _per_node(get("SLURM_JOB_CPUS_PER_NODE"), nnodes,
                     fallback=int(env.get("SLURM_CPUS_ON_NODE", "1")))
    if get("SLURM_TASKS_PER_NODE"):
        tasks = _per_node(get("SLURM_TASKS_PER_NODE"), nnodes, fallback=1)
    elif get("SLURM_NTASKS"):
        tasks = _spread(int(get("SLURM_NTASKS")), nnodes)
    else:
        tasks = tuple(1 for _ in nodes)
    return {"nodes": nodes, "cpus": cpus, "tasks": tasks, "group": (group,) * nnodes,
            "gpus": slurm_gpus_per_node(env, nnodes, group)}


def _per_node(spec: str | None, nnodes: int, fallback: int) -> tuple[int, ...]:
    if not spec:
        return tuple(fallback for _ in range(nnodes))
    counts = expand_counts(spec)
    if len(counts) != nnodes:
        raise UsageError(f"Slurm count list {spec!r} does not match {nnodes} nodes")
    return tuple(counts)


def _spread(ntasks: int, nnodes: int) -> tuple[int, ...]:
    base, extra = divmod(ntasks, nnodes)
    return tuple(base + (1 if i < extra else 0) for i in range(nnodes))

"""Pure: options + allocation -> the worker layout (tasks, workers, threads, memory).

Nothing here touches processes or files, so every layout decision is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from .allocation import Allocation
from .settings import UpOptions
from .units import format_bytes, parse_bytes


@dataclass(frozen=True)
class WorkerPlan:
    placement: str        # "tasks": one `dask worker` per allocation task; "per-node": one per node
    ntasks: int           # tasks in the worker step
    nnodes: int
    nworkers: int         # worker processes per task (dask worker --nworkers)
    nthreads: int         # threads per worker process
    memory_limit: str     # per worker process, as passed to --memory-limit
    memory_note: str = ""  # how memory_limit was arrived at, for --dry-run and status

    @property
    def expected_workers(self) -> int:
        return self.ntasks * self.nworkers


def plan_workers(alloc: Allocation, opts: UpOptions, *, memory_fraction: float | None = None,
                 profile_limit: int | None = None) -> WorkerPlan:
    """The worker layout. `memory_fraction` / `profile_limit` are a profile's sizing hints;
    an explicit --memory-limit wins over both."""
    if opts.nworkers < 1:
        raise UsageError(f"--nworkers must be at least 1, not {opts.nworkers}")
    if opts.nthreads is not None and opts.nthreads < 1:
        raise UsageError(f"--nthreads must be at least 1, not {opts.nthreads}")
    if not opts.nanny and opts.nworkers != 1:
        raise UsageError("--no-nanny needs --nworkers 1 (Dask cannot start several "
                         "worker processes without nannies)")
    # Nodes may differ; size for the busiest/smallest so no node is oversubscribed.
    cpus_node = min(alloc.cpus_per_node)
    if opts.per_node:
        placement, ntasks, tasks_node = "per-node", alloc.nnodes, 1
        cpus_task = cpus_node
    else:
        placement, ntasks, tasks_node = "tasks", alloc.ntasks, max(alloc.tasks_per_node)
        cpus_task = alloc.cpus_per_task or max(1, cpus_node // tasks_node)
    nthreads = opts.nthreads or max(1, cpus_task // opts.nworkers)
    workers_node = tasks_node * opts.nworkers
    node = (f"{format_bytes(alloc.mem_per_node)} per node ({alloc.mem_source})"
            if alloc.mem_per_node else "unknown memory per node")
    if opts.memory_limit is not None or profile_limit is not None:
        memory = (opts.memory_limit or str(profile_limit)).strip()
        origin = "--memory-limit" if opts.memory_limit is not None else "the profile"
        note = f"{memory} per worker from {origin}"
        if memory.lower() != "auto":
            limit = parse_bytes(memory)
            note = f"{format_bytes(limit)} per worker from {origin}"
            if alloc.mem_per_node and limit * workers_node > alloc.mem_per_node:
                raise UsageError(
                    f"memory limit {memory} ({origin}) x {workers_node} workers per node "
                    f"exceeds the allocation's {node}")
    elif alloc.mem_per_node:
        fraction = memory_fraction or 1.0
        memory = str(int(alloc.mem_per_node * fraction) // workers_node)
        note = (f"{node} x {fraction:g} / {workers_node} workers = "
                f"{format_bytes(int(memory))} per worker")
    else:
        memory, note = "auto", "Dask's auto (the allocation's memory is unknown)"
    return WorkerPlan(placement=placement, ntasks=ntasks, nnodes=alloc.nnodes,
                      nworkers=opts.nworkers, nthreads=nthreads, memory_limit=memory,
                      memory_note=note)


def expected_workers(plan: WorkerPlan, opts: UpOptions) -> int:
    """How many workers `up` waits for: --wait-workers N, or all of them."""
    if opts.wait_workers in ("all", "", None):
        return plan.expected_workers
    try:
        wanted = int(opts.wait_workers)
    except ValueError:
        raise UsageError(f"--wait-workers takes a number or 'all', not {opts.wait_workers!r}"
                         ) from None
    if not 0 <= wanted <= plan.expected_workers:
        raise UsageError(f"--wait-workers {wanted} is more than the {plan.expected_workers} "
                         f"workers this layout starts")
    return wanted

"""Pure: options + allocation -> the worker layout (tasks, workers, threads, memory).

Nothing here touches processes or files, so every layout decision is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from .allocation import Allocation
from .settings import UpOptions
from .units import format_bytes, parse_bytes, plural

# Share of a node's memory its workers get by default: Slurm's cgroup kills the whole step at
# the job's limit, so the workers' limits (which Dask enforces only approximately, by polling)
# leave room for the nannies, the page cache and the spill machinery; the seed used 90%.
DEFAULT_MEMORY_FRACTION = 0.9
# The scheduler shares the first node with workers; every worker gets the same limit, so this is
# taken from every node's share: at most 1 GiB, at most 5% of a node.
SCHEDULER_RESERVE = 2**30
SCHEDULER_RESERVE_FRACTION = 0.05


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
                 profile_limit: int | None = None,
                 memory_origin: str = "--memory-limit", sharing: int = 1) -> WorkerPlan:
    """The worker layout. `memory_fraction` / `profile_limit` are a profile's sizing hints;
    an explicit --memory-limit wins over both (`memory_origin` says where it came from, for
    messages: the command line or jobqueue.yaml). `sharing` pools share these nodes: each
    takes its share of the node's memory and of the scheduler's reserve."""
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
    memory, note = _memory_per_worker(alloc, opts, workers_node, memory_fraction,
                                      profile_limit, memory_origin, sharing)
    return WorkerPlan(placement=placement, ntasks=ntasks, nnodes=alloc.nnodes,
                      nworkers=opts.nworkers, nthreads=nthreads, memory_limit=memory,
                      memory_note=note)


def scheduler_reserve(mem_per_node: int) -> int:
    return min(SCHEDULER_RESERVE, int(mem_per_node * SCHEDULER_RESERVE_FRACTION))


def _memory_per_worker(alloc: Allocation, opts: UpOptions, workers_node: int,
                       memory_fraction: float | None, profile_limit: int | None,
                       memory_origin: str, sharing: int = 1) -> tuple[str, str]:
    """--memory-limit for each worker process, and the arithmetic behind it in words."""
    node = (f"{format_bytes(alloc.mem_per_node)} per node ({alloc.mem_source})"
            if alloc.mem_per_node else "unknown memory per node")
    per_node = plural(workers_node, "worker")
    if opts.memory_limit is not None or profile_limit is not None:
        memory = (opts.memory_limit or str(profile_limit)).strip()
        origin = memory_origin if opts.memory_limit is not None else "the profile"
        if memory.lower() == "auto":
            return memory, f"{memory} per worker from {origin}"
        limit = parse_bytes(memory)
        if alloc.mem_per_node and limit * workers_node > alloc.mem_per_node:
            raise UsageError(
                f"memory limit {format_bytes(limit)} ({origin}) x {per_node} per node "
                f"exceeds the allocation's {node}")
        return memory, f"{format_bytes(limit)} per worker from {origin}"
    fraction = memory_fraction or DEFAULT_MEMORY_FRACTION
    if not alloc.mem_per_node:
        # Each node's own memory, as Dask sees it there: a fraction below 1 is Dask's way of
        # saying "this share of the machine" (`auto` would give every task's workers a share
        # by cores, blind to the other tasks on the node).
        share = fraction / workers_node
        return f"{share:.4g}", (f"unknown memory per node: each worker takes {fraction:g} / "
                                f"{per_node} = {share:.4g} of its node's memory, as Dask "
                                f"measures it there")
    # pools that share a node share the scheduler's reserve too: it is there once
    reserve = scheduler_reserve(alloc.mem_per_node) // max(1, sharing)
    shared = f" (its share, {sharing} pools on the node)" if sharing > 1 else ""
    limit = (int(alloc.mem_per_node * fraction) - reserve) // workers_node
    return str(limit), (f"{node} x {fraction:g} - {format_bytes(reserve)} for the scheduler"
                        f"{shared} / {per_node} = {format_bytes(limit)} per worker")


def expected_workers(plan, opts: UpOptions) -> int:
    """How many workers `up` waits for: --wait-workers N, or all of them. `plan` is anything
    with `expected_workers` (a WorkerPlan, or the pools together)."""
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

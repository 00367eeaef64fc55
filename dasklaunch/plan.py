"""Pure builders: options + allocation -> worker layout -> `dask scheduler` / `dask worker` argv.

Nothing here touches processes or files, so every layout decision is unit-tested.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from .allocation import Allocation
from .errors import UsageError
from .settings import START_METHODS, UpOptions

LOCAL_HOST = "127.0.0.1"

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_bytes(text: str | int | float) -> int:
    """Parse sizes the way users write them: 12e9, "12 GB", "12GiB", "1.5 TB"."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = int(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*",
                             str(text))
        unit = match.group(2).lower() if match else None
        if not match or unit not in _UNITS:
            raise UsageError(f"not a memory size: {text!r} (use e.g. 12GB, 12GiB or 12e9)")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value < 0:
        raise UsageError(f"memory size must not be negative: {text!r}")
    return value


def format_bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


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


def _network(opts: UpOptions, local: bool) -> list[str]:
    if opts.interface:
        return ["--interface", opts.interface]
    # A laptop cluster should not listen on every network the machine is on.
    return ["--host", LOCAL_HOST] if local else []


def scheduler_command(opts: UpOptions, scheduler_file: str, *, local: bool,
                      tls_args: list[str] | tuple[str, ...] = (),
                      python: str = sys.executable) -> list[str]:
    argv = [python, "-m", "distributed.cli.dask_scheduler", "--scheduler-file", scheduler_file,
            "--port", str(opts.port), "--dashboard-address", opts.dashboard_address,
            "--preload", "dasklaunch.scheduler_plugin"]
    argv += _network(opts, local)
    argv += list(tls_args)
    argv += list(opts.scheduler_args)
    return argv


# distributed.nanny.pre-spawn-environ's defaults. The nanny sets them in its own process just
# before it starts a worker; a forked worker inherits a process whose libraries (malloc,
# OpenMP, BLAS) already read the old values, so with fork/forkserver they must be in the
# environment the nanny itself starts with, as distributed's docs advise.
PRE_SPAWN_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1",
                     "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
START_METHOD_VARIABLE = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"


def start_method_env(method: str | None, inherited: dict[str, str]) -> dict[str, str]:
    """Variables for the worker step that make the nanny start workers with `method`.
    `inherited` is the environment the step gets anyway: what the user set there wins."""
    if method is None:
        return {}
    if method not in START_METHODS:
        raise UsageError(f"--start-method must be one of {', '.join(START_METHODS)}, "
                         f"not {method!r}")
    env = {START_METHOD_VARIABLE: method}
    if method != "spawn":
        env.update({k: v for k, v in PRE_SPAWN_ENVIRON.items() if k not in inherited})
    return env


def worker_command(opts: UpOptions, plan: WorkerPlan, scheduler_file: str, *, local: bool,
                   tls_args: list[str] | tuple[str, ...] = (),
                   python: str = sys.executable) -> list[str]:
    argv = [python, "-m", "distributed.cli.dask_worker", "--scheduler-file", scheduler_file,
            "--nthreads", str(plan.nthreads), "--nworkers", str(plan.nworkers),
            "--memory-limit", plan.memory_limit, "--death-timeout", f"{opts.death_timeout:g}"]
    argv += _network(opts, local)
    argv += list(tls_args)
    if opts.local_directory:
        argv += ["--local-directory", opts.local_directory]
    if not opts.nanny:
        argv.append("--no-nanny")
    if opts.lifetime:
        # --lifetime-restart: the nanny starts a fresh worker, so the pool rotates, not shrinks
        argv += ["--lifetime", opts.lifetime, "--lifetime-restart"]
        if opts.lifetime_stagger:
            argv += ["--lifetime-stagger", opts.lifetime_stagger]
    argv += list(opts.worker_args)
    return argv

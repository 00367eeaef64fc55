"""Worker pools: sets of workers of one shape under one scheduler, each started as one step.

A PoolSpec (domain/pool_spec.py) describes one; `plan_pools` lays every pool out on the
allocation's nodes and refuses, before anything starts, a pool that asks for more than the
allocation has.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..errors import UsageError
from . import dask_cuda
from .allocation import Allocation, expand_nodelist
from .plan import DEFAULT_MEMORY_FRACTION, WorkerPlan, plan_workers
from .pool_spec import CUDA_KEYS, DEFAULT_POOL, NAMED_GPUS, PoolSpec
from .settings import ProfileSizing, UpOptions
from .units import plural


@dataclass(frozen=True)
class PoolPlan:
    """One pool laid out: its nodes (indices into the allocation), its step, its workers."""

    spec: PoolSpec
    node_indices: tuple[int, ...]
    plan: WorkerPlan
    gpus_per_worker: int
    het_group: int | None = None
    resources: tuple[tuple[str, str], ...] = field(default=())
    gpu_tasks: bool = False              # one task per GPU worker: Slurm pins each task's GPUs
    cuda_args: tuple[str, ...] | None = None  # None: plain `dask worker`; else dask-cuda's own

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def expected_workers(self) -> int:
        return self.plan.expected_workers


def default_pools(alloc: Allocation) -> tuple[PoolSpec, ...]:
    """No --pool: one pool on every node, or one per component of a heterogeneous job."""
    if alloc.het_groups:
        return tuple(PoolSpec(name=f"het{g}", het_group=g)
                     for g in sorted(set(alloc.het_groups)))
    return (PoolSpec(name=DEFAULT_POOL),)


NO_SIZING = ProfileSizing()   # no profile: dasklaunch's own defaults


def plan_pools(alloc: Allocation, opts: UpOptions, specs: tuple[PoolSpec, ...] = (), *,
               sizing: ProfileSizing = NO_SIZING, memory_origin: str = "--memory-limit",
               dask_cuda_unusable: str | None = dask_cuda.unusable(None)
               ) -> tuple[PoolPlan, ...]:
    """Every pool laid out. `dask_cuda_unusable`: why the workers' Python cannot run `dask
    cuda worker` (None: it can, and GPU pools do unless they say dask-cuda=no).
    `sizing`: the profile's hints (memory, and the default for --rmm-pool-size)."""
    specs = specs or default_pools(alloc)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise UsageError(f"pool names must differ: {', '.join(names)}")
    taken: dict[int, str] = {}
    plans = []
    rest = [s for s in specs if s.nodes is None and s.het_group is None]
    if len(rest) > 1 and not all(s.share for s in rest):
        raise UsageError(f"pools {', '.join(s.name for s in rest)} all take the remaining nodes: "
                         f"give all but one of them nodes=N (or share=yes)")
    # pools that name their nodes first; the one without takes what is left
    placed = []
    for spec in sorted(specs, key=lambda s: s.nodes is None and s.het_group is None):
        indices = _nodes_of(alloc, spec, taken)
        for index in indices:
            if index in taken and not spec.share:
                raise UsageError(f"pools {taken[index]} and {spec.name} both want "
                                 f"{alloc.nodes[index]}; give them other nodes, or "
                                 f"share=yes to let them overlap")
        for index in indices:
            taken.setdefault(index, spec.name)
        placed.append((spec, indices))
    # pools that share a node share its memory
    sharing = {i: sum(i in indices for _, indices in placed) for i in range(alloc.nnodes)}
    for spec, indices in placed:
        share = max(sharing[i] for i in indices)
        fraction = (sizing.memory_fraction or DEFAULT_MEMORY_FRACTION) / share
        plans.append(_plan_one(alloc, opts, spec, indices, fraction, sizing.memory_limit,
                               memory_origin, dask_cuda_unusable, sizing.rmm_pool_size,
                               share))
    cuda_options = [flag for flag, value in (("--rmm-pool-size", opts.rmm_pool_size),
                                             ("--device-memory-limit", opts.device_memory_limit),
                                             ("--enable-cudf-spill", opts.cudf_spill))
                    if value]
    if cuda_options and not any(p.cuda_args is not None for p in plans):
        raise UsageError(f"{', '.join(cuda_options)}: no pool runs dask-cuda ("
                         + ("no pool has GPU workers" if not any(p.gpus_per_worker for p in plans)
                            else dask_cuda_unusable or "no GPU pool can use it: dask-cuda=no, "
                            "several GPUs per worker, or options dask cuda worker lacks")
                         + ")")
    order = {name: i for i, name in enumerate(names)}
    return tuple(sorted(plans, key=lambda p: order[p.name]))


def _nodes_of(alloc: Allocation, spec: PoolSpec, taken: dict[int, str]) -> tuple[int, ...]:
    everything = range(alloc.nnodes)
    if spec.het_group is not None:
        if spec.het_group not in set(alloc.het_groups):
            have = sorted(set(alloc.het_groups))
            raise UsageError(f"pool {spec.name}: het-group={spec.het_group}, but this job "
                             + (f"has components {have}" if have else
                                "is not a heterogeneous job"))
        everything = [i for i in everything if alloc.het_groups[i] == spec.het_group]
    free = [i for i in everything if spec.share or i not in taken]
    if spec.nodes is None:
        if not free:
            raise UsageError(f"pool {spec.name}: no nodes are left for it (the other pools "
                             f"took all {plural(alloc.nnodes, 'node')})")
        return tuple(free)
    if spec.nodes.isdigit():
        wanted = int(spec.nodes)
        if wanted < 1 or wanted > len(free):
            raise UsageError(f"pool {spec.name}: nodes={wanted}, but only "
                             f"{plural(len(free), 'node')} of the allocation "
                             f"{'is' if len(free) == 1 else 'are'} free for it")
        return tuple(free[:wanted])
    hosts = expand_nodelist(spec.nodes)
    missing = [h for h in hosts if h not in alloc.nodes]
    if missing:
        raise UsageError(f"pool {spec.name}: {', '.join(missing)} not in the allocation "
                         f"({', '.join(alloc.nodes)})")
    return tuple(alloc.nodes.index(h) for h in hosts)


def _plan_one(alloc: Allocation, opts: UpOptions, spec: PoolSpec, indices: tuple[int, ...],
              memory_fraction, profile_limit, memory_origin, dask_cuda_unusable: str | None,
              profile_rmm_pool_size: str | None, sharing: int = 1) -> PoolPlan:
    gpus = min(alloc.gpus_on(i) for i in indices)
    per_worker = spec.gpus_per_worker
    if per_worker is None and NAMED_GPUS.get(spec.name) and not gpus:
        # the name asks for GPUs: a `salloc` without --gpus-per-node must not quietly give
        # CPU workers instead
        raise UsageError(f"pool {spec.name}: a pool named {spec.name} gets "
                         f"{plural(NAMED_GPUS[spec.name], 'GPU')} per worker, but its nodes "
                         f"have none (ask Slurm for them: --gpus-per-node; or give "
                         f"gpus-per-worker=0 for CPU workers)")
    if per_worker is None:
        per_worker = NAMED_GPUS.get(spec.name, 1) if gpus else 0
    if per_worker > gpus:
        raise UsageError(f"pool {spec.name}: gpus-per-worker={per_worker}, but its nodes have "
                         f"{plural(gpus, 'GPU')}" + (" each" if len(indices) > 1 else ""))
    if per_worker and gpus % per_worker:
        raise UsageError(f"pool {spec.name}: {plural(gpus, 'GPU')} per node do not split into "
                         f"workers of {per_worker}")
    sub = Allocation(job_id=alloc.job_id, nodes=tuple(alloc.nodes[i] for i in indices),
                     tasks_per_node=tuple(alloc.tasks_per_node[i] for i in indices),
                     cpus_per_node=tuple(alloc.cpus_per_node[i] for i in indices),
                     cpus_per_task=alloc.cpus_per_task, mem_per_node=alloc.mem_per_node,
                     submit_host=alloc.submit_host, mem_source=alloc.mem_source)
    if spec.gpu_tasks:
        if not per_worker:
            raise UsageError(f"pool {spec.name}: gpu-tasks=yes needs GPU workers (its nodes have "
                             f"{plural(gpus, 'GPU')}, gpus-per-worker={per_worker})")
        if spec.ntasks_per_node is not None or spec.nworkers is not None:
            raise UsageError(f"pool {spec.name}: gpu-tasks=yes starts one task per "
                             f"{plural(per_worker, 'GPU')}; leave out ntasks-per-node and "
                             f"nworkers")
        if gpus // per_worker > min(sub.cpus_per_node):
            raise UsageError(f"pool {spec.name}: gpu-tasks=yes needs {gpus // per_worker} tasks "
                             f"per node, more than the {min(sub.cpus_per_node)} CPUs of its "
                             f"nodes")
        sub = replace(sub, tasks_per_node=(gpus // per_worker,) * len(indices),
                      cpus_per_task=None)
    if spec.ntasks_per_node is not None:
        if spec.ntasks_per_node > min(sub.cpus_per_node):
            raise UsageError(f"pool {spec.name}: ntasks-per-node={spec.ntasks_per_node} is more "
                             f"than the {min(sub.cpus_per_node)} CPUs of its nodes")
        sub = replace(sub, tasks_per_node=(spec.ntasks_per_node,) * len(indices),
                      cpus_per_task=None)
    pool_opts = replace(
        opts,
        nworkers=1 if spec.gpu_tasks else
        spec.nworkers or (gpus // per_worker if per_worker else opts.nworkers),
        nthreads=spec.nthreads or opts.nthreads,
        memory_limit=spec.memory_limit or opts.memory_limit,
        local_directory=spec.local_directory or opts.local_directory,
        # GPU workers: one task per node starts one worker per GPU (one launcher, one import of
        # distributed per node), unless gpu-tasks=yes asks Slurm for a task per worker
        per_node=(not spec.gpu_tasks) if per_worker else
        (False if spec.ntasks_per_node else opts.per_node))
    if per_worker and spec.nworkers and spec.nworkers * per_worker > gpus:
        raise UsageError(f"pool {spec.name}: nworkers={spec.nworkers} x gpus-per-worker="
                         f"{per_worker} is more than the {plural(gpus, 'GPU')} of its nodes")
    plan = plan_workers(sub, pool_opts, memory_fraction=memory_fraction,
                        profile_limit=profile_limit,
                        memory_origin=memory_origin if not spec.memory_limit
                        else f"pool {spec.name}", sharing=sharing)
    resources = spec.resources + ((("GPU", str(per_worker)),) if per_worker else ())
    return PoolPlan(spec=spec, node_indices=indices, plan=plan, gpus_per_worker=per_worker,
                    het_group=spec.het_group, resources=resources, gpu_tasks=spec.gpu_tasks,
                    cuda_args=_cuda_args(spec, opts, per_worker, dask_cuda_unusable,
                                         profile_rmm_pool_size))


def _cuda_args(spec: PoolSpec, opts: UpOptions, per_worker: int, unusable: str | None,
               profile_pool_size: str | None) -> tuple[str, ...] | None:
    """dask-cuda's options for this pool's workers, or None when it runs plain `dask worker`s.
    auto: dask-cuda for GPU workers of one GPU each, when it is usable and nothing the pool
    asks for needs `dask worker` itself."""
    own = [key for key in CUDA_KEYS if getattr(spec, key.replace("-", "_")) not in (None, False)]
    lacking = dask_cuda.undeclared((*opts.worker_args, *spec.worker_args))
    memory = spec.memory_limit or opts.memory_limit
    why_not = ("its workers have no GPU" if not per_worker else
               "dask-cuda=no" if spec.dask_cuda == "no" else
               unusable if unusable
               else f"dask-cuda runs one GPU per worker, not {per_worker}" if per_worker > 1
               else "dask cuda worker always has a nanny (--no-nanny)" if not opts.nanny
               else "dask cuda worker has no --lifetime" if opts.lifetime
               else "dask cuda worker takes --memory-limit auto as the whole node's memory"
               if memory == "auto"
               else f"dask cuda worker has no {', '.join(lacking)} (--worker-arg)" if lacking
               else None)
    if why_not is not None:
        if spec.dask_cuda == "yes" or own:
            asked = "dask-cuda=yes" if spec.dask_cuda == "yes" else ", ".join(own)
            raise UsageError(f"pool {spec.name}: {asked} needs dask-cuda, but {why_not}")
        return None
    pool_size = spec.rmm_pool_size or opts.rmm_pool_size or profile_pool_size
    device_limit = spec.device_memory_limit or opts.device_memory_limit
    spill = spec.cudf_spill if spec.cudf_spill is not None else opts.cudf_spill
    return ((*(("--rmm-pool-size", pool_size) if pool_size else ()),
             *(("--device-memory-limit", device_limit) if device_limit else ()),
             *(("--enable-cudf-spill",) if spill else ())))


@dataclass(frozen=True)
class Layout:
    """Every pool of a cluster: what `up` starts and waits for."""

    pools: tuple[PoolPlan, ...]

    @property
    def expected_workers(self) -> int:
        return sum(p.expected_workers for p in self.pools)

    def describe(self) -> str:
        return "; ".join(f"pool {p.name}: {plural(p.expected_workers, 'worker')} on "
                         f"{plural(len(p.node_indices), 'node')} ({p.plan.placement}, "
                         f"{plural(p.plan.nthreads, 'thread')} each"
                         + (f", {plural(p.gpus_per_worker, 'GPU')} each" if p.gpus_per_worker
                            else "") + (", dask-cuda" if p.cuda_args is not None else "")
                         + (", a task per GPU worker" if p.gpu_tasks else "") + ")"
                         for p in self.pools)

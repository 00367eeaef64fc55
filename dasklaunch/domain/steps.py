"""Pure: the steps a resolved cluster runs, planned from its options and pool layout on the
allocation: the scheduler's step and one step per pool (domain/step_plan.StepPlan). What the
job itself contributes (its files, TLS settings, fresh step names, its containers) comes in a
StepContext, so the same inputs always give the same plans. A step in a container image runs
the image's Python, its command wrapped by the runtime (or, with Pyxis, srun's options)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from . import dask_cuda
from .allocation import Allocation
from .container import ContainerJob
from .dask_argv import (
    PROTOCOL_ARGS,
    WORKER_MODULE,
    WORKER_TLS_ARGS,
    pool_command,
    scheduler_command,
    workers_per_task,
)
from .pools import Layout, PoolPlan
from .settings import UpOptions
from .step_env import job_env, worker_env
from .step_plan import StepPlan


@dataclass(frozen=True)
class StepContext:
    """What a job gives its steps: where they write, the TLS settings each role reads (empty
    without TLS), the names of the steps (unique per job), the program workers run."""

    scheduler_file: str
    logs: str
    config_dir: str
    local: bool
    scheduler_name: str
    pool_names: tuple[str, ...]          # one per pool of the layout, in its order
    tls_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    worker_module: str = WORKER_MODULE
    extra_env: Mapping[str, str] = field(default_factory=dict)
    container: ContainerJob | None = None   # None: every step on the host


def plan_steps(opts: UpOptions, layout: Layout, alloc: Allocation, context: StepContext
               ) -> tuple[StepPlan, list[StepPlan]]:
    """The scheduler's step and each pool's, in the layout's order."""
    local = context.local
    sched_env = job_env(opts, context.config_dir, dict(context.extra_env))
    pool_env = worker_env(opts, context.config_dir, dict(context.extra_env))
    tls_args: list[str] = []
    worker_tls_args: list[str] = []
    if opts.tls:
        tls_args, worker_tls_args = PROTOCOL_ARGS, WORKER_TLS_ARGS
        sched_env.update(context.tls_env.get("scheduler", {}))
        pool_env.update(context.tls_env.get("worker", {}))
    if any("--enable-cudf-spill" in (pool.cuda_args or ()) for pool in layout.pools):
        # dask-cuda asks that the scheduler (and clients) spill cuDF objects too
        sched_env.setdefault("CUDF_SPILL", "on")
    name = context.scheduler_name
    image = context.container.image_for() if context.container else None
    sched = StepPlan(role="scheduler", name=name,
                     placement="here" if (local or opts.scheduler_here) else "first-node",
                     ntasks=1, nnodes=1,
                     command=tuple(scheduler_command(opts, context.scheduler_file, local=local,
                                                     tls_args=tls_args,
                                                     python=python_of(context, image))),
                     log=f"{context.logs}/{name}.log", env=sched_env)
    sched = contained(sched, context.container, image, gpus=False)
    pools = [pool_step(opts, pool, alloc, context, step, worker_tls_args, pool_env)
             for pool, step in zip(layout.pools, context.pool_names, strict=True)]
    return sched, pools


def pool_step(opts: UpOptions, pool: PoolPlan, alloc: Allocation, context: StepContext,
              name: str, tls_args: list[str], env: dict[str, str]) -> StepPlan:
    local = context.local
    env = dict(env)
    if local and pool.gpus_per_worker and alloc.gpu_tokens:
        # found with nvidia-smi/rocm-smi here: the node launcher reads them from its task's
        # environment, as under Slurm
        env.setdefault("CUDA_VISIBLE_DEVICES", ",".join(alloc.gpu_tokens))
    if pool.cuda_args is not None:
        env.update(dask_cuda.worker_env([*tls_args, *opts.worker_args, *pool.spec.worker_args]))
    hosts = tuple(alloc.nodes[i] for i in pool.node_indices)
    all_nodes = hosts == alloc.nodes
    per_task = workers_per_task(opts, pool, tuple(alloc.tasks_per_node[i]
                                                  for i in pool.node_indices), local=local)
    job = context.container
    image = job.image_for(pool.spec.container) if job else None
    step = StepPlan(role="workers", name=name,
                    placement="per-node" if per_task > 1 else pool.plan.placement,
                    ntasks=pool.plan.ntasks // per_task, nnodes=pool.plan.nnodes,
                    command=tuple(pool_command(opts, pool, context.scheduler_file, local=local,
                                               tls_args=tls_args, module=context.worker_module,
                                               per_task=per_task,
                                               python=python_of(context, image))),
                    log=f"{context.logs}/{name}.log", env=env, pool=pool.name,
                    expected=pool.expected_workers,
                    nodelist=None if (local or all_nodes or pool.het_group is not None)
                    else ",".join(hosts),
                    het_group=pool.het_group,
                    gpus_per_node=0 if local or pool.gpu_tasks
                    else pool.gpus_per_worker * pool.plan.nworkers,
                    gpus_per_task=pool.gpus_per_worker if pool.gpu_tasks else 0,
                    cpus_per_task=None if local else per_task * step_cpus(pool, alloc),
                    nthreads=pool.plan.nthreads, memory_limit=pool.plan.memory_limit,
                    gpus_per_worker=pool.gpus_per_worker, resources=tuple(pool.resources),
                    worker_class=pool.spec.worker_class)
    own = (pool.spec.local_directory,) if pool.spec.local_directory else ()
    return contained(step, job, image, gpus=pool.gpus_per_worker > 0, binds=own)


def python_of(context: StepContext, image: str | None) -> str:
    """The Python a step runs: the image's (its check found it), else this one."""
    return context.container.python(image) if context.container and image else sys.executable


def contained(step: StepPlan, job: ContainerJob | None, image: str | None, *, gpus: bool,
              binds: Sequence[str] = ()) -> StepPlan:
    """The step with each task in `image` (None: on the host, as planned): its command wrapped
    by the runtime, or srun's options for Pyxis; its variables are set in the container too."""
    if job is None or image is None:
        return step
    options, argv, env = job.wrap(image, step.command, step.env, gpus=gpus, binds=binds)
    return replace(step, command=tuple(argv), env=env, srun_options=tuple(options))


def step_cpus(pool: PoolPlan, alloc: Allocation) -> int:
    """CPUs each task of the pool's step holds: its workers' threads, within its share of the
    node (a larger --nthreads oversubscribes the task's CPUs rather than fail the step)."""
    cpus_node = min(alloc.cpus_per_node[i] for i in pool.node_indices)
    if pool.plan.placement == "per-node":
        tasks_node = 1
    elif pool.gpu_tasks or pool.spec.ntasks_per_node:
        # the pool's own tasks, as many on each node, not the job's
        tasks_node = pool.plan.ntasks // max(1, pool.plan.nnodes)
    else:
        tasks_node = max(alloc.tasks_per_node[i] for i in pool.node_indices)
    wanted = pool.plan.nthreads * pool.plan.nworkers
    return max(1, min(wanted, cpus_node // max(1, tasks_node)))

"""Pure builders of the `dask scheduler` / `dask worker` command lines and their environment."""

from __future__ import annotations

import sys
from dataclasses import replace

from ..errors import UsageError
from . import dask_cuda
from .plan import WorkerPlan
from .pools import PoolPlan
from .settings import DEFAULT_START_METHOD, START_METHODS, UpOptions

LOCAL_HOST = "127.0.0.1"
SCHEDULER_PRELOAD = "dasklaunch.runtime.scheduler_plugin"
PROTOCOL_ARGS = ["--protocol", "tls"]
# Workers and their nannies also load runtime.tls_guard (the scheduler loads it through its own
# preload). Dask reads preloads from its config only when none is given on the command line.
GUARD_PRELOAD = "dasklaunch.runtime.tls_guard"
WORKER_TLS_ARGS = [*PROTOCOL_ARGS, "--preload", GUARD_PRELOAD, "--preload-nanny", GUARD_PRELOAD]
WORKER_MODULE = "distributed.cli.dask_worker"
# Benchmarks only: a module run in place of WORKER_MODULE, with `dask worker`'s command line
# (bench/simworkers.py runs many simulated workers per task).
WORKER_MODULE_VARIABLE = "DASKLAUNCH_WORKER_MODULE"


# Flags of `dask worker` / `dask scheduler` that dasklaunch sets itself, and the option that
# sets them: given again through --worker-arg/--scheduler-arg they would silently fight ours.
OWN_WORKER_FLAGS = {
    "--scheduler-file": "--state-dir", "--nthreads": "--nthreads",
    "--nworkers": "--nworkers", "--nprocs": "--nworkers", "--memory-limit": "--memory-limit",
    "--death-timeout": "--death-timeout", "--interface": "--interface", "--host": "--interface",
    "--protocol": "--tls/--no-tls", "--tls-ca-file": "--tls/--no-tls",
    "--tls-cert": "--tls/--no-tls", "--tls-key": "--tls/--no-tls",
    "--nanny": "--nanny/--no-nanny", "--no-nanny": "--nanny/--no-nanny",
    "--name": "--pool (workers are named POOL-HOST-N)",
}
# ... and those it sets only when its own option is given (jobqueue.yaml's worker-extra-args
# commonly carries --lifetime, which stays allowed when --lifetime is not given).
OWN_WORKER_FLAGS_WHEN = {
    "--local-directory": ("local_directory", "--local-directory"),
    "--lifetime": ("lifetime", "--lifetime"), "--lifetime-restart": ("lifetime", "--lifetime"),
    "--lifetime-stagger": ("lifetime", "--lifetime-stagger"),
}
OWN_SCHEDULER_FLAGS = {
    "--scheduler-file": "--state-dir", "--port": "--port",
    "--dashboard-address": "--dashboard-address", "--interface": "--interface",
    "--host": "--interface", "--protocol": "--tls/--no-tls", "--tls-ca-file": "--tls/--no-tls",
    "--tls-cert": "--tls/--no-tls", "--tls-key": "--tls/--no-tls",
}


def check_passthrough_args(opts: UpOptions) -> None:
    """Refuse --worker-arg/--scheduler-arg flags that dasklaunch sets itself, naming the
    dasklaunch option to use instead."""
    for option, args, own in (("--worker-arg", opts.worker_args, OWN_WORKER_FLAGS),
                              ("--scheduler-arg", opts.scheduler_args, OWN_SCHEDULER_FLAGS)):
        for arg in args:
            flag = arg.partition("=")[0]
            instead = own.get(flag)
            if option == "--worker-arg" and flag in OWN_WORKER_FLAGS_WHEN:
                field, name = OWN_WORKER_FLAGS_WHEN[flag]
                instead = name if getattr(opts, field) else None
            if instead:
                raise UsageError(f"{option} {arg}: dasklaunch sets {flag} itself; use "
                                 f"{instead} instead")


def network_args(opts: UpOptions, local: bool) -> list[str]:
    if opts.interface:
        return ["--interface", opts.interface]
    # A laptop cluster should not listen on every network the machine is on.
    return ["--host", LOCAL_HOST] if local else []


def scheduler_command(opts: UpOptions, scheduler_file: str, *, local: bool,
                      tls_args: list[str] | tuple[str, ...] = (),
                      python: str = sys.executable) -> list[str]:
    argv = [python, "-m", "distributed.cli.dask_scheduler", "--scheduler-file", scheduler_file,
            "--port", str(opts.port), "--dashboard-address", opts.dashboard_address,
            "--preload", SCHEDULER_PRELOAD]
    argv += network_args(opts, local)
    argv += list(tls_args)
    argv += list(opts.scheduler_args)
    return argv


# distributed.nanny.pre-spawn-environ's defaults, and the PYTHONHASHSEED the nanny adds. The
# nanny sets them in its own process just before it spawns a worker; a forked worker inherits a
# process whose malloc, hash seed and BLAS already read the old values, so with prefork, fork
# and forkserver they must be in the environment the step starts with, as distributed's docs
# advise (the seed is what keeps hashing consistent between workers).
PRE_SPAWN_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1",
                     "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                     "PYTHONHASHSEED": "6640"}
START_METHOD_VARIABLE = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"


def start_method(opts: UpOptions) -> str:
    return opts.start_method or DEFAULT_START_METHOD


def start_method_env(method: str | None, inherited: dict[str, str]) -> dict[str, str]:
    """Variables for the worker step that make the nanny start workers with `method` (None: the
    default, prefork, which the node launcher does itself: no Dask variable).
    `inherited` is the environment the step gets anyway: what the user set there wins."""
    method = method or DEFAULT_START_METHOD
    if method not in START_METHODS:
        raise UsageError(f"--start-method must be one of {', '.join(START_METHODS)}, "
                         f"not {method!r}")
    env = {} if method == "prefork" else {START_METHOD_VARIABLE: method}
    if method != "spawn":
        env.update({k: v for k, v in PRE_SPAWN_ENVIRON.items() if k not in inherited})
    return env


def worker_options(opts: UpOptions, plan: WorkerPlan, scheduler_file: str, *, local: bool,
                   tls_args: list[str] | tuple[str, ...] = (), nworkers: bool = True
                   ) -> list[str]:
    """The options dasklaunch gives every worker program of a plan (`dask worker` and, without
    --nworkers, `dask cuda worker`): the user's own --worker-arg come after them."""
    argv = ["--scheduler-file", scheduler_file, "--nthreads", str(plan.nthreads)]
    if nworkers:
        argv += ["--nworkers", str(plan.nworkers)]
    argv += ["--memory-limit", plan.memory_limit, "--death-timeout", f"{opts.death_timeout:g}"]
    argv += network_args(opts, local)
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
    return argv


def worker_command(opts: UpOptions, plan: WorkerPlan, scheduler_file: str, *, local: bool,
                   tls_args: list[str] | tuple[str, ...] = (),
                   python: str = sys.executable, module: str = WORKER_MODULE) -> list[str]:
    return [python, "-m", module,
            *worker_options(opts, plan, scheduler_file, local=local, tls_args=tls_args),
            *opts.worker_args]


NODE_LAUNCHER = "dasklaunch.launch.node"


def workers_per_task(opts: UpOptions, pool: PoolPlan, tasks_per_node: tuple[int, ...],
                     *, local: bool) -> int:
    """K > 1: the pool's step runs one task per node, whose launcher starts the K workers the
    node's K tasks would have run (same names, CPUs, memory), importing distributed once per
    node instead of once per task: the time to ready at several workers per node is mostly
    those imports (docs/performance.md). Only where the launcher forks its workers (prefork)
    and for plain CPU workers on nodes with as many tasks each; 1 otherwise. The local backend's
    tasks are forked from one launcher already. Never with an explicit --per-task; nor with
    --memory-limit auto (Dask would divide the node by the CPUs the launcher saw when it
    imported distributed: all K tasks'), nor --drain-timeout 0 (without the drain's shield,
    Slurm's SIGTERM and the launcher's own would both reach each worker)."""
    if local or pool.plan.placement != "tasks" or pool.gpus_per_worker or pool.gpu_tasks:
        return 1
    if pool.cuda_args is not None or not opts.nanny or start_method(opts) != "prefork":
        return 1
    if opts.per_node is False or opts.drain_timeout <= 0:
        return 1
    if pool.plan.memory_limit.lower() == "auto":
        return 1
    if pool.spec.ntasks_per_node is not None:
        tasks_per_node = (pool.spec.ntasks_per_node,)
    if len(set(tasks_per_node)) != 1 or pool.plan.ntasks != tasks_per_node[0] * pool.plan.nnodes:
        return 1
    return tasks_per_node[0]


def pool_command(opts: UpOptions, pool: PoolPlan, scheduler_file: str, *, local: bool,
                 tls_args: list[str] | tuple[str, ...] = (),
                 python: str = sys.executable, module: str = WORKER_MODULE,
                 per_task: int = 1) -> list[str]:
    """What each task of a pool's step runs: the node launcher (which names the workers
    POOL-HOST-N, pins GPU workers to their GPUs and, with prefork, forks them), then `dask
    worker` with the pool's shape. A GPU pool's task starts one `dask worker` per GPU (or per
    gpus-per-worker GPUs)."""
    spec = pool.spec
    shaped = replace(opts, local_directory=spec.local_directory or opts.local_directory,
                     worker_args=(*opts.worker_args, *spec.worker_args))
    plan = replace(pool.plan, nworkers=1) if pool.gpus_per_worker else pool.plan
    shape = []
    if pool.resources:
        shape += ["--resources", " ".join(f"{k}={v}" for k, v in pool.resources)]
    if spec.worker_class:
        shape += ["--worker-class", spec.worker_class]
    method = start_method(opts)
    prefork = ["--prefork"] if method == "prefork" else []
    if pool.cuda_args is None:
        argv = [*worker_command(shaped, plan, scheduler_file, local=local, tls_args=tls_args,
                                python=python, module=module), *shape]
    else:
        # `dask cuda worker` is its own program, built from the same plan: the node launcher
        # starts it, it forks nothing, and it sets its nannies' start method itself (spawn,
        # unless told otherwise)
        prefork = []
        method_args = ("--multiprocessing-method", method) if method != "prefork" else ()
        argv = dask_cuda.worker_command(
            python, worker_options(shaped, plan, scheduler_file, local=local, nworkers=False,
                                   # its preload goes to the environment (dask_cuda.worker_env)
                                   tls_args=dask_cuda.translated(tls_args)),
            shaped.worker_args, (*shape, *method_args, *pool.cuda_args))
    # gpu-tasks: each task is one worker, on its share of the GPUs it sees
    gpu_tasks = ["--gpu-tasks"] if pool.gpu_tasks else []
    folded = ["--workers-per-task", str(per_task)] if per_task > 1 else []
    return [python, "-m", NODE_LAUNCHER, "--pool", spec.name,
            "--gpus-per-worker", str(pool.gpus_per_worker), *gpu_tasks, *prefork, *folded,
            *drain_args(opts), "--", *argv]


def drain_args(opts: UpOptions) -> list[str]:
    """The node launcher's --drain-timeout (none when draining is off)."""
    if opts.drain_timeout < 0:
        raise UsageError(f"--drain-timeout must be >= 0 seconds, not {opts.drain_timeout:g}")
    return ["--drain-timeout", f"{opts.drain_timeout:g}"] if opts.drain_timeout > 0 else []

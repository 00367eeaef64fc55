"""The cluster commands: up, status, restart-workers, down, env, supervise, scale-out.

Each parses its options and calls one function of ops/; nothing here imports distributed."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from ..domain.settings import DEFAULT_DRAIN_TIMEOUT
from ..domain.units import plural
from .options import JsonOpt, StateDirOpt, TimeoutOpt
from .show import print_status, print_up

app = typer.Typer()  # the commands below are registered on the root app by register()


# what `up`'s command takes that is not an option of the cluster
COMMAND_ONLY = ("state_dir", "supervise", "walltime_margin", "dry_run", "as_json")


def up_options(params: dict):
    """`up`'s parsed parameters as UpOptions: the one mapping from the command line, for `up`
    and for the `up` options of `batch` (the API's keywords go through the same one)."""
    from ..domain.settings import options_from

    return options_from({k: v for k, v in params.items() if k not in COMMAND_ONLY})[0]


def explicit_options(ctx) -> set[str]:
    """The options of `up` (parsed into `ctx`) that were given, not defaulted: jobqueue.yaml
    fills only the others."""
    from ..domain.settings import OPTION_ALIASES
    from ..profiles.jobqueue import SOURCES

    param = {field_name: name for name, field_name in OPTION_ALIASES.items()}
    return {name for name in SOURCES
            if ctx.get_parameter_source(param.get(name, name)).name
            not in ("DEFAULT", "DEFAULT_MAP")}


def _print_json(data: dict) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


@app.command()
def up(
    ctx: typer.Context,
    state_dir: StateDirOpt = None,
    backend: Annotated[str, typer.Option(metavar="auto|slurm|local",
                                         help="auto: Slurm inside an allocation, else local."
                                         )] = "auto",
    interface: Annotated[Optional[str], typer.Option(
        "--interface", "-i", metavar="IFACE",
        help="Network interface for the scheduler and workers (ib0, "
             "ipogif0, ...).")] = None,
    scheduler_here: Annotated[bool, typer.Option(
        "--scheduler-here",
        help="Run the scheduler where `up` runs, not in its own step on the first node.")] = False,
    per_node: Annotated[Optional[bool], typer.Option(
        "--per-node/--per-task",
        help="One worker process per node with all its CPUs as threads, or one per Slurm task "
             "[default: the profile's layout, else per task].")] = None,
    profile: Annotated[Optional[str], typer.Option(
        metavar="NAME|FILE",
        help="Memory profile (name or YAML file) for this job only: see `dasklaunch profile "
             "list`.")] = None,
    nthreads: Annotated[Optional[int], typer.Option(
        metavar="N",
        help="Threads per worker process [default: CPUs per task, or per node].")] = None,
    nworkers: Annotated[int, typer.Option(metavar="N", help="Worker processes per task.")] = 1,
    memory_limit: Annotated[Optional[str], typer.Option(
        metavar="SIZE",
        help="Memory per worker process, e.g. 12GiB [default: 90% of the allocation's memory "
             "per node, less a share for the scheduler, divided among its workers].")] = None,
    local_directory: Annotated[Optional[str], typer.Option(
        metavar="DIR", help="Node-local scratch for spilling, e.g. /tmp.")] = None,
    death_timeout: Annotated[float, typer.Option(
        metavar="SECONDS", help="Seconds a worker waits for a scheduler before giving up.")] = 60.0,
    worker_arg: Annotated[Optional[list[str]], typer.Option(
        "--worker-arg", metavar="ARG",
        help="Extra argument passed to `dask worker` (repeatable).")] = None,
    scheduler_arg: Annotated[Optional[list[str]], typer.Option(
        "--scheduler-arg", metavar="ARG",
        help="Extra argument passed to `dask scheduler` (repeatable).")] = None,
    dashboard_address: Annotated[str, typer.Option(
        metavar="[HOST]:PORT",
        help="Dashboard address; a bare port binds to the scheduler's interface only, "
             "':PORT' to every interface.")] = "8787",
    tls: Annotated[bool, typer.Option(
        "--tls/--no-tls", help="Per-job TLS certificates; --no-tls lets anyone who reaches "
                               "the scheduler run code as you.")] = True,
    port: Annotated[int, typer.Option(
        metavar="PORT",
        help="Scheduler port [default 0: a free one; clients use the scheduler file].")] = 0,
    nanny: Annotated[bool, typer.Option(
        "--nanny/--no-nanny", help="Run workers under a nanny (restarts, memory limits).")] = True,
    start_method: Annotated[Optional[str], typer.Option(
        metavar="prefork|spawn|fork|forkserver",
        help="How workers start: prefork (default: distributed imported once per launcher, "
             "then forked, never from a threaded process; see docs/performance.md), or Dask's "
             "spawn, fork, forkserver.")] = None,
    wait_workers: Annotated[str, typer.Option(
        metavar="N|all", help="Return when this many workers are connected, or 'all'.")] = "all",
    timeout: Annotated[float, typer.Option(
        metavar="SECONDS", help="Seconds to wait for readiness.")] = 120.0,
    local_tasks: Annotated[Optional[int], typer.Option(
        metavar="N", help="Local backend: tasks to fake [default: CPUs here].")] = None,
    lifetime: Annotated[Optional[str], typer.Option(
        metavar="DURATION",
        help="Restart each worker after this long (e.g. 1h), so long jobs rotate them.")] = None,
    lifetime_stagger: Annotated[Optional[str], typer.Option(
        metavar="DURATION", help="Random spread of --lifetime across workers (e.g. 5m).")] = None,
    pool: Annotated[Optional[list[str]], typer.Option(
        "--pool", metavar="NAME:KEY=VALUE,...",
        help="A worker pool (repeatable): keys nodes, het-group, ntasks-per-node, nworkers, "
             "nthreads, memory-limit, gpus-per-worker, resources, worker-class, "
             "local-directory, worker-arg, share, gpu-tasks, dask-cuda, rmm-pool-size, "
             "device-memory-limit, cudf-spill [default: one pool on every node, one per "
             "component of a heterogeneous job; GPU nodes get one worker per GPU].")] = None,
    rmm_pool_size: Annotated[Optional[str], typer.Option(
        metavar="FRACTION|SIZE",
        help="dask-cuda pools: RMM pool per GPU worker, as a fraction of the GPU's memory "
             "(0.9) or a size [default: the profile's distributed.rmm.pool-size, else "
             "none].")] = None,
    device_memory_limit: Annotated[Optional[str], typer.Option(
        metavar="FRACTION|SIZE",
        help="dask-cuda pools: device memory at which a GPU worker spills to host memory "
             "[default: dask-cuda's, 80%].")] = None,
    enable_cudf_spill: Annotated[bool, typer.Option(
        "--enable-cudf-spill", help="dask-cuda pools: cuDF's own spilling.")] = False,
    drain_timeout: Annotated[float, typer.Option(
        metavar="SECONDS",
        help="Seconds a worker told to end (restart-workers, down --pool, scancel, walltime, "
             "preemption) spends handing its results to workers that stay; 0: none.")
    ] = DEFAULT_DRAIN_TIMEOUT,
    container: Annotated[Optional[str], typer.Option(
        metavar="IMAGE|none",
        help="Run the scheduler and every worker in this image (a .sif file or directory, "
             "docker://NAME, NAME[:TAG]), which must hold this version of dasklaunch; none: "
             "no container, over a profile's [default: the profile's, else none]. See "
             "docs/containers.md.")] = None,
    container_runtime: Annotated[str, typer.Option(
        metavar="auto|apptainer|singularity|podman|pyxis",
        help="What runs the image; auto: the first of apptainer, singularity, pyxis (srun "
             "--container-image), podman found here.")] = "auto",
    container_arg: Annotated[Optional[list[str]], typer.Option(
        "--container-arg", metavar="ARG",
        help="Extra option for the runtime, before the image, e.g. --container-arg=--userns "
             "(repeatable).")] = None,
    supervise: Annotated[bool, typer.Option(
        "--supervise", help="Stay in the foreground and bring worker pools back (see `dasklaunch "
             "supervise`).")] = False,
    walltime_margin: Annotated[Optional[float], typer.Option(
        metavar="SECONDS",
        help="With --supervise: bring the cluster down this many seconds before the job "
             "ends.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print every command that would run, run nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Start the scheduler and the workers for this job, and wait until they are ready."""
    from ..ops.up import up as run_up

    opts = up_options(ctx.params)
    result = run_up(opts, state_dir=state_dir, dry_run=dry_run, explicit=explicit_options(ctx))
    if as_json:
        _print_json(result)
    elif dry_run:
        version = f" ({result['backend_version']})" if result["backend_version"] else ""
        print(f"# backend {result['backend']}{version}, job {result['job_id']}, "
              f"{plural(result['expected_workers'], 'worker')} ({result['layout']}, "
              f"{plural(result['threads_per_worker'], 'thread')} each), state dir "
              f"{result['state_dir']}")
        print(f"# memory: {result['memory']}")
        for name, origin in sorted(result.get("sources", {}).items()):
            if origin != "default":
                print(f"# {name.replace('_', '-')}: from {origin}")
        if result["profile"]:
            print(f"# profile: {result['profile']}")
        if result.get("pools_summary"):
            print(f"# {result['pools_summary']}")
        for note in result.get("notes", []):
            print(f"# {note}")
        for command in result["commands"]:
            print(command)
    else:
        print_up(result)
    if dry_run and result.get("refused"):
        from ..errors import AlreadyUpError

        raise AlreadyUpError(f"a real `up` would refuse: {result['refused']}")
    if supervise and not dry_run:
        from ..ops.supervise import SuperviseOptions
        from ..ops.supervise import supervise as run_supervisor

        raise typer.Exit(run_supervisor(result["state_dir"],
                                        SuperviseOptions(walltime_margin=walltime_margin)))


@app.command()
def status(state_dir: StateDirOpt = None, as_json: JsonOpt = False,
           workers_too: Annotated[bool, typer.Option(
               "--workers", help="Also list every worker (name, address, threads, memory); "
                                 "without it the scheduler sends only totals.")] = False,
           ) -> None:
    """Show the scheduler, the workers connected vs expected, and each worker pool.

    Exits 0 when the scheduler is alive, 1 otherwise."""
    from ..ops.status import status as run_status

    result = run_status(state_dir, workers=workers_too)
    if as_json:
        _print_json(result)
    else:
        print_status(result, workers_too)
    if not result["scheduler"]["alive"]:
        raise typer.Exit(1)


@app.command("restart-workers")
def restart_workers(
    state_dir: StateDirOpt = None,
    hard: Annotated[bool, typer.Option(
        "--hard", help="Kill the pool at once, no graceful stop.")] = False,
    pool: Annotated[Optional[str], typer.Option(
        "--pool", metavar="NAME", help="Only this pool; the others keep running.")] = None,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Relaunch the worker pool (after OOM or when half dead); the scheduler keeps its state."""
    from ..ops.restart import restart_workers as run_restart

    result = run_restart(state_dir, hard=hard, timeout=timeout, pool=pool)
    if as_json:
        _print_json(result)
    else:
        print(f"workers    {result['workers']} connected to {result['address']} "
              f"(pool generation {result['generation']})")


@app.command()
def down(
    state_dir: StateDirOpt = None,
    pool: Annotated[Optional[str], typer.Option(
        "--pool", metavar="NAME",
        help="Stop only this pool (restart-workers --pool brings it back).")] = None,
    workers_only: Annotated[bool, typer.Option(
        "--workers-only", help="Stop only the workers; the scheduler and its state stay.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop the workers and the scheduler (graceful, then hard). Logs are kept. Idempotent."""
    from ..ops.down import down as run_down

    result = run_down(state_dir, workers_only=workers_only, pool=pool)
    if as_json:
        _print_json(result)


@app.command()
def env(
    state_dir: StateDirOpt = None,
    path: Annotated[bool, typer.Option("--path", help="Print only the env file's path.")] = False,
    fmt: Annotated[str, typer.Option("--format", metavar="sh|json", help="sh or json.")] = "sh",
    worker: Annotated[bool, typer.Option(
        "--worker", help="The worker's TLS settings instead of the client's, for scripts that "
                         "start workers themselves (dask worker, dask cuda worker).")] = False,
) -> None:
    """Print the job's environment for batch scripts: eval "$(dasklaunch env)"."""
    from ..ops.env import show_env

    show_env(state_dir, path, fmt, worker=worker)



# The order `dasklaunch --help` lists them in: by use.
ORDER = ("up", "status", "restart-workers", "down", "env")


def register(root: typer.Typer) -> None:
    """Put these commands on the root app, in ORDER."""
    def name(info) -> str:
        return info.name or info.callback.__name__.replace("_", "-")

    root.registered_commands.extend(sorted(app.registered_commands,
                                           key=lambda info: ORDER.index(name(info))))

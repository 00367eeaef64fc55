"""The commands that add to a running cluster or watch it: join, supervise, scale-out."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from ..domain.units import plural
from .options import JsonOpt, StateDirOpt, TimeoutOpt

app = typer.Typer()  # registered on the root app by register()


def _print_json(data: dict) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


@app.command("join", context_settings={"allow_extra_args": True,
                                       "ignore_unknown_options": True})
def join_command(
    ctx: typer.Context,
    state_dir: StateDirOpt = None,
    pool: Annotated[str, typer.Option(
        "--pool", metavar="NAME", help="The pool the workers are recorded as: a new one, or "
                                       "more workers for one that exists.")] = "joined",
    nworkers: Annotated[int, typer.Option(
        "--nworkers", metavar="N", help="Worker processes of the default `dask worker`.")] = 1,
    nthreads: Annotated[Optional[int], typer.Option(
        "--nthreads", metavar="N", help="Threads per worker of the default `dask worker` "
                                        "[default: as the pool's workers, else as the first "
                                        "pool's].")] = None,
    memory_limit: Annotated[Optional[str], typer.Option(
        "--memory-limit", metavar="SIZE|FRACTION|auto",
        help="Memory limit per worker of the default `dask worker` [default: as the pool's "
             "workers, else as the first pool's].")] = None,
    expect: Annotated[Optional[int], typer.Option(
        "--expect", metavar="N", help="Workers COMMAND starts, to wait for [default: "
                                     "--nworkers].")] = None,
    timeout: TimeoutOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Start workers that join this cluster: `dask worker` by default, or COMMAND after --.

    dasklaunch join [--pool NAME] [-- COMMAND ...]

    COMMAND gets the cluster's scheduler file and the worker's TLS settings in its environment
    (DASK_SCHEDULER_FILE, DASK_DISTRIBUTED__COMM__TLS__*); it runs here, in its own process
    group, and is recorded as a pool: status, restart-workers --pool and down know it."""
    from ..ops.join import join

    result = join(state_dir, pool=pool, command=list(ctx.args), nworkers=nworkers,
                  expect=expect, nthreads=nthreads, memory_limit=memory_limit, timeout=timeout)
    if as_json:
        _print_json(result)
    else:
        print(f"pool       {result['pool']}: {plural(result['workers'], 'worker')} joined, "
              f"{result['command']}")
        print(f"log        {result['log']}")


@app.command("supervise")
def supervise_command(
    state_dir: StateDirOpt = None,
    min_workers: Annotated[Optional[int], typer.Option(
        help="Relaunch when fewer workers stay connected [default: all expected].")] = None,
    grace: Annotated[float, typer.Option(
        help="Seconds below --min-workers before relaunching.")] = 30.0,
    max_restarts: Annotated[int, typer.Option(help="Give up after this many restarts.")] = 5,
    backoff: Annotated[float, typer.Option(
        help="Seconds to wait after a relaunch that did not hold; doubles each time.")] = 5.0,
    interval: Annotated[float, typer.Option(help="Seconds between checks.")] = 2.0,
    restart_scheduler: Annotated[bool, typer.Option(
        "--restart-scheduler",
        help="When the scheduler dies, restart the whole cluster (clients must reconnect).")
    ] = False,
    walltime_margin: Annotated[Optional[float], typer.Option(
        help="Bring the cluster down this many seconds before the job ends.")] = None,
) -> None:
    """Watch the running cluster in the foreground and bring worker pools back.

    Exits 0 on SIGTERM/Ctrl-C (the cluster keeps running) or after `down`, 1 when it gives up
    or the scheduler is gone."""
    from ..ops.supervise import SuperviseOptions, supervise

    opts = SuperviseOptions(min_workers=min_workers, grace=grace, max_restarts=max_restarts,
                            backoff=backoff, interval=interval,
                            restart_scheduler=restart_scheduler, walltime_margin=walltime_margin)
    raise typer.Exit(supervise(state_dir, opts))


@app.command("scale-out")
def scale_out_command(
    jobs: Annotated[int, typer.Option("--jobs", help="How many extra worker-only jobs this "
                                                    "cluster should have (0 cancels them).")],
    state_dir: StateDirOpt = None,
    cores: Annotated[Optional[int], typer.Option(
        metavar="N", help="CPUs per job [default: per node of this allocation].")] = None,
    memory: Annotated[Optional[str], typer.Option(
        metavar="SIZE", help="Memory per job, e.g. 16GiB [default: per node of this "
                             "allocation].")] = None,
    processes: Annotated[int, typer.Option(metavar="N", help="Worker processes per job.")] = 1,
    pool: Annotated[Optional[str], typer.Option(
        "--pool", metavar="NAME",
        help="Copy this pool's shape: its workers per node, threads, memory, GPUs and "
             "resources (--cores/--memory/--processes are then ignored).")] = None,
    walltime: Annotated[Optional[str], typer.Option(
        metavar="TIME", help="Time limit per job (HH:MM:SS).")] = None,
    keep: Annotated[bool, typer.Option(
        "--keep", help="Keep --jobs worker jobs for as long as the cluster is up: the "
                       "supervisor submits each one's replacement before its --walltime, then "
                       "drains it.")] = False,
    job_option: Annotated[Optional[list[str]], typer.Option(
        "--job-option", metavar="OPTION",
        help="Extra #SBATCH option, e.g. --qos=debug (repeatable).")] = None,
    container: Annotated[Optional[str], typer.Option(
        metavar="IMAGE|none",
        help="The image the jobs' workers run in: one this cluster's `up` checked, or none "
             "[default: the pool's (--pool), else the cluster's].")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the job scripts that would be submitted (and the jobs that "
                          "would be cancelled); submit and cancel nothing.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add (or remove) worker-only Slurm jobs whose workers join this job's scheduler.

    The job scripts come from dask-jobqueue's SLURMJob; `status` lists the jobs and `down`
    cancels them."""
    from ..ops.scale_out import scale_out

    result = scale_out(state_dir, jobs, cores=cores, memory=memory, processes=processes,
                       walltime=walltime, job_options=job_option or [], pool=pool, keep=keep,
                       dry_run=dry_run, container=container)
    if as_json:
        _print_json(result)
    elif dry_run:
        for job_id in result["cancel"]:
            print(f"# would cancel scale-out job {job_id}")
        for script in result["scripts"]:
            print(script.rstrip() + "\n")
    else:
        for job in result["jobs"]:
            print(f"job {job['job_id']} ({job['name']}): {job['state']}")



ORDER = ("join", "supervise", "scale-out")


def register(root: typer.Typer) -> None:
    """Put these commands on the root app, after the cluster's own, in ORDER."""
    def name(info) -> str:
        return info.name or info.callback.__name__.replace("_", "-")

    root.registered_commands.extend(sorted(app.registered_commands,
                                           key=lambda info: ORDER.index(name(info))))

"""`dasklaunch batch`: an sbatch job around a command."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated, Optional

import typer

from ..domain import sbatch
from ..domain.settings import UpOptions
from ..errors import UsageError

# ---------------------------------------------------------------------------------------- batch

def batch_command(
    ctx: typer.Context,
    nodes: Annotated[Optional[str], typer.Option(
        help="Nodes for the job: N or MIN-MAX (sbatch --nodes).")] = None,
    ntasks_per_node: Annotated[Optional[int], typer.Option(
        metavar="N", help="Slurm tasks per node; `up` starts one worker per task by "
                          "default.")] = None,
    gpus_per_node: Annotated[Optional[int], typer.Option(
        metavar="N", help="GPUs per node (sbatch --gpus-per-node); `up` starts one worker "
                          "per GPU.")] = None,
    cpus_per_task: Annotated[Optional[int], typer.Option(
        metavar="N", help="CPUs per task (sbatch --cpus-per-task): each worker's threads.")
    ] = None,
    mem: Annotated[Optional[str], typer.Option(
        metavar="SIZE", help="Memory per node (sbatch --mem: 8G, 8000M; 0: all of it); "
                             "`up` sizes its workers within it.")] = None,
    time_limit: Annotated[Optional[str], typer.Option(
        "--time", help="Walltime: minutes, HH:MM:SS or D-HH:MM:SS (sbatch --time).")] = None,
    partition: Annotated[Optional[str], typer.Option(help="sbatch --partition.")] = None,
    account: Annotated[Optional[str], typer.Option(help="sbatch --account.")] = None,
    qos: Annotated[Optional[str], typer.Option(help="sbatch --qos.")] = None,
    constraint: Annotated[Optional[str], typer.Option(help="sbatch --constraint.")] = None,
    job_name: Annotated[str, typer.Option(help="sbatch --job-name.")] = sbatch.DEFAULT_JOB_NAME,
    output: Annotated[Optional[str], typer.Option(
        help="The job's output file, %j for the job id [default: Slurm's slurm-%j.out].")] = None,
    sbatch_arg: Annotated[Optional[list[str]], typer.Option(
        "--sbatch-arg", help="Any other sbatch option, as one word: --sbatch-arg=--mem=8G "
                             "(repeatable).")] = None,
    walltime_margin: Annotated[int, typer.Option(
        help="Seconds before the walltime at which Slurm sends SIGTERM to the script, which "
             "then stops the command and brings the cluster down.")] = sbatch.DEFAULT_MARGIN,
    requeue: Annotated[bool, typer.Option(
        "--requeue", help="Come back instead of ending: before the walltime (and on preemption "
                          "where Slurm signals it) bring the cluster down and requeue the job; "
                          "the next run starts a new cluster and runs COMMAND again, so COMMAND "
                          "must be restartable (skip outputs already written).")] = False,
    requeue_margin: Annotated[Optional[int], typer.Option(
        help="With --requeue: seconds before the walltime at which Slurm sends SIGUSR1 "
             "[default: --walltime-margin].")] = None,
    prologue: Annotated[Optional[list[str]], typer.Option(
        "--prologue", help="A shell line to run first, e.g. 'module load python' (repeatable) "
                           "[default: jobqueue.slurm.job-script-prologue from the Dask "
                           "config].")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the script instead of submitting it.")] = False,
) -> None:
    """Submit an sbatch job that brings a cluster up, runs COMMAND, and brings it down.

    dasklaunch batch [BATCH OPTIONS] [UP OPTIONS] -- COMMAND [ARGS]...

    Options that are not batch options go, unchanged, to `dasklaunch up` inside the job (see
    `dasklaunch up --help`); nothing after -- is read as an option. COMMAND runs with the
    cluster's environment (SCHEDULER_FILE, DASK_SCHEDULER_ADDRESS, ...). The cluster is brought
    down when COMMAND ends, on scancel, and --walltime-margin seconds before the walltime; the
    job exits with COMMAND's exit code. With --requeue the job is requeued at that point (and
    on preemption) and runs COMMAND again.
    Prints the job id (the script, with --dry-run).
    """
    from ..ops import batch

    up_args, command, state_dir, opts, explicit = split_up_args(ctx, list(ctx.args))
    source = ctx.get_parameter_source("walltime_margin")
    if requeue_margin is not None and source is not None and source.name == "COMMANDLINE":
        raise UsageError("give --requeue-margin or --walltime-margin, not both")
    given = {"time": time_limit, "partition": partition, "account": account}
    spec = sbatch.BatchSpec(
        command=tuple(command), dasklaunch=batch.installed_command(), up_args=tuple(up_args),
        nodes=nodes, ntasks_per_node=ntasks_per_node, gpus_per_node=gpus_per_node,
        cpus_per_task=cpus_per_task, mem=mem, qos=qos, constraint=constraint,
        job_name=job_name, output=output, sbatch_args=tuple(sbatch_arg or ()),
        walltime_margin=walltime_margin, requeue=requeue, requeue_margin=requeue_margin,
        state_dir=state_dir,
        **{**given, **batch.prologue_defaults(prologue), **batch.jobqueue_defaults(given)})
    text = sbatch.render(spec)
    # up's own resolution, on the allocation this request describes: what up would refuse in
    # the job is refused now, before the job waits in the queue
    batch.check_up_options(opts, spec, explicit)
    if dry_run:
        sys.stdout.write(text)
        return
    if warning := batch.node_local_install(spec.dasklaunch):
        print(f"warning: {warning}", file=sys.stderr)
    job_id = batch.submit(text)
    print(job_id)
    print(f"submitted batch job {job_id}", file=sys.stderr)
    print(f"cluster logs: dasklaunch logs --state-dir "
          f"{shlex.quote(str(batch.job_state_dir(job_id, state_dir)))}", file=sys.stderr)


def split_up_args(ctx: typer.Context, args: list[str]
                  ) -> tuple[list[str], list[str], str | None, UpOptions, set[str]]:
    """Split what batch did not parse into `up` options and COMMAND, parsed by `up`'s parser.

    The click parser drops `--`, so `up`'s own parser finds the boundary: with interspersed
    arguments off it stops at COMMAND's first word. Returns (up args, command, the state dir
    when given as --state-dir, the up options, the names of those given)."""
    up_command = ctx.find_root().command.get_command(ctx, "up")
    try:
        up_ctx = up_command.make_context("up", list(args), allow_interspersed_args=False,
                                         allow_extra_args=True)
    except Exception as err:
        # typer vendors its own click, so its exceptions are recognised by shape, not by class
        if not hasattr(err, "format_message"):
            raise
        raise UsageError(_parse_error(err, ctx, up_command)) from None
    command = list(up_ctx.args)
    up_args = args[:len(args) - len(command)]
    if up_args[-1:] == ["--"]:
        up_args.pop()
    if not command:
        raise UsageError("no command to run: dasklaunch batch [OPTIONS] -- COMMAND [ARGS]...")
    source = up_ctx.get_parameter_source("state_dir")
    given = source is not None and source.name == "COMMANDLINE"
    state_dir = str(up_ctx.params["state_dir"]) if given else None
    from .cluster import explicit_options, up_options

    return up_args, command, state_dir, up_options(up_ctx.params), explicit_options(up_ctx)


def _parse_error(err: Exception, ctx: typer.Context, up_command) -> str:
    name = getattr(err, "option_name", None)
    if type(err).__name__ != "NoSuchOption" or not name:
        return " ".join(err.format_message().split())
    import difflib

    known = sorted({opt for command in (ctx.command, up_command) for param in command.params
                    for opt in (*param.opts, *param.secondary_opts) if opt.startswith("--")})
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return (f"unknown option {name}{hint}; before --, give batch options and `dasklaunch up` "
            f"options")

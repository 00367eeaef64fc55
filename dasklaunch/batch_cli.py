"""`dasklaunch batch` (an sbatch job around a command) and `dasklaunch logs`."""

from __future__ import annotations

import os
import shlex
import sys
import time
from contextlib import suppress
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import batch
from .errors import StateDirError, UsageError

StateDirOpt = Annotated[Optional[Path], typer.Option(
    "--state-dir", envvar="DASKLAUNCH_STATE_DIR",
    help="Per-job state directory [default: $SCRATCH/dasklaunch/JOB or ~/.dasklaunch/JOB].")]


# ---------------------------------------------------------------------------------------- batch

def batch_command(
    ctx: typer.Context,
    nodes: Annotated[Optional[str], typer.Option(
        help="Nodes for the job: N or MIN-MAX (sbatch --nodes).")] = None,
    ntasks_per_node: Annotated[Optional[int], typer.Option(
        help="Slurm tasks per node; `up` starts one worker per task by default.")] = None,
    time_limit: Annotated[Optional[str], typer.Option(
        "--time", help="Walltime: minutes, HH:MM:SS or D-HH:MM:SS (sbatch --time).")] = None,
    partition: Annotated[Optional[str], typer.Option(help="sbatch --partition.")] = None,
    account: Annotated[Optional[str], typer.Option(help="sbatch --account.")] = None,
    qos: Annotated[Optional[str], typer.Option(help="sbatch --qos.")] = None,
    constraint: Annotated[Optional[str], typer.Option(help="sbatch --constraint.")] = None,
    job_name: Annotated[str, typer.Option(help="sbatch --job-name.")] = batch.DEFAULT_JOB_NAME,
    output: Annotated[Optional[str], typer.Option(
        help="The job's output file, %j for the job id [default: Slurm's slurm-%j.out].")] = None,
    sbatch_arg: Annotated[Optional[list[str]], typer.Option(
        "--sbatch-arg", help="Any other sbatch option, as one word: --sbatch-arg=--mem=8G "
                             "(repeatable).")] = None,
    walltime_margin: Annotated[int, typer.Option(
        help="Seconds before the walltime at which Slurm sends SIGTERM to the script, which "
             "then stops the command and brings the cluster down.")] = batch.DEFAULT_MARGIN,
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
    job exits with COMMAND's exit code.
    Prints the job id (the script, with --dry-run).
    """
    up_args, command, state_dir = split_up_args(ctx, list(ctx.args))
    spec = batch.BatchSpec(
        command=tuple(command), dasklaunch=batch.installed_command(), up_args=tuple(up_args),
        nodes=nodes, ntasks_per_node=ntasks_per_node, time=time_limit, partition=partition,
        account=account, qos=qos, constraint=constraint, job_name=job_name, output=output,
        sbatch_args=tuple(sbatch_arg or ()), walltime_margin=walltime_margin,
        state_dir=state_dir, **_prologue_of(prologue))
    text = batch.render(spec)
    if dry_run:
        sys.stdout.write(text)
        return
    job_id = batch.submit(text)
    print(job_id)
    print(f"submitted batch job {job_id}", file=sys.stderr)
    print(f"cluster logs: dasklaunch logs --state-dir "
          f"{shlex.quote(str(_job_state_dir(job_id, state_dir)))}", file=sys.stderr)


def _prologue_of(given: list[str] | None) -> dict:
    if given is not None:
        return {"prologue": tuple(given), "prologue_source": "--prologue"}
    from .jobqueue import job_script_prologue

    return {"prologue": tuple(job_script_prologue()),
            "prologue_source": "jobqueue.slurm.job-script-prologue in the Dask config"}


def split_up_args(ctx: typer.Context, args: list[str]) -> tuple[list[str], list[str], str | None]:
    """Split what batch did not parse into `up` options and COMMAND; check the options.

    The click parser drops `--`, so `up`'s own parser finds the boundary: with interspersed
    arguments off it stops at COMMAND's first word. Returns (up args, command, the state dir
    when given as --state-dir)."""
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
    check_up_options(up_ctx.params)
    source = up_ctx.get_parameter_source("state_dir")
    given = source is not None and source.name == "COMMANDLINE"
    state_dir = str(up_ctx.params["state_dir"]) if given else None
    return up_args, command, state_dir


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


def check_up_options(params: dict) -> None:
    """Apply `up`'s own rules that hold whatever allocation the job gets, before submitting."""
    from dataclasses import fields

    from .allocation import Allocation
    from .launch import choose_backend
    from .lifecycle import resolve_profile
    from .plan import expected_workers, plan_workers
    from .settings import UpOptions

    known = {f.name for f in fields(UpOptions)}
    values = {key: value for key, value in params.items() if key in known}
    values["worker_args"] = tuple(params.get("worker_arg") or ())
    values["scheduler_args"] = tuple(params.get("scheduler_arg") or ())
    opts = UpOptions(**values)
    choose_backend(opts.backend, environ={})
    if opts.local_tasks is not None and opts.local_tasks < 1:
        raise UsageError(f"--local-tasks must be at least 1, not {opts.local_tasks}")
    # Larger than any job and with no memory figure, so only allocation-independent rules
    # (worker counts, memory syntax, the profile, --wait-workers) can fail here.
    huge = 1 << 20
    anywhere = Allocation(job_id="batch", nodes=("batch",), tasks_per_node=(huge,),
                          cpus_per_node=(huge,))
    opts, sizing, _ = resolve_profile(opts, anywhere)
    expected_workers(plan_workers(anywhere, opts, **sizing), opts)


def _job_state_dir(job_id: str, state_dir: str | None) -> Path:
    """Where the job keeps its state, assuming it inherits this environment (sbatch's default)."""
    from .state import default_state_dir

    if state_dir is not None:
        return Path(state_dir).expanduser().absolute()
    return default_state_dir(job_id)


# ----------------------------------------------------------------------------------------- logs

LOG_KINDS = ("scheduler", "workers", "all")
POLL_SECONDS = 0.25
RECORD_POLL_SECONDS = 1.0
_BLOCK = 64 * 1024


def _complete_kinds() -> list[str]:
    return list(LOG_KINDS)


def logs_command(
    which: Annotated[str, typer.Argument(
        metavar="[scheduler|workers|all]", autocompletion=_complete_kinds,
        help="Whose logs: the scheduler's, the current worker pools', or both.")] = "all",
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new lines (and new logs after restart-workers) "
                               "until Ctrl-C.")] = False,
    lines: Annotated[Optional[int], typer.Option(
        "--lines", "-n", help="Print only the last N lines of each log [default: all].")] = None,
    state_dir: StateDirOpt = None,
) -> None:
    """Show the scheduler and worker logs of this job (kept after `down`)."""
    if which not in LOG_KINDS:
        raise UsageError(f"logs takes scheduler, workers or all, not {which!r}")
    if lines is not None and lines < 0:
        raise UsageError(f"--lines must not be negative, not {lines}")
    state, record = _load_record(state_dir)
    try:
        if follow:
            _follow(state, which, lines, record)
        else:
            _print_logs(log_files(record, which), lines)
    except BrokenPipeError:
        # The reader (head, less) is gone: stop quietly, and keep Python's exit-time flush of
        # stdout from failing on the closed pipe.
        with suppress(OSError, ValueError, AttributeError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except KeyboardInterrupt:
        pass  # the way to end --follow


def _load_record(state_dir: Path | None):
    from .lifecycle import find_state_dir, load_record

    state = find_state_dir(state_dir)
    return state, load_record(state)


def log_files(record: dict, which: str) -> list[Path]:
    """The logs the state record names: the current scheduler's and the current pools'."""
    files = []
    sched = record.get("scheduler") or {}
    if which in ("scheduler", "all") and sched.get("log"):
        files.append(Path(sched["log"]))
    if which in ("workers", "all"):
        files += [Path(pool["log"]) for pool in record.get("pools") or [] if pool.get("log")]
    return files


def read_tail(path: Path, lines: int | None) -> tuple[bytes, int]:
    """The last `lines` lines of a file (all of it when None) and the offset it ends at.

    Reads backwards in blocks, so a long log costs only what is shown."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        if lines is None:
            handle.seek(0)
            return handle.read(end), end
        if lines == 0:
            return b"", end
        pos, data = end, b""
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(_BLOCK, pos)
            pos -= step
            handle.seek(pos)
            data = handle.read(step) + data
    closed = data.endswith(b"\n")
    kept = (data[:-1] if closed else data).split(b"\n")[-lines:]
    return b"\n".join(kept) + (b"\n" if closed else b""), end


class _Printer:
    """Writes log text to stdout, with tail's `==> FILE <==` header when the source changes."""

    def __init__(self, headers: bool):
        self.headers = headers
        self.last: Path | None = None

    def header(self, path: Path) -> None:
        if self.headers and path != self.last:
            sys.stdout.write(("\n" if self.last is not None else "") + f"==> {path} <==\n")
            self.last = path

    def emit(self, path: Path, data: bytes) -> None:
        if not data:
            return
        self.header(path)
        sys.stdout.write(data.decode(errors="replace"))
        sys.stdout.flush()


def _missing(path: Path) -> None:
    print(f"dasklaunch: {path}: no such log (yet)", file=sys.stderr)


def _print_logs(files: list[Path], lines: int | None) -> None:
    printer = _Printer(headers=len(files) > 1)
    for path in files:
        try:
            data, _ = read_tail(path, lines)
        except FileNotFoundError:
            _missing(path)
            continue
        printer.header(path)
        if data and not data.endswith(b"\n"):
            data += b"\n"
        printer.emit(path, data)
    sys.stdout.flush()


def _follow(state, which: str, lines: int | None, record: dict) -> None:
    """Print the tails, then whatever is appended, until Ctrl-C. Only whole lines are printed,
    so lines from different logs never mix; a log that appears later (a new scheduler or pool
    after up or restart-workers) is printed from its start."""
    files = log_files(record, which)
    printer = _Printer(headers=which == "all" or len(files) > 1)
    offsets: dict[Path, int] = {}
    for path in files:
        try:
            data, end = read_tail(path, lines)
        except FileNotFoundError:
            continue
        cut = data.rfind(b"\n") + 1
        offsets[path] = end - (len(data) - cut)
        printer.emit(path, data[:cut])
    next_record = time.monotonic() + RECORD_POLL_SECONDS
    while True:
        if time.monotonic() >= next_record:
            next_record = time.monotonic() + RECORD_POLL_SECONDS
            with suppress(StateDirError):
                current = log_files(state.read_record_or_backup()[0] or record, which)
                # a new log (restart-workers, a new up) gets a header even when alone
                if current != files or len(current) > 1:
                    printer.headers = True
                files = current
        for path in files:
            offsets[path] = _emit_new(printer, path, offsets.get(path, 0))
        time.sleep(POLL_SECONDS)


def _emit_new(printer: _Printer, path: Path, offset: int) -> int:
    """Print the whole lines appended to `path` since `offset`; return the new offset."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size < offset:  # truncated or replaced: start over
                offset = 0
            handle.seek(offset)
            data = handle.read(size - offset)
    except FileNotFoundError:
        return offset
    cut = data.rfind(b"\n") + 1
    printer.emit(path, data[:cut])
    return offset + cut

"""`dasklaunch batch`'s sbatch script: a pure renderer over templates/sbatch.sh.

The script brings the cluster up with the given `up` options, sources the env file, runs the
command, and brings the cluster down on every way out, including the SIGTERM that
`--signal=B:TERM@MARGIN` makes Slurm send to the batch shell before the walltime.

With `requeue` the job comes back instead of ending: `--signal=B:USR1@MARGIN`, sent before the
walltime and, where the site sets PreemptParameters=send_user_signal, when the job is
preempted. On USR1 the script brings the cluster down and then requeues the job itself
(`scontrol requeue`), except a preempted job under Slurm 24.05 or later, which Slurm requeues
as it ends (a second requeue would count twice); 22.05 ends a preempted job that exits during
its grace time as COMPLETED.
The next run (same job id, SLURM_RESTART_COUNT set) starts from scratch.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from ..errors import UsageError
from .resources import template
from .units import slurm_time_seconds

DEFAULT_JOB_NAME = "dasklaunch"
DEFAULT_MARGIN = 60
# sbatch keeps sig_time in 16 bits
MAX_MARGIN = 65535

# The sbatch options that `batch` has a flag of its own for, short forms included: given again
# through --sbatch-arg they would silently override (or be overridden by) that flag.
OWN_OPTIONS = {
    "--nodes": "--nodes", "-N": "--nodes",
    "--ntasks-per-node": "--ntasks-per-node",
    "--time": "--time", "-t": "--time",
    "--partition": "--partition", "-p": "--partition",
    "--account": "--account", "-A": "--account",
    "--qos": "--qos", "-q": "--qos",
    "--constraint": "--constraint", "-C": "--constraint",
    "--job-name": "--job-name", "-J": "--job-name",
    "--output": "--output", "-o": "--output",
    "--signal": "--walltime-margin or --requeue-margin",
    "--requeue": "--requeue", "--no-requeue": "--requeue",
}
# The request's shape, which `batch` plans the cluster on before submitting: given through
# --sbatch-arg the plan would not see them. jobqueue.yaml's job-extra-directives may carry them
# (a site's defaults), as dask-jobqueue allows.
REQUEST_OPTIONS = {"--gpus-per-node": "--gpus-per-node", "--cpus-per-task": "--cpus-per-task",
                   "-c": "--cpus-per-task", "--mem": "--mem"}


@dataclass(frozen=True)
class BatchSpec:
    """Everything the script depends on; `render` turns it into text and nothing else."""

    command: tuple[str, ...]
    dasklaunch: tuple[str, ...]
    up_args: tuple[str, ...] = ()
    nodes: str | None = None
    ntasks_per_node: int | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None              # per node, as sbatch --mem takes it (8G, 8000M)
    time: str | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    job_name: str = DEFAULT_JOB_NAME
    output: str | None = None
    sbatch_args: tuple[str, ...] = ()
    walltime_margin: int = DEFAULT_MARGIN
    # come back after the walltime or a preemption: USR1 at the margin, requeue after `down`
    requeue: bool = False
    requeue_margin: int | None = None   # seconds; None: walltime_margin
    state_dir: str | None = None
    prologue: tuple[str, ...] = ()   # shell lines run first (module load, conda activate, ...)
    prologue_source: str = "--prologue"
    # from jobqueue.yaml: job-extra-directives (sbatch options) and job-directives-skip
    # (substrings: a directive line containing one is left out, as dask-jobqueue does)
    extra_directives: tuple[str, ...] = ()
    directives_skip: tuple[str, ...] = ()
    directive_sources: str = ""   # a comment saying which directives came from where


# ----------------------------------------------------------------------------------- validation

_NODES = re.compile(r"[1-9][0-9]*(-[1-9][0-9]*)?")
def _check(spec: BatchSpec) -> None:
    if not spec.command:
        raise UsageError("no command to run: dasklaunch batch [OPTIONS] -- COMMAND [ARGS]...")
    if not spec.dasklaunch:
        raise UsageError("no dasklaunch command for the job to run")
    named = {"--nodes": spec.nodes, "--time": spec.time, "--partition": spec.partition,
             "--account": spec.account, "--qos": spec.qos, "--constraint": spec.constraint,
             "--job-name": spec.job_name, "--output": spec.output, "--state-dir": spec.state_dir}
    for flag, value in named.items():
        if value is None:
            continue
        if not value.strip():
            raise UsageError(f"{flag} must not be empty")
        if "\n" in value or "\r" in value:
            raise UsageError(f"{flag} must not contain a line break")
    for arg in spec.sbatch_args:
        _sbatch_arg_line(arg)
    for arg in spec.extra_directives:
        _sbatch_arg_line(arg, "jobqueue.yaml job-extra-directives")
    if spec.nodes is not None and not _NODES.fullmatch(spec.nodes):
        raise UsageError(f"--nodes takes a node count or a range MIN-MAX, not {spec.nodes!r}")
    for flag, count in (("--ntasks-per-node", spec.ntasks_per_node),
                        ("--gpus-per-node", spec.gpus_per_node),
                        ("--cpus-per-task", spec.cpus_per_task)):
        if count is not None and count < 1:
            raise UsageError(f"{flag} must be at least 1, not {count}")
    if spec.mem is not None:
        slurm_size(spec.mem)
    if spec.gpus_per_node is not None:
        # two requests for the same GPUs: Slurm 26.05 refuses the pair, earlier ones keep one
        sources = {"--sbatch-arg": spec.sbatch_args,
                   "jobqueue.yaml job-extra-directives": spec.extra_directives}
        for where, args in sources.items():
            if arg := next(filter(_GPU_GRES.match, args), None):
                raise UsageError(f"--gpus-per-node {spec.gpus_per_node} and {where} {arg!r} "
                                 f"both ask for GPUs: give one of them")
    if spec.requeue_margin is not None and not spec.requeue:
        raise UsageError("--requeue-margin needs --requeue")
    if spec.requeue:
        for arg in (*spec.sbatch_args, *spec.extra_directives):
            if arg.startswith("--open-mode"):
                raise UsageError(f"--requeue appends every run's output to one file: leave "
                                 f"out {arg!r}")
    flag, margin = _margin(spec)
    if not 1 <= margin <= MAX_MARGIN:
        raise UsageError(f"{flag} must be between 1 and {MAX_MARGIN} seconds, not {margin}")
    if spec.time is not None:
        limit = slurm_time_seconds(spec.time)
        if limit is not None and margin >= limit:
            raise UsageError(f"{flag} {margin}s leaves no time before --time {spec.time} "
                             f"({limit}s) runs out; lower the margin")


_GPU_GRES = re.compile(r"--gres[= ](?:[^ ]*,)?gpu\b")
_SLURM_SIZE = re.compile(r"(\d+)([KMGT]?)", re.IGNORECASE)
_SLURM_UNITS = {"": 2**20, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def slurm_size(text: str) -> int:
    """sbatch --mem's value in bytes: a number of megabytes, or with a K, M, G or T suffix;
    0 asks for all of each node's memory."""
    match = _SLURM_SIZE.fullmatch(text.strip())
    if not match:
        raise UsageError(f"--mem takes a size per node as sbatch does (8G, 8000M, 8000; 0: "
                         f"all of it), not {text!r}")
    return int(match.group(1)) * _SLURM_UNITS[match.group(2).upper()]


def _margin(spec: BatchSpec) -> tuple[str, int]:
    """The option that sets the signal's margin, and its seconds."""
    if spec.requeue and spec.requeue_margin is not None:
        return "--requeue-margin", spec.requeue_margin
    return "--walltime-margin", spec.walltime_margin


# -------------------------------------------------------------------------------------- quoting

def sbatch_quote(value: str) -> str:
    """Quote a value for an `#SBATCH` line.

    sbatch reads those lines with its own tokenizer, not a shell: single and double quotes
    group, and a backslash escapes the next character even inside single quotes. So shlex's
    quoting is right once backslashes are doubled; nothing else is special (`$HOME` is not
    expanded there, an unquoted `#` would start a comment and is quoted by shlex)."""
    return shlex.quote(value.replace("\\", "\\\\"))


def _sbatch_arg_line(arg: str, where: str = "--sbatch-arg") -> str:
    """One --sbatch-arg (`--exclusive`, `--mail-type=END`, `-w node1`) as the text of an
    #SBATCH line."""
    own = {**OWN_OPTIONS, **REQUEST_OPTIONS} if where == "--sbatch-arg" else OWN_OPTIONS
    if "\n" in arg or "\r" in arg:
        raise UsageError(f"{where} must not contain a line break: {arg!r}")
    if arg.startswith("--"):
        name, sep, value = arg.partition("=")
    elif arg.startswith("-") and len(arg) >= 2 and arg[1] != "-":
        name, value = arg[:2], arg[2:].lstrip(" ")
        sep = ""
    else:
        raise UsageError(f"{where} takes one sbatch option such as --mem=4G, not {arg!r}")
    if len(name) < 2 or not re.fullmatch(r"-[A-Za-z]|--[A-Za-z][A-Za-z0-9-]*", name):
        raise UsageError(f"{where} {arg!r}: write the option as --name=value")
    if name in own:
        raise UsageError(f"{where} {arg!r}: use {own[name]} instead")
    if sep == "" and value == "":
        return name
    return f"{name}{sep}{sbatch_quote(value)}"


# ------------------------------------------------------------------------------------ rendering

def directives(spec: BatchSpec) -> list[str]:
    """The sorted `#SBATCH` lines."""
    options = {
        "--account": spec.account, "--constraint": spec.constraint, "--job-name": spec.job_name,
        "--nodes": spec.nodes,
        "--ntasks-per-node": None if spec.ntasks_per_node is None else str(spec.ntasks_per_node),
        "--gpus-per-node": None if spec.gpus_per_node is None else str(spec.gpus_per_node),
        "--cpus-per-task": None if spec.cpus_per_task is None else str(spec.cpus_per_task),
        "--mem": spec.mem,
        "--output": spec.output, "--partition": spec.partition, "--qos": spec.qos,
        "--signal": f"B:{'USR1' if spec.requeue else 'TERM'}@{_margin(spec)[1]}",
        "--time": spec.time,
    }
    lines = [f"{name}={sbatch_quote(value)}" for name, value in options.items()
             if value is not None]
    if spec.requeue:
        lines += ["--requeue", "--open-mode=append"]
    lines += [_sbatch_arg_line(arg) for arg in spec.sbatch_args]
    lines += [_sbatch_arg_line(arg, "jobqueue.yaml job-extra-directives")
              for arg in spec.extra_directives]
    return sorted(f"#SBATCH {line}" for line in lines
                  if not any(skip in line for skip in spec.directives_skip))


_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")


def _fill(text: str, values: dict[str, str]) -> str:
    """Substitute {{name}}s (the template is a bash script: `$` stays bash's own). A line that
    is only a placeholder whose value is empty disappears."""
    out = []
    for line in text.splitlines(keepends=True):
        whole = _PLACEHOLDER.fullmatch(line.rstrip("\n"))
        if whole and values[whole.group(1)] == "":
            continue
        out.append(_PLACEHOLDER.sub(lambda m: values[m.group(1)], line))
    return "".join(out)


def _prologue(spec: BatchSpec) -> str:
    # Shell code on purpose, as in dask-jobqueue's job-script-prologue: not quoted.
    if not spec.prologue:
        return ""
    return "\n".join([f"# prologue, from {spec.prologue_source}", *spec.prologue, ""])


# One-line parts of the script that only a --requeue job has; the longer ones are templates
# (templates/sbatch-requeue-*.sh).
REQUEUE_NOTE = """\
# --requeue: on SIGUSR1 (the walltime margin, or preemption where Slurm sends the job's signal
# then) it brings the cluster down and requeues the job; the next run starts afresh and runs
# the command again. Output of every run is appended to the same file."""

REQUEUE_TRAP = "trap on_requeue_signal USR1"


def _requeue_part(name: str) -> str:
    """A part of the script that only a --requeue job has (templates/sbatch-requeue-*.sh)."""
    return template(f"sbatch-requeue-{name}.sh").rstrip("\n")


def render(spec: BatchSpec) -> str:
    """The sbatch script for `spec`. Pure: the same spec always gives the same text."""
    _check(spec)
    state_dir = ("" if spec.state_dir is None else
                 f"export DASKLAUNCH_STATE_DIR={shlex.quote(spec.state_dir)}")
    requeue = spec.requeue
    return _fill(template("sbatch.sh"), {
        "directives": "\n".join(directives(spec)),
        "directive_sources": spec.directive_sources and f"# {spec.directive_sources}",
        "margin": str(_margin(spec)[1]),
        "signal": "SIGUSR1" if requeue else "SIGTERM",
        "requeue_note": REQUEUE_NOTE if requeue else "",
        "requeue_setup": _requeue_part("setup") if requeue else "",
        "requeue_after_down": _requeue_part("after-down") if requeue else "",
        "requeue_trap": REQUEUE_TRAP if requeue else "",
        "term_reason": "scancel or the end of the job" if requeue else "walltime margin or scancel",
        "dasklaunch": shlex.join(spec.dasklaunch),
        "state_dir": state_dir,
        "prologue": _prologue(spec),
        "up_args": "".join(f" {shlex.quote(arg)}" for arg in spec.up_args),
        "command": shlex.join(spec.command),
    })

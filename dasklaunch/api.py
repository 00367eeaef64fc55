"""The Python API: connect to this job's cluster, or run a script inside one.

    import dasklaunch
    client = dasklaunch.connect()                 # the cluster `dasklaunch up` started
    client = dasklaunch.connect(job=1234)         # job 1234's, from a login-node notebook

    with dasklaunch.cluster(interface="ib0") as client:   # up ... down, same code as the CLI
        ...
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from .domain.settings import options_from
from .errors import NotUpError, StateDirError
from .ops.client_access import security_for, use_recorded_dashboard_link
from .ops.down import down as _down
from .ops.up import up as _up
from .runtime import schedfile
from .runtime.report import Reporter
from .runtime.state import StateDir, find_state_dir


def job_state_dir(state_dir: Path | str | None = None, job: str | int | None = None) -> StateDir:
    """The state dir of `job` (the current job when None): `state_dir`, else
    DASKLAUNCH_STATE_DIR, else $SCRATCH/dasklaunch/JOB or ~/.dasklaunch/JOB, as the CLI finds
    it. A state dir that holds another job's cluster is refused, not connected to."""
    state = find_state_dir(state_dir, str(job) if job is not None else None)
    if job is not None:
        with suppress(StateDirError):
            record = state.read_record()
            if record is not None and record.job_id != str(job):
                how = "given" if state_dir else "from DASKLAUNCH_STATE_DIR"
                raise NotUpError(f"state dir {state.path} ({how}) holds job {record.job_id}, "
                                 f"not job {job}")
    return state


def connect(state_dir: Path | str | None = None, timeout: float | str = 30, *,
            job: str | int | None = None, **client_kwargs):
    """A `distributed.Client` for a job's cluster, with the job's TLS credentials.

    The job is the current one (SLURM_JOB_ID, else this machine's local cluster), or `job`:
    `connect(job=1234)` from a notebook on a login node finds job 1234's state dir as the CLI
    would (`state_dir`, DASKLAUNCH_STATE_DIR, else $SCRATCH/dasklaunch/1234 or
    ~/.dasklaunch/1234)."""
    state = job_state_dir(state_dir, job)
    if schedfile.read(state.scheduler_file) is None:
        whose = f"the cluster of job {job}" if job is not None else "the cluster"
        raise NotUpError(f"no scheduler file in {state.path}: {whose} is not up "
                         f"(run `dasklaunch up`)")
    use_recorded_dashboard_link(state)
    return new_client(scheduler_file=str(state.scheduler_file), security=security_for(state.path),
                      timeout=timeout, **client_kwargs)


def new_client(**client_kwargs):
    """`distributed.Client(**client_kwargs)`, with a failed Client closed before this returns.

    A Client whose start fails is left for the cyclic garbage collector, which may close it
    while the next Client of this process starts its loop thread: `Client.__del__` ->
    `LoopRunner.stop()` then waits for the lock that the same thread holds, and that next
    `Client(...)` never returns (seen with Python 3.13 and distributed 2026.8). So the failure's
    frames are released and the collector runs here, where no loop lock is held; the exception
    is raised again with its type and message, without its traceback."""
    from distributed import Client

    try:
        return Client(**client_kwargs)
    except Exception as err:
        failure = err
    _drop_tracebacks(failure)
    gc.collect()
    raise failure


def _drop_tracebacks(err: BaseException) -> None:
    """The frames an exception chain holds (the failed Client's among them) are let go."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [err]
    while pending:
        link = pending.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        link.__traceback__ = None
        pending += [link.__cause__, link.__context__]


@contextmanager
def cluster(state_dir: Path | str | None = None, *, quiet: bool = True,
            **options) -> Iterator:
    """Bring a cluster up for the duration of a `with` block and yield a connected Client.

    Keyword arguments are `dasklaunch up`'s options, named as on its command line with `_`
    for `-` (interface="ib0", per_node=True, nthreads=..., memory_limit="12GiB",
    pool=["gpu:nodes=1"], worker_arg=[...]; `pools=` is taken for `pool=`). They are resolved
    as `up`'s command line is, and an unknown one is refused with the closest name. The
    cluster is brought down on exit, also when the block raises."""
    opts, given = options_from(options)
    report = Reporter(quiet=quiet)
    facts = _up(opts, state_dir=state_dir, report=report, explicit=given)
    try:
        client = connect(facts["state_dir"])
        try:
            yield client
        finally:
            client.close()
    finally:
        _down(facts["state_dir"], report=report)

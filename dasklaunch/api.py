"""The Python API: connect to this job's cluster, or run a script inside one.

    import dasklaunch
    client = dasklaunch.connect()                 # the cluster `dasklaunch up` started

    with dasklaunch.cluster(interface="ib0") as client:   # up ... down, same code as the CLI
        ...
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .domain.settings import UpOptions
from .errors import NotUpError
from .ops.down import down as _down
from .ops.up import up as _up
from .runtime import schedfile
from .runtime.report import Reporter
from .runtime.state import find_state_dir
from .runtime.tls import TLSFiles


def security_for(state_dir: Path | str | None = None):
    """The `distributed.Security` a client of this job needs (None for a --no-tls cluster)."""
    state = find_state_dir(state_dir)
    info = schedfile.read(state.scheduler_file)
    files = TLSFiles.in_state_dir(state)
    if info is not None and not info.address.startswith("tls://"):
        return None
    if not files.exists():
        raise NotUpError(f"this cluster requires TLS but its client certificate is missing "
                         f"from {files.ca.parent}; only the job's owner can connect (source "
                         f"the job's env file: . {state.env_file})")
    from distributed.security import Security

    return Security(tls_ca_file=str(files.ca), tls_client_cert=str(files.client_cert),
                    tls_client_key=str(files.client_key), require_encryption=True)


def connect(state_dir: Path | str | None = None, timeout: float | str = 30, **client_kwargs):
    """A `distributed.Client` for the current job (state dir from the argument,
    DASKLAUNCH_STATE_DIR, or SLURM_JOB_ID), with the job's TLS credentials."""
    state = find_state_dir(state_dir)
    if schedfile.read(state.scheduler_file) is None:
        raise NotUpError(f"no scheduler file in {state.path}: the cluster is not up "
                         f"(run `dasklaunch up`)")
    from distributed import Client

    return Client(scheduler_file=str(state.scheduler_file), security=security_for(state.path),
                  timeout=timeout, **client_kwargs)


@contextmanager
def cluster(state_dir: Path | str | None = None, *, quiet: bool = True,
            **options) -> Iterator:
    """Bring a cluster up for the duration of a `with` block and yield a connected Client.

    Keyword arguments are `dasklaunch up` options (interface="ib0", per_node=True,
    nthreads=..., memory_limit="12GiB", ...). The cluster is brought down on exit, also when
    the block raises."""
    if "pools" in options:
        options["pools"] = tuple(options["pools"])
    opts = UpOptions(**options)
    report = Reporter(quiet=quiet)
    facts = _up(opts, state_dir=state_dir, report=report, explicit=set(options))
    try:
        client = connect(facts["state_dir"])
        try:
            yield client
        finally:
            client.close()
    finally:
        _down(facts["state_dir"], report=report)

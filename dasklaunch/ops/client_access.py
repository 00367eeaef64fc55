"""What a client of a job's cluster needs from its state dir: the job's TLS credentials and
the dashboard link `up` chose (used by `connect()` and by the notebook Cluster)."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

from ..errors import NotUpError, StateDirError
from ..runtime import schedfile
from ..runtime.state import StateDir, find_state_dir
from ..runtime.tls import TLSFiles
from .dashboard_hints import DASHBOARD_LINK_VARIABLE, DASK_DEFAULT_LINK


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


def use_recorded_dashboard_link(state: StateDir) -> None:
    """The dashboard link `up` chose for its clients (a JupyterHub's proxy), as the env file
    gives it to a sourcing shell, unless this Python already has a link of its own."""
    with suppress(StateDirError):
        record = state.read_record()
        link = record.client_env.get(DASHBOARD_LINK_VARIABLE) if record else None
        if link:
            import dask.config

            if dask.config.get("distributed.dashboard.link") == DASK_DEFAULT_LINK:
                dask.config.set({"distributed.dashboard.link": link})

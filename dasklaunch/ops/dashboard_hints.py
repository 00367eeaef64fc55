"""What `up` tells its user besides the address: whether the dashboard can be served at all
(bokeh), where a browser sees it (an ssh tunnel, or a JupyterHub's proxy), and how Python
connects (TLS needs the job's certificates: plain `Client(scheduler_file=...)` fails)."""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from ..domain.settings import UpOptions
from ..runtime.record import ClusterRecord
from ..runtime.schedfile import SchedulerInfo
from ..runtime.state import StateDir, default_state_dir

# distributed serves the dashboard only with this bokeh (distributed.versions.BOKEH_REQUIREMENT;
# without it the dashboard URL answers "Dask needs bokeh>=3.1.0 for the dashboard")
BOKEH_REQUIREMENT = "bokeh>=3.1.0"
BOKEH_MINIMUM = (3, 1)

# Dask's `distributed.dashboard.link`: the link a Client shows (its repr, .dashboard_link),
# formatted with the environment, host and port
DASHBOARD_LINK_VARIABLE = "DASK_DISTRIBUTED__DASHBOARD__LINK"
DASK_DEFAULT_LINK = "{scheme}://{host}:{port}/status"
JUPYTERHUB_PREFIX = "JUPYTERHUB_SERVICE_PREFIX"


def find_bokeh():
    """bokeh's import spec for this Python, or None. Finding is not importing: it costs a
    look through sys.path, not bokeh's import time."""
    from importlib.util import find_spec

    try:
        return find_spec("bokeh")
    except (ImportError, ValueError):
        return None


def bokeh_version(spec) -> str | None:
    """The installed bokeh's version from its dist-info directory's name (importlib.metadata
    costs 0.1 s of up's start); None when that is not conclusive."""
    origin = getattr(spec, "origin", None)
    if not origin or not Path(origin).is_file():
        return None
    found = [path.name[len("bokeh-"):-len(".dist-info")]
             for path in Path(origin).parent.parent.glob("bokeh-*.dist-info")]
    return found[0] if len(found) == 1 else None


def _release(version: str) -> tuple[int, ...]:
    match = re.match(r"(\d+)(?:\.(\d+))?", version)
    if not match:
        return ()
    return tuple(int(part) for part in match.groups() if part is not None)


def dashboard_problem(opts: UpOptions, python: str = sys.executable) -> str | None:
    """One line saying why the scheduler will not serve the dashboard, or None.

    The scheduler runs `python` (this interpreter: see domain/dask_argv.py), so what this
    Python can import is what the scheduler can."""
    if "--no-dashboard" in opts.scheduler_args:
        return None
    spec = find_bokeh()
    fix = f"pip install '{BOKEH_REQUIREMENT}', or install dasklaunch with its [complete] extra"
    if spec is None:
        return (f"the dashboard will not be served: bokeh is not installed for {python} "
                f"({fix})")
    version = bokeh_version(spec)
    release = _release(version) if version else ()
    if release and release < BOKEH_MINIMUM:
        return (f"the dashboard will not be served: bokeh {version} is too old for Dask, "
                f"which needs {BOKEH_REQUIREMENT} ({fix})")
    return None


# ------------------------------------------------------------------- where a browser sees it

def jupyterhub_prefix(backend: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The user's server prefix (`/user/NAME/`) when this runs on a JupyterHub and the
    dashboard is on this machine (local backend), where the hub's proxy (jupyter-server-proxy,
    `PREFIX/proxy/PORT/`) reaches it; None otherwise."""
    env = os.environ if environ is None else environ
    prefix = env.get(JUPYTERHUB_PREFIX)
    if backend != "local" or not prefix:
        return None
    return prefix.rstrip("/") + "/"


def client_dashboard_env(backend: str,
                         environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """For the env file: on a JupyterHub, Dask's dashboard link through the hub's proxy, so
    a Client's repr links to what a browser can open. The prefix is written out, not left as
    Dask's `{JUPYTERHUB_SERVICE_PREFIX}`: a shell without that variable would make every
    Client repr fail (KeyError), and the proxy that reaches this dashboard is this server's."""
    prefix = jupyterhub_prefix(backend, environ)
    return {DASHBOARD_LINK_VARIABLE: f"{prefix}proxy/{{port}}/status"} if prefix else {}


def dashboard_hints(record: ClusterRecord, info: SchedulerInfo,
                    environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """`proxy`: the JupyterHub link; `tunnel`: the ssh command that brings a remote dashboard
    to the user's own machine (none for the local backend: it is on this machine already)."""
    port = info.dashboard_port
    prefix = jupyterhub_prefix(record.backend, environ)
    hints: dict[str, str | None] = {"proxy": None, "tunnel": None}
    if port and prefix:
        hints["proxy"] = f"{prefix}proxy/{port}/status"
    elif port and record.backend != "local":
        login = record.submit_host or socket.gethostname()
        hints["tunnel"] = f"ssh -N -L {port}:{info.host}:{port} {login}"
    return hints


# ------------------------------------------------------------------------- how Python connects

def connect_call(state: StateDir, record: ClusterRecord,
                 environ: Mapping[str, str] | None = None) -> str:
    """The `dasklaunch.connect(...)` call that finds this cluster from a Python started
    anywhere by this user (a notebook on a login node included): by job id where the state
    dir is the job's default one, else by path."""
    env = dict(os.environ if environ is None else environ)
    env.pop("DASKLAUNCH_STATE_DIR", None)
    job = record.job_id
    if state.path == StateDir(default_state_dir(job, env)).path:
        if record.backend == "local":
            return "dasklaunch.connect()"
        return f"dasklaunch.connect(job={job if job.isdigit() else repr(job)})"
    return f"dasklaunch.connect({str(state.path)!r})"

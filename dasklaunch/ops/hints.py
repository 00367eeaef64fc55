"""What `up` tells its user besides the address: whether the dashboard can be served at all
(bokeh), and how Python connects (TLS needs the job's certificates: plain
`Client(scheduler_file=...)` fails)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from ..domain.settings import UpOptions
from ..runtime.record import ClusterRecord
from ..runtime.state import StateDir, default_state_dir

# distributed serves the dashboard only with this bokeh (distributed.versions.BOKEH_REQUIREMENT;
# without it the dashboard URL answers "Dask needs bokeh>=3.1.0 for the dashboard")
BOKEH_REQUIREMENT = "bokeh>=3.1.0"
BOKEH_MINIMUM = (3, 1)


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

    The scheduler runs `python` (this interpreter: see domain/commands.py), so what this
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

"""`dasklaunch env`: the job's environment for batch scripts, read from the state directory.

Kept light so that the console script can answer `env` without typer (see cli/entry.py):
batch scripts call it once per step, and it should cost about a Python start.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..domain import render
from ..errors import DasklaunchError, NotUpError, UsageError
from ..runtime import schedfile
from ..runtime.state import find_state_dir

FORMATS = ("sh", "json")


def env(state_dir: Path | str | None = None) -> tuple[Path, dict[str, str]]:
    """The env file's path and its variables; NotUpError when the cluster is not up."""
    state = find_state_dir(state_dir)
    if not state.env_file.exists():
        raise NotUpError(f"no env file in {state.path}: the cluster is not up "
                         f"(run `dasklaunch up`)")
    info = schedfile.read(state.scheduler_file)
    record = state.read_record()
    address = info.address if info else (record.address if record else None)
    values = render.env_json(scheduler_file=str(state.scheduler_file),
                             scheduler_address=address or "", state_dir=str(state.path),
                             extra=record.client_env if record else None)
    return state.env_file, values


# What `env` prints on stdout when it fails in sh format: `eval "$(dasklaunch env)"` then runs
# `false`, so the eval fails (and `set -e` stops the script) instead of evaluating nothing and
# succeeding. Not `exit 1`: that would end an interactive shell.
FAIL_EVAL = "false\n"


def worker_env(state_dir: Path | str | None, values: dict[str, str]) -> dict[str, str]:
    """The client's variables with the worker's TLS certificate instead of the client's: what a
    worker started by hand (`dask worker`, `dask cuda worker`) needs to join this cluster. Its
    listener needs a server certificate; the client one is refused there."""
    from ..runtime.tls import TLSFiles

    values = {k: v for k, v in values.items() if "__TLS__CLIENT__" not in k}
    files = TLSFiles.in_state_dir(find_state_dir(state_dir))
    if values.get("DASK_DISTRIBUTED__COMM__TLS__CA_FILE"):
        values.update(files.server_env("worker"))
        # a command without --protocol (dask cuda worker) listens with TLS too
        values["DASK_DISTRIBUTED__COMM__DEFAULT_SCHEME"] = "tls"
    return values


def show_env(state_dir: Path | str | None, path_only: bool, fmt: str,
             worker: bool = False) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"--format must be sh or json, not {fmt!r}")
    try:
        env_path, values = env(state_dir)
    except DasklaunchError:
        # only for eval: --path's output goes to `source`, which fails on an empty name by
        # itself (and would read a file called `false`), and a terminal is nobody's eval
        if fmt == "sh" and not path_only and not sys.stdout.isatty():
            sys.stdout.write(FAIL_EVAL)
            sys.stdout.flush()
        raise
    if worker:
        values = worker_env(state_dir, values)
        if fmt == "sh":
            sys.stdout.write(render.exports(values))
            return
    if path_only:
        print(env_path)
    elif fmt == "json":
        print(json.dumps(values, indent=2, sort_keys=True))
    else:
        sys.stdout.write(env_path.read_text())

"""`dasklaunch env`: the job's environment for batch scripts, read from the state directory.

Kept light so that the console script can answer `env` without typer (see cli/entry.py):
batch scripts call it once per step, and it should cost about a Python start.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..domain import render
from ..errors import NotUpError, UsageError
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


def show_env(state_dir: Path | str | None, path_only: bool, fmt: str) -> None:
    if fmt not in FORMATS:
        raise UsageError(f"--format must be sh or json, not {fmt!r}")
    env_path, values = env(state_dir)
    if path_only:
        print(env_path)
    elif fmt == "json":
        print(json.dumps(values, indent=2, sort_keys=True))
    else:
        sys.stdout.write(env_path.read_text())

"""Process checks shared by the tests: only groups a state record names are looked at."""

from __future__ import annotations

import json
import os
from pathlib import Path


def groups_in(path: Path) -> list[tuple[int, float]]:
    """The (pgid, started) of every step a record file names; [] for a missing or damaged one."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(record, dict):
        return []
    pools = record.get("pools")
    steps = [record.get("scheduler"), *(pools if isinstance(pools, list) else [])]
    groups = []
    for step in steps:
        if isinstance(step, dict) and isinstance(step.get("pgid"), int) and step["pgid"] > 0:
            started = step.get("started")
            groups.append((step["pgid"], float(started) if isinstance(started, (int, float))
                           else 0.0))
    return groups


def recorded_groups(state_dir: Path) -> list[tuple[int, float]]:
    """Every process group the state record, its backup copy or a damaged copy names now."""
    paths = sorted({*Path(state_dir).glob("state.json*"), *Path(state_dir).glob(".state.json*")})
    return list(dict.fromkeys(group for path in paths for group in groups_in(path)))


def group_alive(pgid: int, not_before: float = 0.0) -> list[int]:
    from dasklaunch.runtime import proc

    return proc.group_members(pgid, not_before)


HERE = Path(__file__).parent
FAKE_BIN = HERE / "fakeslurm" / "bin"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLURM_", "DASK_", "DASKLAUNCH_", "SCHEDULER_FILE"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env

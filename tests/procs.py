"""Process checks shared by the tests: only groups a state record names are looked at."""

from __future__ import annotations

import json
import os
from pathlib import Path


def recorded_groups(state_dir: Path) -> list[tuple[int, float]]:
    """Every process group a state record (or its damaged copies) names."""
    groups = []
    for path in state_dir.glob("state.json*"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for step in [record.get("scheduler")] + list(record.get("pools") or []):
            if step and step.get("pgid"):
                groups.append((step["pgid"], step.get("started", 0.0)))
    return groups


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

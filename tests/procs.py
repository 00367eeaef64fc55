"""Process checks shared by the tests: only groups a state record names are looked at."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
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
# a stand-in for dask-cuda (tests/standins/dask_cuda): put on PYTHONPATH, it is installed
STANDINS = str(HERE / "standins")
JOB_VARIABLES = ("SLURM_", "DASK_", "DASKLAUNCH_")


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith((*JOB_VARIABLES, "SCHEDULER_FILE"))}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def outside_any_job(monkeypatch, *more: str) -> None:
    """This process as in a shell outside any job: no SLURM_*, DASK_*, DASKLAUNCH_* variables
    (nor those starting with `more`)."""
    for key in list(os.environ):
        if key.startswith((*JOB_VARIABLES, *more)):
            monkeypatch.delenv(key, raising=False)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.25):
    """The first true value of `predicate()`, polled every `interval` seconds; after `timeout`,
    its last (false) value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


class Leftovers(list):
    """The state dirs (list items) and runtime dirs a test's commands use, and every process
    group their records have named at any time: a pool that `restart-workers`, a supervisor or
    a second `up` replaced is gone from state.json but must be gone from the machine too."""

    def __init__(self):
        super().__init__()
        self.runtime_dirs: list[Path] = []
        self.groups: set[tuple[int, float]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def note(self) -> None:
        """Read every record now (state.json, its backup and damaged copies, recovery copies)."""
        found = [group for state_dir in list(self) for group in recorded_groups(state_dir)]
        for runtime in self.runtime_dirs:
            for path in sorted((runtime / "dasklaunch").glob("*.json")):
                found += groups_in(path)
        with self._lock:
            self.groups.update(found)

    def watch(self, interval: float = 0.2) -> None:
        """Keep reading the records until the test ends (a command in the background, such as
        `supervise`, may replace pools between two of the test's own calls)."""
        if self._watcher is None:
            def loop():
                while not self._stop.wait(interval):
                    self.note()
            self._watcher = threading.Thread(target=loop, name="no_leftovers", daemon=True)
            self._watcher.start()

    def finish(self) -> list[tuple[int, float]]:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=10)
        self.note()
        return sorted(self.groups)


def stop_leftovers(seen: Leftovers) -> list[tuple[int, list[int]]]:
    """Every process group `seen` noted at any time that still runs, with its members; each
    one is SIGKILLed (tests/test_no_leftovers.py checks this check)."""
    leftovers = []
    for pgid, started in seen.finish():
        members = group_alive(pgid, started)
        if members:
            leftovers.append((pgid, members))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    return leftovers

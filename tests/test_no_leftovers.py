"""The no_leftovers check itself (conftest.py, procs.py): a process group that only an earlier
record named (a pool that restart-workers, a supervisor or a second up replaced) is still
checked, found running, and stopped."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from procs import Leftovers, stop_leftovers


def sleeper() -> tuple[subprocess.Popen, float]:
    """A process in a new group of its own, and when it started (as a record says)."""
    started = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                             start_new_session=True, stdin=subprocess.DEVNULL)
    return child, started


def write_record(state_dir: Path, pgid: int, started: float) -> None:
    # what a pool's step looks like to procs.groups_in; written whole, as StateDir does
    tmp = state_dir / "state.json.tmp-test"
    tmp.write_text(json.dumps({"scheduler": None, "pools": [{"pgid": pgid, "started": started}]}))
    tmp.replace(state_dir / "state.json")


def replaced_pool_is_caught(tmp_path: Path, watch: bool) -> None:
    state = tmp_path / "state"
    state.mkdir()
    seen = Leftovers()
    seen.append(state)
    (old, old_started), (new, new_started) = sleeper(), sleeper()
    try:
        write_record(state, old.pid, old_started)
        if watch:  # a command in the background replaced the pool between two of the test's
            seen.watch(interval=0.02)
            deadline = time.monotonic() + 10
            while (old.pid, old_started) not in seen.groups and time.monotonic() < deadline:
                time.sleep(0.01)
        else:  # as Runner does after each command
            seen.note()
        write_record(state, new.pid, new_started)  # the old pool is in no record any more
        left = stop_leftovers(seen)
        assert sorted(pgid for pgid, _ in left) == sorted([old.pid, new.pid]), left
        assert (old.wait(timeout=10), new.wait(timeout=10)) == (-9, -9)  # stopped
    finally:
        for child in (old, new):
            if child.poll() is None:
                child.kill()
                child.wait()


def test_a_group_only_an_earlier_record_named_is_found_and_stopped(tmp_path):
    replaced_pool_is_caught(tmp_path, watch=False)


def test_a_group_the_watcher_saw_between_two_commands_is_found_and_stopped(tmp_path):
    replaced_pool_is_caught(tmp_path, watch=True)

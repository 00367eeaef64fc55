"""The watcher a Podman container's command runs under (launch/container_watch.py), with real
processes: a lock held as the task's flock(1) holds it, a command, signals."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest

from dasklaunch.launch.container_watch import LOCK_VARIABLE, outside_gone

WATCH = [sys.executable, "-m", "dasklaunch.launch.container_watch", "--"]


@pytest.fixture
def groups():
    """Process groups started here, ended after the test whatever happens."""
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def start(groups, argv, **kwargs) -> subprocess.Popen:
    proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
    groups.append(proc)
    return proc


def held(groups, lock) -> subprocess.Popen:
    """The task outside: flock(1) holding `lock` (as PODMAN_START runs it) around a sleep."""
    holder = start(groups, ["flock", "-o", str(lock), "sleep", "60"])
    deadline = time.time() + 10
    while outside_gone(str(lock)):
        assert time.time() < deadline, "flock did not take the lock"
        time.sleep(0.05)
    return holder


def wait_for(condition, watcher, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert watcher.poll() is None, f"the watcher ended first (exit {watcher.returncode})"
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_task_outside_ends_the_command_inside(groups, tmp_path):
    lock = tmp_path / "task.lock"
    holder = held(groups, lock)
    pidfile = tmp_path / "child.pid"
    watcher = start(groups, [*WATCH, "sh", "-c", f'echo $$ > "{pidfile}"; exec sleep 60'],
                    env={**os.environ, LOCK_VARIABLE: str(lock)})
    wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), watcher)
    child = int(pidfile.read_text())
    time.sleep(1.5)                                  # a poll or two: the lock is still held
    assert watcher.poll() is None and alive(child)
    os.kill(holder.pid, signal.SIGKILL)              # as Slurm kills a step
    assert watcher.wait(timeout=15) == 128 + signal.SIGKILL
    assert not alive(child)


def test_a_signal_before_the_command_started_is_passed_on(groups, tmp_path):
    """SIGTERM at once: either the handlers were in (passed on: the command's exit code comes
    back) or Python had not started (the default action): never the watcher gone and the
    command left running."""
    pidfile = tmp_path / "child.pid"
    for _ in range(5):
        pidfile.unlink(missing_ok=True)
        watcher = start(groups, [*WATCH, "sh", "-c", f'echo $$ > "{pidfile}"; exec sleep 30'])
        time.sleep(0.05)
        watcher.send_signal(signal.SIGTERM)
        code = watcher.wait(timeout=30)
        assert code in (128 + signal.SIGTERM, -signal.SIGTERM), code
        if pidfile.exists() and pidfile.read_text().strip():
            child = int(pidfile.read_text())
            deadline = time.time() + 10
            while alive(child) and time.time() < deadline:
                time.sleep(0.05)
            assert not alive(child)


def test_signals_reach_the_commands_group_and_its_exit_code_comes_back(groups, tmp_path):
    lock = tmp_path / "task.lock"
    held(groups, lock)
    ready = tmp_path / "ready"
    watcher = start(groups, [*WATCH, "sh", "-c",
                             f'trap "exit 7" TERM; touch "{ready}"; while :; do sleep 0.1; done'],
                    env={**os.environ, LOCK_VARIABLE: str(lock)})
    wait_for(ready.exists, watcher)
    watcher.send_signal(signal.SIGTERM)              # podman's proxy, then its init, send it here
    assert watcher.wait(timeout=15) == 7


def test_without_a_lock_it_just_runs_the_command(groups):
    assert start(groups, [*WATCH, "sh", "-c", "exit 3"]).wait(timeout=15) == 3
    assert start(groups, WATCH[:-1]).wait(timeout=15) == 2          # no command: usage


def test_a_missing_lock_file_counts_as_gone(tmp_path):
    assert outside_gone(str(tmp_path / "none.lock"))

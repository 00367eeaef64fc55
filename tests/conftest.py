"""Shared fixtures: run the real CLI in a subprocess, with the local backend or the fake srun,
and make sure no test leaves a process behind (checked by every process group its records
named while it ran)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import (
    FAKE_BIN,
    Leftovers,
    _clean_env,
    outside_any_job,
    recorded_groups,
    stop_leftovers,
)
from typer.testing import CliRunner

from dasklaunch.cli.app import app


class Runner:
    """Runs `python -m dasklaunch ...` with a fixed environment and state dir; after each
    command, notes the process groups its record names (see Leftovers)."""

    def __init__(self, env: dict[str, str], state_dir: Path, seen: Leftovers | None = None):
        self.env = env
        self.state_dir = state_dir
        self.seen = seen

    def __call__(self, *args: str, timeout: float = 120, check: bool = False,
                 extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        env = dict(self.env, **(extra_env or {}))
        try:
            result = subprocess.run([sys.executable, "-m", "dasklaunch", *args], env=env,
                                    capture_output=True, text=True, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
        finally:
            if self.seen is not None:
                self.seen.note()
        if check and result.returncode != 0:
            raise AssertionError(f"dasklaunch {' '.join(args)} exited {result.returncode}\n"
                                 f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    def popen(self, *args: str) -> subprocess.Popen:
        if self.seen is not None:
            self.seen.watch()
        return subprocess.Popen([sys.executable, "-m", "dasklaunch", *args], env=self.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)

    def record(self) -> dict:
        return json.loads((self.state_dir / "state.json").read_text())

    def groups_seen(self) -> list[tuple[int, float]]:
        """Every process group any command of this test has recorded so far."""
        if self.seen is None:
            return recorded_groups(self.state_dir)
        self.seen.note()
        return sorted(self.seen.groups)


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """The typer app in this process, from an empty directory in a shell outside any job
    (test_cli.py and test_dashboard.py give it a state dir too)."""
    outside_any_job(monkeypatch)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


@pytest.fixture
def no_leftovers():
    """Collects state dirs; after the test, fails if any process group that a record named at
    any time during the test still runs (and kills it)."""
    seen = Leftovers()
    yield seen
    leftovers = stop_leftovers(seen)
    if leftovers:
        time.sleep(0.5)
        pytest.fail(f"processes left behind (killed now): {leftovers}")


@pytest.fixture
def local_runner(tmp_path, no_leftovers) -> Runner:
    state_dir = tmp_path / "state"
    env = _clean_env()
    env["DASKLAUNCH_STATE_DIR"] = str(state_dir)
    env["XDG_RUNTIME_DIR"] = _runtime_dir(tmp_path)
    no_leftovers.append(state_dir)
    no_leftovers.runtime_dirs.append(Path(env["XDG_RUNTIME_DIR"]))
    return Runner(env, state_dir, no_leftovers)


def _runtime_dir(tmp_path: Path) -> str:
    # each test keeps its own copy of the record outside the state dir
    path = tmp_path / "run"
    path.mkdir(mode=0o700, exist_ok=True)
    return str(path)


FAKE_JOB_ID = "4242"


@pytest.fixture
def fake_slurm_runner(tmp_path, no_leftovers) -> Runner:
    state_dir = tmp_path / "state"
    env = _clean_env()
    env.update({
        "PATH": f"{FAKE_BIN}{os.pathsep}{env.get('PATH', '')}",
        "FAKE_SLURM_DIR": str(tmp_path / "fakeslurm"), "FAKE_SLURM_JOB_ID": FAKE_JOB_ID,
        "SLURM_JOB_ID": FAKE_JOB_ID, "SLURM_JOB_NODELIST": "localhost", "SLURM_NNODES": "1",
        "SLURM_NTASKS": "2", "SLURM_TASKS_PER_NODE": "2", "SLURM_JOB_CPUS_PER_NODE": "2",
        "SLURM_CPUS_ON_NODE": "2", "SLURM_MEM_PER_NODE": "2000", "SLURM_SUBMIT_HOST": "login1",
        "DASKLAUNCH_STATE_DIR": str(state_dir), "XDG_RUNTIME_DIR": _runtime_dir(tmp_path),
    })
    no_leftovers.append(state_dir)
    no_leftovers.runtime_dirs.append(Path(env["XDG_RUNTIME_DIR"]))
    return Runner(env, state_dir, no_leftovers)

"""The real-Slurm suite (marker `slurm`): runs inside real allocations on the testbed that
`scripts/slurm-testbed up` starts. Skipped with a reason when the testbed is not up, unless
DASKLAUNCH_REQUIRE_SLURM=1 (set by scripts/test), which turns that into a failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from slurmbed import TESTBED


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.slurm)


def _testbed_conf() -> str | None:
    try:
        result = subprocess.run([str(TESTBED), "env"], capture_output=True, text=True, timeout=30)
        up = subprocess.run([str(TESTBED), "status"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if up.returncode != 0:
        return None
    for token in result.stdout.split():
        if token.startswith("SLURM_CONF="):
            return token.split("=", 1)[1]
    return None


@pytest.fixture(scope="session")
def slurm_conf() -> str:
    conf = _testbed_conf()
    if conf is None:
        reason = "the Slurm testbed is not up (run: sudo scripts/slurm-testbed up)"
        if os.environ.get("DASKLAUNCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"{reason}, but DASKLAUNCH_REQUIRE_SLURM=1 asks for the slurm suite")
        pytest.skip(reason)
    return conf


class Slurm:
    """Runs commands and Python drivers inside real allocations, always under a timeout."""

    def __init__(self, conf: str, tmp_path: Path):
        self.tmp = tmp_path
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("SLURM_", "DASK_", "DASKLAUNCH_", "SCHEDULER_FILE"))}
        self.env.update(SLURM_CONF=conf, PYTHONUNBUFFERED="1")
        self.state_dir = tmp_path / "state"

    def run(self, argv: list[str], timeout: float = 180, env: dict | None = None
            ) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              env={**self.env, **(env or {})}, timeout=timeout)

    def driver(self, body: str, name: str = "driver.py") -> Path:
        """A Python script with helpers `dl(...)` (dasklaunch) and `sh(...)`, ending in `out`."""
        path = self.tmp / name
        path.write_text(DRIVER_PRELUDE + textwrap.dedent(body) + DRIVER_EPILOGUE)
        return path

    def salloc(self, body: str, *salloc_args: str, timeout: float = 240,
               state_dir: Path | None = None, env: dict | None = None) -> dict:
        script = self.driver(body)
        env = {**(env or {}), "DASKLAUNCH_STATE_DIR": str(state_dir or self.state_dir)}
        result = self.run(["timeout", str(int(timeout)), "salloc", *salloc_args,
                           sys.executable, str(script)], timeout=timeout + 30, env=env)
        return self._result(result)

    def login(self, body: str, timeout: float = 240, name: str = "login.py",
              env: dict | None = None) -> dict:
        """Run a driver as a user on a login node would: outside any allocation. PYTHONPATH:
        the jobs it submits (which inherit its environment) run this checkout."""
        script = self.driver(body, name)
        result = self.run(["timeout", str(int(timeout)), sys.executable, str(script)],
                          timeout=timeout + 30,
                          env={"PYTHONPATH": str(Path(__file__).parents[2]), **(env or {})})
        return self._result(result)

    def _result(self, result: subprocess.CompletedProcess) -> dict:
        marker = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
        if result.returncode != 0 or not marker:
            raise AssertionError(f"allocation failed (exit {result.returncode})\nstdout:\n"
                                 f"{result.stdout[-6000:]}\nstderr:\n{result.stderr[-6000:]}")
        data = json.loads(marker[-1][len("RESULT "):])
        data["_stderr"] = result.stderr
        return data

    def job_gone(self, job_id: str, timeout: float = 30) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = self.run(["squeue", "--noheader", f"--jobs={job_id}"], timeout=30)
            if out.returncode != 0 or not out.stdout.strip():
                return True
            time.sleep(0.5)
        return False


DRIVER_PRELUDE = '''\
import json, os, shlex, socket, subprocess, sys, time
out = {}

def dl(*args, check=True, timeout=180):
    r = subprocess.run([sys.executable, "-m", "dasklaunch", *args], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    print("$ dasklaunch", shlex.join(args), "->", r.returncode, file=sys.stderr)
    print(r.stdout, r.stderr, sep="\\n", file=sys.stderr)
    if check and r.returncode != 0:
        raise SystemExit(f"dasklaunch {args} exited {r.returncode}: {r.stderr}")
    return r

def sh(*argv, timeout=60):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL).stdout

def steps():
    return sh("squeue", "--noheader", "--steps", "--jobs=" + os.environ["SLURM_JOB_ID"],
              "--format=%i %j").split()

def record():
    return json.load(open(os.path.join(os.environ["DASKLAUNCH_STATE_DIR"], "state.json")))

def jobs_left(ids, timeout=60):
    """What squeue still shows of jobs `ids` once they left the queue or `timeout` passed: a
    cancelled worker job ends within KillWait (its workers close; a full down drains nothing)."""
    deadline = time.time() + timeout
    while True:
        left = sh("squeue", "--noheader", "--jobs=" + ",".join(ids), "--format=%i %T")
        if not left.strip() or time.time() > deadline:
            return left
        time.sleep(1)

out["job_id"] = os.environ.get("SLURM_JOB_ID")  # None in a login driver (Slurm.login)
out["state_dir"] = os.environ.get("DASKLAUNCH_STATE_DIR")
'''

DRIVER_EPILOGUE = '''
print("RESULT " + json.dumps(out, default=str), flush=True)
'''


@pytest.fixture
def slurm(slurm_conf, tmp_path) -> Slurm:
    return Slurm(slurm_conf, tmp_path)

"""Bad input across every command: one line on stderr, a documented exit code (2 usage,
1 runtime, 3 busy/already up), no traceback, and the running cluster left as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from procs import FAKE_BIN, _clean_env

pytestmark = pytest.mark.lifecycle


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One running local cluster that every bad input must leave alone."""
    root = tmp_path_factory.mktemp("bad-input")
    env = _clean_env()
    env["DASKLAUNCH_STATE_DIR"] = str(root / "state")
    run = lambda *a: subprocess.run([sys.executable, "-m", "dasklaunch", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    up = run("up", "--local-tasks", "2", "--dashboard-address", ":0")
    assert up.returncode == 0, up.stderr
    broken = root / "broken.yaml"
    broken.write_text("distributed: {worker: [\n")
    a_file = root / "a-file"
    a_file.write_text("x")
    yield {"root": root, "env": env, "broken": broken, "a_file": a_file}
    assert run("down").returncode == 0


def no_cluster(live):
    return {"DASKLAUNCH_STATE_DIR": str(live["root"] / "nothing-here")}


def fake_alloc(live, **extra):
    env = {"SLURM_JOB_ID": "99", "SLURM_JOB_NODELIST": "localhost", "SLURM_NTASKS": "2",
           "DASKLAUNCH_STATE_DIR": str(live["root"] / "slurm-state")}
    env.update(extra)
    return env


# (args, extra environment (callable of the fixture) or None, exit code, text in the message)
CASES = [
    (["up", "--interface", "nosuch0"], None, 2, "nosuch0"),
    (["up", "--nworkers", "0"], None, 2, "--nworkers"),
    (["up", "--nworkers", "-1"], None, 2, "--nworkers"),
    (["up", "--nthreads", "0"], None, 2, "--nthreads"),
    (["up", "--nthreads", "-4"], None, 2, "--nthreads"),
    (["up", "--nthreads", "many"], None, 2, "--nthreads"),
    (["up", "--local-tasks", "0"], None, 2, "--local-tasks"),
    (["up", "--local-tasks", "-2"], None, 2, "--local-tasks"),
    (["up", "--local-tasks", "2", "--wait-workers", "99"], None, 2, "--wait-workers 99"),
    (["up", "--wait-workers", "lots"], None, 2, "--wait-workers"),
    (["up", "--memory-limit", "twelve"], None, 2, "--memory-limit takes a fraction"),
    (["up", "--memory-limit", "99TB"], None, 2, "exceeds"),
    (["up", "--timeout", "0"], None, 2, "--timeout"),
    (["up", "--timeout", "-5"], None, 2, "--timeout"),
    (["up", "--death-timeout", "0"], None, 2, "--death-timeout"),
    (["up", "--backend", "pbs"], None, 2, "unknown backend"),
    (["up", "--backend", "slurm"], None, 2, "no Slurm allocation"),
    (["up", "--no-nanny", "--nworkers", "2"], None, 2, "--no-nanny"),
    (["up", "--lifetime-stagger", "5m"], None, 2, "--lifetime"),
    (["up", "--start-method", "vfork"], None, 2, "--start-method"),
    (["up", "--profile", "no-such-profile"], None, 2, "no-such-profile"),
    (["up", "--profile", "{broken}"], None, 2, "not YAML"),
    (["up", "--state-dir", "{a_file}"], None, 2, "a-file"),
    (["up", "--state-dir", "/proc/no/such/dir"], None, 2, "cannot create state dir"),
    (["up"], lambda live: fake_alloc(live, PATH=str(live["root"])), 2, "srun is not on PATH"),
    (["up"], lambda live: fake_alloc(live, PATH=f"{FAKE_BIN}:{os.environ['PATH']}",
                                     SLURM_CONF="/nonexistent/slurm.conf"), 2, "SLURM_CONF"),
    (["up"], lambda live: fake_alloc(live, PATH=f"{FAKE_BIN}:{os.environ['PATH']}",
                                     FAKE_SLURM_DIR=str(live["root"] / "fakeslurm"),
                                     FAKE_SLURM_JOB_ID="99", FAKE_SLURM_VERSION="20.02.7"),
     2, "Slurm 20.02.7 is too old: dasklaunch needs Slurm 20.11 or newer"),
    (["up", "--worker-arg=--memory-limit=1GB"], None, 2, "use --memory-limit instead"),
    (["up", "--worker-arg", "--nthreads", "--worker-arg", "4"], None, 2,
     "use --nthreads instead"),
    (["up", "--scheduler-arg=--port=9000"], None, 2, "use --port instead"),
    (["up", "--bogus-flag"], None, 2, "No such option"),
    (["up", "--local-tasks", "2"], None, 3, "already up"),
    # a dry run says what a real one would meet, with its exit code
    (["up", "--local-tasks", "2", "--dry-run"], None, 3, "a real `up` would refuse: already up"),
    (["up", "--dry-run", "--json"], None, 3, "a real `up` would refuse: already up"),
    (["status"], no_cluster, 1, "no dasklaunch cluster"),
    (["restart-workers"], no_cluster, 1, "no dasklaunch cluster"),
    (["env"], no_cluster, 1, "not up"),
    (["env", "--format", "xml"], None, 2, "--format"),
    (["supervise"], no_cluster, 1, "no dasklaunch cluster"),
    (["supervise", "--interval", "0"], None, 2, "--interval"),
    (["supervise", "--max-restarts", "-1"], None, 2, "--max-restarts"),
    (["profile", "check", "no-such-profile"], None, 2, "no-such-profile"),
    (["profile", "check", "{broken}"], None, 2, "not YAML"),
]


@pytest.mark.parametrize("args, extra, code, needle", CASES,
                         ids=[" ".join(c[0]) or "up" for c in CASES])
def test_bad_input(live, args, extra, code, needle):
    args = [a.format(**{k: v for k, v in live.items() if k in ("broken", "a_file")})
            for a in args]
    env = dict(live["env"], **(extra(live) if extra else {}))
    result = subprocess.run([sys.executable, "-m", "dasklaunch", *args], env=env,
                            capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dasklaunch: error: ") and needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    status = subprocess.run([sys.executable, "-m", "dasklaunch", "status", "--json"],
                            env=live["env"], capture_output=True, text=True, timeout=60)
    assert json.loads(status.stdout)["workers"]["connected"] == 2, "the cluster was disturbed"


def test_unicode_and_shell_metacharacters_are_argv_not_shell(live, tmp_path):
    nasty = tmp_path / "ünï cödé; touch pwned $(id) `x` 'q\""
    env = dict(live["env"], DASKLAUNCH_STATE_DIR=str(nasty))
    out = subprocess.run([sys.executable, "-m", "dasklaunch", "up", "--local-tasks", "1",
                          "--dashboard-address", ":0",
                          "--worker-arg=--dashboard-prefix=w; touch pwned2"],
                         env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    try:
        assert out.returncode == 0, out.stderr
        env_file = subprocess.run([sys.executable, "-m", "dasklaunch", "env", "--path"],
                                  env=env, capture_output=True, text=True, timeout=60)
        sourced = subprocess.run(["bash", "-c", '. "$1"; printf %s "$DASKLAUNCH_STATE_DIR"',
                                  "bash", env_file.stdout.strip()],
                                 capture_output=True, text=True, timeout=30, cwd=tmp_path)
        assert sourced.stdout == str(nasty)
    finally:
        subprocess.run([sys.executable, "-m", "dasklaunch", "down"], env=env,
                       capture_output=True, timeout=120)
    assert not list(Path(tmp_path).glob("pwned*"))


def test_status_of_a_live_cluster_imports_neither_dask_nor_distributed(live):
    code = ("import json, sys\n"
            "from dasklaunch.cli.entry import main\n"
            "sys.argv = ['dasklaunch', 'status', '--json']\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print(json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('dask', 'distributed'))), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], env=live["env"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["scheduler"]["alive"] and status["workers"]["connected"] == 2, status
    assert json.loads(result.stderr.strip().splitlines()[-1]) == []

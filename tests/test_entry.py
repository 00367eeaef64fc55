"""The console script answers `env` without typer, and defers everything unusual to the CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dasklaunch.cli.entry import parse_env_args


@pytest.mark.parametrize(("args", "expected"), [
    ([], {"path_only": False, "fmt": "sh", "state_dir": None}),
    (["--path"], {"path_only": True, "fmt": "sh", "state_dir": None}),
    (["--format", "json"], {"path_only": False, "fmt": "json", "state_dir": None}),
    (["--format=json", "--state-dir", "/s"],
     {"path_only": False, "fmt": "json", "state_dir": "/s"}),
    (["--state-dir=/s", "--path"], {"path_only": True, "fmt": "sh", "state_dir": "/s"}),
])
def test_plain_spellings_take_the_fast_path(args, expected, monkeypatch):
    monkeypatch.delenv("DASKLAUNCH_STATE_DIR", raising=False)
    assert parse_env_args(args) == expected


def test_state_dir_comes_from_the_environment_like_the_cli(monkeypatch):
    monkeypatch.setenv("DASKLAUNCH_STATE_DIR", "/from/env")
    assert parse_env_args([])["state_dir"] == "/from/env"
    assert parse_env_args(["--state-dir", "/given"])["state_dir"] == "/given"


@pytest.mark.parametrize("args", [
    ["--help"], ["--format"], ["--format", "xml"], ["--path", "--path"], ["--state-dir", "--path"],
    ["--state-dir="], ["--bogus"], ["extra"], ["--format", "sh", "--format", "json"],
])
def test_anything_else_defers_to_the_full_cli(args):
    assert parse_env_args(args) is None


PROBE = """
import sys
sys.argv = ["dasklaunch", "env", "--path"]
from dasklaunch.cli.entry import main
try:
    main()
except SystemExit as exit:
    code = exit.code
else:
    code = 0
heavy = sorted(m for m in ("typer", "click", "pydantic", "distributed", "dask", "yaml")
               if m in sys.modules)
print("CODE", code, "HEAVY", heavy)
"""


def test_env_fast_path_imports_nothing_heavy(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "DASKLAUNCH_STATE_DIR": str(tmp_path / "none")}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "CODE 1 HEAVY []"
    assert done.stderr.count("\n") == 1 and "dasklaunch: error: no env file" in done.stderr


def _shell(script: str, tmp_path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHON": sys.executable,
           "DASKLAUNCH_STATE_DIR": str(tmp_path / "none")}
    if "PYTHONPATH" in os.environ:
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=60)


def test_eval_of_env_fails_when_no_cluster_is_up(tmp_path):
    done = _shell('eval "$("$PYTHON" -m dasklaunch env)"; echo rc=$?', tmp_path)
    assert done.stdout == "rc=1\n"
    assert done.stderr.count("\n") == 1 and "dasklaunch: error: no env file" in done.stderr


def test_eval_of_env_stops_a_set_e_script(tmp_path):
    done = _shell('set -e; eval "$("$PYTHON" -m dasklaunch env)"; echo still running',
                  tmp_path)
    assert done.returncode == 1 and "still running" not in done.stdout


def test_env_path_prints_nothing_on_stdout_when_not_up(tmp_path):
    # its output goes to `source`; a `false` there would source a file of that name
    done = _shell('"$PYTHON" -m dasklaunch env --path; echo rc=$?', tmp_path)
    assert done.stdout == "rc=1\n"


def _with_closed_stdout(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """`dasklaunch ARGS | head -0`: the reader is gone before the first line is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([sys.executable, "-m", "dasklaunch", *args], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, env=env, timeout=60)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [
    ["status"], ["status", "--json"], ["profile", "list"], ["profile", "show", "seed"],
    ["--help"], ["up", "--help"], ["env"], ["env", "--format", "json"],
])
def test_a_reader_that_closes_the_pipe_ends_the_command_quietly(args, tmp_path):
    """`dasklaunch status | head -1` said `internal error: BrokenPipeError` (exit 1): a closed
    pipe ends it as it ends `ls`, with no message and 128 + SIGPIPE."""
    from dasklaunch.runtime.record import ClusterRecord
    from dasklaunch.runtime.state import StateDir

    state = StateDir(tmp_path / "state")
    state.create()
    state.write_record(ClusterRecord(job_id="local-x", backend="local", status="down"))
    state.env_file.write_text("export DASKLAUNCH_STATE_DIR=x\n" * 100)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DASK"))}
    env["DASKLAUNCH_STATE_DIR"] = str(state.path)
    result = _with_closed_stdout(args, env)
    assert (result.returncode, result.stderr) == (141, ""), result

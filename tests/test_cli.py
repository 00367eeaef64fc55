"""CLI contract: exit codes and one-line messages (typer's CliRunner), and the fast path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_lines import one_error_line
from typer.testing import CliRunner

from dasklaunch.cli.app import app


@pytest.fixture
def cli(cli, tmp_path, monkeypatch):
    """conftest's, with a state dir."""
    monkeypatch.setenv("DASKLAUNCH_STATE_DIR", str(tmp_path / "state"))
    return cli



def test_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for command in ("up", "status", "restart-workers", "down", "env", "profile"):
        assert command in result.stdout


def test_slurm_backend_outside_an_allocation(cli):
    result = cli("up", "--backend", "slurm")
    assert result.exit_code == 2
    assert "no Slurm allocation" in one_error_line(result)


@pytest.mark.parametrize("args, needle", [
    (["up", "--backend", "pbs"], "unknown backend"),
    (["up", "--nworkers", "0"], "--nworkers"),
    (["up", "--memory-limit", "twelve"], "--memory-limit takes a fraction"),
    (["up", "--no-nanny", "--nworkers", "2"], "--no-nanny"),
    (["up", "--wait-workers", "many"], "--wait-workers"),
    (["up", "--local-tasks", "-2"], "--local-tasks"),
    (["env", "--format", "xml"], "--format"),
    # values Dask would take only when it starts (a traceback, a misleading failure or a
    # silent change), refused up front in one line naming the option and its range
    (["up", "--lifetime", "2x"], "--lifetime takes a duration above 0 such as 90s, 5m, 2h or "
                                 "1d, not '2x'"),
    (["up", "--lifetime", "1h", "--lifetime-stagger", "soon"], "--lifetime-stagger takes a "
                                                               "duration"),
    (["up", "--dashboard-address", "foo"], "--dashboard-address takes PORT, :PORT or HOST:PORT "
                                           "with a port in 0-65535, not 'foo'"),
    (["up", "--dashboard-address", ":99999"], "--dashboard-address takes PORT"),
    (["up", "--port", "99999"], "--port takes a port in 0-65535 (0: a free one), not 99999"),
    (["up", "--memory-limit", "1.5"], "--memory-limit takes a fraction of the node's memory "
                                      "in (0, 1], a size (12GiB) or auto, not '1.5'"),
    (["up", "--wait-workers", "-1"], "--wait-workers takes a number of workers (0 or more) or "
                                     "all, not '-1'"),
    (["up", "--pool", "gpu:nodes=0"], "--pool gpu: nodes takes a node count of 1 or more or a "
                                      "Slurm host list (node[1-3]), not '0'"),
    (["up", "--pool", "gpu:nodes=-1"], "not '-1'"),
    (["up", "--drain-timeout", "-1"], "--drain-timeout takes seconds 0 or more, not -1"),
])
def test_bad_input_is_exit_2_with_one_line(cli, args, needle):
    result = cli(*args)
    assert result.exit_code == 2, result.stderr
    assert needle in one_error_line(result)


def test_unknown_interface_checked_before_anything_starts(cli, tmp_path):
    result = cli("up", "--interface", "nosuch0")
    assert result.exit_code == 2
    line = one_error_line(result)
    assert "nosuch0" in line and "lo" in line
    assert not (tmp_path / "state").exists()


def test_unwritable_state_dir(cli):
    result = cli("up", "--state-dir", "/proc/cannot/be/here")
    assert result.exit_code == 2
    assert "cannot create state dir" in one_error_line(result)


def test_commands_without_a_cluster(cli):
    status = cli("status")
    assert status.exit_code == 1 and "no dasklaunch cluster" in one_error_line(status)
    env = cli("env")
    assert env.exit_code == 1 and "not up" in one_error_line(env)
    restart = cli("restart-workers")
    assert restart.exit_code == 1
    down = cli("down")
    assert down.exit_code == 0 and "nothing to stop" in down.stderr


def test_dry_run_prints_commands_and_starts_nothing(cli, tmp_path):
    result = cli("up", "--dry-run", "--local-tasks", "3", "--nthreads", "2")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("# backend local") and "3 workers" in lines[0]
    assert lines[1].startswith("# memory: ") and "/ 3 workers" in lines[1]
    commands = [line for line in lines if not line.startswith("#")]
    assert "distributed.cli.dask_scheduler" in commands[0]
    assert "dasklaunch.launch.localstep --ntasks=3" in commands[1] and "--nthreads 2" in commands[1]
    assert not (tmp_path / "state").exists()


def test_dry_run_inside_an_allocation_shows_srun(cli, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "nid[0001-0002]")
    monkeypatch.setenv("SLURM_TASKS_PER_NODE", "4(x2)")
    monkeypatch.setenv("SLURM_JOB_CPUS_PER_NODE", "8(x2)")
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "16000")
    monkeypatch.setattr("dasklaunch.slurm.queue.shutil.which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr("dasklaunch.slurm.queue.hostnames", lambda nodes: ["nid0001",
                                                                                "nid0002"])
    monkeypatch.setattr("dasklaunch.slurm.queue.version", lambda: (24, 11, "24.11.5"))
    result = cli("up", "--dry-run", "--interface", "ib0", "--json")
    assert result.exit_code == 0, result.stderr
    import json

    data = json.loads(result.stdout)
    assert data["backend"] == "slurm" and data["expected_workers"] == 8
    assert data["backend_version"] == "Slurm 24.11.5"
    sched, workers = data["commands"]
    assert sched.startswith("srun --jobid=77 --job-name=dl-sched-")
    assert "--nodelist=nid0001" in sched and "--interface ib0" in sched
    # 8 workers, 4 per node: one task per node whose launcher starts the node's 4 (one import
    # of distributed per node, not per worker), holding the 4 tasks' CPUs
    assert "--nodes=2 --ntasks=2 --ntasks-per-node=1 --cpus-per-task=8" in workers
    assert "--workers-per-task 4" in workers and "--nthreads 2" in workers
    usable = int(16000 * 2**20 * 0.9) - int(16000 * 2**20 * 0.05)
    assert f"--memory-limit {usable // 4}" in workers


@pytest.mark.parametrize("argv", [["--help"], ["env"], ["status", "--json"]])
def test_fast_path_never_imports_distributed(tmp_path, argv):
    code = ("import sys\n"
            "from dasklaunch.cli.app import app\n"
            f"try:\n    app({argv!r}, prog_name='dasklaunch')\n"
            "except SystemExit:\n    pass\n"
            "print('IMPORTED' if 'distributed' in sys.modules else 'CLEAN')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DASK"))}
    env["DASKLAUNCH_STATE_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "CLEAN", out.stdout + out.stderr


def test_python_m_dasklaunch(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dasklaunch", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "restart-workers" in out.stdout


def test_dask_launch_is_registered_under_the_dask_cli(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DASK"))}
    env["DASKLAUNCH_STATE_DIR"] = str(tmp_path / "none")
    helped = subprocess.run(["dask", "launch", "--help"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert helped.returncode == 0 and "restart-workers" in helped.stdout, helped.stderr
    status = subprocess.run(["dask", "launch", "status"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert status.returncode == 1 and "no dasklaunch cluster" in status.stderr


def test_shell_completion_completes_commands():
    env = dict(os.environ, COMP_WORDS="dasklaunch rest", COMP_CWORD="1",
               _DASKLAUNCH_COMPLETE="complete_bash")
    out = subprocess.run(["dasklaunch"], env=env, capture_output=True, text=True, timeout=60)
    assert "restart-workers" in out.stdout


def test_dry_run_checks_the_interface_where_it_can(cli, monkeypatch):
    bad = cli("up", "--dry-run", "--local-tasks", "1", "--interface", "nosuch0")
    assert bad.exit_code == 2
    assert "network interface 'nosuch0' does not exist" in bad.stderr
    assert cli("up", "--dry-run", "--local-tasks", "1", "--interface", "lo").exit_code == 0


def test_dry_run_says_when_the_interface_cannot_be_checked(cli, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "nid0001")
    monkeypatch.setenv("SLURM_MEM_PER_NODE", "16000")
    monkeypatch.setattr("dasklaunch.slurm.queue.shutil.which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr("dasklaunch.slurm.queue.hostnames", lambda nodes: ["nid0001"])
    monkeypatch.setattr("dasklaunch.slurm.queue.version", lambda: (22, 5, "22.05.8"))
    result = cli("up", "--dry-run", "--interface", "nosuch0")
    assert result.exit_code == 0, result.stderr
    assert "# --interface nosuch0 is checked on the compute nodes" in result.stdout
    assert "# backend slurm (Slurm 22.05.8), job 77, 1 worker (tasks, 1 thread each)" \
        in result.stdout


def test_version_and_one_error_style():
    version = CliRunner().invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("dasklaunch ")
    assert "distributed " in version.stdout
    bogus = CliRunner().invoke(app, ["--bogus"])
    assert bogus.exit_code == 2
    assert bogus.stderr.strip() == "dasklaunch: error: No such option: --bogus"


def test_help_lists_commands_by_use_with_plain_metavars():
    text = CliRunner().invoke(app, ["--help"]).stdout
    listed = [line.split()[0] for line in text.split("Commands:")[1].splitlines() if line.strip()]
    assert listed[:5] == ["up", "status", "restart-workers", "down", "env"]
    for command in (["up"], ["scale-out"], ["supervise"], ["batch"], ["profile", "check"]):
        help_text = CliRunner().invoke(app, [*command, "--help"]).stdout
        assert "<str>" not in help_text and "<int>" not in help_text, command
        assert "--no-dry-run" not in help_text and "--no-hard" not in help_text, command


def _dry_run_argvs(result) -> tuple[list[str], list[str]]:
    """The scheduler's and the worker step's argv from `up --dry-run`'s output."""
    import shlex

    assert result.exit_code == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if line and not line.startswith("#")]
    assert len(commands) == 2, result.stdout
    return shlex.split(commands[0]), shlex.split(commands[1])


def _value(argv: list[str], flag: str) -> str:
    assert argv.count(flag) == 1, argv
    return argv[argv.index(flag) + 1]


def test_dry_run_defaults_death_timeout_and_dashboard_on_the_scheduler_host(cli):
    sched, workers = _dry_run_argvs(cli("up", "--dry-run", "--local-tasks", "2"))
    assert _value(workers, "--death-timeout") == "60"
    # a bare port: Dask binds the dashboard to the scheduler's own host, here 127.0.0.1
    assert _value(sched, "--dashboard-address") == "8787"
    assert _value(sched, "--host") == "127.0.0.1"


def test_dry_run_without_local_tasks_fakes_one_task_per_cpu_here(cli, monkeypatch):
    cpus = len(os.sched_getaffinity(0))
    _, workers = _dry_run_argvs(cli("up", "--dry-run"))
    assert f"--ntasks={cpus}" in workers
    # the affinity mask, not the machine's CPU count, and not 1 (whatever this machine has)
    monkeypatch.setattr("dasklaunch.domain.allocation.os.sched_getaffinity",
                        lambda pid: {0, 1, 2, 3, 4})
    result = cli("up", "--dry-run")
    _, workers = _dry_run_argvs(result)
    assert "--ntasks=5" in workers and "5 workers" in result.stdout.splitlines()[0]


def test_every_help_ends_with_the_docs_section_that_explains_it(cli):
    """`--help` of every command names its section of the command reference, and that section
    exists in the reference the docs build makes from the same help texts."""
    import importlib.util
    import re

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("generate", root / "docs" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    reference = generate.cli_reference()
    headings = {"-".join(h.split()) for h in re.findall(r"^#+ (dasklaunch[a-z -]*)$", reference,
                                                          re.M)}
    top = cli("--help").stdout
    assert top.rstrip().endswith("Documentation: docs/reference/cli.md")
    names = generate.command_names(top)
    assert "up" in names and "batch" in names
    for name in names:
        text = cli(name, "--help").stdout.rstrip()
        anchor = text.rsplit("Documentation: docs/reference/cli.md#", 1)[-1]
        assert anchor == f"dasklaunch-{name}" and anchor in headings, (name, text[-200:])


def test_dry_run_says_which_options_a_profile_set(cli, tmp_path):
    """Where each setting came from: given, from jobqueue.yaml, or from the profile."""
    result = cli("up", "--dry-run", "--profile", "seed", "--nthreads", "2",
                 "--state-dir", str(tmp_path / "s"))
    assert result.exit_code == 0, result.stderr
    assert "# per-node: from profile seed: layout=per-node\n" in result.stdout
    assert "# nthreads: from command line\n" in result.stdout
    given = cli("up", "--dry-run", "--profile", "seed", "--per-task",
                "--state-dir", str(tmp_path / "s"))
    assert "# per-node: from command line\n" in given.stdout

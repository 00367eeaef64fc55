"""`dasklaunch batch --requeue`: the script against a golden file, its options and bad input
(one-line errors, exit 2), the shell semantics with a stand-in dasklaunch and scontrol (USR1
brings the cluster down and then requeues; SIGTERM does not; a command that fails because the
job is being preempted comes back too), and `up` in the next run of the same job, which must
treat what the earlier run left as stale. The real preemption is in
tests/slurm/test_requeue_slurm.py."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from inprocess import InProcessLauncher
from procs import _clean_env

from dasklaunch.domain import sbatch
from dasklaunch.domain.sbatch import BatchSpec
from dasklaunch.domain.settings import UpOptions
from dasklaunch.errors import UsageError
from dasklaunch.ops.up import up
from dasklaunch.runtime.record import ClusterRecord
from dasklaunch.runtime.report import Reporter
from dasklaunch.runtime.state import StateDir

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = Path(__file__).parent / "expected" / "sbatch"
VENV = ("/opt/venv/bin/dasklaunch",)
REQUEUE = BatchSpec(command=("python3", "analysis.py", "--skip-done"), dasklaunch=VENV,
                    up_args=("--interface", "ib0"), nodes="4", time="04:00:00",
                    partition="low", requeue=True, requeue_margin=300)

# ------------------------------------------------------------------------------------ rendering


def test_script_matches_expected():
    text = sbatch.render(REQUEUE)
    path = EXPECTED / "requeue.sh"
    if os.environ.get("DASKLAUNCH_UPDATE_EXPECTED") == "1":
        path.write_text(text)
    assert text == path.read_text(), (
        "rendering changed; if intended, regenerate it with DASKLAUNCH_UPDATE_EXPECTED=1 "
        "pytest tests/test_batch_requeue.py")


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_requeue_script_passes_shellcheck(tmp_path):
    path = tmp_path / "requeue.sh"
    path.write_text(sbatch.render(REQUEUE))
    result = subprocess.run(["shellcheck", "--shell=bash", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


def test_requeue_directives_and_valid_bash(tmp_path):
    lines = sbatch.directives(REQUEUE)
    assert lines == sorted(lines)
    assert {"#SBATCH --requeue", "#SBATCH --open-mode=append",
            "#SBATCH --signal=B:USR1@300"} <= set(lines)
    assert not [line for line in lines if "TERM@" in line]
    path = tmp_path / "job.sh"
    path.write_text(sbatch.render(REQUEUE))
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_margin_defaults_to_the_walltime_margin_and_plain_jobs_are_unchanged():
    spec = BatchSpec(command=("true",), dasklaunch=VENV, requeue=True, walltime_margin=90)
    assert "#SBATCH --signal=B:USR1@90" in sbatch.directives(spec)
    plain = sbatch.render(BatchSpec(command=("true",), dasklaunch=VENV))
    assert "#SBATCH --signal=B:TERM@60" in plain
    for part in ("--requeue", "--open-mode", "scontrol", "on_requeue_signal"):
        assert part not in plain


@pytest.mark.parametrize("changes, needle", [
    ({"requeue_margin": 0}, "--requeue-margin must be between 1 and 65535 seconds, not 0"),
    ({"requeue_margin": -5}, "--requeue-margin must be between 1"),
    ({"requeue_margin": 70000}, "--requeue-margin must be between 1"),
    ({"requeue_margin": 120, "time": "2"}, "--requeue-margin 120s leaves no time"),
    ({"requeue": False, "requeue_margin": 30}, "--requeue-margin needs --requeue"),
    ({"sbatch_args": ("--open-mode=truncate",)}, "appends every run's output"),
    ({"extra_directives": ("--open-mode=truncate",)}, "appends every run's output"),
    ({"sbatch_args": ("--requeue",)}, "use --requeue"),
    ({"sbatch_args": ("--no-requeue",)}, "use --requeue"),
])
def test_bad_specs(changes, needle):
    spec = BatchSpec(**{"command": ("true",), "dasklaunch": VENV, "requeue": True, **changes})
    with pytest.raises(UsageError, match=needle.replace("(", r"\(")):
        sbatch.render(spec)


# ------------------------------------------------------------------------------------------ CLI

def test_dry_run_shows_the_requeue_script(cli):
    result = cli("batch", "--requeue", "--requeue-margin", "90", "--partition", "low",
                 "--time", "10", "--dry-run", "--", "python3", "analysis.py")
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    for line in ("#SBATCH --requeue\n", "#SBATCH --open-mode=append\n",
                 "#SBATCH --signal=B:USR1@90\n", "#SBATCH --partition=low\n"):
        assert line in text
    assert "\ntrap on_requeue_signal USR1\n" in text
    # without --requeue-margin, --walltime-margin sets it
    text = cli("batch", "--requeue", "--walltime-margin", "45", "--dry-run", "--", "x").stdout
    assert "#SBATCH --signal=B:USR1@45\n" in text
    assert "--requeue" in cli("batch", "--help").stdout


@pytest.mark.parametrize("args, needle", [
    (["--requeue", "--requeue-margin", "0"], "--requeue-margin must be between 1"),
    (["--requeue", "--requeue-margin", "-30"], "--requeue-margin must be between 1"),
    (["--requeue", "--requeue-margin", "soon"], "'--requeue-margin'"),
    (["--requeue", "--requeue-margin", "1.5"], "'--requeue-margin'"),
    (["--requeue-margin", "30"], "--requeue-margin needs --requeue"),
    (["--requeue", "--requeue-margin", "30", "--walltime-margin", "20"],
     "give --requeue-margin or --walltime-margin, not both"),
    (["--requeue", "--time", "1", "--requeue-margin", "90"], "leaves no time before --time 1"),
    (["--requeue", "--sbatch-arg=--open-mode=truncate"], "appends every run's output"),
    (["--sbatch-arg=--requeue"], "use --requeue instead"),
])
def test_bad_input_is_exit_2_with_one_line(cli, args, needle):
    result = cli("batch", "--dry-run", *args, "--", "x")
    assert result.exit_code == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dasklaunch: error: "), result.stderr
    assert needle in lines[0]
    assert result.stdout == ""


# -------------------------------------------- shell semantics, stand-in dasklaunch and scontrol

FAKE_DASKLAUNCH = '''\
#!{python}
import json, os, sys
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(["dasklaunch", *sys.argv[1:]]) + "\\n")
if sys.argv[1] == "env":
    path = os.path.join(os.path.dirname(os.environ["FAKE_LOG"]), "env.sh")
    with open(path, "w") as f:
        f.write("export SCHEDULER_FILE=/fake/scheduler.json\\n")
    print(path)
'''

# Answers `show job` with $FAKE_PREEMPT_TIME (None unless set), `--version` with
# $FAKE_SLURM_VERSION, and records the other calls.
FAKE_SCONTROL = '''\
#!{python}
import json, os, sys
if sys.argv[1:] == ["--version"]:
    print("slurm", os.environ.get("FAKE_SLURM_VERSION", "22.05.8"))
    sys.exit()
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(["scontrol", *sys.argv[1:]]) + "\\n")
if sys.argv[1:3] == ["show", "job"]:
    print(f"JobId={{sys.argv[3]}} JobName=dasklaunch\\n   Requeue=1 Restarts=0 "
          f"PreemptTime={{os.environ.get('FAKE_PREEMPT_TIME', 'None')}} SuspendTime=None")
'''

SLEEPER = "echo COMMAND READY; exec sleep 60"


def start(tmp_path: Path, command: tuple[str, ...], **env) -> tuple[subprocess.Popen, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (("dasklaunch", FAKE_DASKLAUNCH), ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text.format(python=sys.executable))
        (bin_dir / name).chmod(0o755)
    script = tmp_path / "job.sh"
    script.write_text(sbatch.render(BatchSpec(command=command, dasklaunch=("unused",),
                                              requeue=True)))
    log = tmp_path / "calls.jsonl"
    environ = {**_clean_env(), "DASKLAUNCH": str(bin_dir / "dasklaunch"),
               "FAKE_LOG": str(log), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
               "SLURM_JOB_ID": "4242", **env}
    proc = subprocess.Popen(["bash", str(script)], env=environ, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, log


def calls(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def signal_while_running(tmp_path, sig, **env) -> tuple[int, str, list[list[str]]]:
    proc, log = start(tmp_path, ("sh", "-c", SLEEPER), **env)
    try:
        assert proc.stdout.readline() == "COMMAND READY\n"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err, calls(log)


@pytest.mark.parametrize("preempt_time, why", [("None", "time limit near"),
                                               ("2026-12-01T10:57:15", "preempted")])
def test_usr1_brings_the_cluster_down_then_requeues(tmp_path, preempt_time, why):
    code, err, seen = signal_while_running(tmp_path, signal.SIGUSR1,
                                           FAKE_PREEMPT_TIME=preempt_time)
    assert code == 138, err
    assert f"SIGUSR1 during command ({why}: the job will be requeued)" in err
    assert seen == [["dasklaunch", "up"], ["dasklaunch", "env", "--path"],
                    ["scontrol", "show", "job", "4242"], ["dasklaunch", "down"],
                    ["scontrol", "requeue", "4242"]]
    assert err.index("cluster down") < err.index("requeueing job 4242")


@pytest.mark.parametrize("version", ["24.05.1", "24.11.5", "25.05.0"])
def test_from_slurm_24_05_a_preempted_job_is_requeued_by_slurm_alone(tmp_path, version):
    # it requeues a preempted job that ends within its grace time; ours would count twice
    code, err, seen = signal_while_running(tmp_path, signal.SIGUSR1, FAKE_SLURM_VERSION=version,
                                           FAKE_PREEMPT_TIME="2026-12-01T10:57:15")
    assert code == 138, err
    assert "job 4242 is preempted: Slurm requeues it as this run ends" in err
    assert ["scontrol", "requeue", "4242"] not in seen
    assert seen[-1] == ["dasklaunch", "down"]
    # the time limit is ours to requeue on every version
    code, err, seen = signal_while_running(tmp_path / "walltime", signal.SIGUSR1,
                                           FAKE_SLURM_VERSION=version)
    assert seen[-1] == ["scontrol", "requeue", "4242"], err


def test_sigterm_is_an_end_not_a_requeue(tmp_path):
    # scancel, or Slurm's own kill at the end: even while the job is being preempted
    code, err, seen = signal_while_running(tmp_path, signal.SIGTERM,
                                           FAKE_PREEMPT_TIME="2026-12-01T10:57:15")
    assert code == 143, err
    assert [c[:2] for c in seen] == [["dasklaunch", "up"], ["dasklaunch", "env"],
                                     ["dasklaunch", "down"]]


@pytest.mark.parametrize("exit_code, preempt_time, requeued", [
    (3, "2026-12-01T10:57:15", True),   # its steps got SIGTERM from the preemption
    (3, "None", False),
    (0, "2026-12-01T10:57:15", False),  # done is done
])
def test_a_command_that_fails_while_preempted_comes_back(tmp_path, exit_code, preempt_time,
                                                         requeued):
    proc, log = start(tmp_path, ("sh", "-c", f"exit {exit_code}"),
                      FAKE_PREEMPT_TIME=preempt_time)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == exit_code, err
    seen = calls(log)
    assert (["scontrol", "requeue", "4242"] in seen) is requeued
    if requeued:
        assert seen.index(["dasklaunch", "down"]) < seen.index(["scontrol", "requeue", "4242"])


def test_the_next_run_says_so_and_runs_the_command_again(tmp_path):
    proc, log = start(tmp_path, ("sh", "-c", "echo RAN"), SLURM_RESTART_COUNT="1")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "job 4242 runs again (restart 1): a new cluster" in err
    assert out == "RAN\n"
    assert [c[1] for c in calls(log)] == ["up", "env", "down"]


def test_outside_slurm_a_failure_is_no_requeue(tmp_path):
    proc, log = start(tmp_path, ("sh", "-c", "exit 5"), SLURM_JOB_ID="")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 5, err
    assert not [c for c in calls(log) if c[0] == "scontrol"]


# ------------------------------------------------- the next run of the same job: a fresh `up`

OPTS = UpOptions(backend="local", local_tasks=2, tls=False, timeout=5)


def test_up_in_the_next_run_of_the_same_job_treats_the_old_cluster_as_stale(tmp_path):
    """What a run killed before its `down` finished leaves: the record says up, a scheduler
    file names a scheduler that is gone, and the no-drain mark of the cut-short `down`."""
    from dasklaunch.launch.node_drain import NO_DRAIN_FILE

    state = StateDir(tmp_path / "state")
    first = InProcessLauncher()
    up(OPTS, state_dir=state.path, report=Reporter(quiet=True), launcher=first,
       probe=first.probe)
    job_id = state.read_record().job_id
    state.write_record(ClusterRecord(job_id=job_id, backend="local", status="up"))
    state.scheduler_file.write_text(json.dumps({
        "type": "Scheduler", "id": "Scheduler-first-run", "address": "tcp://127.0.0.1:9",
        "services": {"dashboard": 9}}))
    state.write_text(NO_DRAIN_FILE, "every worker is being stopped\n")
    again = InProcessLauncher()
    messages = io.StringIO()
    up(OPTS, state_dir=state.path, report=Reporter(stream=messages), launcher=again,
       probe=again.probe)
    text = messages.getvalue()
    assert f"removed stale scheduler file {state.scheduler_file} (its scheduler is gone)" in text
    assert "belongs to job" not in text   # the same job: not someone else's file
    assert state.read_record().status == "up"
    assert len(again.running_steps) == 2
    assert not (state.path / NO_DRAIN_FILE).exists()

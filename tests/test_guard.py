"""The `--scheduler-here` guard (dasklaunch.launch.guard) and the question it asks
(`slurm.queue.job_gone`), against a tiny fake `squeue` written here: Slurm not answering must
never count as "the job has ended"; an unknown job or a terminal state must."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from procs import group_alive, wait_for

from dasklaunch.slurm import queue

JOB = "42"
# what squeue answers: (stdout, stderr, exit code)
ANSWERS = {
    "unreachable": ("", "slurm_load_jobs error: Unable to contact slurm controller "
                        "(connect failure)", 1),
    "timeout": ("", "slurm_load_jobs error: Socket timed out on send/recv operation", 1),
    "running": (f"{JOB} RUNNING 2099-01-01T00:00:00", "", 0),
    "pending": (f"{JOB} PENDING N/A", "", 0),
    "invalid": ("", "slurm_load_jobs error: Invalid job id specified", 1),
    "completed": (f"{JOB} COMPLETED N/A", "", 0),
    "cancelled": (f"{JOB} CANCELLED N/A", "", 0),
    "forgotten": ("", "", 0),
}
ENDED = {"invalid", "completed", "cancelled", "forgotten"}


class FakeSqueue:
    """An executable `squeue` in its own directory; every call appends a line to `calls`."""

    def __init__(self, root: Path):
        self.bin = root / "bin"
        self.bin.mkdir()
        self.calls = root / "squeue-calls"
        self.calls.touch()

    def answer(self, name: str) -> None:
        out, err, code = ANSWERS[name]
        script = (f"#!/bin/sh\necho \"$*\" >> '{self.calls}'\n"
                  + (f"echo '{out}'\n" if out else "") + (f"echo '{err}' >&2\n" if err else "")
                  + f"exit {code}\n")
        tmp = self.bin / "squeue.tmp"
        tmp.write_text(script)
        tmp.chmod(0o755)
        os.replace(tmp, self.bin / "squeue")  # a guard calling now sees the old or the new one

    def count(self) -> int:
        return len(self.calls.read_text().splitlines())

    def path(self) -> str:
        return f"{self.bin}{os.pathsep}{os.environ['PATH']}"


@pytest.fixture
def squeue(tmp_path) -> FakeSqueue:
    return FakeSqueue(tmp_path)


@pytest.mark.parametrize("answer", sorted(ANSWERS))
def test_job_gone_only_when_slurm_says_so(squeue, monkeypatch, answer):
    squeue.answer(answer)
    monkeypatch.setenv("PATH", squeue.path())
    assert queue.job_gone(JOB) is (answer in ENDED)
    assert squeue.count() == 1
    assert f"--jobs={JOB}" in squeue.calls.read_text()


def test_job_gone_is_false_when_squeue_is_missing_or_hangs(squeue, monkeypatch, tmp_path):
    # no squeue on PATH (a node without Slurm's clients): CommandError, not "the job ended"
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert queue.job_gone(JOB) is False
    # an squeue that never answers (slurmctld hung): proc.run times out, not "the job ended"
    hang = squeue.bin / "squeue"
    hang.write_text(f"#!/bin/sh\necho \"$*\" >> '{squeue.calls}'\nexec sleep 30\n")
    hang.chmod(0o755)
    monkeypatch.setenv("PATH", squeue.path())
    real_run = queue.proc.run
    monkeypatch.setattr(queue.proc, "run",
                        lambda argv, **kwargs: real_run(argv, **{**kwargs, "timeout": 0.5}))
    assert queue.job_gone(JOB) is False
    assert squeue.count() == 1


class Guarded:
    """The guard running a sleeper, in a process group of its own (so nothing escapes)."""

    def __init__(self, tmp_path: Path, squeue: FakeSqueue):
        self.pidfile = tmp_path / "child.pid"
        child = [sys.executable, "-c", "import os, sys, time\n"
                 "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid()))\n"
                 "os.replace(sys.argv[1] + '.tmp', sys.argv[1])\ntime.sleep(300)\n",
                 str(self.pidfile)]
        self.started = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dasklaunch.launch.guard", "--job-id", JOB,
             "--interval", "0.1", "--", *child],
            env=dict(os.environ, PATH=squeue.path()), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        assert wait_for(self.pidfile.exists), "the guarded command never started"
        self.child = int(self.pidfile.read_text())

    def child_alive(self) -> bool:
        return self.child in group_alive(self.proc.pid, self.started)

    def cleanup(self) -> None:
        if self.proc.poll() is None or group_alive(self.proc.pid, self.started):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.communicate(timeout=30)


@pytest.mark.parametrize("answer", ["unreachable", "timeout", "running", "pending"])
def test_the_guard_keeps_its_command_while_the_job_may_run(tmp_path, squeue, answer):
    squeue.answer(answer)
    guarded = Guarded(tmp_path, squeue)
    try:
        assert wait_for(lambda: squeue.count() >= 3 or guarded.proc.poll() is not None)
        assert guarded.proc.poll() is None, f"the guard exited {guarded.proc.returncode}"
        assert squeue.count() >= 3
        assert guarded.child_alive()
        # the same guard acts once Slurm does say the job is gone
        squeue.answer("invalid")
        assert guarded.proc.wait(timeout=30) == 143
        assert wait_for(lambda: not group_alive(guarded.proc.pid, guarded.started))
        assert "job 42 has ended" in guarded.proc.stderr.read()
    finally:
        guarded.cleanup()


@pytest.mark.parametrize("answer", sorted(ENDED))
def test_the_guard_stops_its_command_when_the_job_has_ended(tmp_path, squeue, answer):
    squeue.answer(answer)
    guarded = Guarded(tmp_path, squeue)
    try:
        assert guarded.proc.wait(timeout=30) == 143
        assert wait_for(lambda: not group_alive(guarded.proc.pid, guarded.started))
        assert "job 42 has ended; stopping" in guarded.proc.stderr.read()
    finally:
        guarded.cleanup()


def test_the_guard_forwards_sigterm_and_exits_with_the_command(tmp_path, squeue):
    squeue.answer("running")
    guarded = Guarded(tmp_path, squeue)
    try:
        assert wait_for(lambda: squeue.count() >= 1)
        guarded.proc.send_signal(signal.SIGTERM)
        assert guarded.proc.wait(timeout=30) == 128 + signal.SIGTERM
        assert wait_for(lambda: not group_alive(guarded.proc.pid, guarded.started))
        assert "has ended" not in guarded.proc.stderr.read()
    finally:
        guarded.cleanup()

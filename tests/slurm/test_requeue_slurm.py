"""`dasklaunch batch --requeue` on the testbed, whose partition `low` is preempted (REQUEUE,
GraceTime=30, the job's own signal sent when the grace time starts) by partition `high`: the job
brings its cluster down, is requeued, comes back as the same job with a new cluster, runs the
command again (which skips what the first run wrote), and ends COMPLETED 0:0. Nothing of the
first run survives into the second."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from procs import wait_for
from slurmbed import job_facts, processes_mentioning, submit_batch, wait_no_processes

# Restartable: one file per part, written atomically; a part already there is skipped. The
# first run is slow on purpose (a part takes 5 minutes): the preemption comes first.
RESTARTABLE = '''\
import os, socket, sys, time
from distributed import Client

out = sys.argv[1]
run = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
os.makedirs(out, exist_ok=True)
client = Client(scheduler_file=os.environ["SCHEDULER_FILE"], timeout="60s")
print("RUN", run, "PID", os.getpid(), "WORKERS", len(client.scheduler_info()["workers"]),
      flush=True)

def square(i, delay):
    time.sleep(delay)
    return i * i, socket.gethostname()

for i in range(4):
    path = os.path.join(out, f"part-{i}")
    if os.path.exists(path):
        print("SKIP", i, flush=True)
        continue
    delay = 300 if run == 0 and i > 0 else 0.2
    value, host = client.submit(square, i, delay, pure=False).result()
    with open(path + ".tmp", "w") as f:
        f.write(f"{value} {run} {host}\\n")
    os.replace(path + ".tmp", path)
    print("WROTE", i, "RUN", run, flush=True)
parts = [open(os.path.join(out, f"part-{i}")).read().split() for i in range(4)]
print("TOTAL", sum(int(p[0]) for p in parts), "BY", " ".join(p[1] for p in parts), flush=True)
'''


def text_of(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@pytest.mark.timeout(600)
def test_preempted_job_is_requeued_and_finishes_in_its_second_run(slurm, tmp_path):
    script = tmp_path / "restartable.py"
    script.write_text(RESTARTABLE)
    parts, state = tmp_path / "parts", tmp_path / "state-requeue"
    output = tmp_path / "job.out"
    job_id = submit_batch(slurm, "--requeue", "--partition", "low", "--nodes", "3",
                    "--interface", "lab0", "--state-dir", str(state), "--output", str(output),
                    "--", "python3", str(script), str(parts))
    high = None
    try:
        assert wait_for(lambda: "WROTE 0 RUN 0" in text_of(output), 180), text_of(output)
        first_pid = int(re.search(r"RUN 0 PID (\d+) WORKERS 3", text_of(output)).group(1))
        # a high-priority job that needs every core of every node
        preempted_at = time.monotonic()
        result = slurm.run(["sbatch", "--parsable", "--partition=high", "--nodes=3",
                            "--exclusive", "--output=/dev/null", "--wrap", "sleep 5"],
                           timeout=30)
        assert result.returncode == 0, result.stderr
        high = result.stdout.strip().split(";")[0]

        def requeued():
            facts = job_facts(slurm, job_id)
            return facts.get("JobState") == "PENDING" and facts.get("Restarts") == "1"

        assert wait_for(requeued, 60), (job_facts(slurm, job_id), text_of(output))
        requeue_latency = time.monotonic() - preempted_at
        first_run = text_of(output)
        assert "SIGUSR1 during command (preempted: the job will be requeued)" in first_run
        # who requeues: the script on 22.05 (which would end the job COMPLETED), Slurm itself
        # from 24.05 on (a requeue of the script's own on top would count twice)
        version = re.search(r"(\d+)\.(\d+)", slurm.run(["scontrol", "--version"]).stdout)
        by_slurm = (int(version.group(1)), int(version.group(2))) >= (24, 5)
        who = (f"job {job_id} is preempted: Slurm requeues it as this run ends" if by_slurm
               else f"requeueing job {job_id}")
        assert re.search(r"cluster down\n.*" + re.escape(who), first_run, re.S), first_run
        # nothing of the first run is left while the job waits: not the command, not the
        # scheduler or the workers (their command lines name the state dir)
        assert not wait_no_processes(str(state), timeout=10)
        assert not processes_mentioning(str(script))
        assert not Path(f"/proc/{first_pid}").exists() or "Z" in _state_of(first_pid)
        assert sorted(p.name for p in parts.iterdir()) == ["part-0"]

        assert wait_for(lambda: "runs again (restart 1)" in text_of(output), 420, interval=1), (
            job_facts(slurm, job_id), text_of(output))
        second_start = time.monotonic() - preempted_at
        assert slurm.job_gone(job_id, timeout=180)
        finished = time.monotonic() - preempted_at
    finally:
        slurm.run(["scancel", job_id, *([high] if high else [])])
    facts = job_facts(slurm, job_id)
    text = text_of(output)
    assert (facts["JobState"], facts["ExitCode"], facts["Restarts"]) == (
        "COMPLETED", "0:0", "1"), (facts, text)
    # the second run: its own cluster, part 0 skipped, the rest written, the right total
    second = text.split("runs again (restart 1)", 1)[1]
    assert "RUN 1 PID" in second and "WORKERS 3" in second
    assert "SKIP 0" in second and "WROTE 0" not in second
    assert "TOTAL 14 BY 0 1 1 1" in second, text
    assert "command exited 0" in second and "cluster down" in second
    assert "requeueing" not in second
    assert not wait_no_processes(str(tmp_path))
    print(f"\nrequeue: requeued {requeue_latency:.1f} s after the preempting job was "
          f"submitted; second run started at {second_start:.0f} s, job gone at "
          f"{finished:.0f} s")


def _state_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_a_requeue_job_that_is_not_preempted_completes(slurm, tmp_path):
    output = tmp_path / "job.out"
    state = tmp_path / "state-plain"
    job_id = submit_batch(slurm, "--requeue", "--requeue-margin", "30", "--partition", "low",
                    "--nodes", "2", "--interface", "lab0", "--state-dir", str(state),
                    "--output", str(output), "--", "python3", "-c", "print('DONE')")
    try:
        assert slurm.job_gone(job_id, timeout=180)
    finally:
        slurm.run(["scancel", job_id])
    facts = job_facts(slurm, job_id)
    text = text_of(output)
    assert (facts["JobState"], facts["ExitCode"], facts["Restarts"]) == (
        "COMPLETED", "0:0", "0"), (facts, text)
    assert "DONE" in text and "requeueing" not in text and "cluster down" in text
    assert not wait_no_processes(str(state))

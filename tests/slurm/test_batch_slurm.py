"""`dasklaunch batch` submitted for real on the testbed: the command's result from every node,
the job's exit code, the walltime SIGTERM path, and nothing left running afterwards."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from slurmbed import job_facts, submit_batch, wait_no_processes

NASTY = 'it\'s "x" $HOME'

ANALYSIS = '''\
import os, socket
from distributed import Client

client = Client(scheduler_file=os.environ["SCHEDULER_FILE"], timeout="60s")
workers = list(client.scheduler_info()["workers"])
futures = [client.submit(lambda i: (i * i, socket.gethostname()), i, workers=[w], pure=False)
           for i, w in enumerate(workers)]
results = client.gather(futures)
print("HOSTS", " ".join(sorted(host for _, host in results)),
      "TOTAL", sum(value for value, _ in results), flush=True)
'''

SLEEPER = '''\
import os, time
print("COMMAND", "READY", os.getpid(), flush=True)
time.sleep(300)
'''


def wait_for_text(path: Path, text: str, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.5)
    return False


def test_batch_job_runs_the_command_on_a_three_node_cluster(slurm, tmp_path):
    analysis = tmp_path / "analysis.py"
    analysis.write_text(ANALYSIS)
    state = tmp_path / "state-batch"
    job_id = submit_batch(slurm, "--nodes", "3", "--interface", "lab0", "--state-dir", str(state),
                    "--output", f"{tmp_path}/job-%j.out", "--job-name", NASTY,
                    "--", "python3", str(analysis))
    try:
        assert slurm.job_gone(job_id, timeout=180)
    finally:
        slurm.run(["scancel", job_id])
    output = (tmp_path / f"job-{job_id}.out").read_text()
    assert "HOSTS node1 node2 node3 TOTAL 5" in output, output
    assert "dasklaunch batch: command exited 0" in output
    assert "dasklaunch batch: cluster down" in output, output
    facts = job_facts(slurm, job_id)
    assert facts["JobState"] == "COMPLETED" and facts["ExitCode"] == "0:0", (facts, output)
    assert facts["JobName"] == NASTY  # sbatch read the quoted directive as intended
    assert json.loads((state / "state.json").read_text())["status"] == "down"
    assert not wait_no_processes(str(state))


def test_walltime_sigterm_stops_the_command_and_brings_the_cluster_down(slurm, tmp_path):
    sleeper = tmp_path / "sleeper.py"
    sleeper.write_text(SLEEPER)
    state = tmp_path / "state-term"
    job_id = submit_batch(slurm, "--nodes", "3", "--interface", "lab0", "--state-dir", str(state),
                    "--output", f"{tmp_path}/job-%j.out", "--", "python3", str(sleeper))
    output_file = tmp_path / f"job-{job_id}.out"
    try:
        assert wait_for_text(output_file, "COMMAND READY", timeout=180), (
            output_file.read_text() if output_file.exists() else "no output")
        # What --signal=B:TERM@MARGIN does at the margin: SIGTERM to the batch shell only.
        slurm.run(["scancel", "--signal=TERM", "--batch", job_id], timeout=30)
        assert slurm.job_gone(job_id, timeout=90)
    finally:
        slurm.run(["scancel", job_id])
    output = output_file.read_text()
    assert "SIGTERM during command" in output, output
    assert re.search(r"scheduler dl-sched-\w+: stopped", output), output
    assert "dasklaunch batch: cluster down" in output, output
    facts = job_facts(slurm, job_id)
    assert facts["ExitCode"] == "143:0", (facts, output)
    assert json.loads((state / "state.json").read_text())["status"] == "down"
    # the scheduler and workers (they name the state dir) and the command (it names tmp_path)
    assert not wait_no_processes(str(tmp_path))

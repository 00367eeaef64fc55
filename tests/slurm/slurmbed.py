"""Facts about the testbed and process checks for the slurm suite."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTBED = ROOT / "scripts" / "slurm-testbed"
NODES = ["node1", "node2", "node3"]
NODE_ADDR = {"node1": "10.250.0.11", "node2": "10.250.0.12", "node3": "10.250.0.13"}
BRIDGE_ADDR = "10.250.0.1"


def submit_batch(slurm, *args: str) -> str:
    """`dasklaunch batch ARGS`; the job id. PYTHONPATH: the job (which inherits this
    environment) runs this checkout."""
    result = slurm.run([sys.executable, "-m", "dasklaunch", "batch", *args], timeout=60,
                       env={"PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert job_id.isdigit(), result.stdout
    return job_id


def job_facts(slurm, job_id: str) -> dict[str, str]:
    """JobState, ExitCode, Restarts, PreemptTime and JobName from `scontrol show job`, those it
    shows (there is no sacct here; the record stays MinJobAge seconds after the end)."""
    text = slurm.run(["scontrol", "show", "job", "--oneliner", job_id], timeout=30).stdout
    facts = {key: m.group(1) for key in ("JobState", "ExitCode", "Restarts", "PreemptTime")
             if (m := re.search(rf"\b{key}=(\S+)", text))}
    if m := re.search(r"\bJobName=(.*?) UserId=", text):
        facts["JobName"] = m.group(1)  # may hold spaces
    return facts


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains `text` (a unique per-test path)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append((int(entry), cmdline))
    return found


def wait_no_processes(text: str, timeout: float = 20) -> list[tuple[int, str]]:
    deadline = time.time() + timeout
    while True:
        found = processes_mentioning(text)
        if not found or time.time() > deadline:
            return found
        time.sleep(0.5)


# For drivers (Slurm.salloc): persist PARTS keys, half on the workers that will leave and half
# on those that stay, with a scheduler plugin that counts computations; outcome() then says
# how many keys are held, whether the result is right and how many tasks ran.
PERSIST = '''
import dasklaunch
from distributed.diagnostics.plugin import SchedulerPlugin

PARTS = 12

class CountRuns(SchedulerPlugin):
    name = "count-runs"
    def __init__(self):
        self.runs = 0
    def transition(self, key, start, finish, *args, **kwargs):
        if start == "processing" and finish == "memory":
            self.runs += 1

def runs(client):
    return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins["count-runs"].runs)

def wait_workers(client, n, timeout=120):
    deadline = time.time() + timeout
    while len(client.scheduler_info()["workers"]) != n and time.time() < deadline:
        time.sleep(0.5)
    return len(client.scheduler_info()["workers"])

def persist(client, leaving, staying):
    client.register_plugin(CountRuns())
    names = {i["name"]: a for a, i in client.scheduler_info()["workers"].items()}
    a = [addr for name, addr in names.items() if leaving(name)]
    b = [addr for name, addr in names.items() if staying(name)]
    futures = [client.submit(lambda i: list(range(i * 1000, (i + 1) * 1000)), i,
                             workers=a if i % 2 else b, allow_other_workers=True, key=f"part-{i}")
               for i in range(PARTS)]
    client.gather(futures)
    out["placed"] = {k: [names_by_addr(client).get(w) for w in ws]
                     for k, ws in client.who_has(futures).items()}
    return futures

def names_by_addr(client):
    return {a: i["name"] for a, i in client.scheduler_info()["workers"].items()}

def outcome(client, futures):
    held = client.who_has(futures)
    out["held"] = sum(1 for ws in held.values() if ws)
    total = client.submit(lambda *p: sum(map(sum, p)), *futures).result(timeout=120)
    out["right"] = total == sum(range(PARTS * 1000))
    out["runs"] = runs(client) - 1
'''



"""One node lost: the workers on the other nodes keep working, and a relaunch uses the nodes
Slurm still gives the job.

The node is lost the way Slurm sees a failed node: `scontrol update state=down` (slurmctld
then kills its tasks and, for a --no-kill job, drops it from the allocation). Stopping its
slurmd instead would leave Slurm unaware for SlurmdTimeout (300 s)."""

from __future__ import annotations

import time

import pytest


@pytest.fixture
def node3_back(slurm):
    yield
    slurm.run(["scontrol", "update", "nodename=node3", "state=resume"])
    deadline = time.time() + 60
    while time.time() < deadline:
        # a line per partition that holds node3
        out = slurm.run(["sinfo", "--noheader", "--nodes=node3", "--format=%T"]).stdout
        if set(out.split()) == {"idle"}:
            return
        time.sleep(1)
    raise AssertionError(f"node3 did not come back: {out!r}")


def test_pool_survives_a_lost_node_and_relaunches_on_the_rest(slurm, node3_back):
    result = slurm.salloc('''
from dasklaunch import connect
dl("up", "--interface", "lab0")
with connect() as client:
    sh("scontrol", "update", "nodename=node3", "state=down", "reason=dasklaunch-test")
    hosts = None
    for _ in range(60):
        time.sleep(0.5)
        try:  # a run that races the lost node's workers may fail: ask again
            hosts = sorted(set(client.run(socket.gethostname).values()))
        except Exception:
            continue
        if hosts == ["node1", "node2"]:
            break
    out["hosts_after_loss"] = hosts
    out["compute_after_loss"] = client.submit(sum, range(10)).result(timeout=60)
    out["restart"] = dl("restart-workers").stderr
    out["status"] = json.loads(dl("status", "--json").stdout)
    out["hosts_after_restart"] = sorted(client.run(socket.gethostname).values())
    out["compute_after_restart"] = client.submit(sum, range(10)).result(timeout=60)
dl("down")
''', "-N3", "--no-kill")
    assert result["hosts_after_loss"] == ["node1", "node2"]
    assert result["compute_after_loss"] == 45
    assert "2 of its 3 nodes left" in result["restart"]
    assert result["status"]["workers"]["connected"] == result["status"]["workers"]["expected"]
    assert result["hosts_after_restart"] == ["node1", "node2"]
    assert result["compute_after_restart"] == 45


def test_a_failed_task_leaves_its_pool_siblings_running(slurm):
    """One task of a pool's step exits non-zero (its nanny process ends with 3). Slurm 26.05
    sends the remaining tasks of such a step SIGTERM (then SIGKILL after KillWait) where the step
    kills on a bad exit; a pool's step must not (`--kill-on-bad-exit=0`), on every version: the
    other nodes' workers stay, and `restart-workers` brings the pool back whole."""
    result = slurm.salloc('''
from dasklaunch import connect
dl("up", "--interface", "lab0")
with connect() as client:
    hosts = client.run(socket.gethostname)
    victim = [addr for addr, host in hosts.items() if host == "node3"][0]
    import threading
    # the nanny process (the task's own) ends with 3 just after it answers
    client.run(lambda: threading.Timer(0.3, os._exit, (3,)).start(), workers=[victim], nanny=True)
    for _ in range(60):
        time.sleep(0.5)
        if victim not in client.scheduler_info()["workers"]:
            break
    time.sleep(6)    # past KillWait (2 s) and the SIGTERM 26.05 would have sent
    out["hosts_after"] = sorted(client.run(socket.gethostname).values())
    out["status"] = json.loads(dl("status", "--json").stdout)
    out["restart"] = dl("restart-workers").stderr
    out["hosts_restarted"] = sorted(client.run(socket.gethostname).values())
dl("down")
''', "-N3")
    assert result["hosts_after"] == ["node1", "node2"]
    assert result["status"]["workers"]["connected"] == 2
    assert result["hosts_restarted"] == ["node1", "node2", "node3"], result["restart"]

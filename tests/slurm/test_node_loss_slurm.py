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

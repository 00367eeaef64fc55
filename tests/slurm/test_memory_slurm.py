"""Memory profiles and the OOM path on the real testbed."""

from __future__ import annotations

from slurmbed import NODE_ADDR, NODES


def test_seed_profile_sizes_from_the_allocation_and_reaches_every_node(slurm):
    result = slurm.salloc('''
import dask
from dasklaunch import connect
dl("up", "--interface", "lab0", "--profile", "seed")
out["status"] = json.loads(dl("status", "--json").stdout)
with connect() as client:
    out["terminate"] = client.run(dask.config.get, "distributed.worker.memory.terminate")
    out["spill"] = client.run(dask.config.get, "distributed.worker.memory.spill")
    out["hosts"] = client.run(socket.gethostname)
dl("down")
''', "-N3", "--ntasks-per-node=2")
    status = result["status"]
    # seed: one worker per node with all its CPUs, 90% of DefMemPerNode=2000M less 5% of the
    # node for the scheduler
    assert status["workers"]["connected"] == 3 and status["workers"]["threads"] == 6
    assert status["hosts"] == {NODE_ADDR[n]: 1 for n in NODES}
    assert status["workers"]["memory_per_worker"] == [int(2000 * 2**20 * 0.9)
                                                      - int(2000 * 2**20 * 0.05)]
    assert set(result["terminate"].values()) == {0.95}
    assert set(result["spill"].values()) == {False}
    assert sorted(result["hosts"].values()) == NODES


def test_oom_killed_worker_then_restart_workers(slurm, tmp_path):
    profile = tmp_path / "strict.yaml"
    profile.write_text("description: test\ndistributed:\n  scheduler:\n"
                       "    allowed-failures: 1\n")
    result = slurm.salloc(f'''
from distributed import KilledWorker
from dasklaunch import connect

def hog(mb):
    block = bytearray(mb * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(5)
    return 0

dl("up", "--interface", "lab0", "--profile", "{profile}", "--memory-limit", "400MB")
with connect() as client:
    try:
        client.submit(hog, 600, pure=False).result(timeout=120)
        out["outcome"] = "no error"
    except KilledWorker as err:
        out["outcome"] = "KilledWorker"
    out["status"] = json.loads(dl("status", "--json").stdout)
    pool = record()["pools"][0]
    step = [s.split()[0] for s in sh("squeue", "--noheader", "--steps",
                                     "--format=%i %j").splitlines()
            if s.split()[1] == pool["name"]][0]
    sh("scancel", step)
    dl("restart-workers")
    out["after"] = client.submit(sum, range(10)).result(timeout=60)
dl("down")
''', "-N3")
    assert result["outcome"] == "KilledWorker"
    assert result["status"]["workers"]["memory_restarts"] >= 2
    assert result["after"] == 45

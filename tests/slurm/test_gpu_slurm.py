"""GPU nodes and mixed pools on the testbed, whose nodes have 2 fake GPUs each (gres/gpu on null
character devices: Slurm itself sets CUDA_VISIBLE_DEVICES per task; nothing computes on them)."""

from __future__ import annotations

import os

import pytest
from procs import STANDINS
from slurmbed import NODES

GPU_CHECK = '''
from dasklaunch import connect

def look(client):
    info = client.scheduler_info()["workers"]
    seen = client.run(lambda: (socket.gethostname(), os.environ.get("CUDA_VISIBLE_DEVICES")))
    # a worker that leaves (or joins) between the two calls is in one answer only: skip it
    return {info[a]["name"]: [*seen[a], info[a].get("resources", {})] for a in info if a in seen}
'''


@pytest.fixture
def gpu_testbed(slurm):
    out = slurm.run(["sinfo", "--noheader", "--format=%G"], timeout=30).stdout
    if "gpu:2" not in out:
        reason = "the testbed has no GPUs (scripts/slurm-testbed up --gpus 2)"
        if os.environ.get("DASKLAUNCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"{reason}, but DASKLAUNCH_REQUIRE_SLURM=1 asks for the whole suite")
        pytest.skip(reason)
    return slurm


def test_one_worker_per_gpu_each_seeing_its_own(gpu_testbed):
    result = gpu_testbed.salloc(GPU_CHECK + '''
dl("up", "--interface", "lab0")
with connect(timeout="30s") as client:
    out["workers"] = look(client)
    out["on_gpu"] = client.submit(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"),
                                  resources={"GPU": 1}, pure=False).result(timeout=60)
out["status"] = json.loads(dl("status", "--json").stdout)
dl("down")
''', "-N3", "-n3", "--gpus-per-node=2")
    workers = result["workers"]
    assert len(workers) == 6
    for node in NODES:
        mine = sorted(w[1] for name, w in workers.items() if w[0] == node)
        assert mine == ["0", "1"], (node, workers)
        assert f"workers-{node}-gpu0" in workers and f"workers-{node}-gpu1" in workers
    assert all(w[2] == {"GPU": 1.0} for w in workers.values())
    assert result["on_gpu"] in ("0", "1")
    (pool,) = result["status"]["pools"]
    assert pool["gpus"] == 6 and pool["connected"] == pool["expected"] == 6


def test_cpu_and_gpu_pools_under_one_scheduler(gpu_testbed):
    result = gpu_testbed.salloc(GPU_CHECK + '''
dl("up", "--interface", "lab0", "--pool", "cpu:nodes=1", "--pool", "gpu:nodes=2")
with connect(timeout="30s") as client:
    out["before"] = look(client)
    futures = client.map(lambda i: socket.gethostname(), range(12), resources={"GPU": 1},
                         pure=False)
    out["gpu_hosts"] = sorted(set(client.gather(futures)))
    gpu_step = [p for p in record()["pools"] if p["pool"] == "gpu"][0]
    live = steps()  # JOB.STEP NAME pairs
    sh("scancel", live[live.index(gpu_step["name"]) - 1])
    deadline = time.time() + 60
    while len(client.scheduler_info()["workers"]) > 2 and time.time() < deadline:
        time.sleep(0.5)
    dl("restart-workers", "--pool", "gpu")
    out["after"] = look(client)
    out["still"] = client.submit(lambda: 41 + 1, pure=False).result(timeout=60)
out["status"] = json.loads(dl("status", "--json").stdout)
dl("down")
''', "-N3", "--gpus-per-node=2")
    before, after = result["before"], result["after"]
    cpu = {n: w for n, w in before.items() if n.startswith("cpu-")}
    assert cpu and all(w[0] == "node1" and w[1] == "" and w[2] == {} for w in cpu.values())
    gpu = {n: w for n, w in before.items() if n.startswith("gpu-")}
    assert sorted(w[0] for w in gpu.values()) == ["node2", "node2", "node3", "node3"]
    assert result["gpu_hosts"] == ["node2", "node3"]
    # the CPU pool was left alone; the GPU pool is back
    assert {n: w for n, w in after.items() if n.startswith("cpu-")} == cpu
    assert sorted(n for n in after if n.startswith("gpu-")) == sorted(gpu)
    assert result["still"] == 42
    rows = {row["pool"]: row for row in result["status"]["pools"]}
    assert rows["gpu"]["connected"] == 4 and rows["cpu"]["gpus"] == 0


def test_heterogeneous_job_gives_one_pool_per_component(gpu_testbed):
    """Each component's pool starts, and comes back at its full size on its own nodes after a
    killed step, a restart while running, `down --pool` and the supervisor's relaunch: the
    node-loss check reads the component's nodes, never the job's first component's."""
    result = gpu_testbed.salloc(GPU_CHECK + '''
def hosts_of(client, pool, n):
    deadline = time.time() + 60
    while True:
        try:
            seen = look(client)
        except OSError:   # a worker that leaves while it is asked (CommClosedError)
            seen = {}
        mine = sorted((w[0], w[1]) for name, w in seen.items() if name.startswith(pool + "-"))
        if (len(mine) == n and seen) or time.time() > deadline:
            return mine
        time.sleep(0.5)

def kill_step(pool):
    name = [p for p in record()["pools"] if p["pool"] == pool][0]["name"]
    # every component's steps (component 1's are listed under the next job id)
    live = sh("squeue", "--noheader", "--steps", "--format=%i %j").split()
    sh("scancel", "--signal=KILL", live[live.index(name) - 1])

dl("up", "--interface", "lab0")
with connect(timeout="30s") as client:
    out["workers"] = look(client)
    out["status"] = json.loads(dl("status", "--json").stdout)
    kill_step("het1")
    hosts_of(client, "het1", 0)
    out["killed"] = dl("restart-workers", "--pool", "het1").stderr
    out["after_kill"] = hosts_of(client, "het1", 4)
    out["running"] = dl("restart-workers", "--pool", "het1").stderr
    out["after_running"] = hosts_of(client, "het1", 4)
    out["het0"] = dl("restart-workers", "--pool", "het0").stderr
    out["after_het0"] = hosts_of(client, "het0", 2)
    dl("down", "--pool", "het1")
    hosts_of(client, "het1", 0)
    out["after_down"] = dl("restart-workers", "--pool", "het1").stderr
    out["after_down_hosts"] = hosts_of(client, "het1", 4)
    sup = subprocess.Popen([sys.executable, "-m", "dasklaunch", "supervise", "--interval",
                            "0.5", "--grace", "3"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    restarts = json.loads(dl("status", "--json").stdout)["restarts"]
    for _ in range(60):
        if (json.loads(dl("status", "--json").stdout)["supervisor"] or {}).get("attached"):
            break
        time.sleep(0.5)
    kill_step("het1")
    for _ in range(120):
        st = json.loads(dl("status", "--json").stdout)
        if st["restarts"] > restarts and st["workers"]["connected"] == 6:
            break
        time.sleep(0.5)
    out["supervised"] = hosts_of(client, "het1", 4)
    sup.terminate()
    out["sup_err"] = sup.communicate(timeout=30)[1]
dl("down")
''', "-N1", "-n2", ":", "-N2", "--ntasks-per-node=2", "--gpus-per-node=2", timeout=420)
    workers = result["workers"]
    het0 = [w for n, w in workers.items() if n.startswith("het0-")]
    het1 = {n: w for n, w in workers.items() if n.startswith("het1-")}
    assert [(w[0], w[1]) for w in het0] == [("node1", None), ("node1", None)]
    full = [("node2", "0"), ("node2", "1"), ("node3", "0"), ("node3", "1")]
    assert sorted((w[0], w[1]) for w in het1.values()) == full
    assert sorted(row["pool"] for row in result["status"]["pools"]) == ["het0", "het1"]
    for key in ("killed", "running", "het0", "after_down"):
        assert "nodes left" not in result[key], (key, result[key])
    # (JSON gives the pairs back as lists)
    for key in ("after_kill", "after_running", "after_down_hosts"):
        assert result[key] == [list(w) for w in full], (key, result[key])
    assert result["after_het0"] == [["node1", None], ["node1", None]]
    assert result["supervised"] == [list(w) for w in full], result["sup_err"]


def test_join_adds_a_worker_over_tls_and_down_stops_it(gpu_testbed):
    result = gpu_testbed.salloc('''
from dasklaunch import connect
dl("up", "--interface", "lab0")
dl("join", "--pool", "mine", "--", sys.executable, "-m", "distributed.cli.dask_worker",
   "--name", "mine-by-hand", "--interface", "lab0", "--protocol", "tls")
out["status"] = json.loads(dl("status", "--json").stdout)
with connect(timeout="30s") as client:
    out["names"] = sorted(w["name"] for w in client.scheduler_info()["workers"].values())
out["record"] = record()
dl("down")
''', "-N1", "-n1")
    assert "mine-by-hand" in result["names"]
    rows = {row["pool"]: row for row in result["status"]["pools"]}
    assert rows["mine"]["connected"] == 1
    from procs import group_alive

    for step in result["record"]["pools"]:
        assert not group_alive(step["pgid"], step["started"])


@pytest.mark.parametrize("args, message", [
    (["--pool", "gpu:gpus-per-worker=4"], "gpus-per-worker=4, but its nodes have 2 GPUs each"),
    (["--pool", "big:nodes=5"], "nodes=5, but only 3 nodes of the allocation are free"),
    (["--pool", "a:nodes=node[1-2]", "--pool", "b:nodes=node2"], "both want node2"),
    (["--pool", "gpu:nodez=2"], "unknown key 'nodez'"),
])
def test_refusals_start_nothing(gpu_testbed, args, message):
    result = gpu_testbed.salloc(f'''
r = dl("up", "--interface", "lab0", *{args!r}, check=False)
out["code"], out["stderr"], out["steps"] = r.returncode, r.stderr, steps()
''', "-N3", "--gpus-per-node=2")
    assert result["code"] == 2
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not [s for s in result["steps"] if s.startswith("dl-")]


def test_gpu_tasks_and_dask_cuda_workers(gpu_testbed):
    """gpu-tasks=yes: one task per GPU worker, Slurm choosing each task's GPU; one pool through
    dask-cuda (a stand-in for `dask cuda worker` on these GPU-less nodes: it records the options
    it got and runs `dask worker`), one with dask-cuda=no."""
    result = gpu_testbed.salloc(GPU_CHECK + f'''
os.environ["PYTHONPATH"] = {STANDINS!r}
dl("up", "--interface", "lab0", "--pool", "cuda:nodes=1,gpu-tasks=yes,rmm-pool-size=0.5",
   "--pool", "plain:nodes=1,gpu-tasks=yes,dask-cuda=no")
with connect(timeout="30s") as client:
    out["workers"] = look(client)
    out["options"] = client.run(lambda: os.environ.get("STANDIN_DASK_CUDA"))
    out["names"] = {{a: w["name"] for a, w in client.scheduler_info()["workers"].items()}}
out["record"] = record()
dl("down")
''', "-N2", "--ntasks-per-node=2", "--gpus-per-node=2")
    workers = result["workers"]
    assert {n: (w[0], w[1], w[2]) for n, w in workers.items()} == {
        "cuda-node1-gpu0": ("node1", "0", {"GPU": 1.0}),
        "cuda-node1-gpu1": ("node1", "1", {"GPU": 1.0}),
        "plain-node2-gpu0": ("node2", "0", {"GPU": 1.0}),
        "plain-node2-gpu1": ("node2", "1", {"GPU": 1.0})}
    options = {result["names"][a]: v for a, v in result["options"].items()}
    assert options == {"cuda-node1-gpu0": '{"--rmm-pool-size": "0.5"}',
                       "cuda-node1-gpu1": '{"--rmm-pool-size": "0.5"}',
                       "plain-node2-gpu0": None, "plain-node2-gpu1": None}
    steps = {p["pool"]: p for p in result["record"]["pools"]}
    assert steps["cuda"]["ntasks"] == steps["plain"]["ntasks"] == 2
    assert steps["cuda"]["gpus_per_task"] == 1


def test_scancel_term_of_a_dask_cuda_pool_drains_it(gpu_testbed):
    """Slurm's SIGTERM to a step reaches every process of it: the dask-cuda stand-in's workers
    (which wait for signals as `dask cuda worker` does) leave it to the node launcher, which
    moves their keys to the other pool first."""
    from slurmbed import PERSIST

    result = gpu_testbed.salloc(PERSIST + f'''
os.environ["PYTHONPATH"] = {STANDINS!r}
dl("up", "--interface", "lab0", "--pool", "cuda:nodes=1,dask-cuda=yes", "--pool",
   "cpu:nodes=1")
with dasklaunch.connect(timeout="30s") as client:
    futures = persist(client, lambda n: n.startswith("cuda-"), lambda n: n.startswith("cpu-"))
    step = [p for p in record()["pools"] if p["pool"] == "cuda"][0]
    out["command"] = step["command"]
    live = steps()
    sh("scancel", "--signal=TERM", live[live.index(step["name"]) - 1])
    out["left"] = wait_workers(client, 1)
    outcome(client, futures)
out["status"] = json.loads(dl("status", "--json").stdout)
dl("down")
''', "-N2", "--gpus-per-node=2", timeout=300)
    assert "cuda" in result["command"] and "worker" in result["command"]
    assert result["left"] == 1 and result["right"] and result["held"] == 12
    assert result["runs"] == 12, result  # nothing recomputed
    drains = result["status"]["drains"]
    assert (drains["keys_moved"], drains["keys_lost"]) == (6, 0), drains

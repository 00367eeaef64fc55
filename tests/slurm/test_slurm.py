"""Every lifecycle claim on a real multi-node Slurm (the testbed: node1..node3, interface lab0)."""

from __future__ import annotations

import json
import re
import time

import pytest
from slurmbed import BRIDGE_ADDR, NODE_ADDR, NODES, processes_mentioning, wait_no_processes

COMPUTE = '''
from dasklaunch import connect

def span_all_workers(client):
    workers = list(client.scheduler_info()["workers"])
    futures = [client.submit(lambda i: (i * i, socket.gethostname()), i, workers=[w], pure=False)
               for i, w in enumerate(workers)]
    return client.gather(futures)
'''


def host_of(address: str) -> str:
    return address.split("://")[1].rsplit(":", 1)[0]


@pytest.mark.parametrize("where", ["own-step", "here"])
def test_up_in_salloc_binds_every_worker_to_its_node(slurm, where):
    extra = '"--scheduler-here",' if where == "here" else ""
    result = slurm.salloc(COMPUTE + f'''
r = dl("up", "--interface", "lab0", "--json", {extra})
facts = json.loads(r.stdout)
out["facts"] = facts
out["steps_up"] = steps()
out["status"] = json.loads(dl("status", "--json").stdout)
with connect(timeout="30s") as client:
    out["hostnames"] = client.run(socket.gethostname)
    out["results"] = span_all_workers(client)
dl("down")
out["steps_down"] = steps()
''', "-N3")
    address = result["facts"]["scheduler"]["address"]
    if where == "here":
        # the salloc shell runs outside the nodes: the scheduler is there, in no step
        assert host_of(address) == BRIDGE_ADDR
        assert not any(s.startswith("dl-sched") for s in result["steps_up"])
    else:
        assert host_of(address) == NODE_ADDR["node1"]
        assert any(s.startswith("dl-sched") for s in result["steps_up"])
    hostnames = result["hostnames"]
    assert sorted(hostnames.values()) == NODES
    for worker, hostname in hostnames.items():
        assert host_of(worker) == NODE_ADDR[hostname], "worker not bound to its node's lab0"
    assert sorted(h for _, h in result["results"]) == NODES
    assert result["status"]["hosts"] == {NODE_ADDR[n]: 1 for n in NODES}
    assert not [s for s in result["steps_down"] if s.startswith("dl-")]


@pytest.mark.parametrize("layout, workers, threads", [("per-task", 6, 1), ("per-node", 3, 2)])
def test_layout_matches_the_allocation(slurm, layout, workers, threads):
    flag = '"--per-node",' if layout == "per-node" else ""
    result = slurm.salloc(f'''
dl("up", "--interface", "lab0", {flag})
out["status"] = json.loads(dl("status", "--json").stdout)
from dasklaunch import connect
with connect() as client:
    out["nthreads"] = client.nthreads()
    out["names"] = sorted(w["name"] for w in client.scheduler_info()["workers"].values())
    out["pids"] = sorted(client.run(os.getpid).values())
    out["restart"] = dl("restart-workers").stderr
    out["names_after"] = sorted(w["name"] for w in client.scheduler_info()["workers"].values())
out["ntasks"] = record()["pools"][0]["ntasks"]
out["down"] = dl("down").stderr
out["steps"] = steps()
''', "-N3", "--ntasks-per-node=2")
    status = result["status"]
    assert status["workers"]["expected"] == status["workers"]["connected"] == workers
    assert set(result["nthreads"].values()) == {threads}
    assert len(status["hosts"]) == 3
    assert len(set(result["pids"])) == workers      # a process each
    if layout == "per-task":
        # one task per node (one import of distributed), starting the workers of the node's 2
        # tasks under the names those tasks would have given them
        assert result["ntasks"] == 3
        assert result["names"] == sorted(f"workers-{n}-{i}" for n in NODES for i in (0, 1))
    # the pool drains and comes back whole under the same names, and ends without a kill
    assert result["names_after"] == result["names"], result["restart"]
    assert "killed" not in result["down"] and not [s for s in result["steps"] if "dl-" in s]
    # DefMemPerNode=2000M, read from the job record (salloc exports no memory variable): 90%
    # of it, less 5% for the scheduler, shared by the node's workers
    per_node_workers = workers // 3
    usable = int(2000 * 2**20 * 0.9) - int(2000 * 2**20 * 0.05)
    assert status["workers"]["memory_per_worker"] == [usable // per_node_workers]


@pytest.mark.parametrize("layout, workers, threads", [("per-task", 6, 2), ("per-node", 3, 4)])
def test_worker_step_holds_the_cpus_its_workers_use(slurm, layout, workers, threads):
    """The worker step must hold as many CPUs as its workers run threads, on every Slurm.

    What a step gets without --cpus-per-task differs by version, so dasklaunch cannot leave it
    to srun: in this `-c2` allocation Slurm 22.05's srun ignores the job's --cpus-per-task
    and gives each step every CPU the job has on its nodes, while 23.11+ (24.11 here) inherits
    -c2 again (SLURM_CPUS_PER_TASK), so a --per-node step gets 2 of each node's 4 CPUs for a
    worker that runs 4 threads. The testbed has no cgroups (TaskPlugin=task/none), so only
    the step's TRES shows it; on a cluster with task/cgroup that worker is confined to 2 CPUs."""
    flag = '"--per-node",' if layout == "per-node" else ""
    result = slurm.salloc(f'''
dl("up", "--interface", "lab0", {flag})
out["status"] = json.loads(dl("status", "--json").stdout)
pool = record()["pools"][0]
step = [s.split()[0] for s in sh("squeue", "--noheader", "--steps", "--format=%i %j").splitlines()
        if s.split()[1] == pool["name"]][0]
out["step"] = sh("scontrol", "show", "step", step)
dl("down")
''', "-N3", "--ntasks-per-node=2", "--cpus-per-task=2")
    status = result["status"]
    assert status["workers"]["connected"] == workers
    assert status["workers"]["threads"] == workers * threads == 12
    cpus = re.search(r"\bTRES=cpu=(\d+)", result["step"])
    assert cpus, result["step"]
    assert int(cpus.group(1)) == 12, (
        f"the {layout} worker step holds {cpus.group(1)} CPUs for {workers} workers x {threads} "
        f"threads:\n{result['step']}")


def test_hard_killed_pool_comes_back_to_the_same_scheduler(slurm):
    result = slurm.salloc(COMPUTE + '''
facts = json.loads(dl("up", "--interface", "lab0", "--json").stdout)
with connect(timeout="30s") as client:
    before = span_all_workers(client)
    pool = record()["pools"][0]
    step = [s for s in sh("squeue", "--noheader", "--steps", "--format=%i %j").splitlines()
            if s.split()[1] == pool["name"]][0].split()[0]
    sh("scancel", step)          # SIGKILL to every task: an OOM storm
    deadline = time.time() + 30
    while time.time() < deadline:
        status = json.loads(dl("status", "--json").stdout)
        if status["workers"]["connected"] == 0 and status["pools"][0]["state"] == "exited":
            break
        time.sleep(0.5)
    out["status_dead"] = status
    out["restart"] = json.loads(dl("restart-workers", "--json").stdout)
    out["after"] = span_all_workers(client)      # the same client, still connected
    out["client_address"] = client.scheduler.address
out["status_after"] = json.loads(dl("status", "--json").stdout)
dl("down")
out["facts"] = facts
''', "-N3")
    dead = result["status_dead"]
    assert dead["scheduler"]["alive"] and dead["workers"]["connected"] == 0
    assert dead["pools"][0]["state"] == "exited"
    assert result["restart"]["workers"] == 3
    assert result["restart"]["address"] == result["facts"]["scheduler"]["address"]
    assert result["client_address"] == result["facts"]["scheduler"]["address"]
    assert sorted(h for _, h in result["after"]) == NODES
    assert result["status_after"]["restarts"] == 1


def test_graceful_stop_uses_scancel_term_and_nannies_close(slurm):
    result = slurm.salloc('''
dl("up", "--interface", "lab0")
pool = record()["pools"][0]
out["down"] = dl("down").stderr
out["steps"] = steps()
out["log"] = open(pool["log"]).read()
''', "-N3")
    assert "stopped" in result["down"] and "killed" not in result["down"]
    log = result["log"]
    assert log.count("Closing Nanny") >= 3 or log.count("Stopping worker") >= 3, log[-3000:]
    assert "CANCELLED" in log  # what scancel --signal=TERM makes srun print
    assert not result["steps"]


def test_batch_job_sources_the_env_file(slurm, tmp_path):
    client = tmp_path / "client.py"
    client.write_text(
        "import os, socket\n"
        "from distributed import Client\n"
        "client = Client(scheduler_file=os.environ['SCHEDULER_FILE'])\n"
        "hosts = sorted(set(client.run(socket.gethostname).values()))\n"
        "total = client.submit(sum, range(1000)).result()\n"
        "print('HOSTS', ' '.join(hosts), 'TOTAL', total)\n")
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\nset -euo pipefail\n"
        f"export DASKLAUNCH_STATE_DIR={tmp_path}/state-$SLURM_JOB_ID\n"
        "dasklaunch() { python3 -m dasklaunch \"$@\"; }\n"
        "dasklaunch up --interface lab0\n"
        "source \"$(dasklaunch env --path)\"\n"
        f"python3 {client}\n"
        "dasklaunch down\n")
    out = tmp_path / "job.out"
    result = slurm.run(["timeout", "200", "sbatch", "--wait", "-N3", f"--output={out}",
                        str(script)], timeout=230)
    text = out.read_text() if out.exists() else ""
    assert result.returncode == 0, result.stderr + text
    assert "HOSTS node1 node2 node3 TOTAL 499500" in text
    assert not wait_no_processes(str(tmp_path / "state-"))


@pytest.mark.parametrize("where", ["own-step", "here"])
def test_nothing_survives_the_end_of_the_allocation(slurm, where):
    extra = '"--scheduler-here",' if where == "here" else ""
    result = slurm.salloc(f'''
dl("up", "--interface", "lab0", {extra})
out["record"] = record()
''', "-N3")  # no `down`: salloc ends the job with the cluster still up
    assert slurm.job_gone(result["job_id"])
    leftovers = wait_no_processes(str(slurm.state_dir), timeout=25)
    assert not leftovers, leftovers


def test_scancel_of_the_whole_batch_job_leaves_nothing(slurm, tmp_path):
    script = tmp_path / "job.sh"
    state = tmp_path / "state-cancel"
    script.write_text(
        "#!/bin/bash\n"
        f"export DASKLAUNCH_STATE_DIR={state}\n"
        "python3 -m dasklaunch up --interface lab0 --scheduler-here && touch "
        f"{tmp_path}/ready\nsleep 300\n")
    submitted = slurm.run(["sbatch", "--parsable", "-N3", f"--output={tmp_path}/job.out",
                           str(script)])
    job_id = submitted.stdout.strip().split(";")[0]
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (tmp_path / "ready").exists():
            time.sleep(0.5)
        assert (tmp_path / "ready").exists(), (tmp_path / "job.out").read_text()
        assert processes_mentioning(str(state))
    finally:
        slurm.run(["scancel", job_id])
    assert slurm.job_gone(job_id)
    leftovers = wait_no_processes(str(state), timeout=25)
    assert not leftovers, leftovers


def test_missing_interface_is_a_quick_clear_error(slurm):
    result = slurm.salloc('''
start = time.monotonic()
r = dl("up", "--interface", "nosuch0", check=False)
out["elapsed"] = time.monotonic() - start
out["code"], out["stderr"] = r.returncode, r.stderr
time.sleep(1)
out["steps"] = steps()
''', "-N3")
    assert result["code"] == 2
    errors = [line for line in result["stderr"].splitlines()
              if line.startswith("dasklaunch: error")]
    assert len(errors) == 1 and "nosuch0" in errors[0] and "lab0" in errors[0], result["stderr"]
    assert result["elapsed"] < 30
    assert not result["steps"]
    assert not wait_no_processes(str(slurm.state_dir), timeout=10)


def test_stale_scheduler_file_of_an_earlier_job(slurm):
    first = slurm.salloc('''
dl("up", "--interface", "lab0")
sched = record()["scheduler"]
step = [s.split()[0] for s in sh("squeue", "--noheader", "--steps", "--format=%i %j").splitlines()
        if s.split()[1] == sched["name"]][0]
sh("scancel", step)   # SIGKILL: the scheduler file stays behind
time.sleep(2)
out["file_left"] = os.path.exists(os.environ["DASKLAUNCH_STATE_DIR"] + "/scheduler.json")
''', "-N3")
    assert first["file_left"]
    second = slurm.salloc('''
r = dl("up", "--interface", "lab0")
out["stderr"] = r.stderr
out["status"] = json.loads(dl("status", "--json").stdout)
dl("down")
''', "-N3")
    assert "removed stale scheduler file" in second["stderr"]
    assert f"belongs to job {first['job_id']}" in second["stderr"]
    assert second["status"]["workers"]["connected"] == 3
    assert json.loads((slurm.state_dir / "state.json").read_text())["job_id"] == second["job_id"]


def test_fork_start_method_on_every_node_and_after_restart(slurm):
    result = slurm.salloc('''
from dasklaunch import connect

def worker_facts():
    import dask, psutil
    return (socket.gethostname(), dask.config.get("distributed.worker.multiprocessing-method"),
            os.environ.get("MALLOC_TRIM_THRESHOLD_"),
            "spawn_main" in " ".join(psutil.Process().cmdline()))

dl("up", "--interface", "lab0", "--start-method", "fork")
with connect(timeout="30s") as client:
    out["before"] = sorted(client.run(worker_facts).values())
dl("restart-workers")
with connect(timeout="30s") as client:
    out["after"] = sorted(client.run(worker_facts).values())
dl("down")
''', "-N3")
    expected = [[node, "fork", "65536", False] for node in NODES]
    assert result["before"] == result["after"] == expected

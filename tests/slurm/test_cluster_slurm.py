"""`dasklaunch.Cluster` from outside any allocation, as a notebook on a login node uses it:
the scheduler runs in a job of its own; scale and adapt add and remove worker jobs, each
leaving only after its keys moved; the scheduler job's end is said and its worker jobs go."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
from slurmbed import wait_no_processes

COMMON = '''
import dasklaunch
from distributed import Client
from distributed.diagnostics.plugin import SchedulerPlugin

class CountRuns(SchedulerPlugin):
    """Per key: how often it was computed; and any task that erred or was lost mid-run."""
    name = "count-runs"
    def __init__(self):
        self.runs, self.erred, self.lost = {}, 0, 0
    def transition(self, key, start, finish, *args, **kwargs):
        if start == "processing" and finish == "memory":
            self.runs[key] = self.runs.get(key, 0) + 1
        if finish == "erred":
            self.erred += 1
        if start == "processing" and finish in ("released", "waiting", "no-worker"):
            self.lost += 1

def counts(client):
    return client.run_on_scheduler(lambda dask_scheduler: (
        dask_scheduler.plugins["count-runs"].runs, dask_scheduler.plugins["count-runs"].erred,
        dask_scheduler.plugins["count-runs"].lost))

def live_jobs(cluster):
    return sorted(cluster._live_jobs())

def gone(ids, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not sh("squeue", "--noheader", "--jobs=" + ",".join(ids), "--format=%i").strip():
            return True
        time.sleep(1)
    return False

def make_cluster(**extra):
    start = time.time()
    where = {"state_dir": STATE_DIR} if STATE_DIR else {}   # None: the default, under HOME
    cluster = dasklaunch.Cluster(cores=1, memory="300MB", interface="lab0", walltime="10:00",
                                 **where, **extra)
    client = Client(cluster, timeout="30s")
    out["connected_s"] = round(time.time() - start, 2)
    out["scheduler_job"] = cluster.job_id
    return cluster, client

def with_one_worker_job(**extra):
    """A cluster, its client, and one worker job whose worker has connected."""
    cluster, client = make_cluster(**extra)
    cluster.scale(jobs=1)
    client.wait_for_workers(2, timeout=120)
    out["workers"] = live_jobs(cluster)
    return cluster, client
'''


@pytest.fixture
def shared_dir():
    """A state dir on the file system the nodes share and that is not node-local by name
    (the cluster refuses /tmp): under the home directory, removed afterwards."""
    path = Path.home() / ".dasklaunch-tests" / uuid.uuid4().hex[:12]
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_scale_up_and_down_keeps_keys_and_close_leaves_nothing(slurm, shared_dir):
    # the default state dir, ~/.dasklaunch/JOBID, with HOME on the shared file system
    result = slurm.login("STATE_DIR = None\n" + COMMON + '''
cluster, client = make_cluster()
out["state_dir"] = str(cluster.state_dir)
out["repr"] = repr(cluster)
out["link"] = cluster.dashboard_link
out["address"] = cluster.scheduler_address
client.register_plugin(CountRuns())
out["first"] = client.submit(lambda x: x + 1, 1).result()
start = time.time()
cluster.scale(jobs=2)
client.wait_for_workers(3, timeout=120)
out["scale_up_s"] = round(time.time() - start, 2)
out["jobs_up"] = live_jobs(cluster)
futures = client.map(lambda i: list(range(i * 100, (i + 1) * 100)), range(12), pure=False)
client.gather(futures)
start = time.time()
cluster.scale(jobs=0)
out["scale_down_s"] = round(time.time() - start, 2)
out["scale_downs"] = cluster.scale_downs
out["jobs_after"] = live_jobs(cluster)
out["total"] = sum(map(sum, client.gather(futures)))
runs, out["erred"], out["lost"] = counts(client)
out["max_runs"] = max(runs.values())
out["logs"] = sorted(cluster.get_logs())
all_jobs = [cluster.job_id, *out["jobs_up"]]
client.close()
cluster.close()
out["gone"] = gone(all_jobs)
''', timeout=300, env={"HOME": str(shared_dir)})
    print(f"\ncluster figures: connected {result['connected_s']} s, scale(jobs=2) to 3 workers "
          f"{result['scale_up_s']} s, scale(jobs=0) {result['scale_down_s']} s, scale-downs "
          f"{result['scale_downs']}")
    assert result["first"] == 2
    assert result["state_dir"] == str(shared_dir / ".dasklaunch" / result["scheduler_job"])
    # the job's own output beside it
    assert (shared_dir / ".dasklaunch" / f"dasklaunch-cluster-{result['scheduler_job']}.out"
            ).exists()
    assert result["repr"].startswith("Cluster(") and result["address"].startswith("tls://")
    assert len(result["jobs_up"]) == 2 and result["jobs_after"] == []
    assert [e["job_id"] for e in result["scale_downs"]] and all(
        e["workers"] == 1 for e in result["scale_downs"])
    assert result["total"] == sum(range(1200))
    assert result["max_runs"] == 1 and result["erred"] == 0 and result["lost"] == 0
    assert "Cluster" in result["logs"] and "Scheduler" in result["logs"]
    assert result["gone"]
    assert not wait_no_processes(str(shared_dir))


def test_adapt_goes_from_minimum_to_maximum_jobs_and_back_without_recomputing(
        slurm, shared_dir):
    result = slurm.login(f"STATE_DIR = {str(shared_dir)!r}\n" + COMMON + '''
cluster, client = make_cluster()
client.register_plugin(CountRuns())
cluster.adapt(minimum_jobs=0, maximum_jobs=2, interval="1s", wait_count=2)

def slow(i):
    time.sleep(0.5)
    return list(range(i * 10, (i + 1) * 10))

def watch(until, timeout):
    """Live worker jobs, sampled each second, until `until(jobs)` or the timeout."""
    start, seen = time.time(), []
    while time.time() - start < timeout:
        jobs = live_jobs(cluster)
        seen.append(len(jobs))
        if until(jobs):
            return round(time.time() - start, 1), seen
        time.sleep(1)
    return None, seen

first = client.map(slow, range(40), key=[f"first-{i}" for i in range(40)])
out["add_s"], up = watch(lambda jobs: len(jobs) == 2, 60)
client.gather(first)
out["max_jobs"] = max(up)
out["remove_s"], down = watch(lambda jobs: not jobs, 90)   # idle: back to the minimum
out["moved_1"] = list(cluster.scale_downs)
second = client.map(lambda part: sum(part), first, key=[f"second-{i}" for i in range(40)])
more = client.map(slow, range(40, 80), key=[f"more-{i}" for i in range(40)])
out["add_again_s"], again = watch(lambda jobs: len(jobs) >= 1, 60)
out["total"] = sum(client.gather(second)) + sum(map(sum, client.gather(more)))
out["remove_again_s"], _ = watch(lambda jobs: not jobs, 90)
out["samples"] = up + down + again
out["max_seen"] = max(out["samples"])
out["scale_downs"] = cluster.scale_downs
runs, out["erred"], out["lost"] = counts(client)
out["recomputed"] = sorted(k for k, n in runs.items() if n > 1)
out["computed_first"] = sum(1 for k in runs if str(k).startswith("first-"))
client.close()
cluster.close()
out["gone"] = gone([cluster.job_id] + [str(e["job_id"]) for e in cluster.scale_downs])
''', timeout=420)
    print(f"\nadapt figures: connected {result['connected_s']} s, first job added after "
          f"{result['add_s']} s, back to the minimum {result['remove_s']} s after the burst, "
          f"again {result['add_again_s']} s / {result['remove_again_s']} s; jobs per second "
          f"{result['samples']}; scale-downs {result['scale_downs']}")
    assert result["max_jobs"] == 2 and result["max_seen"] <= 2
    assert result["remove_s"] is not None and result["remove_again_s"] is not None
    assert result["add_again_s"] is not None
    assert result["total"] == sum(range(400)) + sum(range(400, 800))
    assert result["computed_first"] == 40 and result["recomputed"] == []
    assert result["erred"] == 0 and result["lost"] == 0
    assert len(result["scale_downs"]) >= 2
    assert result["gone"]
    assert not wait_no_processes(str(shared_dir))


def test_the_scheduler_jobs_end_is_said_and_its_worker_jobs_go(slurm, shared_dir):
    result = slurm.login(f"STATE_DIR = {str(shared_dir)!r}\n" + COMMON + '''
cluster, client = with_one_worker_job(quiet=True)
sh("scancel", cluster.job_id)
deadline = time.time() + 90
while cluster.status.name != "closed" and time.time() < deadline:
    time.sleep(0.5)
out["status"] = cluster.status.name
out["gone"] = gone([cluster.job_id, *out["workers"]])
out["line"] = [line for _, line in cluster._cluster_manager_logs if "has ended" in line]
client.close()
cluster.close()   # already closed: nothing more to do, no error
''', timeout=300)
    assert result["status"] == "closed" and result["gone"]
    assert len(result["line"]) == 1, result
    assert f"the scheduler's job {result['scheduler_job']} has ended" in result["_stderr"]
    assert not wait_no_processes(str(shared_dir))


def test_the_kernels_exit_brings_the_jobs_down_unless_the_cluster_is_kept(slurm, shared_dir):
    kept = slurm.login(f"STATE_DIR = {str(shared_dir / 'kept')!r}\n" + COMMON + '''
cluster, client = with_one_worker_job(shutdown_on_close=False)
client.close()
cluster.close()   # kept: the jobs stay for from_job
''', name="kept.py")
    again = slurm.login(f"STATE_DIR = {str(shared_dir / 'kept')!r}\nJOB = {kept['scheduler_job']!r}"
                        + COMMON + '''
out["listed"] = sh("squeue", "--noheader", "--format=%i").split()
with dasklaunch.connect(job=JOB, state_dir=STATE_DIR) as client:
    out["connected"] = len(client.scheduler_info()["workers"])
cluster = dasklaunch.Cluster.from_job(JOB, state_dir=STATE_DIR, shutdown_on_close=True)
with Client(cluster) as client:
    out["sum"] = client.submit(sum, [1, 2]).result()
cluster.close()
out["gone"] = gone([JOB])
''', name="again.py")
    left = slurm.login(f"STATE_DIR = {str(shared_dir / 'left')!r}\n" + COMMON + '''
cluster, client = with_one_worker_job()
# no close(): the interpreter's exit brings the jobs down
''', name="left.py")
    assert kept["scheduler_job"] in again["listed"] and kept["workers"][0] in again["listed"]
    assert again["connected"] == 2 and again["sum"] == 3 and again["gone"]
    assert slurm.job_gone(kept["workers"][0], timeout=60)
    assert slurm.job_gone(left["scheduler_job"], timeout=60)
    assert slurm.job_gone(left["workers"][0], timeout=60)
    assert not wait_no_processes(str(shared_dir))


def test_inside_an_allocation_its_pools_come_up_and_worker_jobs_add_to_them(slurm,
                                                                            shared_dir):
    result = slurm.salloc(COMMON.replace("state_dir=STATE_DIR, ", "") + '''
cluster = dasklaunch.Cluster(cores=1, memory="300MB", interface="lab0", walltime="10:00")
client = Client(cluster)
out["own"] = len(client.scheduler_info()["workers"])
out["job"] = cluster.job_id
cluster.scale(jobs=1)
client.wait_for_workers(out["own"] + 1, timeout=120)
out["workers"] = live_jobs(cluster)
out["total"] = len(client.scheduler_info()["workers"])
try:   # the allocation's cluster is not a Cluster's own job: never ended from a notebook
    dasklaunch.Cluster.from_job(out["job"], shutdown_on_close=True)
except Exception as err:
    out["refused"] = f"{type(err).__name__}: {err}"
client.close()
cluster.close()
out["gone"] = gone(out["workers"])
out["status"] = json.load(open(os.path.join(os.environ["DASKLAUNCH_STATE_DIR"],
                                            "state.json")))["status"]
''', "-N2", "--ntasks-per-node=1", timeout=240)
    assert result["own"] == 2 and result["total"] == 3 and result["job"] == result["job_id"]
    assert result["refused"].startswith("UsageError: job ") and "not by dasklaunch.Cluster" in (
        result["refused"])
    assert result["gone"] and result["status"] == "down"

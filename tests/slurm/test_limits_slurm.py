"""Slurm accounting on the testbed (slurmdbd with MariaDB) and the user's limits honoured:
`sacct` sees every job; with a QOS limit of 2 jobs, adapt never has more than 2 and says why
in one line, and `scale-out --jobs 3` refuses before submitting anything."""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest
from slurmbed import wait_no_processes

QOS_LIMIT = "MaxJobsPerUser"


def controller_limit(slurm) -> str:
    """MaxJobsPU of QOS normal as the controller holds it (slurmdbd pushes changes to it), or
    "" when it lists none."""
    out = slurm.run(["scontrol", "show", "assoc_mgr", "flags=qos", "qos=normal"]).stdout
    return next((w.split("=", 1)[1] for w in out.split() if w.startswith("MaxJobsPU=")), "")


@pytest.fixture
def two_jobs_per_user(slurm):
    """QOS normal allows each user 2 jobs at once, for this test only."""
    def set_limit(value: str, shown: str) -> None:
        deadline = time.time() + 30
        while True:   # retried: a limit left behind would change every later test
            done = slurm.run(["sacctmgr", "--immediate", "modify", "qos", "normal", "set",
                              f"{QOS_LIMIT}={value}"], timeout=60)
            held = controller_limit(slurm)
            # "nothing modified" exits 1; slurmctld lists a QOS's per-user values only once a
            # user has run a job in it (Slurm 26.05): none listed, none to wait for
            if held == "" or held.startswith(shown):
                return
            assert time.time() < deadline, (f"QOS normal: {QOS_LIMIT}={value} did not reach "
                                             f"slurmctld: {done.stderr}")
            time.sleep(0.5)

    set_limit("2", "2")
    try:
        yield
    finally:
        set_limit("-1", "N")


@pytest.fixture
def shared_dir():
    path = Path.home() / ".dasklaunch-tests" / uuid.uuid4().hex[:12]
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_sacct_records_jobs_and_the_limits_read(slurm, two_jobs_per_user):
    ran = slurm.run(["srun", "-N1", "--job-name=dl-acct-probe", "true"], timeout=60)
    assert ran.returncode == 0, ran.stderr
    deadline, seen = time.time() + 30, ""
    while "dl-acct-probe" not in seen and time.time() < deadline:
        seen = slurm.run(["sacct", "--noheader", "--parsable2", "--allocations",
                          "--format=JobID,JobName,Account,QOS,State"]).stdout
        time.sleep(0.5)
    assert "dl-acct-probe" in seen and "COMPLETED" in seen, seen
    result = slurm.login('''
from dasklaunch.slurm import accounting
found = accounting.limits([])
out["limits"] = [limit.describe() for limit in found]
out["room"] = accounting.room(found, cpus=1).jobs
''')
    print(f"\nlimits read: {result['limits']}; room now: {result['room']}")
    assert "QOS normal allows 2 jobs at once for root" in result["limits"]
    assert result["room"] == 2


def test_scale_out_refuses_jobs_past_the_limit_up_front(slurm, two_jobs_per_user):
    result = slurm.salloc('''
dl("up", "--interface", "lab0", "--profile", "seed")
refused = dl("scale-out", "--jobs", "3", "--cores", "1", "--memory", "300MB", check=False)
out["rc"], out["stderr"] = refused.returncode, refused.stderr
out["queue"] = sh("squeue", "--noheader", "--format=%i")
out["record"] = record()["scale_out"]
one = dl("scale-out", "--jobs", "1", "--cores", "1", "--memory", "300MB", "--json")
out["one"] = json.loads(one.stdout)
dl("down")
out["left"] = jobs_left([j["job_id"] for j in out["one"]["jobs"]])
''', "-N1", "-n1")
    assert result["rc"] == 3, result["stderr"]
    lines = [line for line in result["stderr"].splitlines() if line.strip()]
    assert lines == ["dasklaunch: error: scale-out wants 3 more jobs; QOS normal allows 2 jobs "
                     "at once for root (1 in use): 1 fit"], result["stderr"]
    assert result["queue"].split() == [result["job_id"]] and result["record"] == []
    assert len(result["one"]["jobs"]) == 1   # what fits is still allowed
    assert not result["left"].strip()


def test_adapt_under_load_never_plans_past_the_limit(slurm, two_jobs_per_user, shared_dir):
    result = slurm.login(f'''
import dasklaunch
from distributed import Client
cluster = dasklaunch.Cluster(cores=1, memory="300MB", interface="lab0", walltime="10:00",
                             state_dir={str(shared_dir)!r})
client = Client(cluster, timeout="30s")
cluster.adapt(minimum_jobs=0, maximum_jobs=4, interval="1s", wait_count=2)

def slow(i):
    time.sleep(0.5)
    return i

futures = client.map(slow, range(60))
most, samples, start = 0, [], time.time()
while not all(f.done() for f in futures) and time.time() - start < 120:
    mine = sh("squeue", "--noheader", "--user=root", "--states=PENDING,CONFIGURING,RUNNING",
              "--format=%i").split()
    most = max(most, len(mine))
    samples.append(len(mine))
    time.sleep(1)
out["total"] = sum(client.gather(futures))
out["most"], out["samples"] = most, samples
out["worker_jobs"] = [j.job_id for j in cluster._read_record().scale_out]
out["log"] = [line for _, line in cluster._cluster_manager_logs]
client.close()
cluster.close()
''', timeout=300)
    print(f"\nadapt under a 2-job QOS limit: jobs sampled {result['samples']}")
    assert result["total"] == sum(range(60))
    assert result["most"] == 2, result["samples"]   # the scheduler's job and one worker job
    assert len(result["worker_jobs"]) >= 1
    said = [line for line in result["log"] if "QOS normal allows 2 jobs" in line]
    assert said and said[0].startswith("adapt wants "), result["log"]
    assert len(said) <= 4, said   # said when the room changes, not at every adapt interval
    assert not wait_no_processes(str(shared_dir))

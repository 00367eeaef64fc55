"""dasklaunch.Cluster without Slurm: a real distributed Cluster on the local backend, and the
scheduler job's checks, script and wait against a stand-in queue (the Slurm path runs on the
testbed: tests/slurm/test_cluster_slurm.py)."""

from __future__ import annotations

import pytest

from dasklaunch.domain.settings import options_from
from dasklaunch.errors import StartupError, StateDirError, UsageError
from dasklaunch.ops import scheduler_job
from dasklaunch.runtime.state import StateDir
from dasklaunch.slurm.commands import JobInfo


def test_a_local_cluster_is_a_dask_cluster_and_closes_everything(tmp_path):
    from distributed import Client

    import dasklaunch

    state = tmp_path / "state"
    cluster = dasklaunch.Cluster(backend="local", local_tasks=2, state_dir=str(state),
                                 quiet=True)
    try:
        with Client(cluster, timeout="30s") as client:
            assert client.submit(lambda x: x + 1, 1).result() == 2
            assert len(client.scheduler_info()["workers"]) == 2
        assert repr(cluster).startswith("Cluster(") and "workers=2" in repr(cluster)
        assert cluster.scheduler_address.startswith("tls://")
        assert cluster.dashboard_link.startswith("http")
        assert {"Cluster", "Scheduler"} <= set(cluster.get_logs())
        with pytest.raises(UsageError, match="local backend"):
            cluster.scale(jobs=2)
    finally:
        cluster.close()
    assert cluster.status.name == "closed"
    assert StateDir(state).read_record().status == "down"
    cluster.close()  # twice: nothing more to do


@pytest.fixture
def no_submission(monkeypatch):
    """A Slurm that answers but never gets a job: what would be submitted is kept."""
    submitted = []
    monkeypatch.setattr(scheduler_job.queue, "installed", lambda: True)
    monkeypatch.setattr(scheduler_job.queue, "reachable", lambda: True)
    monkeypatch.setattr("dasklaunch.ops.batch.submit", lambda text, **k: submitted.append(text))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    return submitted


@pytest.mark.parametrize(("options", "message"), [
    ({"profile": "no-such-profile"}, "no-such-profile"),
    ({"interface_name": "ib0"}, "unknown option 'interface_name'; did you mean interface?"),
    ({"pool": ["gpu:nodes=0"]}, "nodes takes a node count"),
    ({"backend": "local"}, "runs the Slurm backend"),
])
def test_bad_input_is_refused_before_anything_is_submitted(no_submission, tmp_path, options,
                                                            message):
    with pytest.raises(UsageError, match=message):
        opts, given = options_from(options)
        request = scheduler_job.JobRequest(state_dir=str(tmp_path / "s"))
        scheduler_job.submit(opts, given, request, print)
    assert no_submission == []


def test_a_state_dir_the_nodes_cannot_see_is_refused(no_submission):
    opts, given = options_from({})
    with pytest.raises(StateDirError, match="under /tmp, which the compute nodes do not share"):
        scheduler_job.submit(opts, given, scheduler_job.JobRequest(state_dir="/tmp/x"), print)
    with pytest.raises(StateDirError, match="on tmpfs"):
        scheduler_job.check_shared("/scratch/me/x", environ={},
                                   mounts_text="tmpfs /scratch tmpfs rw 0 0\n")
    scheduler_job.check_shared("/scratch/me/x", environ={},
                               mounts_text="fs:/ /scratch lustre rw 0 0\n")
    assert no_submission == []


def test_no_slurm_answering_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(scheduler_job.queue, "installed", lambda: True)
    monkeypatch.setattr(scheduler_job.queue, "reachable", lambda: False)
    opts, given = options_from({})
    with pytest.raises(UsageError, match="no Slurm reachable from here"):
        scheduler_job.submit(opts, given, scheduler_job.JobRequest(), print)


def test_the_scheduler_job_is_batchs_script_around_supervise(tmp_path):
    opts, given = options_from({"interface": "ib0", "pool": ["cpu:nthreads=2"],
                                "profile": "seed"})
    request = scheduler_job.JobRequest(cores=4, memory="8000M", time="1:00:00",
                                       account="proj", state_dir=str(tmp_path))
    spec = scheduler_job.batch_spec(opts, given, request)
    assert spec.command[-3:] == ("supervise", "--interval", scheduler_job.SUPERVISE_INTERVAL)
    assert spec.up_args == ("--state-dir", str(tmp_path), "--interface=ib0", "--profile=seed",
                            "--pool=cpu:nthreads=2")
    assert (spec.nodes, spec.ntasks_per_node, spec.cpus_per_task, spec.mem) == (
        "1", 1, 4, "8000M")
    assert spec.account == "proj" and spec.time == "1:00:00"
    # `up` in the job records it as the cluster's own job (from_job may end only those)
    assert spec.prologue[-1] == "export DASKLAUNCH_SCHEDULER_JOB=1"


def test_a_job_still_in_the_queue_is_cancelled_at_once(monkeypatch):
    calls = []
    answers = iter([{"7": JobInfo("PENDING", None, "Priority")}, {}])
    monkeypatch.setattr(scheduler_job.queue, "jobs", lambda ids: next(answers))
    monkeypatch.setattr(scheduler_job.queue, "cancel",
                        lambda *ids, **kw: calls.append((ids, kw)))
    assert scheduler_job.end_job("7", timeout=60)
    # no SIGTERM to a batch shell a pending job does not have, no waiting out the timeout
    assert calls == [(("7",), {})]


class StandInQueue:
    """squeue answers, one per call, then the last one again."""

    def __init__(self, monkeypatch, answers):
        self.answers = list(answers)
        monkeypatch.setattr(scheduler_job.queue, "jobs", self.jobs)
        monkeypatch.setattr(scheduler_job, "POLL_SECONDS", 0.0)

    def jobs(self, ids):
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        return {} if answer is None else {"7": answer}


def test_the_wait_says_what_slurm_says_and_fails_when_the_job_ends(monkeypatch, tmp_path):
    StandInQueue(monkeypatch, [None, JobInfo("PENDING", None, "Priority"),
                               JobInfo("PENDING", None, "Priority"),
                               JobInfo("PENDING", None, "Resources"),
                               JobInfo("FAILED", None)])
    said = []
    with pytest.raises(StartupError, match=r"job 7 ended \(FAILED\) before its cluster was up; "
                                           r"its output: .*/c-7\.out"):
        scheduler_job.wait_until_up("7", StateDir(tmp_path / "state"), said.append,
                                    job_name="c")
    assert said == ["job 7: not listed by squeue yet", "job 7 is PENDING (Priority)",
                    "job 7 is PENDING (Resources)", "job 7 is FAILED"]


class StandInComm:
    """The scheduler as the scale-down sees it: two workers of jobs 11 and 12; retiring
    job 12's fails (its key has nowhere to go)."""

    def __init__(self):
        self.retired = []

    async def identity(self, n_workers=-1):
        return {"workers": {
            "tls://a:1": {"name": "dl-scale-1-1", "metrics": {"managed_bytes": 10}},
            "tls://b:1": {"name": "dl-scale-1-2", "metrics": {"managed_bytes": 1}}}}

    async def processing(self):
        return {"tls://a:1": [], "tls://b:1": []}

    async def has_what(self, workers):
        return {w: ["k"] for w in workers}

    async def retire_workers(self, names, close_workers, remove, stimulus_id):
        assert (close_workers, remove) == (False, False)  # the job's end closes them
        self.retired.append(names)
        return {} if names == ["dl-scale-1-2"] else {"tls://a:1": {}}


def test_a_job_whose_keys_cannot_move_is_kept_and_the_next_one_goes(monkeypatch):
    import asyncio

    from dasklaunch.deploy.adaptive_jobs import JobScaling

    cancelled = []
    monkeypatch.setattr("dasklaunch.ops.scale_out.cancel_jobs",
                        lambda state, ids, report: cancelled.extend(ids))
    scaler = JobScaling()
    scaler.scheduler_comm, scaler.scale_downs = StandInComm(), []
    scaler._state, scaler._report = StateDir("/nowhere"), None
    scaler._log = lambda line: None
    live = {"11": ("RUNNING", ["dl-scale-1-1"]), "12": ("RUNNING", ["dl-scale-1-2"]),
            "13": ("PENDING", ["dl-scale-1-3"])}
    gone = asyncio.run(scaler._let_go(live, count=2, idle_only=False))
    # the waiting job first (no workers, nothing to move), then the least loaded: 12, whose
    # key cannot move, stays; 11 goes instead
    assert gone == ["13", "11"] and cancelled == ["13", "11"]
    assert scaler.scheduler_comm.retired == [["dl-scale-1-2"], ["dl-scale-1-1"]]
    assert [e["keys"] for e in scaler.scale_downs] == [0, 1]


def test_adaptive_scaling_never_lets_a_busy_job_go(monkeypatch):
    import asyncio

    from dasklaunch.deploy.adaptive_jobs import JobScaling

    class Busy(StandInComm):
        async def processing(self):
            return {"tls://a:1": ["running-task"], "tls://b:1": []}

    cancelled = []
    monkeypatch.setattr("dasklaunch.ops.scale_out.cancel_jobs",
                        lambda state, ids, report: cancelled.extend(ids))
    scaler = JobScaling()
    scaler.scheduler_comm, scaler.scale_downs = Busy(), []
    scaler._state, scaler._report, scaler._log = StateDir("/nowhere"), None, lambda line: None
    live = {"11": ("RUNNING", ["dl-scale-1-1"])}
    assert asyncio.run(scaler._let_go(live, count=1, idle_only=True)) == []
    assert cancelled == [] and scaler.scheduler_comm.retired == []


@pytest.mark.parametrize(("call", "message"), [
    (lambda c: c.scale(jobs="2"), "jobs must be a whole number >= 0, not '2'"),
    (lambda c: c.scale(-1), "n must be a whole number >= 0, not -1"),
    (lambda c: c.scale(memory="4GB"), r"scale\(memory=...\) needs the cluster's memory="),
    (lambda c: c.adapt(maximum=7.5), "maximum must be a whole number >= 0, not 7.5"),
    (lambda c: c.adapt(minimum_jobs=3, maximum_jobs=1), "maximum .* is below minimum"),
])
def test_bad_scaling_input_is_one_line(call, message):
    from dasklaunch.deploy.adaptive_jobs import JobScaling
    from dasklaunch.runtime.record import ClusterRecord

    scaler = JobScaling()
    scaler._job_spec = {"cores": 1, "memory": None, "processes": 1}
    scaler._read_record = lambda: ClusterRecord(job_id="1", backend="slurm",
                                                expected_workers=1)
    with pytest.raises(UsageError, match=message):
        call(scaler)


def test_a_start_that_fails_after_up_brings_the_cluster_down(tmp_path, monkeypatch):
    import dasklaunch
    from dasklaunch.deploy.notebook import Cluster
    from dasklaunch.errors import NotUpError

    def no_connection(self):
        raise NotUpError("stand-in: the certificate is missing")

    monkeypatch.setattr(Cluster, "_open_comm", no_connection)
    state = tmp_path / "state"
    with pytest.raises(NotUpError, match="stand-in"):
        dasklaunch.Cluster(backend="local", local_tasks=1, state_dir=str(state), quiet=True)
    assert StateDir(state).read_record().status == "down"


def test_an_asynchronous_cluster_starts_when_awaited(tmp_path):
    """As dask-labextension's factory creates it: `await Cluster(..., asynchronous=True)`."""
    import asyncio

    from distributed import Client

    import dasklaunch

    async def main():
        cluster = dasklaunch.Cluster(backend="local", local_tasks=1, quiet=True,
                                     state_dir=str(tmp_path / "state"), asynchronous=True)
        assert cluster.status.name == "created"   # nothing started before it is awaited
        async with cluster:
            async with Client(cluster, asynchronous=True) as client:
                assert await client.submit(lambda x: x * 2, 21) == 42
            assert cluster.status.name == "running"
        return cluster

    cluster = asyncio.run(main())
    assert cluster.status.name == "closed"
    assert StateDir(tmp_path / "state").read_record().status == "down"


def test_a_worker_leaving_while_logs_are_fetched_costs_only_its_log():
    import asyncio

    from distributed.comm.core import CommClosedError

    from dasklaunch.deploy.worker_logs import worker_logs

    class Scheduler:
        asked = []

        async def worker_logs(self, workers):
            self.asked.append(workers)
            if workers is None:   # the leaving worker closes during the broadcast
                raise CommClosedError("in <TLS (closed) rpc.worker_logs>: Stream is closed")
            return {w: [("INFO", f"{w} line")] for w in workers}

        async def identity(self, n_workers=-1):
            return {"workers": {"tls://a:1": {"status": "running"},
                                "tls://b:1": {"status": "closing_gracefully"}}}

    logs = asyncio.run(worker_logs(Scheduler()))
    assert Scheduler.asked == [None, ["tls://a:1"]] and list(logs) == ["tls://a:1"]
    assert str(logs["tls://a:1"]) == "tls://a:1 line"

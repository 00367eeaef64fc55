"""scale-out --keep: the decisions of one supervisor look, against a stand-in queue (the real
rotation runs on the testbed: tests/slurm/test_rolling_slurm.py)."""

from __future__ import annotations

import pytest

from dasklaunch.domain.rolling_times import check_walltime, lead_seconds
from dasklaunch.domain.settings import UpOptions
from dasklaunch.errors import UsageError
from dasklaunch.ops import rolling
from dasklaunch.ops.scale_out import scale_out
from dasklaunch.runtime.record import ClusterRecord, ScaleOutJob
from dasklaunch.runtime.report import Reporter
from dasklaunch.slurm.commands import JobInfo

NOW = 1_000_000.0
KEEP = {"jobs": 1, "cores": 1, "memory": 2**28, "processes": 1, "walltime": "2",
        "job_options": [], "pool": None}


class Queue:
    def __init__(self, jobs: dict[str, JobInfo]):
        self.jobs, self.cancelled, self.submitted = jobs, [], 0

    def install(self, monkeypatch):
        monkeypatch.setattr(rolling.queue, "jobs",
                            lambda ids: {i: self.jobs[i] for i in ids if i in self.jobs})
        monkeypatch.setattr(rolling.queue, "cancel",
                            lambda *ids, signal=None: self.cancelled.append((ids, signal)))
        monkeypatch.setattr(rolling, "submit_job", self.submit_job)

    def submit_job(self, record, state, spec, report):
        self.submitted += 1
        job_id = str(100 + self.submitted)
        self.jobs[job_id] = JobInfo(state="PENDING", end_time=None)
        return ScaleOutJob(job_id=job_id, name=f"dl-scale-1-{self.submitted}")


def cluster(*jobs: ScaleOutJob, drain: float = 20) -> ClusterRecord:
    return ClusterRecord(job_id="1", backend="slurm", status="up", expected_workers=2,
                         options=UpOptions(drain_timeout=drain), scale_out=list(jobs),
                         scale_out_keep=dict(KEEP))


def test_lead_covers_drain_signal_resolution_and_start():
    assert lead_seconds(20) == 20 + 10 + 60 + 30


def test_a_job_far_from_its_end_is_left_alone(monkeypatch):
    queue = Queue({"7": JobInfo("RUNNING", NOW + 600)})
    queue.install(monkeypatch)
    record = cluster(ScaleOutJob("7", "a"))
    assert rolling.keep_rolling(None, record, 3, Reporter(), now=NOW) == []
    assert queue.submitted == 0 and queue.cancelled == []


def test_replacement_before_the_end_then_the_old_one_drains_once_it_is_in(monkeypatch):
    queue = Queue({"7": JobInfo("RUNNING", NOW + 115)})
    queue.install(monkeypatch)
    record = cluster(ScaleOutJob("7", "a"))
    done = rolling.keep_rolling(None, record, 3, Reporter(), now=NOW)
    assert done == ["submitted worker job 101 to replace 7 (115 s before its end)"]
    assert record.scale_out[0].replaced_by == "101" and queue.cancelled == []
    # pending: the old job keeps working
    assert rolling.keep_rolling(None, record, 3, Reporter(), now=NOW + 5) == []
    # running, but its worker has not connected yet (2 own + 1 old + 1 new expected)
    queue.jobs["101"] = JobInfo("RUNNING", NOW + 400)
    assert rolling.keep_rolling(None, record, 3, Reporter(), now=NOW + 10) == []
    done = rolling.keep_rolling(None, record, 4, Reporter(), now=NOW + 12)
    assert done == ["draining worker job 7 (its replacement's workers are in)"]
    assert queue.cancelled == [(("7",), "TERM")] and record.scale_out[0].draining_since
    # nothing more to do; then the old job ends and is forgotten
    assert rolling.keep_rolling(None, record, 3, Reporter(), now=NOW + 14) == []
    del queue.jobs["7"]
    assert rolling.keep_rolling(None, record, 3, Reporter(), now=NOW + 40) == [
        "worker job 7 has left the queue"]
    assert [j.job_id for j in record.scale_out] == ["101"] and queue.submitted == 1


def test_near_the_end_the_old_job_drains_even_without_its_replacement(monkeypatch):
    queue = Queue({"7": JobInfo("RUNNING", NOW + 60)})
    queue.install(monkeypatch)
    record = cluster(ScaleOutJob("7", "a", replaced_by="101"), ScaleOutJob("101", "b"))
    queue.jobs["101"] = JobInfo("PENDING", None)
    done = rolling.keep_rolling(None, record, 3, Reporter(), now=NOW)
    assert done == ["draining worker job 7 (its end is near, replacement or not)"]


def test_a_kept_job_that_ended_is_replaced_and_nothing_happens_when_slurm_is_silent(
        monkeypatch):
    queue = Queue({})
    queue.install(monkeypatch)
    record = cluster(ScaleOutJob("7", "a"))
    assert rolling.keep_rolling(None, record, 2, Reporter(), now=NOW) == [
        "worker job 7 has left the queue", "submitted worker job 101 (keeping 1)"]
    monkeypatch.setattr(rolling.queue, "jobs", lambda ids: None)
    assert rolling.keep_rolling(None, record, 2, Reporter(), now=NOW) == []
    record.scale_out_keep = None
    assert rolling.keep_rolling(None, record, 2, Reporter(), now=NOW) == []


def test_keep_needs_a_walltime_longer_than_the_lead():
    with pytest.raises(UsageError, match="--keep needs --walltime"):
        scale_out(None, 2, keep=True)
    with pytest.raises(UsageError, match=r"--walltime 2:00 is too short for --keep: each job "
                                         r"is replaced 120 s before its end"):
        check_walltime("2:00", 20)
    check_walltime("3", 20)

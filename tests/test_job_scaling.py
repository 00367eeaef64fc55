"""The notebook cluster's scaling rules without a cluster: workers <-> jobs, which jobs leave
first, when adaptive scaling waits for the queue (the real scaling runs on the testbed:
tests/slurm/test_cluster_slurm.py)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from dasklaunch.domain.job_scaling import (
    WAITING_STATES,
    JobLoad,
    idle_jobs_to_close,
    job_loads,
    job_of_worker,
    job_worker_names,
    jobs_for_workers,
    leaving_order,
    new_jobs_now,
    workers_for_jobs,
)

STATES = st.sampled_from(["PENDING", "RUNNING", "CONFIGURING", "COMPLETING"])


@given(st.integers(0, 500), st.integers(0, 16), st.integers(1, 8))
def test_the_jobs_for_n_workers_are_the_fewest_that_reach_n(workers, own, per_job):
    jobs = jobs_for_workers(workers, own, per_job)
    assert workers_for_jobs(jobs, own, per_job) >= workers
    assert jobs == 0 or workers_for_jobs(jobs - 1, own, per_job) < workers


@settings(max_examples=200)
@given(st.integers(0, 40), st.lists(STATES, max_size=10), st.none() | st.integers(0, 20),
       st.booleans())
def test_new_jobs_never_pass_the_maximum_nor_pile_up_while_one_waits(target, states, maximum,
                                                                       adaptive):
    new = new_jobs_now(target, states, maximum, adaptive=adaptive)
    assert new >= 0
    assert len(states) + new <= max(len(states), target)
    if maximum is not None:
        assert new == 0 or len(states) + new <= maximum
    if adaptive and any(s in WAITING_STATES for s in states):
        assert new == 0
    if not adaptive and maximum is None:
        assert new == max(0, target - len(states))


def test_an_explicit_scale_submits_even_while_jobs_wait():
    assert new_jobs_now(5, ["PENDING"], None, adaptive=False) == 4
    assert new_jobs_now(5, ["PENDING"], None, adaptive=True) == 0
    assert new_jobs_now(5, ["RUNNING"], 3, adaptive=True) == 2


def test_worker_names_and_their_job():
    assert job_worker_names("dl-scale-7-1", 1) == ["dl-scale-7-1"]
    assert job_worker_names("dl-scale-7-1", 2) == ["dl-scale-7-1-0", "dl-scale-7-1-1"]
    jobs = ["dl-scale-7-1", "dl-scale-7-10"]
    assert job_of_worker("dl-scale-7-1", jobs) == "dl-scale-7-1"
    assert job_of_worker("dl-scale-7-10-1", jobs) == "dl-scale-7-10"
    assert job_of_worker("dl-scale-7-1-0", jobs) == "dl-scale-7-1"
    assert job_of_worker("workers-node1-0", jobs) is None
    assert job_of_worker("dl-scale-7-1-x", jobs) is None


@given(st.lists(st.tuples(st.integers(1, 999), STATES, st.integers(0, 5),
                          st.integers(0, 10**6)), unique_by=lambda t: t[0], max_size=8))
def test_waiting_jobs_leave_first_then_the_least_busy(rows):
    loads = [JobLoad(str(i), state, busy, stored) for i, state, busy, stored in rows]
    order = leaving_order(loads)
    assert sorted(order) == sorted(j.job_id for j in loads)
    rank = {j.job_id: j for j in loads}
    waiting = [rank[i].state in WAITING_STATES for i in order]
    assert waiting == sorted(waiting, reverse=True)  # all waiting ones before any running one
    running = [rank[i] for i in order if rank[i].state not in WAITING_STATES]
    assert [(j.processing, j.stored) for j in running] == sorted(
        (j.processing, j.stored) for j in running)


def test_loads_come_from_the_schedulers_worker_records():
    # the data from the records' metrics; the work from the scheduler's live task lists, not
    # from a heartbeat's task counts (which lag behind the tasks just assigned)
    workers = [{"name": "dl-scale-7-1", "metrics": {"task_counts": {"executing": 3},
                                                    "managed_bytes": 100}},
               {"name": "dl-scale-7-2", "metrics": {"managed_bytes": 5}}]
    loads = job_loads({"11": ("RUNNING", ["dl-scale-7-1"]), "12": ("RUNNING", ["dl-scale-7-2"]),
                       "13": ("PENDING", ["dl-scale-7-3"])}, workers, {"dl-scale-7-1": 2})
    assert loads == [JobLoad("11", "RUNNING", 2, 100), JobLoad("12", "RUNNING", 0, 5),
                     JobLoad("13", "PENDING", 0, 0)]
    assert leaving_order(loads) == ["13", "12", "11"]
    loads = job_loads({"11": ("RUNNING", ["dl-scale-7-1"]), "12": ("RUNNING", ["dl-scale-7-2"])},
                      workers, {"dl-scale-7-2": 4})
    assert loads == [JobLoad("11", "RUNNING", 0, 100), JobLoad("12", "RUNNING", 4, 5)]


@settings(max_examples=300)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 10**6)),
                max_size=8),
       st.integers(0, 8), st.integers(0, 40))
def test_adapt_lets_only_whole_idle_jobs_go_and_keeps_the_target(jobs, own, target):
    """jobs: (connected workers, tasks, bytes) of each worker job; `own`: the scheduler job's
    workers (the floor)."""
    loads = [JobLoad(str(i), "RUNNING", busy, stored) for i, (_, busy, stored) in enumerate(jobs)]
    connected = {str(i): [f"job{i}-{k}" for k in range(n)] for i, (n, _, _) in enumerate(jobs)}
    workers = own + sum(n for n, _, _ in jobs)
    names = idle_jobs_to_close(loads, connected, workers, target)
    gone = {job_id for job_id, members in connected.items() if set(members) & set(names)}
    # whole jobs, idle ones, each once, and never below the target
    assert sorted(names) == sorted(n for job_id in gone for n in connected[job_id])
    assert all(jobs[int(job_id)][1] == 0 for job_id in gone)
    assert workers - len(names) >= min(target, workers)
    # and as many as may go: no idle job left that could still go without passing the target
    kept = [job_id for job_id in connected if job_id not in gone and connected[job_id]
            and jobs[int(job_id)][1] == 0]
    assert all(workers - len(names) - len(connected[j]) < target for j in kept)

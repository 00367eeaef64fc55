"""Which workers the notebook cluster's adaptive scaling lets go (deploy/adaptive_jobs.py),
against a scheduler that answers as distributed's does (its own Scheduler.workers_to_close runs
on the stub's workers). The real scaling runs on the testbed: tests/slurm/test_cluster_slurm.py.
"""

from __future__ import annotations

import asyncio
import functools
import pickle
from types import SimpleNamespace

from distributed import Scheduler

from dasklaunch.deploy.adaptive_jobs import JobAdaptive, JobScaling, job_group

OWN = "a-node1-0"        # the scheduler job's own worker: the floor
JOB_WORKER = "dl-scale-101"


def worker(name: str, nbytes: int, processing: int = 0) -> SimpleNamespace:
    return SimpleNamespace(name=name, address=f"tls://10.0.0.1:{len(name) * 1000 + nbytes}",
                           nbytes=nbytes, memory_limit=2**30, long_running=set(),
                           processing={f"{name}-task-{i}" for i in range(processing)})


class StubScheduler:
    """The scheduler comm's answers, from worker states as the scheduler has them."""

    def __init__(self, workers: list[SimpleNamespace]):
        self.state = SimpleNamespace(workers={w.address: w for w in workers}, plugins={})

    async def identity(self, n_workers=-1):
        return {"workers": {a: {"name": w.name, "metrics": {"managed_bytes": w.nbytes}}
                            for a, w in self.state.workers.items()}}

    async def processing(self):
        return {a: sorted(w.processing) for a, w in self.state.workers.items()}

    async def workers_to_close(self, **kwargs):
        return Scheduler.workers_to_close(self.state, **kwargs)


def adaptive(workers: list[SimpleNamespace], jobs: dict) -> JobAdaptive:
    cluster = JobScaling()
    cluster.scheduler_comm, cluster._live_cache = StubScheduler(workers), jobs
    chosen = object.__new__(JobAdaptive)
    chosen.cluster = cluster
    chosen.worker_key = functools.partial(job_group, 1)
    chosen._workers_to_close_kwargs = {}
    chosen.state = "stopped"   # never started: nothing for its __del__ to stop
    return chosen


def test_a_job_holding_the_results_goes_when_the_own_workers_hold_less():
    """Seen on the testbed (Slurm 26.05): after a burst, the last worker job held the keys the
    other had handed it, the scheduler job's own worker held nothing; distributed's choice
    ranked the own worker first (least data), this cluster dropped it as the floor, and the
    worker job was never let go (90 s of one job, the minimum being none)."""
    workers = [worker(OWN, 0), worker(JOB_WORKER, 12_000)]
    chosen = adaptive(workers, {"101": ("RUNNING", [JOB_WORKER])})
    # what distributed alone would close: the floor only
    assert Scheduler.workers_to_close(chosen.cluster.scheduler_comm.state, target=1,
                                      key=pickle.dumps(chosen.worker_key),
                                      attribute="name") == [OWN]
    assert asyncio.run(chosen.workers_to_close(target=1)) == [JOB_WORKER]


def test_a_job_whose_worker_has_tasks_stays_and_the_floor_is_kept():
    workers = [worker(OWN, 0), worker(JOB_WORKER, 0, processing=3),
               worker("dl-scale-102", 500)]
    jobs = {"101": ("RUNNING", [JOB_WORKER]), "102": ("RUNNING", ["dl-scale-102"])}
    assert asyncio.run(adaptive(workers, jobs).workers_to_close(target=1)) == ["dl-scale-102"]
    # the own worker and one job stay at a target of 2: the idle one with the least data goes
    workers = [worker(OWN, 0), worker(JOB_WORKER, 900), worker("dl-scale-102", 500)]
    assert asyncio.run(adaptive(workers, jobs).workers_to_close(target=2)) == ["dl-scale-102"]
    assert asyncio.run(adaptive(workers, jobs).workers_to_close(target=3)) == []

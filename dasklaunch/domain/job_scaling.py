"""Pure: how the notebook cluster (deploy/notebook.py) turns a number of workers into worker
jobs, which jobs a scale-down lets go first, and when adaptive scaling waits for the queue.

The cluster's scheduler job runs workers of its own (its first pool): they are the floor that
no scale-down removes. Every other worker comes from a worker job of `per_job` workers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

WAITING_STATES = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD",
                            "RESV_DEL_HOLD", "SUSPENDED"})


def jobs_for_workers(workers: int, own: int, per_job: int) -> int:
    """Worker jobs that bring the cluster to at least `workers` (its own ones count first)."""
    return max(0, math.ceil((workers - own) / max(1, per_job)))


def workers_for_jobs(jobs: int, own: int, per_job: int) -> int:
    return own + max(0, jobs) * max(1, per_job)


def job_worker_names(job_name: str, processes: int) -> list[str]:
    """The names a worker job's workers take: dask worker appends -0, -1 ... to --name when a
    job runs several (dask-jobqueue's SLURMJob passes the job's name)."""
    if processes <= 1:
        return [job_name]
    return [f"{job_name}-{i}" for i in range(processes)]


def job_of_worker(worker: str, job_names: Iterable[str]) -> str | None:
    """The worker job (by name) a worker belongs to; None for the scheduler job's own."""
    for name in job_names:
        if worker == name or (worker.startswith(name + "-")
                              and worker[len(name) + 1:].isdigit()):
            return name
    return None


def new_jobs_now(target: int, states: Sequence[str], maximum: int | None, *,
                 adaptive: bool) -> int:
    """Jobs to submit now to reach `target` jobs, `states` being those of the live ones.

    Never above `maximum`. Adaptive scaling submits nothing while one of its jobs still waits
    in the queue: a queue that cannot start that one will not start more of them sooner, and
    each extra job only counts against the user's limits (dask-jobqueue #365). An explicit
    scale() asks for what it asks."""
    if maximum is not None:
        target = min(target, maximum)
    missing = target - len(states)
    if missing <= 0:
        return 0
    if adaptive and any(state in WAITING_STATES for state in states):
        return 0
    return missing


@dataclass(frozen=True)
class JobLoad:
    job_id: str
    state: str
    processing: int = 0      # tasks its workers are running or are assigned
    stored: int = 0          # bytes its workers hold


def leaving_order(jobs: Iterable[JobLoad]) -> list[str]:
    """Which jobs a scale-down lets go first: those still waiting in the queue (newest first),
    then the running ones with the least work, then the least data, newest first."""
    def rank(job: JobLoad) -> tuple:
        waiting = job.state in WAITING_STATES
        return (0 if waiting else 1, job.processing, job.stored, -_number(job.job_id))

    return [job.job_id for job in sorted(jobs, key=rank)]


def _number(job_id: str) -> int:
    head = job_id.split("_")[0].split("+")[0]
    return int(head) if head.isdigit() else 0


def job_loads(jobs: Mapping[str, tuple[str, list[str]]], workers: Iterable[dict],
              processing: Mapping[str, int]) -> list[JobLoad]:
    """JobLoads from {job id: (state, its worker names)}, the scheduler's worker records
    (name, metrics: managed memory) and `processing`, {worker name: tasks the scheduler has
    given it} (read live: a heartbeat's task counts lag behind the tasks just assigned)."""
    by_name = {str(w.get("name")): w for w in workers}
    loads = []
    for job_id, (state, names) in jobs.items():
        busy = stored = 0
        for name in names:
            info = by_name.get(name) or {}
            metrics = info.get("metrics") or {}
            busy += int(processing.get(name, 0))
            stored += int(metrics.get("managed_bytes", info.get("memory", 0)) or 0)
        loads.append(JobLoad(job_id, state, busy, stored))
    return loads


def idle_jobs_to_close(loads: Iterable[JobLoad], connected: Mapping[str, list[str]],
                       workers: int, target: int) -> list[str]:
    """The connected workers (names) of the whole, idle worker jobs to let go, in leaving_order,
    so that of `workers` connected ones no fewer than `target` stay; `connected` is {job id:
    its connected workers}. A job whose workers have tasks stays; the scheduler job's own
    workers are never among them, and count towards `target`."""
    names: list[str] = []
    for job_id in leaving_order(load for load in loads if not load.processing):
        members = connected.get(job_id, [])
        if members and workers - len(members) >= target:
            names += members
            workers -= len(members)
    return names

"""Scaling of the notebook cluster by worker jobs: `scale(n)` / `scale(jobs=n)` and an
`Adaptive` that never loses work.

A worker job leaves only after the scheduler has moved every key its workers hold
(`retire_workers`, close_workers=False: the workers stay up, taking no new task, until the
job is cancelled and their launcher lets them end); a job whose keys cannot all move stays.
Jobs still waiting in the queue leave first, then those with the least work and data. While
one of its jobs waits in the queue, adaptive scaling submits no more (domain/job_scaling.py).
The scheduler job's own workers are the floor: no scale-down removes them.
"""

from __future__ import annotations

import asyncio
import time

from distributed.deploy import Adaptive

from ..domain.job_scaling import (
    job_loads,
    job_of_worker,
    job_worker_names,
    jobs_for_workers,
    leaving_order,
    new_jobs_now,
    workers_for_jobs,
)
from ..errors import DasklaunchError, UsageError
from ..slurm import queue


class JobScaling:
    """What Cluster adds to distributed's Cluster for scaling (a mixin: it uses the
    cluster's state dir, scheduler comm, job spec and log)."""

    _maximum_jobs: int | None = None
    scale_downs: list[dict]

    # --------------------------------------------------------------------------- the numbers

    @property
    def _per_job(self) -> int:
        return int(self._job_spec["processes"])

    @property
    def _own_workers(self) -> int:
        record = self._read_record()
        return record.expected_workers if record else 0

    def _live_jobs(self) -> dict[str, tuple[str, list[str]]]:
        """{job id: (state, its workers' names)} of this cluster's live worker jobs."""
        record = self._read_record()
        jobs = record.scale_out if record else []
        states = queue.job_states(j.job_id for j in jobs)
        live = {j.job_id: (states[j.job_id], job_worker_names(j.name, j.processes))
                for j in jobs if j.job_id in states}
        self._live_cache = live
        self._live_names = {j.name: j.job_id for j in jobs if j.job_id in states}
        return live

    @property
    def requested(self) -> set[str]:
        """The scheduler job's workers (connected or not) and those of every live worker job."""
        live = getattr(self, "_live_cache", {})
        names = {n for _, workers in live.values() for n in workers}
        own = [n for n in self.observed if self._job_of(n) is None]
        own += [f"own-{i}" for i in range(max(0, self._own_workers - len(own)))]
        return names | set(own)

    @property
    def plan(self) -> set[str]:
        return self.requested

    def _job_of(self, worker: str) -> str | None:
        """The id of the live worker job a worker belongs to; None for the scheduler job's."""
        names = getattr(self, "_live_names", {})
        return names.get(job_of_worker(str(worker), names) or "")

    # ------------------------------------------------------------------------------ scaling

    def scale(self, n: int | None = None, jobs: int | None = None, memory: str | None = None,
              cores: int | None = None):
        """Scale to `n` workers (the scheduler job's own count), or to `jobs` worker jobs, or
        to enough jobs for `cores` / `memory` (dask-jobqueue's arguments)."""
        if self._mode == "here" and self._read_record().backend != "slurm":
            raise UsageError("scale() submits Slurm worker jobs; this cluster runs on the "
                             "local backend")
        if jobs is None:
            if cores is not None:
                jobs = -(-int(cores) // int(self._job_spec["cores"]))
            elif memory is not None:
                from ..domain.units import parse_bytes

                per = parse_bytes(self._job_spec["memory"] or "1GiB")
                jobs = -(-parse_bytes(memory) // per)
            else:
                jobs = jobs_for_workers(n or 0, self._own_workers, self._per_job)
        if jobs < 0:
            raise UsageError(f"jobs must be >= 0, not {jobs}")
        return self.sync(self._scale_jobs, int(jobs), False)

    async def _scale_jobs(self, target: int, adaptive: bool) -> None:
        live = await asyncio.to_thread(self._live_jobs)
        if target > len(live):
            count = new_jobs_now(target, [s for s, _ in live.values()],
                                 self._maximum_jobs if adaptive else None, adaptive=adaptive)
            if count:
                await asyncio.to_thread(self._submit, len(live) + count)
        elif target < len(live):
            await self._let_go(live, order=None, count=len(live) - target)
        await asyncio.to_thread(self._live_jobs)

    def _submit(self, jobs: int) -> None:
        from ..ops.scale_out import scale_out

        spec = self._job_spec
        result = scale_out(self._state.path, jobs, cores=spec["cores"], memory=spec["memory"],
                           processes=spec["processes"], walltime=spec["walltime"],
                           job_options=list(spec["job_options"]), report=self._report)
        ids = [j["job_id"] for j in result["jobs"]]
        self._log(f"worker jobs: {', '.join(ids) or 'none'}")

    async def _let_go(self, live: dict, order: list[str] | None, count: int) -> list[str]:
        """Let `count` worker jobs go (from `order`, else the least busy first), each only
        once its workers' keys have moved. The jobs let go."""
        from ..ops.scale_out import cancel_jobs

        workers = await self._worker_records()
        if order is None:
            order = leaving_order(job_loads(live, list(workers.values())))
        by_name = {str(w.get("name")): addr for addr, w in workers.items()}
        gone = []
        for job_id in order:
            if len(gone) >= count:
                break
            names = [n for n in live[job_id][1] if n in by_name]
            event = {"job_id": job_id, "workers": len(names), "keys": 0, "seconds": 0.0}
            if names:
                start = time.monotonic()
                held = await self.scheduler_comm.has_what(
                    workers=[by_name[n] for n in names])
                event["keys"] = len({k for keys in held.values() for k in keys})
                retired = await self.scheduler_comm.retire_workers(
                    names=names, close_workers=False, remove=False,
                    stimulus_id=f"dasklaunch-scale-down-{time.time()}")
                event["seconds"] = round(time.monotonic() - start, 3)
                if len(retired) < len(names):
                    self._log(f"kept worker job {job_id}: its workers hold keys no other "
                              f"worker can take")
                    continue
            await asyncio.to_thread(cancel_jobs, self._state.path, [job_id], self._report)
            self.scale_downs.append(event)
            self._log(f"worker job {job_id} let go: {event['workers']} worker(s), "
                      f"{event['keys']} keys moved in {event['seconds']:.2f} s")
            gone.append(job_id)
        return gone

    async def _worker_records(self) -> dict:
        """The scheduler's records of its workers, with their metrics (task counts, memory)."""
        identity = await self.scheduler_comm.identity(n_workers=-1)
        return dict(identity.get("workers", {}))

    def adapt(self, minimum: int | None = None, maximum: int | None = None, *,
              minimum_jobs: int | None = None, maximum_jobs: int | None = None, **kwargs):
        """Adaptive scaling in workers (`minimum`, `maximum`) or in worker jobs
        (`minimum_jobs`, `maximum_jobs`, as dask-jobqueue users write it)."""
        own, per = self._own_workers, self._per_job
        if minimum_jobs is not None:
            minimum = workers_for_jobs(minimum_jobs, own, per)
        if maximum_jobs is not None:
            maximum = workers_for_jobs(maximum_jobs, own, per)
            self._maximum_jobs = maximum_jobs
        elif maximum is not None:
            self._maximum_jobs = jobs_for_workers(maximum, own, per)
        minimum = max(own, minimum or 0)
        if maximum is not None and maximum < minimum:
            raise UsageError(f"adapt: maximum ({maximum} workers) is below minimum ({minimum})")
        kwargs.setdefault("interval", "2s")
        return super().adapt(Adaptive=JobAdaptive, minimum=minimum,
                             maximum=maximum if maximum is not None else float("inf"),
                             **kwargs)


class JobAdaptive(Adaptive):
    """distributed's Adaptive, with its scale-up going through the queue rule and its
    scale-down letting whole worker jobs go after their keys moved."""

    async def workers_to_close(self, target: int) -> list[str]:
        names = await super().workers_to_close(target)
        return [n for n in names if self.cluster._job_of(n) is not None]

    async def scale_up(self, n: int) -> None:
        jobs = jobs_for_workers(n, self.cluster._own_workers, self.cluster._per_job)
        try:
            await self.cluster._scale_jobs(jobs, True)
        except DasklaunchError as err:  # a queue limit, Slurm not answering: next time
            self.cluster._log(f"adapt: could not add worker jobs: {err}")

    async def scale_down(self, workers) -> None:
        cluster = self.cluster
        live = await asyncio.to_thread(cluster._live_jobs)
        ids = {cluster._job_of(w) for w in workers} - {None}
        if ids:
            records = await cluster._worker_records()
            loads = job_loads({i: live[i] for i in ids if i in live}, list(records.values()))
            await cluster._let_go(live, order=leaving_order(loads), count=len(loads))

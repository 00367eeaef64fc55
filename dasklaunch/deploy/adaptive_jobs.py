"""Scaling of the notebook cluster by worker jobs: `scale(n)` / `scale(jobs=n)` and an
`Adaptive` that never loses work.

A worker job leaves only after the scheduler has moved every key its workers hold
(`retire_workers`, close_workers=False: the workers stay up, taking no new task, until the
job is cancelled and their launcher lets them end); a job whose keys cannot all move stays.
Jobs still waiting in the queue leave first, then those with the least work and data;
adaptive scaling never lets a job go while its workers run tasks. While one of its jobs waits
in the queue, adaptive scaling submits no more (domain/job_scaling.py). The scheduler job's
own workers are the floor: no scale-down removes them.
"""

from __future__ import annotations

import asyncio
import functools
import time

from distributed.core import Status
from distributed.deploy import Adaptive

from ..domain.job_scaling import (
    idle_jobs_to_close,
    job_loads,
    job_of_worker,
    job_worker_names,
    jobs_for_workers,
    leaving_order,
    new_jobs_now,
    workers_for_jobs,
)
from ..errors import DasklaunchError, UsageError
from ..slurm import accounting, queue

UNREAD = object()   # the user's Slurm limits, before the first scale-up reads them


def whole_number(name: str, value, minimum: int = 0) -> int:
    """A count the user gave, as an int; UsageError for anything else."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    return value


def job_group(processes: int, ws) -> str:
    """The scheduler's grouping of workers by job (Adaptive's worker_key, pickled to the
    scheduler): a job of several workers names them JOB-0, JOB-1 ..."""
    name = str(ws.name)
    return name.rsplit("-", 1)[0] if processes > 1 else name


class JobScaling:
    """What Cluster adds to distributed's Cluster for scaling (a mixin: it uses the
    cluster's state dir, scheduler comm, job spec and log)."""

    _maximum_jobs: int | None = None
    _limits: object = UNREAD
    _limit_met: tuple | None = None
    _live_cache: dict = {}
    _live_names: dict = {}
    _own_cache: int = 0
    scale_downs: list[dict]

    # --------------------------------------------------------------------------- the numbers

    @property
    def _per_job(self) -> int:
        return int(self._job_spec["processes"])

    def _live_jobs(self) -> dict[str, tuple[str, list[str]]]:
        """{job id: (state, its workers' names)} of this cluster's live worker jobs, and the
        scheduler job's own worker count, read afresh (blocking: call it off the loop)."""
        record = self._read_record()
        jobs = record.scale_out if record else []
        states = queue.job_states(j.job_id for j in jobs)
        live = {j.job_id: (states[j.job_id], job_worker_names(j.name, j.processes))
                for j in jobs if j.job_id in states}
        self._live_cache = live
        self._live_names = {j.name: j.job_id for j in jobs if j.job_id in states}
        self._own_cache = record.expected_workers if record else 0
        return live

    @property
    def requested(self) -> set[str]:
        """The scheduler job's workers (connected or not) and those of every live worker job."""
        names = {n for _, workers in self._live_cache.values() for n in workers}
        own = [n for n in self.observed if self._job_of(n) is None]
        own += [f"own-{i}" for i in range(max(0, self._own_cache - len(own)))]
        return names | set(own)

    @property
    def plan(self) -> set[str]:
        return self.requested

    def _job_of(self, worker: str) -> str | None:
        """The id of the live worker job a worker belongs to; None for the scheduler job's."""
        names = self._live_names
        return names.get(job_of_worker(str(worker), names) or "")

    # ------------------------------------------------------------------------------ scaling

    def scale(self, n: int | None = None, jobs: int | None = None, memory: str | None = None,
              cores: int | None = None):
        """Scale to `n` workers (the scheduler job's own count), or to `jobs` worker jobs, or
        to enough jobs for `cores` / `memory` (dask-jobqueue's arguments)."""
        record = self._read_record()
        if record is None or record.backend != "slurm":
            raise UsageError("scale() submits Slurm worker jobs; this cluster runs on the "
                             "local backend")
        own = record.expected_workers
        if jobs is not None:
            jobs = whole_number("jobs", jobs)
        elif cores is not None:
            jobs = -(-whole_number("cores", cores) // int(self._job_spec["cores"]))
        elif memory is not None:
            if not self._job_spec["memory"]:
                raise UsageError("scale(memory=...) needs the cluster's memory= (per job)")
            from ..domain.units import parse_bytes

            jobs = -(-parse_bytes(memory) // parse_bytes(self._job_spec["memory"]))
        else:
            jobs = jobs_for_workers(whole_number("n", n or 0), own, self._per_job)
        return self.sync(self._scale_jobs, int(jobs), False)

    async def _scale_jobs(self, target: int, adaptive: bool) -> None:
        if self.status != Status.running or self._ended is not None:
            return   # closing, or the scheduler's job has ended: submit nothing more
        live = await asyncio.to_thread(self._live_jobs)
        if target > len(live):
            count = new_jobs_now(target, [s for s, _ in live.values()],
                                 self._maximum_jobs if adaptive else None, adaptive=adaptive)
            if count:
                count = await asyncio.to_thread(self._within_limits, count,
                                                "adapt" if adaptive else "scale")
            if count:
                await asyncio.to_thread(self._submit, len(live) + count)
        elif target < len(live):
            await self._let_go(live, count=len(live) - target, idle_only=False)
        await asyncio.to_thread(self._live_jobs)

    def _within_limits(self, count: int, action: str) -> int:
        """`count` new worker jobs, or as many as the user's Slurm limits leave room for (read
        once; blocking: call it off the loop). A request that meets a limit says so once."""
        if self._limits is UNREAD:
            self._limits = accounting.limits(self._job_spec["job_options"])
        room = accounting.room(self._limits, cpus=int(self._job_spec["cores"]))
        if room.jobs is None or count <= room.jobs:
            self._limit_met = None
            return count
        if (room.limit, room.jobs) != self._limit_met:   # not again at every adapt interval
            self._limit_met = (room.limit, room.jobs)
            self._log(room.line(action, count))
        return room.jobs

    def _submit(self, jobs: int) -> None:
        from ..ops.scale_out import scale_out

        spec = self._job_spec
        result = scale_out(self._state.path, jobs, cores=spec["cores"], memory=spec["memory"],
                           processes=spec["processes"], walltime=spec["walltime"],
                           job_options=list(spec["job_options"]), report=self._report,
                           limits=self._limits if isinstance(self._limits, list) else [])
        ids = [j["job_id"] for j in result["jobs"]]
        self._log(f"worker jobs: {', '.join(ids) or 'none'}")

    async def _job_loads(self, live: dict) -> tuple[dict, dict]:
        """The scheduler's records of its workers ({address: record}) and each live job's
        JobLoad: the tasks the scheduler has given its workers (read live, not from their last
        heartbeat) and the data they hold."""
        identity = await self.scheduler_comm.identity(n_workers=-1)
        workers = dict(identity.get("workers", {}))
        processing = await self.scheduler_comm.processing()
        busy = {str(workers[addr].get("name")): len(keys)
                for addr, keys in processing.items() if addr in workers}
        return workers, {j.job_id: j for j in job_loads(live, list(workers.values()), busy)}

    async def _let_go(self, live: dict, count: int, idle_only: bool,
                      among: list[str] | None = None) -> list[str]:
        """Let `count` worker jobs go (of `among`, else of all live ones; in leaving_order),
        each only once its workers' keys have moved; with `idle_only`, none whose workers have
        tasks. The jobs let go."""
        from ..ops.scale_out import cancel_jobs

        workers, loads = await self._job_loads(live)
        order = leaving_order(loads[i] for i in (loads if among is None else among))
        by_name = {str(w.get("name")): addr for addr, w in workers.items()}
        gone = []
        for job_id in order:
            if len(gone) >= count:
                break
            if idle_only and loads[job_id].processing:
                continue
            names = [n for n in live[job_id][1] if n in by_name]
            event = {"job_id": job_id, "workers": len(names), "keys": 0, "seconds": 0.0}
            if names:
                start = time.monotonic()
                held = await self.scheduler_comm.has_what(workers=[by_name[n] for n in names])
                event["keys"] = len({k for keys in held.values() for k in keys})
                retired = await self.scheduler_comm.retire_workers(
                    names=names, close_workers=False, remove=False,
                    stimulus_id=f"dasklaunch-scale-down-{time.time()}")
                event["seconds"] = round(time.monotonic() - start, 3)
                if len(retired) < len(names):
                    # those that did retire take no new task: this job goes first next time
                    self._log(f"kept worker job {job_id}: its workers hold keys no other "
                              f"worker can take")
                    continue
            await asyncio.to_thread(cancel_jobs, self._state.path, [job_id], self._report)
            self.scale_downs.append(event)
            self._log(f"worker job {job_id} let go: {event['workers']} worker(s), "
                      f"{event['keys']} keys moved in {event['seconds']:.2f} s")
            gone.append(job_id)
        return gone

    def adapt(self, minimum: int | None = None, maximum: int | None = None, *,
              minimum_jobs: int | None = None, maximum_jobs: int | None = None, **kwargs):
        """Adaptive scaling in workers (`minimum`, `maximum`) or in worker jobs
        (`minimum_jobs`, `maximum_jobs`, as dask-jobqueue users write it)."""
        record = self._read_record()
        if record is None or record.backend != "slurm":
            raise UsageError("adapt() submits Slurm worker jobs; this cluster runs on the "
                             "local backend")
        own, per = record.expected_workers, self._per_job
        self._own_cache = own
        if minimum_jobs is not None:
            minimum = workers_for_jobs(whole_number("minimum_jobs", minimum_jobs), own, per)
        if maximum_jobs is not None:
            maximum = workers_for_jobs(whole_number("maximum_jobs", maximum_jobs), own, per)
            self._maximum_jobs = maximum_jobs
        elif maximum is not None:
            self._maximum_jobs = jobs_for_workers(whole_number("maximum", maximum), own, per)
        minimum = max(own, whole_number("minimum", minimum or 0))
        if maximum is not None and maximum < minimum:
            raise UsageError(f"adapt: maximum ({maximum} workers) is below minimum ({minimum}, "
                             f"the scheduler job's own {own} included)")
        kwargs.setdefault("interval", "2s")
        kwargs.setdefault("worker_key", functools.partial(job_group, per))
        return super().adapt(Adaptive=JobAdaptive, minimum=minimum,
                             maximum=maximum if maximum is not None else float("inf"),
                             **kwargs)


class JobAdaptive(Adaptive):
    """distributed's Adaptive, looking at the queue afresh each time, with its scale-up going
    through the queue rule and its scale-down letting whole, idle worker jobs go after their
    keys moved."""

    async def recommendations(self, target: int) -> dict:
        # a job that ended by itself (walltime) must leave the plan, or nothing replaces it
        await asyncio.to_thread(self.cluster._live_jobs)
        return await super().recommendations(target)

    async def workers_to_close(self, target: int) -> list[str]:
        """The workers of whole, idle worker jobs, down to `target` workers. Not distributed's
        choice (Scheduler.workers_to_close): it ranks every group of workers, the scheduler
        job's own among them, by the data they hold, and stops at the first it may not close;
        when the own workers held the least they came first, were dropped here as the floor,
        and a worker job holding the results stayed for good."""
        cluster = self.cluster
        live = cluster._live_cache
        workers, loads = await cluster._job_loads(live)
        present = {str(record.get("name")) for record in workers.values()}
        connected = {job_id: [n for n in names if n in present]
                     for job_id, (_, names) in live.items()}
        return idle_jobs_to_close(loads.values(), connected, len(workers), target)

    async def scale_up(self, n: int) -> None:
        jobs = jobs_for_workers(n, self.cluster._own_cache, self.cluster._per_job)
        try:
            await self.cluster._scale_jobs(jobs, True)
        except DasklaunchError as err:  # a queue limit, Slurm not answering: next time
            self.cluster._log(f"adapt: could not add worker jobs: {err}")

    async def scale_down(self, workers) -> None:
        cluster = self.cluster
        live = await asyncio.to_thread(cluster._live_jobs)
        chosen = set(map(str, workers))
        # only whole jobs: every worker of the job was chosen (or has not connected)
        ids = [job_id for job_id, (_, names) in live.items()
               if any(n in chosen for n in names)
               and all(n in chosen or n not in cluster.observed for n in names)]
        if ids:
            await cluster._let_go(live, count=len(ids), idle_only=True, among=ids)

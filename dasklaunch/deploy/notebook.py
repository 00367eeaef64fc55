"""`dasklaunch.Cluster`: a real `distributed.deploy.Cluster` for notebooks and scripts.

    cluster = dasklaunch.Cluster(cores=4, memory="16GB", walltime="2:00:00")
    cluster.adapt(minimum_jobs=0, maximum_jobs=20)
    client = Client(cluster)

From a login node it submits one job for the scheduler (ops/scheduler_job.py: `up` plus the
job's own worker, then `supervise`) and never runs Dask there; inside an allocation it brings
the allocation's pools up, as `dasklaunch up` does. Either way more workers come from worker
jobs (`scale-out`), which leave only after their keys have moved (deploy/adaptive_jobs.py).

Nothing here relies on `__del__`: `close()`, the `with` block, or the interpreter's exit
(atexit) brings the jobs down, unless `shutdown_on_close=False`.
"""

from __future__ import annotations

import asyncio
import atexit
import datetime
import os
import sys
import weakref
from contextlib import suppress
from functools import partial

from distributed.core import Status, rpc
from distributed.deploy import Cluster as DaskCluster

from ..domain.settings import options_from
from ..domain.units import parse_bytes
from ..errors import UsageError
from ..ops import scheduler_job
from ..ops.client_access import security_for, use_recorded_dashboard_link
from ..runtime import schedfile
from ..runtime.report import Reporter
from ..runtime.state import StateDir
from ..slurm import queue
from .adaptive_jobs import JobScaling
from .worker_logs import worker_logs

WATCH_SECONDS = 5.0


class Cluster(JobScaling, DaskCluster):
    """A Dask cluster on Slurm whose worker jobs leave only after they drained.

    Worker jobs are described as dask-jobqueue's are: `cores`, `memory` (per job),
    `processes` (workers per job), `walltime`, `job_extra_directives`; `account`,
    `partition` (`queue=` is taken too), `qos`, `constraint` apply to the scheduler's job as
    well, and what is not given comes from jobqueue.yaml, as for `dasklaunch batch`. Every
    other keyword is a `dasklaunch up` option (interface="ib0", profile="seed", pool=[...]),
    resolved as `up` resolves its command line."""

    def __init__(self, *, cores: int = 1, memory: str | None = None, processes: int = 1,
                 walltime: str | None = None, job_extra_directives: tuple[str, ...] = (),
                 account: str | None = None, partition: str | None = None,
                 queue_name: str | None = None, qos: str | None = None,
                 constraint: str | None = None, job_name: str = "dasklaunch-cluster",
                 job_script_prologue: tuple[str, ...] | None = None,
                 state_dir: str | None = None, shutdown_on_close: bool = True,
                 start_timeout: float | None = None, quiet: bool = False,
                 asynchronous: bool = False, loop=None, **up_options):
        if "queue" in up_options:
            queue_name = up_options.pop("queue")
        partition = partition or queue_name
        self._job_id: str | None = None
        self._mode = "unstarted"
        self._ended: str | None = None
        self._shutdown_on_close = shutdown_on_close
        self._state: StateDir | None = None
        self.scale_downs: list[dict] = []
        opts, given = options_from(up_options)
        if cores < 1 or processes < 1 or cores < processes:
            raise UsageError(f"cores={cores}, processes={processes}: a worker job needs "
                             f"1 <= processes <= cores")
        memory_bytes = parse_bytes(memory) if memory else None
        self._job_spec = {"cores": cores, "memory": memory, "processes": processes,
                          "walltime": walltime, "job_options": self._job_options(
                              job_extra_directives, account, partition, qos, constraint)}
        super().__init__(asynchronous=asynchronous, loop=loop, quiet=quiet, name=None)
        self._report = Reporter(quiet=True)
        self._watch = None
        inside = bool(os.environ.get("SLURM_JOB_ID")) and opts.backend in ("auto", "slurm")
        if inside or opts.backend == "local" or (opts.backend == "auto"
                                                  and not queue.installed()):
            self._bring_up = partial(self._start_here, opts, given, state_dir, inside)
        else:
            request = scheduler_job.JobRequest(
                cores=cores, memory=(f"{max(1, memory_bytes // 2**20)}M" if memory_bytes
                                     else None),
                time=walltime, partition=partition, account=account, qos=qos,
                constraint=constraint, job_name=job_name,
                sbatch_args=tuple(job_extra_directives), prologue=job_script_prologue,
                state_dir=state_dir)
            self._bring_up = partial(self._start_job, opts, given, request, start_timeout)
        if not asynchronous:   # else `await cluster` (or `async with`) starts it
            self._loop_runner.start()
            try:
                self._bring_up()
                self._open_comm()
                self.sync(self._start)
            except BaseException:
                self._failed_start()
                raise

    def __await__(self):
        return self._start_async().__await__()

    async def _start_async(self):
        if self.status == Status.created:
            try:
                # Slurm's commands and the wait block: off the event loop
                await asyncio.to_thread(self._bring_up)
                self._open_comm()
                await self._start()
            except BaseException:
                await asyncio.to_thread(self._failed_start)
                raise
        return self

    def _failed_start(self) -> None:
        with suppress(Exception):   # the start's own error is the one to see
            self._bring_down()   # nothing this object started outlives a failed start
        self.status = Status.closed
        _OPEN.discard(self)
        if not self.asynchronous:
            self._loop_runner.stop()

    @classmethod
    def from_job(cls, job_id: str | int, *, state_dir: str | None = None,
                 shutdown_on_close: bool = False, quiet: bool = False, **job_spec) -> Cluster:
        """Reattach to the cluster of job `job_id` (made by a Cluster, `batch` or `up`): its
        jobs are brought down on close only with shutdown_on_close=True."""
        self = cls.__new__(cls)
        DaskCluster.__init__(self, asynchronous=False, quiet=quiet)
        self._report = Reporter(quiet=True)
        self._ended = None
        self._shutdown_on_close = shutdown_on_close
        self.scale_downs = []
        self._watch = None
        self._state = scheduler_job.attach(str(job_id), state_dir)
        self._job_id = str(job_id)
        record = self._state.read_record()
        if shutdown_on_close and not record.scheduler_job:
            raise UsageError(f"job {job_id}'s cluster was started by `dasklaunch up` or "
                             f"`batch`, not by dasklaunch.Cluster: reattach with "
                             f"shutdown_on_close=False and bring it down from its job "
                             f"(dasklaunch down)")
        self._mode = "job" if record.scheduler_job else "attached"
        self._job_spec = {"cores": job_spec.get("cores", 1), "memory": job_spec.get("memory"),
                          "processes": job_spec.get("processes", 1),
                          "walltime": job_spec.get("walltime"),
                          "job_options": list(job_spec.get("job_extra_directives", ()))}
        self._open_comm()
        self._loop_runner.start()
        self.sync(self._start)
        return self

    # ------------------------------------------------------------------------------ start-up

    @staticmethod
    def _job_options(extra, account, partition, qos, constraint) -> list[str]:
        options = list(extra)
        for flag, value in (("--account", account), ("--partition", partition),
                            ("--qos", qos), ("--constraint", constraint)):
            if value:
                options.append(f"{flag}={value}")
        return options

    def _start_here(self, opts, given, state_dir, inside: bool) -> None:
        from ..ops.up import up

        if not inside:
            self._log("no Slurm allocation here and no Slurm to submit to: a local cluster on "
                      "this machine" if opts.backend == "auto" else "a local cluster")
        facts = up(opts, state_dir=state_dir, report=self._report, explicit=given)
        self._state = StateDir(facts["state_dir"])
        self._job_id = self._state.read_record().job_id
        self._mode = "here"

    def _start_job(self, opts, given, request, start_timeout) -> None:
        job_id, state = scheduler_job.submit(opts, given, request, self._log)
        self._job_id, self._state, self._mode = job_id, state, "job"
        try:
            scheduler_job.wait_until_up(job_id, state, self._log, job_name=request.job_name,
                                        timeout=start_timeout)
        except BaseException:
            # a notebook interrupt or a failed start leaves nothing queued behind
            scheduler_job.end_job(job_id, timeout=60)
            raise

    def _open_comm(self) -> None:
        """The scheduler's address and the job's TLS credentials, from its state dir."""
        info = schedfile.read(self._state.scheduler_file)
        self.security = security_for(self._state.path)
        use_recorded_dashboard_link(self._state)
        args = self.security.get_connection_args("client") if self.security else {}
        self.scheduler_comm = rpc(info.address, connection_args=args)
        _OPEN.add(self)

    async def _start(self):
        await super()._start()
        self._watch = asyncio.ensure_future(self._watch_job())

    async def _get_logs(self, cluster=True, scheduler=True, workers=True):
        logs = await super()._get_logs(cluster, scheduler, workers=False)
        if workers:
            logs.update(await worker_logs(self.scheduler_comm, workers))
        return logs

    @property
    def job_id(self) -> str | None:
        """The scheduler's job (the allocation's, inside one)."""
        return self._job_id

    @property
    def state_dir(self):
        return self._state.path if self._state else None

    # ------------------------------------------------------------------------ the job's end

    async def _watch_job(self) -> None:
        """Say so, once, when the scheduler's job ends under this object (walltime, scancel),
        and cancel its worker jobs; the cluster is then closed."""
        while self.status == Status.running and self._mode == "job":
            await asyncio.sleep(WATCH_SECONDS)
            ended = await asyncio.to_thread(scheduler_job.job_ended, self._job_id)
            if ended is None or self.status != Status.running:
                continue
            self._ended = ended
            with suppress(AttributeError):
                self._adaptive.stop()   # no worker job may be submitted after this
            cancelled = await asyncio.to_thread(self._cancel_worker_jobs)
            also = f"; its worker jobs cancelled: {', '.join(cancelled)}" if cancelled else ""
            line = (f"dasklaunch: the scheduler's job {self._job_id} has ended ({ended}): "
                    f"this cluster is closed{also}")
            self._cluster_manager_logs.append((datetime.datetime.now(), line))
            print(line, file=sys.stderr, flush=True)  # even when quiet: nothing works after it
            await self._close()
            return

    def _cancel_worker_jobs(self) -> list[str]:
        record = self._read_record()
        live = queue.job_states(j.job_id for j in (record.scale_out if record else []))
        if live:
            queue.cancel(*live)
        return sorted(live)

    def _read_record(self):
        with suppress(Exception):
            return self._state.read_record()
        return None

    def _bring_down(self) -> None:
        """Every job of this cluster, down: blocking, safe to call twice."""
        if self._mode == "job":
            scheduler_job.end_job(self._job_id)
            self._cancel_worker_jobs()  # its `down` cancels them; a killed job's does not
        elif self._mode == "here":
            from ..ops.down import down

            down(self._state.path, report=self._report)
        self._mode = "down"

    async def _close(self):
        if self.status in (Status.closed, Status.closing):
            return   # the watcher's close and the user's: one brings the jobs down
        with suppress(AttributeError):
            self._adaptive.stop()
        if self._watch is not None and self._watch is not asyncio.current_task():
            self._watch.cancel()
        self.status = Status.closing   # distributed's _close only asks whether it is closed
        if self._shutdown_on_close and self._ended is None:
            await asyncio.to_thread(self._bring_down)
        _OPEN.discard(self)
        await super()._close()

    def close(self, timeout: float | None = None):
        result = super().close(timeout)
        if not self.asynchronous:
            self._loop_runner.stop()
        return result


_OPEN: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _bring_down_at_exit() -> None:
    """The kernel's (or script's) exit brings down what close() would have: blocking, without
    the event loop, which may already be stopped."""
    for cluster in list(_OPEN):
        if cluster._shutdown_on_close and cluster._ended is None:
            with suppress(Exception):
                cluster._bring_down()
        cluster.status = Status.closed

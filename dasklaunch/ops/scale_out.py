"""`scale-out`: worker-only Slurm jobs that join this job's scheduler, their scripts built with
dask-jobqueue's own SLURMJob machinery.

dask_jobqueue is imported only here, and only when a job is submitted: its import replaces the
SIGINT handler and writes ~/.config/dask/jobqueue.yaml, and neither may leak into other commands.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from ..domain.dask_argv import NODE_LAUNCHER, drain_args, start_method
from ..domain.rolling_times import WALLTIME_MARGIN_SECONDS, check_walltime
from ..domain.step_env import worker_env
from ..domain.units import format_bytes, parse_bytes, plural
from ..errors import LimitError, NotUpError, UsageError
from ..launch.node_drain import NO_DRAIN_FILE
from ..profiles.jobqueue import job_script_prologue
from ..runtime.record import ClusterRecord, ScaleOutJob
from ..runtime.report import Reporter
from ..runtime.state import JOB_CONFIG_DIR, StateDir, find_state_dir
from ..runtime.tls import TLSFiles
from ..slurm import accounting, queue
from ..slurm.commands import walltime_signal_directive, worker_job_step_argv
from .common import load_record
from .container_setup import worker_job_container


def _import_dask_jobqueue():
    if "dask_jobqueue.slurm" in sys.modules:
        return sys.modules["dask_jobqueue"]
    import dask.config

    previous = signal.getsignal(signal.SIGINT)
    ensure_file, set_handler = dask.config.ensure_file, signal.signal
    dask.config.ensure_file = lambda *args, **kwargs: None  # no ~/.config/dask/jobqueue.yaml
    if threading.current_thread() is not threading.main_thread():
        # its runner sets a SIGINT handler on import, which only the main thread may (the
        # notebook cluster submits from a worker thread); it is undone below anyway
        signal.signal = lambda *args: None
    try:
        import dask_jobqueue
        import dask_jobqueue.slurm  # noqa: F401 - SLURMJob lives here
    finally:
        dask.config.ensure_file, signal.signal = ensure_file, set_handler
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, previous)
    return dask_jobqueue


def pool_shape(record: ClusterRecord, pool: str) -> dict:
    """What a worker-only job needs to copy pool `pool`: workers per node, threads and memory
    per worker, GPUs per worker and the Dask resources, as the pool's plan has them."""
    steps = [p for p in record.pools if p.pool == pool]
    if not steps:
        known = ", ".join(sorted({p.pool for p in record.pools})) or "none"
        raise UsageError(f"no pool {pool!r} in this cluster (pools: {known})")
    step = steps[0]
    shape = {"pool": pool, "workers_per_node": max(1, step.workers // max(1, step.nnodes))}
    if step.nthreads is not None:   # the plan keeps the workers' shape
        resources = " ".join(f"{k}={v}" for k, v in step.resources) or None
        return {**shape, "nthreads": step.nthreads, "memory_limit": step.memory_limit,
                "gpus_per_worker": step.gpus_per_worker or 0, "resources": resources,
                "worker_class": step.worker_class}
    # a record written before plans kept it: read it from the pool's command
    argv = step.command

    def value(flag: str, default: str | None = None) -> str | None:
        return argv[argv.index(flag) + 1] if flag in argv[:-1] else default

    return {**shape, "nthreads": int(value("--nthreads", "1")),
            "memory_limit": value("--memory-limit"),
            "gpus_per_worker": int(value("--gpus-per-worker", "0")),
            "resources": value("--resources"), "worker_class": value("--worker-class")}


def worker_job_script(record: ClusterRecord, state: StateDir, *, name: str, cores: int,
                      memory: int, processes: int, walltime: str | None,
                      job_options: list[str], shape: dict | None = None,
                      container: str | None = None) -> str:
    """The sbatch script of one worker-only job that joins this job's scheduler; with `shape`
    (pool_shape), its workers are that pool's: named POOL-HOST-N, one per GPU on GPU pools;
    in the cluster's container (or the pool's, or `container`), as its pools are."""
    jq = _import_dask_jobqueue().slurm
    opts = record.options
    kwargs: dict = {}
    contained, image = worker_job_container(record, shape and shape["pool"], container)
    python = contained.python(image) if contained and image else sys.executable
    extra_args = list(opts.worker_args)
    # The workers run in a step under the node launcher (never in the batch shell): a SIGTERM
    # from scancel, the walltime or preemption reaches the launcher, which drains them first.
    launcher = [python, "-m", NODE_LAUNCHER, *drain_args(opts)]
    if opts.drain_timeout > 0:
        # these workers name their scheduler by address: say where `down`'s mark is
        launcher += ["--no-drain-file", str(state.path / NO_DRAIN_FILE)]
    launcher += ["--prefork"] if start_method(opts) == "prefork" else []
    if shape is None:
        launcher.append("--keep-name")
    else:
        # the node launcher names the workers and, on GPU nodes, starts one per GPU of the job
        launcher += ["--pool", shape["pool"], "--gpus-per-worker",
                     str(shape["gpus_per_worker"])]
    if walltime and opts.drain_timeout > 0:
        job_options = [*job_options, walltime_signal_directive(opts.drain_timeout
                                                               + WALLTIME_MARGIN_SECONDS)]
    if shape is not None:
        gpus = shape["gpus_per_worker"]
        processes = 1 if gpus else shape["workers_per_node"]
        cores = shape["nthreads"] * processes
        if shape["memory_limit"] and shape["memory_limit"].isdigit():
            memory = int(shape["memory_limit"]) * shape["workers_per_node"]
        if gpus:
            job_options = [*job_options,
                           f"--gpus-per-node={gpus * shape['workers_per_node']}"]
            if shape["memory_limit"]:
                # each of the node's GPU workers gets its share, not the whole job's memory
                extra_args += ["--memory-limit", shape["memory_limit"]]
        if shape["resources"]:
            extra_args += ["--resources", shape["resources"]]
        if shape["worker_class"]:
            extra_args += ["--worker-class", shape["worker_class"]]
    files = TLSFiles.in_state_dir(state)
    if opts.tls:
        from distributed.security import Security

        kwargs["security"] = Security(tls_ca_file=str(files.ca), tls_worker_cert=str(files.cert),
                                      tls_worker_key=str(files.key), require_encryption=True)
        kwargs["protocol"] = "tls"
    directives = [f"--output={state.logs}/{name}-%j.log", *job_options]
    env = worker_env(opts, str(state.path / JOB_CONFIG_DIR), inherited=os.environ)
    step, command = [], [*launcher, "--", python]
    if contained:
        step, command, env = contained.wrap(image, command, env,
                                            gpus=bool(shape and shape["gpus_per_worker"]))
    # the worker steps' environment (the job's profile, --start-method, variables to set)
    kwargs["job_script_prologue"] = job_script_prologue() + [
        f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]
    # dask-jobqueue appends the worker's own arguments: they reach `dask worker` in the image
    python = shlex.join([*worker_job_step_argv(cores), *step, *command])
    job = jq.SLURMJob(scheduler=record.address, name=name, job_name=name, cores=cores,
                      memory=f"{memory}B", processes=processes, interface=opts.interface,
                      death_timeout=opts.death_timeout, local_directory=opts.local_directory,
                      worker_extra_args=extra_args, walltime=walltime,
                      job_extra_directives=directives, python=python,
                      log_directory=None, **kwargs)
    return job.job_script()


def scale_out(state_dir: Path | str | None, jobs: int, *, cores: int | None = None,
              memory: str | None = None, processes: int = 1, walltime: str | None = None,
              job_options: list[str] | None = None, pool: str | None = None,
              keep: bool = False, dry_run: bool = False, container: str | None = None,
              report: Reporter | None = None, limits: list | None = None) -> dict:
    """Have exactly `jobs` extra worker-only Slurm jobs feeding this job's scheduler; with
    `keep`, for as long as the cluster is up (the supervisor replaces each before its end).
    With `dry_run`, what would be cancelled and the scripts that would be submitted, with
    nothing cancelled, written or submitted. `limits`: the user's Slurm limits when the caller
    has read them already (the notebook cluster reads them once), else they are read here."""
    report = report or Reporter()
    if jobs < 0:
        raise UsageError(f"--jobs must be >= 0, not {jobs}")
    if processes < 1:
        raise UsageError(f"--processes must be >= 1, not {processes}")
    if keep and not walltime:
        raise UsageError("--keep needs --walltime: it replaces each job before its walltime")
    state = find_state_dir(state_dir)
    with state.lock("scale-out"):
        record = load_record(state, report)
        if record.status != "up" or not record.address:
            raise NotUpError("the cluster is not up: run `dasklaunch up` first")
        if record.backend != "slurm":
            raise UsageError("scale-out submits Slurm jobs; this cluster runs on the local "
                             "backend")
        live = queue.job_states(j.job_id for j in record.scale_out)
        current = [j for j in record.scale_out if j.job_id in live]
        if dry_run:
            return _dry_run(record, state, current, jobs, cores=cores, memory=memory,
                            processes=processes, walltime=walltime,
                            job_options=job_options, pool=pool, keep=keep,
                            container=container)
        spec = job_spec(record, cores=cores, memory=memory, processes=processes,
                        walltime=walltime, job_options=job_options, pool=pool, keep=keep,
                        container=container)
        if jobs > len(current):
            check_limits(spec, jobs - len(current), limits)
        if jobs < len(current):
            for extra in current[jobs:]:
                queue.cancel(extra.job_id)
                report.info(f"cancelled scale-out job {extra.job_id}")
            current = current[:jobs]
        record.scale_out = current
        for _ in range(jobs - len(current)):
            current.append(submit_job(record, state, spec, report))
        record.scale_out_keep = {**spec, "jobs": jobs} if keep and jobs else None
        state.write_record(record)
    if keep and jobs:
        report.info(f"keeping {jobs} worker job(s): `dasklaunch supervise` (or `up --supervise`) "
                    f"submits each one's replacement before its walltime and drains it")
    states = queue.job_states(j.job_id for j in current)
    return {"jobs": [{**j.to_dict(), "state": states.get(j.job_id, "GONE")} for j in current],
            "keep": record.scale_out_keep}


def check_limits(spec: dict, new_jobs: int, limits: list | None = None) -> None:
    """Refuse, before anything is submitted, jobs the user's Slurm limits would refuse or
    hold: `--keep` jobs and their replacements would pile up behind them."""
    if limits is None:
        limits = accounting.limits(spec["job_options"])
    room = accounting.room(limits, cpus=spec["cores"])
    if room.jobs is not None and new_jobs > room.jobs:
        raise LimitError(room.line("scale-out", new_jobs))


def job_spec(record: ClusterRecord, *, cores: int | None, memory: str | None, processes: int,
             walltime: str | None, job_options: list[str] | None, pool: str | None,
             keep: bool, container: str | None = None) -> dict:
    """What each new worker job is: scale_out's options, checked, defaults filled in."""
    spec = {"cores": cores or min(record.allocation.get("cpus_per_node") or [1]),
            "memory": (parse_bytes(memory) if memory
                       else (record.allocation.get("mem_per_node") or 2**30)),
            "processes": processes, "walltime": walltime,
            "job_options": list(job_options or []), "pool": pool, "container": container}
    if pool:
        pool_shape(record, pool)  # an unknown pool is refused before anything is submitted
    worker_job_container(record, pool, container)   # and an image `up` did not check
    if keep:
        check_walltime(walltime, record.options.drain_timeout)
    return spec


def _dry_run(record: ClusterRecord, state: StateDir, current: list[ScaleOutJob], jobs: int,
             **options) -> dict:
    spec = job_spec(record, **options)
    first = len(list(state.path.glob(f"dl-scale-{record.job_id}-*.sbatch"))) + 1
    shape = pool_shape(record, spec["pool"]) if spec.get("pool") else None
    scripts = [worker_job_script(record, state, name=f"dl-scale-{record.job_id}-{number}",
                                 cores=spec["cores"], memory=spec["memory"],
                                 processes=spec["processes"], walltime=spec["walltime"],
                                 job_options=list(spec["job_options"]), shape=shape,
                                 container=spec["container"])
               for number in range(first, first + max(0, jobs - len(current)))]
    return {"dry_run": True, "cancel": [j.job_id for j in current[jobs:]],
            "scripts": scripts, "jobs": [j.to_dict() for j in current[:jobs]], "keep": None}


def submit_job(record: ClusterRecord, state: StateDir, spec: dict,
               report: Reporter) -> ScaleOutJob:
    """Submit one worker-only job as `spec` says (scale_out's options); the caller adds it to
    record.scale_out and writes the record."""
    # numbered by the scripts written so far: never a name an earlier job of this cluster had
    number = len(list(state.path.glob(f"dl-scale-{record.job_id}-*.sbatch"))) + 1
    name = f"dl-scale-{record.job_id}-{number}"
    shape = pool_shape(record, spec["pool"]) if spec.get("pool") else None
    script = worker_job_script(record, state, name=name, cores=spec["cores"],
                               memory=spec["memory"], processes=spec["processes"],
                               walltime=spec["walltime"], job_options=list(spec["job_options"]),
                               shape=shape, container=spec.get("container"))
    path = state.write_text(f"{name}.sbatch", script)
    job = ScaleOutJob(job_id=queue.submit(path), name=name, script=str(path),
                      cores=spec["cores"], memory=spec["memory"], processes=spec["processes"])
    report.info(f"submitted scale-out job {job.job_id}: {plural(spec['processes'], 'worker')}, "
                f"{spec['cores']} cores, {format_bytes(spec['memory'])}")
    return job


def cancel_all(record: ClusterRecord, report: Reporter) -> list[str]:
    """Cancel every scale-out job of this cluster (used by `down`)."""
    live = list(queue.job_states(j.job_id for j in record.scale_out))
    if live:
        queue.cancel(*live)
    for job_id in live:
        report.info(f"cancelled scale-out job {job_id}")
    return live


def cancel_jobs(state_dir: Path | str | None, job_ids: list[str],
                report: Reporter | None = None) -> list[str]:
    """Cancel these scale-out jobs of the cluster (a scale-down that chose them: their workers
    drain on the SIGTERM, as any cancelled worker job's do) and forget them; the ids that were
    this cluster's."""
    report = report or Reporter()
    state = find_state_dir(state_dir)
    with state.lock("scale-down"):
        record = load_record(state, report)
        chosen = [j for j in record.scale_out if j.job_id in set(job_ids)]
        if chosen:
            queue.cancel(*(j.job_id for j in chosen))
            record.scale_out = [j for j in record.scale_out if j not in chosen]
            state.write_record(record)
    for job in chosen:
        report.info(f"cancelled scale-out job {job.job_id}")
    return [j.job_id for j in chosen]

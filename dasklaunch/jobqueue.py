"""dask-jobqueue integration: its `jobqueue.slurm` settings as `up` defaults, and worker-only
Slurm jobs (`scale-out`) built with its own SLURMJob machinery.

dask_jobqueue is imported only by `scale-out`: its import replaces the SIGINT handler and
writes ~/.config/dask/jobqueue.yaml, and neither may leak into other commands.
"""

from __future__ import annotations

import os
import shlex
import signal
import site
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from . import proc
from .errors import CommandError, NotUpError, UsageError
from .plan import format_bytes, parse_bytes
from .report import Reporter
from .settings import UpOptions
from .state import StateDir

# up option <- how it is derived from jobqueue.slurm
SOURCES = ("interface", "nthreads", "nworkers", "memory_limit", "local_directory",
           "worker_args")


def _dask_config_paths(environ: dict[str, str]) -> list[str]:
    # the same places, in the same way, as dask.config._get_paths
    paths = [environ.get("DASK_ROOT_CONFIG", "/etc/dask"), os.path.join(sys.prefix, "etc", "dask"),
             *[os.path.join(prefix, "etc", "dask") for prefix in site.PREFIXES],
             os.path.join(os.path.expanduser("~"), ".config", "dask")]
    if "DASK_CONFIG" in environ:
        paths.append(environ["DASK_CONFIG"])
    return paths


def may_set_jobqueue(environ: dict[str, str] | None = None) -> bool:
    """False only when no Dask config file or variable can hold a jobqueue section.

    `import dask` costs a quarter of a second before `up` can start anything. Most users
    have no jobqueue config, or only the all-commented jobqueue.yaml that importing
    dask_jobqueue once leaves in ~/.config/dask; parsing a few small files settles that.
    Anything unreadable or unusual answers True and leaves the decision to dask.config."""
    env = os.environ if environ is None else environ
    if "DASK_INTERNAL_INHERIT_CONFIG" in env:
        return True
    if any(name.upper().startswith("DASK_JOBQUEUE") for name in env):
        return True
    for path in map(Path, _dask_config_paths(env)):
        try:
            if path.is_dir():
                files = [f for f in path.iterdir()
                         if f.suffix.lower() in (".json", ".yaml", ".yml")]
            elif path.exists():
                files = [path]
            else:
                continue
            if any(_holds_jobqueue(f.read_bytes()) for f in files):
                return True
        except OSError:
            return True
    return False


def _holds_jobqueue(text: bytes) -> bool:
    if b"jobqueue" not in text.lower():
        return False
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return True
    if data is None:
        return False
    return not isinstance(data, Mapping) or any(
        not isinstance(key, str) or key.lower() == "jobqueue" for key in data)


def user_jobqueue_slurm() -> dict:
    """The `jobqueue.slurm` section of the user's Dask config (files and DASK_* variables),
    without dask_jobqueue's own defaults: only what the user set."""
    if not may_set_jobqueue():
        return {}
    import dask.config

    section = dask.config.get("jobqueue.slurm", default={}) or {}
    return {k.replace("_", "-"): v for k, v in section.items() if v not in (None, [], "")}


def job_script_prologue() -> list[str]:
    """jobqueue.slurm.job-script-prologue from the user's Dask config: shell lines, in order."""
    lines = user_jobqueue_slurm().get("job-script-prologue") or []
    if isinstance(lines, str):
        lines = [lines]
    return [str(line) for line in lines]


def apply_jobqueue_defaults(opts: UpOptions, explicit: frozenset[str] | set[str],
                            section: dict | None = None) -> tuple[UpOptions, dict[str, str]]:
    """Fill options the user did not give from jobqueue.slurm. Returns the options and where
    each of SOURCES came from ("command line", "jobqueue.yaml (key)" or "default")."""
    section = user_jobqueue_slurm() if section is None else section
    values: dict = {}
    origin: dict[str, str] = {}
    processes = int(section.get("processes") or 1)
    if section.get("interface"):
        values["interface"] = (str(section["interface"]), "interface")
    if section.get("processes"):
        values["nworkers"] = (processes, "processes")
    if section.get("cores"):
        values["nthreads"] = (max(1, int(section["cores"]) // processes), "cores / processes")
    if section.get("memory"):
        per_worker = parse_bytes(section["memory"]) // processes
        values["memory_limit"] = (str(per_worker), "memory / processes")
    if section.get("local-directory"):
        values["local_directory"] = (str(section["local-directory"]), "local-directory")
    if section.get("worker-extra-args"):
        values["worker_args"] = (tuple(str(a) for a in section["worker-extra-args"]),
                                 "worker-extra-args")
    updates = {}
    for name in SOURCES:
        if name in explicit:
            origin[name] = "command line"
        elif name in values:
            updates[name], key = values[name]
            origin[name] = f"jobqueue.yaml ({key})"
        else:
            origin[name] = "default"
    return replace(opts, **updates), origin


def _import_dask_jobqueue():
    import dask.config

    previous = signal.getsignal(signal.SIGINT)
    ensure_file = dask.config.ensure_file
    dask.config.ensure_file = lambda *args, **kwargs: None  # no ~/.config/dask/jobqueue.yaml
    try:
        import dask_jobqueue
        import dask_jobqueue.slurm  # noqa: F401 - SLURMJob lives here
    finally:
        dask.config.ensure_file = ensure_file
        signal.signal(signal.SIGINT, previous)
    return dask_jobqueue


def worker_job_exports(opts: UpOptions, state: StateDir, inherited: Mapping[str, str]) -> list[str]:
    """What the job's own worker steps get in their environment, as lines for the job script:
    the job's profile (DASK_CONFIG), --start-method, and variables dasklaunch was told to set."""
    from .lifecycle import worker_env

    env = worker_env(opts, state, inherited=inherited)
    return [f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items())]


def worker_job_script(record: dict, state: StateDir, *, name: str, cores: int, memory: int,
                      processes: int, walltime: str | None, job_options: list[str]) -> str:
    """The sbatch script of one worker-only job that joins this job's scheduler."""
    from .tls import TLSFiles

    jq = _import_dask_jobqueue().slurm
    opts = UpOptions.from_dict(record["options"])
    kwargs: dict = {}
    files = TLSFiles.in_state_dir(state)
    if opts.tls:
        from distributed.security import Security

        kwargs["security"] = Security(tls_ca_file=str(files.ca), tls_worker_cert=str(files.cert),
                                      tls_worker_key=str(files.key), require_encryption=True)
        kwargs["protocol"] = "tls"
    directives = [f"--output={state.logs}/{name}-%j.log", *job_options]
    kwargs["job_script_prologue"] = (job_script_prologue()
                                     + worker_job_exports(opts, state, os.environ))
    job = jq.SLURMJob(scheduler=record["address"], name=name, job_name=name, cores=cores,
                      memory=f"{memory}B", processes=processes, interface=opts.interface,
                      death_timeout=opts.death_timeout, local_directory=opts.local_directory,
                      worker_extra_args=list(opts.worker_args), walltime=walltime,
                      job_extra_directives=directives, python=sys.executable,
                      log_directory=None, **kwargs)
    return job.job_script()


def live_jobs(job_ids: list[str]) -> dict[str, str]:
    """{job id: state} for the jobs Slurm still knows."""
    if not job_ids:
        return {}
    try:
        out = proc.run(["squeue", "--noheader", f"--jobs={','.join(job_ids)}", "--format=%i %T"],
                       timeout=20, check=False).stdout
    except CommandError:
        return {}
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def scale_out(state_dir: Path | str | None, jobs: int, *, cores: int | None = None,
              memory: str | None = None, processes: int = 1, walltime: str | None = None,
              job_options: list[str] | None = None, report: Reporter | None = None) -> dict:
    """Have exactly `jobs` extra worker-only Slurm jobs feeding this job's scheduler."""
    from . import lifecycle

    report = report or Reporter()
    if jobs < 0:
        raise UsageError(f"--jobs must be >= 0, not {jobs}")
    if processes < 1:
        raise UsageError(f"--processes must be >= 1, not {processes}")
    state = lifecycle.find_state_dir(state_dir)
    with state.lock("scale-out"):
        record = lifecycle.load_record(state, report)
        if record.get("status") != "up" or not record.get("address"):
            raise NotUpError("the cluster is not up: run `dasklaunch up` first")
        if record["backend"] != "slurm":
            raise UsageError("scale-out submits Slurm jobs; this cluster runs on the local "
                             "backend")
        current = [j for j in record.get("scale_out", [])
                   if j["job_id"] in live_jobs([j["job_id"] for j in
                                                record.get("scale_out", [])])]
        if jobs < len(current):
            for extra in current[jobs:]:
                proc.run(["scancel", extra["job_id"]], check=False, timeout=20)
                report.info(f"cancelled scale-out job {extra['job_id']}")
            current = current[:jobs]
        alloc = record.get("allocation") or {}
        cores = cores or min(alloc.get("cpus_per_node") or [1])
        mem = parse_bytes(memory) if memory else (alloc.get("mem_per_node") or 2**30)
        for _ in range(jobs - len(current)):
            name = f"dl-scale-{record['job_id']}-{len(record.get('scale_out', [])) + 1}"
            script = worker_job_script(record, state, name=name, cores=cores, memory=mem,
                                       processes=processes, walltime=walltime,
                                       job_options=list(job_options or []))
            path = state.write_text(f"{name}.sbatch", script)
            out = proc.run(["sbatch", "--parsable", str(path)], timeout=60).stdout.strip()
            job_id = out.split(";")[0]
            entry = {"job_id": job_id, "name": name, "script": str(path), "cores": cores,
                     "memory": mem, "processes": processes}
            record.setdefault("scale_out", []).append(entry)
            current.append(entry)
            report.info(f"submitted scale-out job {job_id}: {processes} worker(s), {cores} "
                        f"cores, {format_bytes(mem)}")
        record["scale_out"] = [j for j in record.get("scale_out", [])
                               if j["job_id"] in {c["job_id"] for c in current}]
        state.write_record(record)
    states = live_jobs([j["job_id"] for j in current])
    return {"jobs": [{**j, "state": states.get(j["job_id"], "GONE")} for j in current]}


def cancel_all(record: dict, report: Reporter) -> list[str]:
    """Cancel every scale-out job of this cluster (used by `down`)."""
    ids = [j["job_id"] for j in record.get("scale_out", [])]
    live = live_jobs(ids)
    for job_id in live:
        proc.run(["scancel", job_id], check=False, timeout=20)
        report.info(f"cancelled scale-out job {job_id}")
    return list(live)

"""The lifecycle: up, status, restart-workers, down, env. Sees only the Launcher interface.

`up` removes a stale scheduler file first, then starts the scheduler and the worker step at
once (workers wait for the file, so start-up overlaps), then waits for real readiness: the
scheduler file parses, the scheduler answers over HTTP, and the workers are counted live.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import time
from collections.abc import Mapping
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path

from . import proc, render, schedfile, tls
from .allocation import Allocation
from .errors import (
    AlreadyUpError,
    DasklaunchError,
    InterfaceError,
    Interrupted,
    NotUpError,
    StartupError,
    StartupTimeout,
    StateDirError,
    UsageError,
)
from .launch import Launcher, Step, choose_backend, current_allocation, make_launcher
from .launch.slurm import SlurmLauncher
from .plan import (
    WorkerPlan,
    expected_workers,
    plan_workers,
    scheduler_command,
    start_method_env,
    worker_command,
)
from .report import Reporter
from .settings import UpOptions
from .state import JOB_CONFIG_DIR, StateDir, find_state_dir
from .tls import PROTOCOL_ARGS, TLSFiles

GRACE_SECONDS = 10.0
POLL_SECONDS = 0.05


# ---------------------------------------------------------------------------------- finding a job

def load_record(state: StateDir, report: Reporter | None = None) -> dict:
    if not state.exists():
        recovered = state.recovered_record()
        if recovered is not None and recovered.get("status") != "down":
            raise NotUpError(f"state dir {state.path} was deleted while its cluster may still "
                             f"run; `dasklaunch down` stops it from the copy of its record")
        raise NotUpError(f"no dasklaunch cluster here: {state.path} does not exist "
                         f"(run `dasklaunch up`, or set --state-dir/DASKLAUNCH_STATE_DIR)")
    record, warning = state.read_record_or_backup()
    if warning:
        (report or Reporter()).warn(warning)
    if record is None:
        raise NotUpError(f"no dasklaunch cluster recorded in {state.path}")
    return record


def launcher_for(record: dict) -> Launcher:
    return make_launcher(record["backend"], record["job_id"])


def steps_of(record: dict) -> tuple[Step | None, list[Step]]:
    sched = Step.from_dict(record["scheduler"]) if record.get("scheduler") else None
    return sched, [Step.from_dict(p) for p in record.get("pools", [])]


def _log_tail(path: str | Path, lines: int = 8) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@contextmanager
def interrupts_raise():
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so `up` rolls back on them as on Ctrl-C."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with suppress(ValueError):  # not the main thread: leave signals alone
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ------------------------------------------------------------------------------------------- up

def _step_name(role: str, generation: int = 0) -> str:
    suffix = secrets.token_hex(3)
    return f"dl-sched-{suffix}" if role == "scheduler" else f"dl-workers{generation}-{suffix}"


def job_config_dir(state: StateDir) -> Path:
    return state.path / JOB_CONFIG_DIR


def resolve_profile(opts: UpOptions, alloc: Allocation) -> tuple[UpOptions, dict, object]:
    """Apply a profile's sizing hints under the explicit options. Returns the resolved
    options, the plan keywords (memory fraction / limit) and the profile (or None)."""
    if not opts.profile:
        return replace(opts, per_node=bool(opts.per_node)), {}, None
    from .memory import load_profile, profile_hints, validate_profile

    profile = load_profile(opts.profile)
    validate_profile(profile, alloc.mem_per_node)
    hints = profile_hints(profile)
    per_node = opts.per_node if opts.per_node is not None else hints["layout"] == "per-node"
    sizing = {"memory_fraction": hints["memory_fraction"],
              "profile_limit": hints["memory_limit"]}
    return replace(opts, per_node=per_node), sizing, profile


def job_env(opts: UpOptions, state: StateDir,
            extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """Variables every Dask process of the job gets: the caller's, the options', the profile."""
    env = dict(extra_env or {})
    env.update(dict(opts.extra_env))
    if opts.profile:
        env["DASK_CONFIG"] = str(job_config_dir(state))
    return env


def worker_env(opts: UpOptions, state: StateDir, extra_env: dict[str, str] | None = None,
               inherited: Mapping[str, str] | None = None) -> dict[str, str]:
    """job_env plus --start-method's variables, for any worker: pools and scale-out jobs.
    `inherited` is what the workers get anyway (default: this process's environment)."""
    env = job_env(opts, state, extra_env)
    inherited = os.environ if inherited is None else inherited
    env.update(start_method_env(opts.start_method, {**inherited, **env}))
    return env


def build_steps(opts: UpOptions, plan: WorkerPlan, backend: str, state: StateDir,
                extra_env: dict[str, str] | None = None) -> tuple[Step, Step]:
    local = backend == "local"
    sfile = str(state.scheduler_file)
    sched_env = job_env(opts, state, extra_env)
    pool_env = worker_env(opts, state, extra_env)
    tls_args: list[str] = []
    if opts.tls:
        files = TLSFiles.in_state_dir(state)
        tls_args = PROTOCOL_ARGS
        sched_env.update(files.server_env("scheduler"))
        pool_env.update(files.server_env("worker"))
    sched_name = _step_name("scheduler")
    sched = Step(role="scheduler", name=sched_name,
                 placement="here" if (local or opts.scheduler_here) else "first-node",
                 ntasks=1, nnodes=1,
                 command=scheduler_command(opts, sfile, local=local, tls_args=tls_args),
                 log=str(state.logs / f"{sched_name}.log"), env=sched_env)
    pool_name = _step_name("workers", 1)
    pool = Step(role="workers", name=pool_name, placement=plan.placement, ntasks=plan.ntasks,
                nnodes=plan.nnodes,
                command=worker_command(opts, plan, sfile, local=local, tls_args=tls_args),
                log=str(state.logs / f"{pool_name}.log"), env=pool_env)
    return sched, pool


def check_interface_here(interface: str) -> None:
    import psutil

    names = sorted(psutil.net_if_addrs())
    if interface not in names:
        raise InterfaceError(f"network interface {interface!r} does not exist on "
                             f"{socket.gethostname()}; interfaces here: {', '.join(names)}")


def _interface_error(opts: UpOptions, *logs: str) -> InterfaceError | None:
    for log in logs:
        for line in _log_tail(log, 60).splitlines():
            if "is not a valid network interface" in line:
                detail = line.split("ValueError:", 1)[-1].strip()
                return InterfaceError(f"--interface {opts.interface}: {detail}")
    return None


def _clear_stale(state: StateDir, job_id: str, report: Reporter) -> None:
    """Refuse a live cluster; otherwise remove what an earlier run left behind, saying so."""
    try:
        record = state.read_record()
    except StateDirError as err:
        record = None
        damaged = state.path / f"state.json.damaged-{int(time.time())}"
        os.replace(state.record_file, damaged)
        report.warn(f"{err}; moved it to {damaged.name}")
    info = schedfile.read(state.scheduler_file)
    owner = record.get("job_id") if record else None
    if info is not None and schedfile.answers(info):
        if owner in (None, job_id):
            raise AlreadyUpError(f"already up: job {job_id} has a live scheduler at "
                                 f"{info.address}; use status/restart-workers/down")
        raise AlreadyUpError(f"state dir {state.path} is in use by job {owner} (live scheduler "
                             f"at {info.address}); use another --state-dir")
    if state.scheduler_file.exists():
        why = "its scheduler is gone" if info else "it is unreadable"
        if owner and owner != job_id:
            why += f", it belongs to job {owner}"
        state.remove(state.scheduler_file.name)
        report.info(f"removed stale scheduler file {state.scheduler_file} ({why})")
    if record:
        launcher = launcher_for(record)
        sched, pools = steps_of(record)
        for step in pools + ([sched] if sched else []):
            if launcher.running(step):
                launcher.stop(step, hard=True)
                report.info(f"stopped leftover {step.role} ({step.name}) of an earlier run")


def up(opts: UpOptions, *, state_dir: Path | str | None = None, dry_run: bool = False,
       report: Reporter | None = None, extra_env: dict[str, str] | None = None,
       explicit: set[str] | frozenset[str] | None = None) -> dict:
    """Bring the cluster up and return its facts (address, dashboard, workers, env file).

    `explicit` names the options the user gave; the others may come from the jobqueue.slurm
    section of the user's Dask config (None: do not consult it)."""
    report = report or Reporter()
    sources: dict[str, str] = {}
    if explicit is not None:
        from .jobqueue import apply_jobqueue_defaults

        opts, sources = apply_jobqueue_defaults(opts, explicit)
    if opts.timeout <= 0:
        raise UsageError(f"--timeout must be > 0 seconds, not {opts.timeout:g}")
    if opts.death_timeout <= 0:
        raise UsageError(f"--death-timeout must be > 0 seconds, not {opts.death_timeout:g}")
    backend = choose_backend(opts.backend)
    alloc = current_allocation(backend, opts.local_tasks)
    state = find_state_dir(state_dir, alloc.job_id)
    opts, sizing, profile = resolve_profile(opts, alloc)
    plan = plan_workers(alloc, opts, **sizing)
    sched, pool = build_steps(opts, plan, backend, state, extra_env)
    total = plan.expected_workers
    wait_for = expected_workers(plan, opts)
    launcher = make_launcher(backend, alloc.job_id)
    if isinstance(launcher, SlurmLauncher):
        launcher.first_node = alloc.nodes[0]
    if dry_run:
        return {**_dry_run(launcher, state, alloc, sched, pool, plan, profile),
                "sources": sources}
    if opts.interface and sched.placement == "here":
        check_interface_here(opts.interface)
    if not state.exists():
        _refuse_orphaned_cluster(state)
    state.create()
    with state.lock("up"), interrupts_raise():
        _clear_stale(state, alloc.job_id, report)
        client_env = {}
        if profile is not None:
            from .memory import JOB_CONFIG_FILE, job_config_yaml

            state.make_subdir(JOB_CONFIG_DIR)
            state.write_text(f"{JOB_CONFIG_DIR}/{JOB_CONFIG_FILE}", job_config_yaml(profile))
            client_env["DASK_CONFIG"] = str(job_config_dir(state))
        if opts.tls:
            client_env.update(tls.create(state, alloc.job_id).client_env())
        else:
            report.warn("--no-tls: anyone who can reach the scheduler can run code as you")
        record = {"job_id": alloc.job_id, "backend": backend, "status": "starting",
                  "options": opts.to_dict(), "allocation": alloc.to_dict(),
                  "expected_workers": total, "restarts": 0, "generation": 1,
                  "started": time.time(), "scheduler": None, "pools": [],
                  "submit_host": alloc.submit_host, "client_env": client_env,
                  "memory": {"per_worker": plan.memory_limit, "how": plan.memory_note},
                  "profile": str(profile.source) if profile is not None else None}
        state.write_record(record)
        try:
            launcher.start(sched)
            record["scheduler"] = sched.to_dict()
            state.write_record(record)
            launcher.start(pool)
            record["pools"] = [pool.to_dict()]
            state.write_record(record)
            report.info(f"scheduler starting: {launcher.describe(sched)}, log {sched.log}")
            report.info(f"workers starting: {total} expected, log {pool.log}")
            info = _wait_ready(launcher, state, sched, [pool], wait_for, opts, report,
                               deadline=time.monotonic() + opts.timeout, known=set())
            record.update(scheduler=sched.to_dict(), pools=[pool.to_dict()], status="up",
                          address=info.address, dashboard_port=info.dashboard_port)
            try:
                _write_env(state, record, info)
            except StateDirError as err:
                # The cluster is up and recorded: losing it over the env file would be worse.
                report.warn(f"{err}; the cluster is up, but `source` will not work until "
                            f"the env file can be written (dasklaunch.connect() still does)")
            state.write_record(record)
        except BaseException as err:
            _rollback(launcher, state, record, sched, [pool], report)
            if isinstance(err, KeyboardInterrupt):
                raise Interrupted("interrupted: stopped the scheduler and workers that up had "
                                  "started") from None
            raise
    return facts(state, record, info)


def _refuse_orphaned_cluster(state: StateDir) -> None:
    """A cluster whose state dir was deleted under it must be stopped before a new one starts."""
    recovered = state.recovered_record()
    if recovered is None or recovered.get("status") == "down":
        return
    launcher = launcher_for(recovered)
    sched, pools = steps_of(recovered)
    if any(launcher.running(step) for step in (sched, *pools) if step is not None):
        raise AlreadyUpError(f"the cluster of {state.path} still runs although that dir was "
                             f"deleted; run `dasklaunch down` first")
    state.forget_recovery_copy()


def _dry_run(launcher: Launcher, state: StateDir, alloc: Allocation, sched: Step, pool: Step,
             plan: WorkerPlan, profile) -> dict:
    commands = [launcher.argv(sched), launcher.argv(pool)]
    return {"dry_run": True, "backend": launcher.backend, "job_id": alloc.job_id,
            "state_dir": str(state.path), "scheduler_file": str(state.scheduler_file),
            "expected_workers": plan.expected_workers, "allocation": alloc.to_dict(),
            "layout": plan.placement, "threads_per_worker": plan.nthreads,
            "memory_per_worker": plan.memory_limit, "memory": plan.memory_note,
            "profile": str(profile.source) if profile is not None else None,
            "env": {"scheduler": sched.env, "workers": pool.env},
            "commands": [proc.display(argv) for argv in commands]}


def _wait_ready(launcher: Launcher, state: StateDir, sched: Step, pools: list[Step],
                wait_for: int, opts: UpOptions, report: Reporter, deadline: float,
                known: set[str]) -> schedfile.SchedulerInfo:
    """Wait until the scheduler answers and `wait_for` new workers are connected.

    `known` holds worker addresses that were connected before (restart-workers): only new
    ones count. Raises StartupError when a step exits early, StartupTimeout at the deadline.
    """
    info: schedfile.SchedulerInfo | None = None
    next_liveness = 0.0
    connected = 0
    while True:
        now = time.monotonic()
        if info is None:
            candidate = schedfile.read(state.scheduler_file)
            if candidate is not None and schedfile.answers(candidate):
                info = candidate
                report.info(f"scheduler ready at {info.address}")
        if info is not None:
            ident = schedfile.identity(info)
            if ident is not None:
                workers = set(ident.get("workers", {})) - known
                connected = len(workers)
                report.progress(connected, wait_for)
                if connected >= wait_for:
                    report.done()
                    return info
        if now >= next_liveness:
            next_liveness = now + 0.5
            _check_alive(launcher, sched, pools, opts, connected, wait_for)
        if now >= deadline:
            report.done()
            if info is None:
                raise StartupTimeout(f"scheduler not ready after {opts.timeout:g}s; last lines of "
                                     f"{sched.log}:\n{_log_tail(sched.log)}")
            raise StartupTimeout(f"only {connected}/{wait_for} workers connected after "
                                 f"{opts.timeout:g}s; last lines of {pools[0].log}:\n"
                                 f"{_log_tail(pools[0].log)}")
        time.sleep(POLL_SECONDS)


def _check_alive(launcher: Launcher, sched: Step, pools: list[Step], opts: UpOptions,
                 connected: int, wait_for: int) -> None:
    if not launcher.running(sched):
        raise (_interface_error(opts, sched.log) or
               StartupError(f"scheduler exited before it was ready; last lines of {sched.log}:\n"
                            f"{_log_tail(sched.log)}"))
    for pool in pools:
        if not launcher.running(pool) and connected < wait_for:
            raise (_interface_error(opts, pool.log) or
                   StartupError(f"worker pool exited with {connected}/{wait_for} workers "
                                f"connected; last lines of {pool.log}:\n{_log_tail(pool.log)}"))


def _rollback(launcher: Launcher, state: StateDir, record: dict, sched: Step,
              pools: list[Step], report: Reporter) -> None:
    for step in pools + [sched]:
        if step.started:
            launcher.stop(step, hard=True)
    state.remove(state.scheduler_file.name)
    record["status"] = "failed"
    with suppress(DasklaunchError):
        state.write_record(record)
    report.info("rolled back: nothing that up started is left running")


def _write_env(state: StateDir, record: dict, info: schedfile.SchedulerInfo) -> None:
    text = render.env_file(job_id=record["job_id"], backend=record["backend"],
                           state_dir=str(state.path), env_file_path=str(state.env_file),
                           scheduler_file=str(state.scheduler_file),
                           scheduler_address=info.address, extra=record.get("client_env"))
    state.write_text(state.env_file.name, text)


def facts(state: StateDir, record: dict, info: schedfile.SchedulerInfo) -> dict:
    login = record.get("submit_host") or socket.gethostname()
    port = info.dashboard_port
    return {
        "job_id": record["job_id"], "backend": record["backend"], "state_dir": str(state.path),
        "scheduler_file": str(state.scheduler_file), "env_file": str(state.env_file),
        "scheduler": {"address": info.address, "dashboard": info.dashboard_url},
        "tunnel": (f"ssh -N -L {port}:{info.host}:{port} {login}" if port else None),
        "workers": {"expected": record["expected_workers"]},
    }


# --------------------------------------------------------------------------------------- status

def status(state_dir: Path | str | None = None) -> dict:
    state = find_state_dir(state_dir)
    record = load_record(state)
    launcher = launcher_for(record)
    sched, pools = steps_of(record)
    info = schedfile.read(state.scheduler_file)
    ident = schedfile.identity(info) if info else None
    workers = (ident or {}).get("workers", {})
    hosts: dict[str, int] = {}
    memory = set()
    threads = 0
    highest_use = 0.0
    paused = 0
    for worker in workers.values():
        hosts[worker.get("host", "?")] = hosts.get(worker.get("host", "?"), 0) + 1
        memory.add(worker.get("memory_limit"))
        threads += worker.get("nthreads", 0)
        if worker.get("memory_limit") and worker.get("memory") is not None:
            highest_use = max(highest_use, worker["memory"] / worker["memory_limit"])
        paused += worker.get("status") == "paused"
    pool_rows = []
    for pool in pools:
        running = launcher.running(pool)
        pool_rows.append({"name": pool.name, "state": "running" if running else "exited",
                          "where": launcher.describe(pool), "ntasks": pool.ntasks,
                          "log": pool.log})
    return {
        "state_dir": str(state.path), "job_id": record["job_id"], "backend": record["backend"],
        "status": record.get("status"),
        "scheduler": {
            "address": info.address if info else record.get("address"),
            "alive": ident is not None,
            "dashboard": info.dashboard_url if info else None,
            "where": launcher.describe(sched) if sched else None,
            "log": sched.log if sched else None,
        },
        "workers": {"expected": record.get("expected_workers", 0), "connected": len(workers),
                    "threads": threads,
                    "memory_per_worker": sorted(m for m in memory if m is not None),
                    "memory_sizing": (record.get("memory") or {}).get("how"),
                    "highest_memory_use": round(highest_use, 3), "paused": paused,
                    "memory_restarts": memory_restarts(pools)},
        "profile": record.get("profile"),
        "hosts": dict(sorted(hosts.items())),
        "pools": pool_rows,
        "restarts": record.get("restarts", 0),
        "last_restart": record.get("last_restart"),
        "scale_out": _scale_out_summary(record),
        "supervisor": _supervisor_summary(state),
        "env_file": str(state.env_file) if state.env_file.exists() else None,
    }


def _scale_out_summary(record: dict) -> list[dict]:
    jobs = record.get("scale_out") or []
    if not jobs:
        return []
    from .jobqueue import live_jobs

    states = live_jobs([j["job_id"] for j in jobs])
    return [{"job_id": j["job_id"], "name": j["name"], "state": states.get(j["job_id"], "GONE"),
             "processes": j.get("processes", 1)} for j in jobs]


def _supervisor_summary(state: StateDir) -> dict | None:
    from .supervise import read_supervisor

    data = read_supervisor(state)
    if data is None:
        return None
    return {"attached": data["attached"], "restarts": data.get("restarts", 0),
            "last_reason": data.get("last_reason"),
            "pid": (data.get("process") or {}).get("pid")}


def memory_restarts(pools: list[Step]) -> int:
    """Workers the nannies restarted for exceeding `terminate`, as their logs say."""
    count = 0
    for pool in pools:
        with suppress(OSError), open(pool.log, errors="replace") as log:
            count += sum("memory budget. Restarting" in line for line in log)
    return count


# ------------------------------------------------------------------------------ restart-workers

def restart_workers(state_dir: Path | str | None = None, *, hard: bool = False,
                    timeout: float | None = None, report: Reporter | None = None) -> dict:
    """Stop the worker pools (gracefully unless `hard`), relaunch them, wait for the workers."""
    report = report or Reporter()
    state = find_state_dir(state_dir)
    load_record(state, report)
    with state.lock("restart-workers"), interrupts_raise():
        return relaunch_pools(state, load_record(state, report), hard=hard, timeout=timeout,
                              report=report)


def relaunch_pools(state: StateDir, record: dict, *, hard: bool = False,
                   timeout: float | None = None, report: Reporter,
                   reason: str = "restart-workers") -> dict:
    """Stop every worker pool and start it again; the caller holds the job lock."""
    opts = UpOptions.from_dict(record["options"])
    if timeout is not None:
        opts = replace(opts, timeout=timeout)
    launcher = launcher_for(record)
    sched, pools = steps_of(record)
    info = schedfile.read(state.scheduler_file)
    if sched is None or info is None or not schedfile.answers(info):
        raise NotUpError("the scheduler is gone, so there is nothing to restart workers "
                         "against; run `dasklaunch down` then `dasklaunch up`")
    ident = schedfile.identity(info) or {}
    for pool in pools:
        outcome = launcher.stop(pool, grace=GRACE_SECONDS, hard=hard)
        report.info(f"worker pool {pool.name}: {outcome}")
    # Workers killed hard may still be listed until the scheduler notices; count only new ones.
    known = set(ident.get("workers", {}))
    generation = record.get("generation", 1) + 1
    nodes = launcher.current_nodes() if isinstance(launcher, SlurmLauncher) else None
    new_pools = []
    for pool in pools:
        name = _step_name("workers", generation)
        fresh = replace(pool, name=name, log=str(state.logs / f"{name}.log"), argv=[],
                        started=0.0, leader=None, pgid=None, task_pids=[], step_id=None)
        if nodes is not None and 0 < len(nodes) < pool.nnodes:
            per_node = max(1, pool.ntasks // pool.nnodes)
            fresh = replace(fresh, nnodes=len(nodes), ntasks=per_node * len(nodes))
            report.info(f"the job has {len(nodes)} of its {pool.nnodes} nodes left "
                        f"({','.join(nodes)}): relaunching {fresh.ntasks} tasks on them")
        new_pools.append(fresh)
    record.update(generation=generation, restarts=record.get("restarts", 0) + 1,
                  last_restart={"time": time.time(), "reason": reason})
    wait_for = sum(_pool_expected(record, p) for p in new_pools)
    record["expected_workers"] = wait_for
    try:
        for pool in new_pools:
            launcher.start(pool)
        record["pools"] = [p.to_dict() for p in new_pools]
        state.write_record(record)
        _wait_ready(launcher, state, sched, new_pools, wait_for, opts, report,
                    deadline=time.monotonic() + opts.timeout, known=known)
    except KeyboardInterrupt:
        raise Interrupted("interrupted: the new workers are still starting; check "
                          "`dasklaunch status`") from None
    record["status"] = "up"
    state.write_record(record)
    return {"restarted": len(new_pools), "workers": wait_for, "address": info.address,
            "generation": generation}


def _pool_expected(record: dict, pool: Step) -> int:
    nworkers = record["options"].get("nworkers", 1)
    return pool.ntasks * nworkers


# ----------------------------------------------------------------------------------------- down

def down(state_dir: Path | str | None = None, *, workers_only: bool = False,
         report: Reporter | None = None) -> dict:
    """Stop workers, then the scheduler: graceful first, hard after a grace period. Idempotent."""
    report = report or Reporter()
    state = find_state_dir(state_dir)
    recovered = None if state.exists() else state.recovered_record()
    if recovered is not None:
        report.warn(f"state dir {state.path} is gone; stopping its cluster from the copy "
                    f"of its record in {state.recovery_copy}")
        stopped = _stop_everything(recovered, workers_only, report)
        if not workers_only:
            state.forget_recovery_copy()
        return {"stopped": stopped, "state_dir": str(state.path)}
    if not state.record_file.exists():
        report.info(f"nothing to stop: no dasklaunch cluster in {state.path}")
        return {"stopped": [], "state_dir": str(state.path)}
    with state.lock("down"):
        record = load_record(state, report)
        stopped = _stop_everything(record, workers_only, report)
        if not workers_only:
            for name in (state.scheduler_file.name, state.env_file.name):
                state.remove(name)
            record["status"] = "down"
        else:
            record["status"] = "workers-down"
        state.write_record(record)
        if not workers_only:
            state.forget_recovery_copy()
    return {"stopped": stopped, "state_dir": str(state.path)}


def _stop_everything(record: dict, workers_only: bool, report: Reporter) -> list[dict]:
    """Scale-out jobs, then the pools, then (unless workers_only) the scheduler."""
    launcher = launcher_for(record)
    sched, pools = steps_of(record)
    stopped = []
    if record.get("scale_out"):
        from .jobqueue import cancel_all

        cancel_all(record, report)
        record["scale_out"] = []
    for step in pools + ([] if workers_only or sched is None else [sched]):
        outcome = launcher.stop(step, grace=GRACE_SECONDS)
        report.info(f"{step.role} {step.name}: {outcome}")
        stopped.append({"name": step.name, "role": step.role, "outcome": outcome})
    return stopped


# ------------------------------------------------------------------------------------------ env


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True)

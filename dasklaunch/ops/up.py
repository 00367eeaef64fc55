"""`up`: remove a stale scheduler file first, then start the scheduler and the worker step at
once (workers wait for the file, so start-up overlaps), then wait for real readiness. Anything
that fails, or a Ctrl-C/SIGTERM, rolls back what this `up` started."""

from __future__ import annotations

import os
import socket
import time
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

from ..domain import render
from ..domain.allocation import Allocation
from ..domain.container import ContainerJob
from ..domain.dask_argv import (
    WORKER_MODULE,
    WORKER_MODULE_VARIABLE,
)
from ..domain.pools import Layout
from ..domain.settings import UpOptions
from ..domain.step_env import SCHEDULER_JOB_VARIABLE
from ..domain.step_plan import StepPlan
from ..domain.steps import StepContext, plan_steps
from ..errors import (
    DasklaunchError,
    InterfaceError,
    Interrupted,
    StateDirError,
)
from ..launch.base import Launcher
from ..launch.factory import choose_backend, current_allocation, make_launcher
from ..runtime import proc, schedfile, tls
from ..runtime.record import ClusterRecord, StepRun
from ..runtime.report import Reporter
from ..runtime.state import JOB_CONFIG_DIR, StateDir, find_state_dir
from ..runtime.tls import TLSFiles
from .common import interrupts_raise, step_name
from .container_setup import container_job
from .dashboard_hints import client_dashboard_env, connect_call, dashboard_hints, dashboard_problem
from .earlier_run import clear_stale, dry_run_refusal, refuse_orphaned_cluster
from .local_directory import node_local_directory
from .readiness import Probe, wait_ready
from .resolve import check_options, resolve
from .scaling import apply_scale_defaults


def job_config_dir(state: StateDir) -> Path:
    return state.path / JOB_CONFIG_DIR


def step_context(state: StateDir, opts: UpOptions, layout: Layout, *, local: bool,
                 extra_env: dict[str, str], container: ContainerJob | None = None
                 ) -> StepContext:
    """What plan_steps needs from this job: its files, TLS settings, fresh step names and
    its containers."""
    files = TLSFiles.in_state_dir(state)
    return StepContext(
        scheduler_file=str(state.scheduler_file), logs=str(state.logs),
        config_dir=str(job_config_dir(state)), local=local,
        tls_env={role: files.server_env(role) for role in ("scheduler", "worker")}
        if opts.tls else {},
        scheduler_name=step_name("scheduler"),
        pool_names=tuple(step_name("workers", 1) for _ in layout.pools),
        worker_module=os.environ.get(WORKER_MODULE_VARIABLE) or WORKER_MODULE,
        extra_env=extra_env, container=container)


def check_interface_here(interface: str) -> None:
    import psutil

    names = sorted(psutil.net_if_addrs())
    if interface not in names:
        raise InterfaceError(f"network interface {interface!r} does not exist on "
                             f"{socket.gethostname()}; interfaces here: {', '.join(names)}")


def up(opts: UpOptions, *, state_dir: Path | str | None = None, dry_run: bool = False,
       report: Reporter | None = None, extra_env: dict[str, str] | None = None,
       explicit: set[str] | frozenset[str] | None = None, launcher: Launcher | None = None,
       probe: Probe | None = None) -> dict:
    """Bring the cluster up and return its facts (address, dashboard, workers, env file).

    `explicit` names the options the user gave; the others may come from the jobqueue.slurm
    section of the user's Dask config (None: do not consult it). `launcher` and `probe`
    replace the backend's (tests inject failures with them)."""
    report = report or Reporter()
    check_options(opts)   # before the allocation is looked for: a bad value is the error
    backend = choose_backend(opts.backend)
    alloc = current_allocation(backend, opts.local_tasks)
    state = find_state_dir(state_dir, alloc.job_id)
    resolution = resolve(opts, alloc, explicit)
    sources, profile, layout = resolution.sources, resolution.profile, resolution.layout
    opts = node_local_directory(resolution.opts, resolution.opts.pools, report)
    launcher = launcher or make_launcher(backend, alloc.job_id, alloc.nodes,
                                         het=bool(alloc.het_groups))
    backend_version = launcher.check_backend()
    opts, scale_env = apply_scale_defaults(opts, layout.expected_workers, profile, report)
    # the runtime found and each image checked, before anything starts (not with --dry-run)
    container = container_job(opts, layout, state_dir=state.path, job_id=alloc.job_id,
                              backend=launcher.backend, check=not dry_run, report=report)
    if container is not None:
        opts = replace(opts, container_runtime=container.runtime)
    sched, pools = plan_steps(opts, layout, alloc, step_context(
        state, opts, layout, local=launcher.backend != "slurm",
        extra_env={**scale_env, **(extra_env or {})}, container=container))
    total = layout.expected_workers
    wait_for = resolution.wait_for
    notes = []
    if opts.interface and sched.placement == "here":
        check_interface_here(opts.interface)
    elif opts.interface:
        notes.append(f"--interface {opts.interface} is checked on the compute nodes when the "
                     f"steps start (it may not exist here, on {socket.gethostname()})")
    if container is not None and dry_run:
        notes.append(f"containers: {container.runtime}; the images are not checked (--dry-run "
                     f"runs nothing), so their python3 stands for the Python they hold")
    if dry_run:
        refused = dry_run_refusal(state, alloc.job_id)
        if not refused:   # else the refusal is the one line the user gets
            _warn_dashboard(opts, report)
        return {**_dry_run(launcher, state, alloc, sched, pools, layout, profile),
                "sources": sources, "backend_version": backend_version, "notes": notes,
                "refused": refused}
    if not state.exists():
        refuse_orphaned_cluster(state)
    state.create()
    with state.lock("up"), interrupts_raise():
        clear_stale(state, alloc.job_id, report)
        client_env = client_dashboard_env(launcher.backend)
        if profile is not None:
            from ..profiles.dask_config import JOB_CONFIG_FILE, job_config_yaml

            state.make_subdir(JOB_CONFIG_DIR)
            state.write_text(f"{JOB_CONFIG_DIR}/{JOB_CONFIG_FILE}", job_config_yaml(profile))
            client_env["DASK_CONFIG"] = str(job_config_dir(state))
        if opts.tls:
            client_env.update(tls.create(state, alloc.job_id).client_env())
        else:
            report.warn("--no-tls: anyone who can reach the scheduler can run code as you")
        record = ClusterRecord(
            job_id=alloc.job_id, backend=launcher.backend, options=opts,
            allocation=alloc.to_dict(), expected_workers=total, started=time.time(),
            submit_host=alloc.submit_host, client_env=client_env,
            memory={"per_worker": layout.pools[0].plan.memory_limit,
                    "how": "; ".join(f"{p.name}: {p.plan.memory_note}" if len(layout.pools) > 1
                                     else p.plan.memory_note for p in layout.pools)},
            profile=str(profile.source) if profile is not None else None,
            sources={k: v for k, v in sources.items() if v != "default"},
            scheduler_job=os.environ.get(SCHEDULER_JOB_VARIABLE) == "1",
            container=container.to_dict() if container is not None else None)
        state.write_record(record)
        try:
            record.scheduler = launcher.start(sched)
            state.write_record(record)
            for pool in pools:
                record.pools.append(launcher.start(pool))
                state.write_record(record)
            report.info(f"scheduler starting: {launcher.describe(record.scheduler)}, log "
                        f"{sched.log}")
            for pool in pools:
                report.info(f"workers starting: {pool.workers} expected"
                            + (f" in pool {pool.pool}" if len(pools) > 1 else "")
                            + f", log {pool.log}")
            info = wait_ready(launcher, state, record.scheduler, record.pools, wait_for, opts,
                              report, deadline=time.monotonic() + opts.timeout, probe=probe)
            record.status = "up"
            record.address, record.dashboard_port = info.address, info.dashboard_port
            try:
                _write_env(state, record, info)
            except StateDirError as err:
                # The cluster is up and recorded: losing it over the env file would be worse.
                report.warn(f"{err}; the cluster is up, but `source` will not work until "
                            f"the env file can be written (dasklaunch.connect() still does)")
            state.write_record(record)
        except BaseException as err:
            _rollback(launcher, state, record, record.steps, report)
            if isinstance(err, KeyboardInterrupt):
                raise Interrupted("interrupted: stopped the scheduler and workers that up had "
                                  "started") from None
            raise
    _warn_dashboard(opts, report)
    return facts(state, record, info)


def _warn_dashboard(opts: UpOptions, report: Reporter) -> None:
    # after everything that can fail: an error stays one line
    if problem := dashboard_problem(opts):
        report.warn(problem)


def _dry_run(launcher: Launcher, state: StateDir, alloc: Allocation, sched: StepPlan,
             pools: list[StepPlan], layout: Layout, profile) -> dict:
    first = layout.pools[0].plan
    return {"dry_run": True, "backend": launcher.backend, "job_id": alloc.job_id,
            "state_dir": str(state.path), "scheduler_file": str(state.scheduler_file),
            "expected_workers": layout.expected_workers, "allocation": alloc.to_dict(),
            "layout": first.placement, "threads_per_worker": first.nthreads,
            "memory_per_worker": first.memory_limit, "memory": first.memory_note,
            "pools": [{"pool": p.name, "expected": p.expected_workers,
                       "nodes": [alloc.nodes[i] for i in p.node_indices],
                       "layout": p.plan.placement, "threads_per_worker": p.plan.nthreads,
                       "memory_per_worker": p.plan.memory_limit, "memory": p.plan.memory_note,
                       "gpus_per_worker": p.gpus_per_worker,
                       "resources": dict(p.resources)} for p in layout.pools],
            "pools_summary": layout.describe() if len(layout.pools) > 1 else "",
            "profile": str(profile.source) if profile is not None else None,
            "env": {"scheduler": dict(sched.env), "workers": dict(pools[0].env)},
            "commands": [proc.display(launcher.argv(step)) for step in (sched, *pools)]}


def _rollback(launcher: Launcher, state: StateDir, record: ClusterRecord, steps: list[StepRun],
              report: Reporter) -> None:
    for step in steps:
        if step.started:
            launcher.stop(step, hard=True)
    state.remove(state.scheduler_file.name)
    record.status = "failed"
    with suppress(DasklaunchError):
        state.write_record(record)
    report.info("rolled back: nothing that up started is left running")


def _write_env(state: StateDir, record: ClusterRecord, info: schedfile.SchedulerInfo) -> None:
    text = render.env_file(job_id=record.job_id, backend=record.backend,
                           state_dir=str(state.path), env_file_path=str(state.env_file),
                           scheduler_file=str(state.scheduler_file),
                           scheduler_address=info.address, extra=record.client_env)
    state.write_text(state.env_file.name, text)


def facts(state: StateDir, record: ClusterRecord, info: schedfile.SchedulerInfo) -> dict:
    seen = dashboard_hints(record, info)
    return {
        "job_id": record.job_id, "backend": record.backend, "state_dir": str(state.path),
        "scheduler_file": str(state.scheduler_file), "env_file": str(state.env_file),
        "scheduler": {"address": info.address, "dashboard": info.dashboard_url,
                      "dashboard_proxy": seen["proxy"]},
        "tunnel": seen["tunnel"],
        "workers": {"expected": record.expected_workers},
        "connect": connect_call(state, record),
    }

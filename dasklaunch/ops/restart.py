"""`restart-workers`: stop the worker pools (gracefully unless --hard) and start them again; the
scheduler and its state stay, so connected clients keep their futures' keys."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

from ..errors import Interrupted, NotUpError
from ..launch.factory import launcher_for
from ..runtime import schedfile
from ..runtime.record import ClusterRecord, Step
from ..runtime.report import Reporter
from ..runtime.state import StateDir, find_state_dir
from .common import GRACE_SECONDS, interrupts_raise, load_record, step_name
from .readiness import wait_ready


def restart_workers(state_dir: Path | str | None = None, *, hard: bool = False,
                    timeout: float | None = None, report: Reporter | None = None) -> dict:
    """Stop the worker pools (gracefully unless `hard`), relaunch them, wait for the workers."""
    report = report or Reporter()
    state = find_state_dir(state_dir)
    load_record(state, report)
    with state.lock("restart-workers"), interrupts_raise():
        return relaunch_pools(state, load_record(state, report), hard=hard, timeout=timeout,
                              report=report)


def relaunch_pools(state: StateDir, record: ClusterRecord, *, hard: bool = False,
                   timeout: float | None = None, report: Reporter,
                   reason: str = "restart-workers") -> dict:
    """Stop every worker pool and start it again; the caller holds the job lock."""
    opts = record.options
    if timeout is not None:
        opts = replace(opts, timeout=timeout)
    launcher = launcher_for(record)
    sched = record.scheduler
    info = schedfile.read(state.scheduler_file)
    if record.status == "down":
        when = (time.strftime(" at %Y-%m-%d %H:%M:%S", time.localtime(record.stopped_at))
                if record.stopped_at else "")
        raise NotUpError(f"the cluster was stopped by `dasklaunch down`{when}; start a new one "
                         f"with `dasklaunch up`")
    if sched is None or info is None or not schedfile.answers(info):
        raise NotUpError("the scheduler is gone, so there is nothing to restart workers "
                         "against; run `dasklaunch down` then `dasklaunch up`")
    ident = schedfile.identity(info) or {}
    for pool in record.pools:
        outcome = launcher.stop(pool, grace=GRACE_SECONDS, hard=hard)
        report.info(f"worker pool {pool.name}: {outcome}")
    # Workers killed hard may still be listed until the scheduler notices; count only new ones.
    known = set(ident.get("workers", {}))
    generation = record.generation + 1
    nodes = launcher.current_nodes()
    new_pools = []
    for pool in record.pools:
        name = step_name("workers", generation)
        fresh = replace(pool, name=name, log=str(state.logs / f"{name}.log"), argv=[],
                        started=0.0, leader=None, pgid=None, task_pids=[], step_id=None)
        if nodes is not None and 0 < len(nodes) < pool.nnodes:
            per_node = max(1, pool.ntasks // pool.nnodes)
            fresh = replace(fresh, nnodes=len(nodes), ntasks=per_node * len(nodes))
            report.info(f"the job has {len(nodes)} of its {pool.nnodes} nodes left "
                        f"({','.join(nodes)}): relaunching {fresh.ntasks} tasks on them")
        new_pools.append(fresh)
    record.generation = generation
    record.restarts += 1
    record.last_restart = {"time": time.time(), "reason": reason}
    wait_for = sum(_pool_expected(record, p) for p in new_pools)
    record.expected_workers = wait_for
    try:
        for pool in new_pools:
            launcher.start(pool)
        record.pools = new_pools
        state.write_record(record)
        wait_ready(launcher, state, sched, new_pools, wait_for, opts, report,
                   deadline=time.monotonic() + opts.timeout, known=known)
    except KeyboardInterrupt:
        raise Interrupted("interrupted: the new workers are still starting; check "
                          "`dasklaunch status`") from None
    record.status = "up"
    state.write_record(record)
    return {"restarted": len(new_pools), "workers": wait_for, "address": info.address,
            "generation": generation}


def _pool_expected(record: ClusterRecord, pool: Step) -> int:
    return pool.ntasks * record.options.nworkers

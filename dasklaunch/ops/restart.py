"""`restart-workers`: stop the worker pools (gracefully unless --hard) and start them again; the
scheduler and its state stay, so connected clients keep their futures' keys."""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path

from ..errors import Interrupted, NotUpError, UsageError
from ..launch.factory import launcher_for
from ..runtime import schedfile
from ..runtime.record import ClusterRecord, StepRun
from ..runtime.report import Reporter
from ..runtime.state import StateDir, find_state_dir
from .common import interrupts_raise, load_record, nothing_stays, step_name, stop_pool
from .readiness import wait_ready


def restart_workers(state_dir: Path | str | None = None, *, hard: bool = False,
                    timeout: float | None = None, pool: str | None = None,
                    report: Reporter | None = None) -> dict:
    """Stop the worker pools (gracefully unless `hard`), relaunch them, wait for the workers.
    With `pool`, only that pool; the others and their workers are left alone."""
    report = report or Reporter()
    state = find_state_dir(state_dir)
    load_record(state, report)
    with state.lock("restart-workers"), interrupts_raise():
        return relaunch_pools(state, load_record(state, report), hard=hard, timeout=timeout,
                              report=report, only=pool)


def select_pools(record: ClusterRecord, only: str | None) -> list[StepRun]:
    """The pools `only` names (all when None); UsageError for a pool the cluster lacks."""
    if only is None:
        return list(record.pools)
    chosen = [p for p in record.pools if p.pool == only]
    if not chosen:
        known = ", ".join(sorted({p.pool for p in record.pools})) or "none"
        raise UsageError(f"no pool {only!r} in this cluster (pools: {known})")
    return chosen


def relaunch_pools(state: StateDir, record: ClusterRecord, *, hard: bool = False,
                   timeout: float | None = None, report: Reporter,
                   reason: str = "restart-workers", only: str | None = None) -> dict:
    """Stop the worker pools (or pool `only`) and start them again; the caller holds the job
    lock."""
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
    chosen = select_pools(record, only)
    # Workers killed hard may still be listed until the scheduler notices: count only the
    # workers that join after this (the scheduler numbers them as they join).
    since = (schedfile.count(info) or {}).get("seq", 0)
    staying = [p for p in record.pools if p not in chosen and p.pool not in record.stopped_pools]
    with contextlib.nullcontext() if staying else nothing_stays(state):
        for pool in chosen:
            # gracefully: the pool's workers first hand their results to the pools that stay
            outcome = stop_pool(launcher, state, record, pool, hard=hard)
            report.info(f"worker pool {pool.pool} ({pool.name}): {outcome}")
    generation = record.generation + 1
    new_pools = []
    for pool in chosen:
        name = step_name("workers", generation)
        # the pool's next generation: its plan under a new name (nothing of the old run)
        fresh = replace(pool.plan, name=name, log=str(state.logs / f"{name}.log"))
        left = nodes_left(launcher.current_nodes(pool.het_group), pool)
        if left is not None:
            per_node_tasks = max(1, pool.ntasks // pool.nnodes)
            per_node_workers = max(1, pool.workers // pool.nnodes)
            fresh = replace(fresh, nnodes=len(left), ntasks=per_node_tasks * len(left),
                            expected=per_node_workers * len(left),
                            nodelist=",".join(left) if pool.nodelist else None)
            report.info(f"pool {pool.pool} has {len(left)} of its {pool.nnodes} nodes left "
                        f"({','.join(left)}): relaunching {fresh.ntasks} tasks on them")
        new_pools.append(fresh)
    record.generation = generation
    record.restarts += 1
    record.last_restart = {"time": time.time(), "reason": reason}
    wait_for = sum(p.workers for p in new_pools)
    replaced = {p.name for p in chosen}
    record.stopped_pools = [p for p in record.stopped_pools
                            if p not in {q.pool for q in chosen}]
    try:
        started = [launcher.start(plan) for plan in new_pools]
        record.pools = [*(p for p in record.pools if p.name not in replaced), *started]
        record.expected_workers = sum(p.workers for p in record.pools)
        state.write_record(record)
        wait_ready(launcher, state, sched, started, wait_for, opts, report,
                   deadline=time.monotonic() + opts.timeout, since=since,
                   pools_named=[p.pool for p in chosen] if len(record.pools) > 1 else None)
    except KeyboardInterrupt:
        raise Interrupted("interrupted: the new workers are still starting; check "
                          "`dasklaunch status`") from None
    record.status = "up"
    state.write_record(record)
    return {"restarted": len(new_pools), "workers": wait_for, "address": info.address,
            "generation": generation}


def nodes_left(nodes: list[str] | None, pool: StepRun) -> list[str] | None:
    """The pool's nodes that the job still has, when some were lost (None: all there).

    `nodes` are those the job has now: for a pool of a heterogeneous job's component, that
    component's nodes (its het group's), as a pool without a node list spans all of them."""
    if nodes is None:
        return None
    left = [n for n in pool.nodelist.split(",") if n in nodes] if pool.nodelist else list(nodes)
    if 0 < len(left) < pool.nnodes:
        return left
    return None

"""`down`: stop scale-out jobs, then the worker pools, then the scheduler; graceful first, hard
after a grace period. Idempotent; logs are kept."""

from __future__ import annotations

import time
from pathlib import Path

from ..launch.factory import launcher_for
from ..runtime.record import ClusterRecord
from ..runtime.report import Reporter
from ..runtime.state import find_state_dir
from .common import GRACE_SECONDS, load_record, nothing_stays, stop_pool


def down(state_dir: Path | str | None = None, *, workers_only: bool = False,
         pool: str | None = None, report: Reporter | None = None) -> dict:
    report = report or Reporter()
    state = find_state_dir(state_dir)
    if pool is not None:
        return _down_pool(state, pool, report)
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
    with state.lock("down"), nothing_stays(state):
        record = load_record(state, report)
        stopped = _stop_everything(record, workers_only, report)
        if not workers_only:
            for name in (state.scheduler_file.name, state.env_file.name):
                state.remove(name)
            record.status = "down"
            record.stopped_at = time.time()
        else:
            record.status = "workers-down"
        state.write_record(record)
        if not workers_only:
            state.forget_recovery_copy()
    return {"stopped": stopped, "state_dir": str(state.path)}


def _down_pool(state, pool: str, report: Reporter) -> dict:
    """Stop one pool; the scheduler and the other pools keep running. `restart-workers --pool`
    brings it back."""
    from .restart import select_pools

    with state.lock("down"):
        record = load_record(state, report)
        launcher = launcher_for(record)
        stopped = []
        for step in select_pools(record, pool):
            # the pool's workers hand their results to the pools that stay first
            outcome = stop_pool(launcher, state, record, step)
            report.info(f"pool {step.pool} ({step.name}): {outcome}")
            stopped.append({"name": step.name, "role": step.role, "pool": step.pool,
                            "outcome": outcome})
        if pool not in record.stopped_pools:
            record.stopped_pools.append(pool)
        record.expected_workers = sum(p.workers for p in record.pools
                                      if p.pool not in record.stopped_pools)
        state.write_record(record)
    return {"stopped": stopped, "state_dir": str(state.path)}


def _stop_everything(record: ClusterRecord, workers_only: bool,
                     report: Reporter) -> list[dict]:
    """Scale-out jobs, then the pools, then (unless workers_only) the scheduler."""
    launcher = launcher_for(record)
    stopped = []
    if record.scale_out:
        from .scale_out import cancel_all

        cancel_all(record, report)
        record.scale_out = []
    steps = record.pools if workers_only else record.steps
    for step in steps:
        outcome = launcher.stop(step, grace=GRACE_SECONDS)
        report.info(f"{step.role} {step.name}: {outcome}")
        stopped.append({"name": step.name, "role": step.role, "outcome": outcome})
    return stopped

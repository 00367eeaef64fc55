"""`status`: the scheduler, the workers connected vs expected, each pool, restarts, scale-out
jobs and the supervisor, from the record plus one question to the live scheduler (two with
--workers)."""

from __future__ import annotations

from pathlib import Path

from ..launch.factory import launcher_for
from ..runtime import schedfile
from ..runtime.record import ClusterRecord
from ..runtime.state import StateDir, find_state_dir
from .common import load_record, memory_restarts, read_supervisor


def status(state_dir: Path | str | None = None, *, workers: bool = False) -> dict:
    """The cluster's state. The scheduler is asked for aggregates (one pass over its workers,
    an answer that grows with hosts and pools, not workers); `workers` adds each worker."""
    state = find_state_dir(state_dir)
    record = load_record(state)
    launcher = launcher_for(record)
    sched = record.scheduler
    info = schedfile.read(state.scheduler_file)
    summary = schedfile.summary(info) if info else None
    listing = schedfile.identity(info) if info and summary and workers else None
    found = summary or {}
    by_pool = found.get("by_pool") or {}
    pool_rows = []
    # one row per pool: a pool that `join` added to has several steps
    steps_of: dict[str, list] = {}
    for step in record.pools:
        steps_of.setdefault(step.pool, []).append(step)
    for name, steps in steps_of.items():
        running = [launcher.running(step) for step in steps]
        mine = _pool_totals(by_pool, name, len(steps_of))
        state_word = ("stopped" if name in record.stopped_pools and not any(running)
                      else "running" if any(running) else "exited")
        pool_rows.append({"name": ",".join(s.name for s in steps), "pool": name,
                          "state": state_word,
                          "where": "; ".join(launcher.describe(s) for s in steps),
                          "ntasks": sum(s.ntasks for s in steps),
                          "expected": sum(s.workers for s in steps),
                          "connected": mine["connected"],
                          "gpus": int(float(mine["resources"].get("GPU", 0))),
                          "resources": mine["resources"], "hosts": mine["hosts"],
                          "log": steps[-1].log, "logs": [s.log for s in steps]})
    result = {
        "state_dir": str(state.path), "job_id": record.job_id, "backend": record.backend,
        "status": record.status, "stopped_at": record.stopped_at,
        "scheduler": {
            "address": info.address if info else record.address,
            "alive": summary is not None,
            "dashboard": info.dashboard_url if info else None,
            "where": launcher.describe(sched) if sched else None,
            "log": sched.log if sched else None,
        },
        "workers": {"expected": record.expected_workers,
                    "connected": found.get("n_workers", 0),
                    "threads": found.get("threads", 0),
                    "memory_per_worker": found.get("memory_limits", []),
                    "memory_sizing": record.memory.get("how"),
                    "highest_memory_use": found.get("highest_memory_use", 0.0),
                    "paused": found.get("paused", 0),
                    "memory_restarts": memory_restarts(record.pools)},
        "profile": record.profile,
        "sources": record.sources,
        "hosts": found.get("hosts", {}),
        "pools": pool_rows,
        "restarts": record.restarts,
        "last_restart": record.last_restart,
        "drains": found.get("drains"),
        "scale_out": _scale_out_summary(record),
        "supervisor": _supervisor_summary(state),
        "env_file": str(state.env_file) if state.env_file.exists() else None,
    }
    if workers:
        result["worker_list"] = sorted(
            ({"address": address, **row} for address, row in
             ((listing or {}).get("workers") or {}).items()),
            key=lambda w: (w.get("name", ""), w["address"]))
    return result


def drain_line(drains: dict | None) -> str | None:
    """status's one line on the drains the scheduler did (None: none yet)."""
    if not drains or not drains.get("count"):
        return None
    from ..runtime.drain import describe

    line = (f"{drains['count']}, {drains['keys_moved']} keys moved, {drains['keys_lost']} "
            f"lost")
    if drains.get("last"):
        line += f"; last: {describe(drains['last'][-1])}"
    return line


def _pool_totals(by_pool: dict[str, dict], pool: str, pools: int) -> dict:
    """A pool's workers: those named POOL-...; with one pool, every worker is its."""
    rows = list(by_pool.values()) if pools == 1 else [by_pool.get(pool) or {}]
    resources: dict[str, float] = {}
    for row in rows:
        for key, amount in (row.get("resources") or {}).items():
            resources[key] = resources.get(key, 0) + amount
    return {"connected": sum(row.get("connected", 0) for row in rows),
            "resources": resources,
            "hosts": sorted({h for row in rows for h in row.get("hosts", [])})}


def _scale_out_summary(record: ClusterRecord) -> list[dict]:
    if not record.scale_out:
        return []
    from ..slurm.queue import job_states

    states = job_states(j.job_id for j in record.scale_out)
    return [{"job_id": j.job_id, "name": j.name, "state": states.get(j.job_id, "GONE"),
             "processes": j.processes} for j in record.scale_out]


def _supervisor_summary(state: StateDir) -> dict | None:
    data = read_supervisor(state)
    if data is None:
        return None
    return {"attached": data["attached"], "restarts": data.get("restarts", 0),
            "last_reason": data.get("last_reason"),
            "pid": (data.get("process") or {}).get("pid")}

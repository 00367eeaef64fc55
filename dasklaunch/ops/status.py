"""`status`: the scheduler, the workers connected vs expected, each pool, restarts, scale-out
jobs and the supervisor, from the record plus one question to the live scheduler."""

from __future__ import annotations

from pathlib import Path

from ..launch.factory import launcher_for
from ..runtime import schedfile
from ..runtime.record import ClusterRecord
from ..runtime.state import StateDir, find_state_dir
from .common import load_record, memory_restarts, read_supervisor


def status(state_dir: Path | str | None = None) -> dict:
    state = find_state_dir(state_dir)
    record = load_record(state)
    launcher = launcher_for(record)
    sched = record.scheduler
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
    for pool in record.pools:
        running = launcher.running(pool)
        mine = [w for w in workers.values() if _in_pool(w, pool.pool, len(record.pools))]
        state_word = ("stopped" if pool.pool in record.stopped_pools and not running
                      else "running" if running else "exited")
        pool_rows.append({"name": pool.name, "pool": pool.pool, "state": state_word,
                          "where": launcher.describe(pool), "ntasks": pool.ntasks,
                          "expected": pool.workers, "connected": len(mine),
                          "gpus": sum(_gpus(w) for w in mine),
                          "resources": _resources(mine),
                          "hosts": sorted({w.get("host", "?") for w in mine}),
                          "log": pool.log})
    return {
        "state_dir": str(state.path), "job_id": record.job_id, "backend": record.backend,
        "status": record.status, "stopped_at": record.stopped_at,
        "scheduler": {
            "address": info.address if info else record.address,
            "alive": ident is not None,
            "dashboard": info.dashboard_url if info else None,
            "where": launcher.describe(sched) if sched else None,
            "log": sched.log if sched else None,
        },
        "workers": {"expected": record.expected_workers, "connected": len(workers),
                    "threads": threads,
                    "memory_per_worker": sorted(m for m in memory if m is not None),
                    "memory_sizing": record.memory.get("how"),
                    "highest_memory_use": round(highest_use, 3), "paused": paused,
                    "memory_restarts": memory_restarts(record.pools)},
        "profile": record.profile,
        "hosts": dict(sorted(hosts.items())),
        "pools": pool_rows,
        "restarts": record.restarts,
        "last_restart": record.last_restart,
        "scale_out": _scale_out_summary(record),
        "supervisor": _supervisor_summary(state),
        "env_file": str(state.env_file) if state.env_file.exists() else None,
    }


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


def _in_pool(worker: dict, pool: str, pools: int) -> bool:
    # workers are named POOL-HOST-N by the node launcher; with one pool, every worker is its
    return pools == 1 or str(worker.get("name", "")).startswith(f"{pool}-")


def _gpus(worker: dict) -> int:
    return int(float((worker.get("resources") or {}).get("GPU", 0)))


def _resources(workers: list[dict]) -> dict[str, float]:
    total: dict[str, float] = {}
    for worker in workers:
        for key, amount in (worker.get("resources") or {}).items():
            total[key] = total.get(key, 0) + amount
    return total

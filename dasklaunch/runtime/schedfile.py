"""The scheduler file and the scheduler's HTTP endpoints: readiness and liveness without
importing distributed (the CLI's fast path).

Dask writes the scheduler file non-atomically and never updates it, so a reader treats
missing/partial JSON as "not yet" and asks the live scheduler for anything current, through the
routes that dasklaunch.runtime.scheduler_plugin adds: `count` (O(1), what up, restart-workers
and the supervisor poll), `summary` (status) and `identity` (every worker, status --workers).
A scheduler started by an older dasklaunch has only /dasklaunch/workers.json: `count` and
`summary` fall back to it.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class SchedulerInfo:
    address: str
    dashboard_port: int | None
    scheduler_id: str | None

    @property
    def host(self) -> str:
        return urlsplit(self.address).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.address).port or 8786

    @property
    def dashboard_url(self) -> str | None:
        if self.dashboard_port is None:
            return None
        return f"http://{_url_host(self.host)}:{self.dashboard_port}/status"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def read(path: Path) -> SchedulerInfo | None:
    """Parse the scheduler file; None while it is missing, partial or has no address."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("address"), str):
        return None
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    port = services.get("dashboard")
    return SchedulerInfo(address=data["address"],
                         dashboard_port=int(port) if isinstance(port, int) else None,
                         scheduler_id=data.get("id"))


def _get(info: SchedulerInfo, path: str, timeout: float) -> bytes | None:
    status, body = _fetch(info, path, timeout)
    return body if status == 200 else None


def _fetch(info: SchedulerInfo, path: str, timeout: float) -> tuple[int, bytes | None]:
    """(HTTP status, body); (0, None) when the scheduler does not answer."""
    # http.client, not urllib: urllib would send a compute node's address to $http_proxy,
    # which many clusters set for reaching the internet, and it costs more per poll.
    import http.client

    conn = http.client.HTTPConnection(info.host, info.dashboard_port, timeout=timeout)
    try:
        conn.request("GET", f"/{path}")
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException, ValueError):
        return 0, None
    finally:
        conn.close()
    return response.status, body


def answers(info: SchedulerInfo, timeout: float = 1.0) -> bool:
    """True when the scheduler in `info` is alive and is the one that wrote the file."""
    if info.dashboard_port is not None:
        return count(info, timeout=timeout) is not None
    try:
        with socket.create_connection((info.host, info.port), timeout=timeout):
            return True
    except OSError:
        return False


def _ours(info: SchedulerInfo, body: bytes | None) -> dict | None:
    """The JSON answer when it comes from the scheduler that wrote the file."""
    if body is None:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("id") != info.scheduler_id:
        # another scheduler reused the port: ours is gone
        return None
    return data


def identity(info: SchedulerInfo, timeout: float = 2.0) -> dict | None:
    """The scheduler's id and every live worker (host, threads, memory); O(workers): only for
    showing them. None if our scheduler does not answer."""
    if info.dashboard_port is None:
        return None
    return _ours(info, _get(info, "dasklaunch/workers.json", timeout))


def count(info: SchedulerInfo, *, since: int = 0, pools: list[str] | None = None,
          wait_for: int = 0, wait: float = 0.0, timeout: float = 2.0) -> dict | None:
    """{"n_workers", "count", "seq", "by_pool", ...}: `count` is the workers connected that
    joined after join number `since` (of `pools` only, if given). With `wait_for` and `wait`
    the scheduler answers once that many are there, or after `wait` seconds. None if our
    scheduler does not answer."""
    if info.dashboard_port is None:
        return None
    query = [f"since={since}"] if since else []
    if pools:
        query.append("pools=" + ",".join(pools))
    if wait_for and wait > 0:
        query += [f"n={wait_for}", f"wait={wait:.3f}"]
    path = "dasklaunch/count.json" + ("?" + "&".join(query) if query else "")
    status, body = _fetch(info, path, timeout + (wait if wait_for else 0.0))
    if status == 404:
        return _legacy_count(info, timeout, pools)
    return _ours(info, body) if status == 200 else None


def summary(info: SchedulerInfo, timeout: float = 5.0) -> dict | None:
    """status's aggregates (threads, memory limits, hosts, pools), computed by the scheduler."""
    if info.dashboard_port is None:
        return None
    status, body = _fetch(info, "dasklaunch/summary.json", timeout)
    if status == 404:
        ident = identity(info, timeout)
        if ident is None:
            return None
        return {"id": ident.get("id"), "address": ident.get("address"),
                **summarize_workers((ident.get("workers") or {}).values())}
    return _ours(info, body) if status == 200 else None


def pool_of(name: object) -> str:
    """The pool of a worker named POOL-HOST-N by dasklaunch's node launcher ('' otherwise)."""
    text = str(name)
    return text.split("-", 1)[0] if "-" in text else ""


def summarize_workers(rows: Iterable[dict]) -> dict:
    """status's aggregates (totals, per host, per pool) of rows as /dasklaunch/workers.json
    has them: the scheduler computes them for /dasklaunch/summary.json, this process for an
    older scheduler that lacks that route."""
    workers = list(rows)
    limits = {w["memory_limit"] for w in workers if w.get("memory_limit") is not None}
    highest = max([w["memory"] / w["memory_limit"] for w in workers
                   if w.get("memory_limit") and w.get("memory") is not None] or [0.0])
    hosts: dict[str, int] = {}
    pools: dict[str, dict] = {}
    for w in workers:
        host = w.get("host", "?")
        hosts[host] = hosts.get(host, 0) + 1
        row = pools.setdefault(pool_of(w.get("name", "")),
                               {"connected": 0, "threads": 0, "resources": {}, "hosts": set()})
        row["connected"] += 1
        row["threads"] += w.get("nthreads", 0)
        row["hosts"].add(host)
        for key, amount in (w.get("resources") or {}).items():
            row["resources"][key] = row["resources"].get(key, 0) + amount
    for row in pools.values():
        row["hosts"] = sorted(row["hosts"])
    return {"n_workers": len(workers), "seq": 0,
            "threads": sum(w.get("nthreads", 0) for w in workers),
            "memory_limits": sorted(limits), "highest_memory_use": round(highest, 3),
            "paused": sum(w.get("status") == "paused" for w in workers),
            "hosts": dict(sorted(hosts.items())), "by_pool": pools}


def _legacy_count(info: SchedulerInfo, timeout: float, pools: list[str] | None) -> dict | None:
    # An older scheduler: its listing, counted here. It has no join numbers, so `since` is
    # not honoured: restart-workers counts the old workers that are still listed too.
    ident = identity(info, timeout)
    if ident is None:
        return None
    by_pool: dict[str, int] = {}
    for worker in (ident.get("workers") or {}).values():
        pool = pool_of(worker.get("name", ""))
        by_pool[pool] = by_pool.get(pool, 0) + 1
    total = sum(by_pool.values())
    chosen = total if not pools else sum(by_pool.get(p, 0) for p in pools)
    return {"id": ident.get("id"), "address": ident.get("address"), "n_workers": total,
            "seq": 0, "count": chosen, "by_pool": by_pool, "legacy": True}

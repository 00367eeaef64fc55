"""Loaded into the scheduler with `--preload dasklaunch.runtime.scheduler_plugin`.

Adds three routes to the scheduler's HTTP server, which dasklaunch reads over plain HTTP, so the
CLI never imports distributed. Each answer carries the scheduler's id (stale-port detection).
(Dask's own /json/identity.json is not usable: it fails with HTTP 500 once workers have run
tasks, because their metrics have tuple keys; and it lists every worker.)

- `/dasklaunch/count.json`: the number of connected workers, by pool, from counters kept up to
  date as workers come and go: O(1) CPU and ~150 bytes whatever the cluster's size. With
  `n=N&wait=SECONDS` it answers once N workers are there (or at the deadline), so `up` waits
  with one long request instead of polling. `since=SEQ` counts only workers that joined after
  the join number SEQ (`seq` in an earlier answer): restart-workers counts only new workers;
  `pools=A,B` only those pools' (the prefix of a worker's name POOL-HOST-N).
- `/dasklaunch/summary.json`: what `status` shows (threads, memory limits, paused, hosts, per
  pool), aggregated here: one pass over the workers, and bytes that grow with hosts and pools,
  not workers.
- `/dasklaunch/workers.json`: every worker's host, threads and memory (`status --workers`).

It also adds the scheduler handler `dasklaunch_drain` (runtime/drain.py), which node launchers
call over Dask's own comms (TLS when the cluster has it) before their workers end, and keeps a
failed TLS connection of the scheduler from breaking its other connections (`tls_guard`).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

from tornado.web import RequestHandler

from . import drain
from .schedfile import pool_of, summarize_workers
from .tls_guard import guard

ROUTE = r"/dasklaunch/workers\.json"
COUNT_ROUTE = r"/dasklaunch/count\.json"
SUMMARY_ROUTE = r"/dasklaunch/summary\.json"
MAX_WAIT = 10.0


@dataclass
class _Waiter:
    since: int
    pools: frozenset[str] | None
    target: int
    count: int
    done: asyncio.Future

    def counts(self, seq: int, pool: str) -> bool:
        return seq > self.since and (self.pools is None or pool in self.pools)


@dataclass
class Tally:
    """Connected workers by pool and by join number, updated on each arrival and departure in
    O(waiters); counts are O(1) (O(workers) only for `since` > 0 without a waiter)."""

    seq: int = 0
    members: dict[str, tuple[int, str]] = field(default_factory=dict)  # address: (seq, pool)
    by_pool: dict[str, int] = field(default_factory=dict)
    waiters: list[_Waiter] = field(default_factory=list)

    def add(self, address: str, name: object) -> None:
        if address in self.members:
            return
        self.seq += 1
        pool = pool_of(name)
        self.members[address] = (self.seq, pool)
        self.by_pool[pool] = self.by_pool.get(pool, 0) + 1
        for waiter in self.waiters:
            if waiter.counts(self.seq, pool):
                waiter.count += 1
                if waiter.count >= waiter.target and not waiter.done.done():
                    waiter.done.set_result(True)

    def remove(self, address: str) -> None:
        seq, pool = self.members.pop(address, (0, None))
        if pool is None:
            return
        self.by_pool[pool] -= 1
        if not self.by_pool[pool]:
            del self.by_pool[pool]
        for waiter in self.waiters:
            if waiter.counts(seq, pool):
                waiter.count -= 1

    def count(self, since: int = 0, pools: frozenset[str] | None = None) -> int:
        if since <= 0:
            if pools is None:
                return len(self.members)
            return sum(self.by_pool.get(p, 0) for p in pools)
        return sum(1 for seq, pool in self.members.values()
                   if seq > since and (pools is None or pool in pools))

    async def wait(self, target: int, since: int = 0, pools: frozenset[str] | None = None,
                   timeout: float = 0.0) -> int:
        """The count once it reaches `target`, or at `timeout` seconds, whichever is first."""
        count = self.count(since, pools)
        if count >= target or timeout <= 0:
            return count
        waiter = _Waiter(since, pools, target, count,
                         asyncio.get_running_loop().create_future())
        self.waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.done), timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self.waiters.remove(waiter)
        return waiter.count

    def answer(self, scheduler_id: str, address: str, count: int) -> dict:
        return {"id": scheduler_id, "address": address, "n_workers": len(self.members),
                "seq": self.seq, "count": count, "by_pool": dict(self.by_pool)}


def parse_count_query(get) -> tuple[int, frozenset[str] | None, int, float]:
    """(since, pools, n, wait) from a request's arguments; `get(name)` returns a str or None.
    Bad values read as their defaults: a probe must never fail on its own arguments."""
    def number(name, kind, default):
        try:
            return kind(get(name) or default)
        except ValueError:
            return default

    pools = get("pools")
    chosen = frozenset(p for p in pools.split(",") if p) if pools else None
    wait = min(MAX_WAIT, max(0.0, number("wait", float, 0.0)))
    return number("since", int, 0), chosen, number("n", int, 0), wait


def worker_rows(scheduler) -> dict[str, dict]:
    """Each worker's host, threads and memory, by address (/dasklaunch/workers.json)."""
    return {ws.address: _row(ws) for ws in list(scheduler.workers.values())}


def _row(ws) -> dict:
    # metrics["memory"] is the process memory of the last heartbeat: what ws.memory.process
    # returns, without building the whole MemoryState of each worker
    return {"host": ws.host, "nthreads": ws.nthreads, "memory_limit": ws.memory_limit,
            "name": str(ws.name), "memory": ws.metrics.get("memory", 0),
            "status": ws.status.name, "resources": dict(ws.resources)}


class _Handler(RequestHandler):
    def initialize(self, dask_server, tally=None, drains=None):
        self.dask_server = dask_server
        self.tally = tally
        self.drains = drains

    def reply(self, data: dict) -> None:
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps(data, separators=(",", ":")))


class CountHandler(_Handler):
    async def get(self):
        since, pools, target, wait = parse_count_query(lambda k: self.get_argument(k, None))
        count = await self.tally.wait(target, since, pools, wait)
        scheduler = self.dask_server
        answer = self.tally.answer(str(scheduler.id), scheduler.address, count)
        # how many drains so far: the supervisor fetches their details only when this grows
        answer["drains"] = self.drains.count if self.drains else 0
        self.reply(answer)


class SummaryHandler(_Handler):
    def get(self):
        scheduler = self.dask_server
        rows = [_row(ws) for ws in list(scheduler.workers.values())]
        self.reply({"id": str(scheduler.id), "address": scheduler.address,
                    **summarize_workers(rows), "seq": self.tally.seq,
                    "drains": self.drains.summary() if self.drains else None})


class WorkersHandler(_Handler):
    def get(self):
        scheduler = self.dask_server
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"id": str(scheduler.id), "address": scheduler.address,
                               "workers": worker_rows(scheduler)}))


def dask_setup(scheduler) -> None:
    guard(scheduler)
    from distributed.diagnostics.plugin import SchedulerPlugin

    tally = Tally()

    class Counter(SchedulerPlugin):
        name = "dasklaunch-count"

        def add_worker(self, scheduler=None, worker=None, **kwargs):
            ws = scheduler.workers.get(worker)
            tally.add(worker, ws.name if ws is not None else "")

        def remove_worker(self, scheduler=None, worker=None, **kwargs):
            tally.remove(worker)

    for address, ws in scheduler.workers.items():
        tally.add(address, ws.name)
    scheduler.add_plugin(Counter())
    drains = drain.install(scheduler)
    if getattr(scheduler, "http_application", None) is not None:
        args = {"dask_server": scheduler, "tally": tally, "drains": drains}
        scheduler.http_application.add_handlers(
            r".*", [(ROUTE, WorkersHandler, args), (COUNT_ROUTE, CountHandler, args),
                    (SUMMARY_ROUTE, SummaryHandler, args)])

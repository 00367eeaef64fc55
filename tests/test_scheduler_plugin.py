"""The scheduler preload's routes: counts kept as workers come and go, the long-poll wait, the
aggregates for status, served by tornado exactly as in the scheduler (a stand-in scheduler
object: no Dask process is started) and read with dasklaunch's own HTTP client."""

from __future__ import annotations

import asyncio
import threading
import time
from types import SimpleNamespace

import pytest
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from dasklaunch.runtime import schedfile
from dasklaunch.runtime.scheduler_plugin import (
    COUNT_ROUTE,
    MAX_WAIT,
    ROUTE,
    SUMMARY_ROUTE,
    CountHandler,
    SummaryHandler,
    Tally,
    WorkersHandler,
    parse_count_query,
)


def test_counts_by_pool_and_by_join_number():
    tally = Tally()
    for i in range(3):
        tally.add(f"tcp://a:{i}", f"cpu-node1-{i}")
    tally.add("tcp://b:1", "gpu-node2-gpu0")
    tally.add("tcp://c:1", "outsider")
    tally.add("tcp://c:1", "outsider")  # the same worker twice counts once
    assert tally.count() == 5 and tally.seq == 5
    assert tally.by_pool == {"cpu": 3, "gpu": 1, "": 1}
    assert tally.count(pools=frozenset({"cpu", "gpu"})) == 4
    mark = tally.seq
    tally.remove("tcp://a:0")
    tally.remove("tcp://never:1")  # unknown: ignored
    tally.add("tcp://a:9", "cpu-node1-0")
    assert tally.count(since=mark) == 1 and tally.count() == 5
    assert tally.count(since=mark, pools=frozenset({"gpu"})) == 0
    for address in ("tcp://a:1", "tcp://a:2", "tcp://a:9"):
        tally.remove(address)
    assert "cpu" not in tally.by_pool
    answer = tally.answer("sched-1", "tls://x:1", tally.count())
    assert answer == {"id": "sched-1", "address": "tls://x:1", "n_workers": 2, "seq": 6,
                      "count": 2, "by_pool": {"gpu": 1, "": 1}}


def test_a_wait_ends_when_enough_new_workers_joined_or_at_its_deadline():
    async def scenario():
        tally = Tally()
        tally.add("tcp://old:1", "workers-n-0")
        mark = tally.seq

        async def arrive():
            await asyncio.sleep(0.05)
            tally.remove("tcp://old:1")          # an old one leaving does not count down
            tally.add("tcp://new:1", "workers-n-0")
            tally.add("tcp://new:2", "workers-n-1")

        task = asyncio.ensure_future(arrive())
        loop = asyncio.get_running_loop()
        start = loop.time()
        got = await tally.wait(2, since=mark, timeout=5.0)
        quick = loop.time() - start
        await task
        start = loop.time()
        short = await tally.wait(3, since=mark, timeout=0.1)
        late = loop.time() - start
        return got, quick, short, late, tally.waiters

    got, quick, short, late, waiters = asyncio.run(scenario())
    assert got == 2 and quick < 2.0
    assert short == 2 and late >= 0.09
    assert waiters == []


@pytest.mark.parametrize("args, expected", [
    ({}, (0, None, 0, 0.0)),
    ({"since": "7", "pools": "cpu,gpu", "n": "10", "wait": "0.5"},
     (7, frozenset({"cpu", "gpu"}), 10, 0.5)),
    ({"since": "x", "n": "", "wait": "-3"}, (0, None, 0, 0.0)),
    ({"wait": "3600"}, (0, None, 0, MAX_WAIT)),
])
def test_count_arguments_never_fail(args, expected):
    assert parse_count_query(args.get) == expected


def _worker(i: int, pool: str = "workers", host: str = "10.0.0.1", status: str = "running"):
    return SimpleNamespace(address=f"tls://{host}:{1000 + i}", host=host, nthreads=2,
                           memory_limit=2**30, name=f"{pool}-{host}-{i}",
                           metrics={"memory": 2**28},
                           status=SimpleNamespace(name=status),
                           resources={"GPU": 1.0} if pool == "gpu" else {})


@pytest.fixture
def fake_scheduler():
    """The preload's routes on a tornado server in a thread, over a stand-in scheduler; yields
    (SchedulerInfo, scheduler, tally, call) where call(fn) runs fn on the server's loop."""
    loop = asyncio.new_event_loop()
    scheduler = SimpleNamespace(id="sched-1", address="tls://127.0.0.1:8786", workers={})
    tally = Tally()
    args = {"dask_server": scheduler, "tally": tally}
    app = Application([(ROUTE, WorkersHandler, args), (COUNT_ROUTE, CountHandler, args),
                       (SUMMARY_ROUTE, SummaryHandler, args)])
    sockets = bind_sockets(0, "127.0.0.1")
    port = sockets[0].getsockname()[1]
    ready = threading.Event()

    def serve():
        asyncio.set_event_loop(loop)
        server = HTTPServer(app)
        server.add_sockets(sockets)
        loop.call_soon(ready.set)
        loop.run_forever()
        server.stop()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ready.wait(5)

    def call(fn):
        done = threading.Event()

        def run():
            fn()
            done.set()
        loop.call_soon_threadsafe(run)
        done.wait(5)

    def add(ws):
        scheduler.workers[ws.address] = ws
        tally.add(ws.address, ws.name)

    info = schedfile.SchedulerInfo(address=scheduler.address, dashboard_port=port,
                                   scheduler_id="sched-1")
    yield info, scheduler, add, call
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_the_count_is_small_whatever_the_number_of_workers(fake_scheduler, monkeypatch):
    info, scheduler, add, call = fake_scheduler
    call(lambda: [add(_worker(i)) for i in range(1000)])
    answer = schedfile.count(info)
    assert answer["n_workers"] == 1000 and answer["count"] == 1000
    assert answer["by_pool"] == {"workers": 1000}
    counted = {}
    real_fetch = schedfile._fetch

    def fetch(info, path, timeout):
        status, body = real_fetch(info, path, timeout)
        counted[path.split("?")[0]] = len(body or b"")
        return status, body

    monkeypatch.setattr(schedfile, "_fetch", fetch)
    schedfile.count(info, since=3, pools=["workers"], wait_for=1, wait=0.1)
    schedfile.identity(info)
    monkeypatch.undo()
    assert counted["dasklaunch/count.json"] < 200
    assert counted["dasklaunch/workers.json"] > 100_000  # what every probe read before
    other = schedfile.SchedulerInfo(info.address, info.dashboard_port, "sched-2")
    assert schedfile.count(other) is None  # another scheduler on the port is not ours
    assert schedfile.answers(info) and not schedfile.answers(other)


def test_a_long_poll_answers_as_soon_as_the_workers_are_there(fake_scheduler):
    info, scheduler, add, call = fake_scheduler
    call(lambda: add(_worker(0)))
    mark = schedfile.count(info)["seq"]
    timer = threading.Timer(0.2, lambda: call(lambda: [add(_worker(i)) for i in (1, 2)]))
    timer.start()
    start = time.monotonic()
    answer = schedfile.count(info, since=mark, wait_for=2, wait=5.0)
    took = time.monotonic() - start
    timer.join()
    assert answer["count"] == 2 and answer["n_workers"] == 3
    assert 0.15 < took < 3.0
    start = time.monotonic()
    answer = schedfile.count(info, since=mark, wait_for=5, wait=0.2)
    assert answer["count"] == 2 and time.monotonic() - start >= 0.19


def test_the_summary_aggregates_per_host_and_per_pool(fake_scheduler):
    info, scheduler, add, call = fake_scheduler

    def fill():
        for i in range(4):
            add(_worker(i, "cpu", host=f"10.0.0.{1 + i % 2}"))
        add(_worker(9, "gpu", host="10.0.0.3", status="paused"))
    call(fill)
    summary = schedfile.summary(info)
    assert summary["n_workers"] == 5 and summary["threads"] == 10 and summary["paused"] == 1
    assert summary["hosts"] == {"10.0.0.1": 2, "10.0.0.2": 2, "10.0.0.3": 1}
    assert summary["memory_limits"] == [2**30] and summary["highest_memory_use"] == 0.25
    assert summary["by_pool"]["cpu"] == {"connected": 4, "threads": 8, "resources": {},
                                         "hosts": ["10.0.0.1", "10.0.0.2"]}
    assert summary["by_pool"]["gpu"]["resources"] == {"GPU": 1.0}
    assert summary["seq"] == 5
    listing = schedfile.identity(info)
    assert len(listing["workers"]) == 5
    # the same aggregates from the listing, as for a scheduler without the summary route
    assert {"id": "sched-1", "address": listing["address"],
            **schedfile.summarize_workers(listing["workers"].values()), "seq": 5,
            "drains": None} == summary

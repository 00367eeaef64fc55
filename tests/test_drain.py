"""Draining's parts without a cluster: the node side (names, TLS, when it drains), the signal
order of a leader, and the scheduler side against a stand-in scheduler."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import pytest

from dasklaunch.domain.dask_argv import drain_args
from dasklaunch.domain.settings import UpOptions
from dasklaunch.errors import UsageError
from dasklaunch.launch import node, node_drain
from dasklaunch.ops.status import drain_line
from dasklaunch.runtime import drain, proc

WORKER = ["python", "-m", "distributed.cli.dask_worker", "--scheduler-file", "/s/sched.json",
          "--nworkers", "1", "--name", "cpu-n1-0"]


def test_worker_names_follow_dask_worker_naming():
    assert node_drain.worker_names([WORKER]) == ["cpu-n1-0"]
    three = [*WORKER[:5], "--nworkers", "3", "--name=cpu-n1-1"]
    assert node_drain.worker_names([WORKER, three]) == [
        "cpu-n1-0", "cpu-n1-1-0", "cpu-n1-1-1", "cpu-n1-1-2"]
    assert node_drain.worker_names([WORKER[:5]]) == []  # unnamed: nothing to ask for


def test_flag_value_last_one_wins_like_click():
    argv = ["--name", "a", "--name=b", "--x"]
    assert node_drain.flag_value(argv, "--name") == "b"
    assert node_drain.flag_value(argv, "--x") is None


def test_security_from_the_command_line_or_the_steps_dask_config(monkeypatch):
    flags = [*WORKER, "--tls-ca-file", "ca", "--tls-cert", "c", "--tls-key", "k"]
    assert node_drain.security_args(flags) == {
        "tls_ca_file": "ca", "tls_client_cert": "c", "tls_client_key": "k",
        "require_encryption": True}
    import dask.config

    with dask.config.set({"distributed.comm.tls.ca-file": "CA",
                          "distributed.comm.tls.worker.cert": "C",
                          "distributed.comm.tls.worker.key": "K"}):
        assert node_drain.security_args(WORKER)["tls_client_cert"] == "C"
    with dask.config.set({"distributed.comm.tls.ca-file": None,
                          "distributed.comm.tls.worker.cert": None}):
        assert node_drain.security_args(WORKER) == {}


def test_drainer_does_nothing_while_everything_stops(tmp_path, monkeypatch):
    asked = []
    monkeypatch.setattr(node_drain, "request", lambda *a, **k: asked.append(a) or {})
    argv = [*WORKER[:4], str(tmp_path / "scheduler.json"), *WORKER[5:]]
    (tmp_path / node_drain.NO_DRAIN_FILE).write_text("x")
    node_drain.Drainer([argv], 20)(signal.SIGTERM)
    assert asked == []
    (tmp_path / node_drain.NO_DRAIN_FILE).unlink()
    node_drain.Drainer([argv], 0)(signal.SIGTERM)
    assert asked == []
    # scale-out jobs' workers name their scheduler by address: the file is given
    marker = tmp_path / "elsewhere"
    marker.write_text("x")
    by_address = [*WORKER[:3], "tls://10.0.0.2:8786", "--name", "dl-scale-1"]
    node_drain.Drainer([by_address], 20, str(marker))(signal.SIGTERM)
    assert asked == []
    assert node.parse(["--keep-name", "--no-drain-file", str(marker), "--", *by_address]
                      ).no_drain_file == str(marker)


def test_a_failed_drain_is_said_and_never_raises(tmp_path, capsys):
    argv = [*WORKER[:4], str(tmp_path / "missing.json"), *WORKER[5:]]
    node_drain.Drainer([argv], 5)(signal.SIGTERM)
    err = capsys.readouterr().err
    assert "drain of cpu-n1-0 failed" in err and "passing the signal on" in err


def test_the_scheduler_is_found_from_the_file_or_the_address_argument(tmp_path):
    (tmp_path / "s.json").write_text('{"address": "tls://10.0.0.1:8786"}')
    python = [sys.executable, "-m", "distributed.cli.dask_worker"]
    assert node_drain.scheduler_address(
        [*python, "--scheduler-file", str(tmp_path / "s.json"), "--name", "a"]) == \
        "tls://10.0.0.1:8786"
    # dask-jobqueue's scale-out jobs name the scheduler by address
    assert node_drain.scheduler_address(
        [*python, "--contact-address", "tls://10.0.0.9:1", "tls://10.0.0.2:8786",
         "--name", "dl-scale-1"]) == "tls://10.0.0.2:8786"
    with pytest.raises(ValueError, match="neither --scheduler-file nor"):
        node_drain.scheduler_address([*python, "--name", "a"])


@pytest.fixture
def restore_signals():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture
def clock(monkeypatch):
    """on_signals's clock, set by the test: clock[0] is now."""
    now = [100.0]
    monkeypatch.setattr(proc, "monotonic", lambda: now[0])
    return now


def test_leader_drains_before_passing_sigterm_on_once(restore_signals, clock):
    events = []
    proc.on_signals(lambda s: events.append(("send", s)),
                    lambda s: events.append(("drain", s)))
    handler = signal.getsignal(signal.SIGTERM)
    handler(signal.SIGTERM, None)
    clock[0] += 5   # a second scancel, 5 s later: passed on, not drained again
    handler(signal.SIGTERM, None)
    signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    assert events == [("drain", signal.SIGTERM), ("send", signal.SIGTERM),
                      ("send", signal.SIGTERM), ("send", signal.SIGINT)]


def test_a_signal_during_the_drain_is_passed_on_at_once_and_only_once(restore_signals, clock):
    events = []

    def slow_drain(signum):
        events.append("drain starts")
        clock[0] += 5
        signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # a second scancel, 5 s later
        events.append("drain ends")

    proc.on_signals(lambda s: events.append(f"send {s}"), slow_drain)
    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    assert events == ["drain starts", f"send {signal.SIGTERM}", "drain ends"]


@pytest.mark.parametrize("after", [0.004, 0.6])
@pytest.mark.parametrize("during_drain", [True, False])
def test_a_copy_of_the_first_sigterm_is_dropped(restore_signals, clock, after, during_drain):
    """In an Apptainer container the launcher gets each SIGTERM twice, from Slurm and from
    Apptainer's runtime parent, up to a few hundred ms apart: the copy must not pass the signal
    on before the drain (which it did: the workers closed, the drain found none connected),
    nor a second time after it."""
    events = []
    handler = []

    def copy():
        clock[0] += after
        handler[0](signal.SIGTERM, None)

    def slow_drain(signum):
        events.append("drain starts")
        if during_drain:
            copy()
        events.append("drain ends")

    proc.on_signals(lambda s: events.append(f"send {s}"), slow_drain, term_as=signal.SIGINT)
    handler.append(signal.getsignal(signal.SIGTERM))
    handler[0](signal.SIGTERM, None)
    if not during_drain:
        copy()
    assert events == ["drain starts", "drain ends", f"send {signal.SIGINT}"]


@pytest.mark.parametrize("read", range(4))
def test_a_copy_arriving_while_the_handler_reads_the_clock_is_dropped(restore_signals,
                                                                     monkeypatch, read):
    """Python runs a pending signal's handler right after a builtin call returns, so the copy
    can come in the middle of the first SIGTERM's handler, at any of its clock reads. Seen on
    a loaded node: the copy came as the first handler read the drain's start time, found no
    start recorded and passed SIGINT on at once; the drain then found no worker connected.
    Whichever read it comes at, the drain runs once, and before the signal is passed on,
    once."""
    events = []
    reads = []

    def monotonic():
        reads.append(1)
        if len(reads) - 1 == read:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
        return 100.0

    monkeypatch.setattr(proc, "monotonic", monotonic)
    proc.on_signals(lambda s: events.append(f"send {s}"),
                    lambda s: events.append("drain"), term_as=signal.SIGINT)
    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    assert events == ["drain", f"send {signal.SIGINT}"]


def test_workers_that_leave_sigterm_to_the_leader_get_sigint_after_the_drain(restore_signals):
    events = []
    proc.on_signals(lambda s: events.append(("send", s)), lambda s: events.append(("drain", s)),
                    term_as=signal.SIGINT)
    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    assert events == [("drain", signal.SIGTERM), ("send", signal.SIGINT),
                      ("send", signal.SIGINT)]


def test_under_srun_only_workers_that_can_leave_sigterm_to_the_launcher_are_drained(
        monkeypatch, capsys):
    from dasklaunch.launch import node, shield

    dask_worker = [sys.executable, "-m", "distributed.cli.dask_worker",
                   "--scheduler-file", "s.json", "--name", "a-n1-0"]
    other = ["dask-cuda-worker", "--scheduler-file", "s.json", "--name", "a-n1-0"]
    args = node.parse(["--pool", "a", "--drain-timeout", "20", "--", *dask_worker])
    monkeypatch.setenv("SLURM_STEP_ID", "3")
    monkeypatch.delenv("DASKLAUNCH_STEP", raising=False)
    assert shield.own_dask_worker(dask_worker) and not shield.own_dask_worker(other)
    drainer, shielded = node.draining(args, [[(dask_worker, {}, None)]])
    assert drainer.names == ["a-n1-0"] and shielded
    assert node.draining(args, [[(other, {}, None)]]) == (None, False)
    assert "not draining: Slurm signals every process" in capsys.readouterr().err
    # the local step signals its leader only: any command can be drained there
    monkeypatch.setenv("DASKLAUNCH_STEP", "pool-a")
    drainer, shielded = node.draining(args, [[(other, {}, None)]])
    assert drainer.names == ["a-n1-0"] and not shielded
    assert shield.shielded_argv(dask_worker) == [
        sys.executable, "-m", "dasklaunch.launch.shield", *dask_worker[3:]]


@dataclass(eq=False)
class FakeWorker:
    address: str
    name: str
    has_what: set = field(default_factory=set)
    status: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(name="running"))


@dataclass(eq=False)
class FakeTask:
    key: str
    who_has: set = field(default_factory=set)


class FakeScheduler:
    """Workers, tasks and a retire_workers that copies each key to the first worker that
    stays (or hangs, to test the timeout)."""

    def __init__(self, hang=False, released_meanwhile=()):
        self.workers, self.tasks, self.hang, self.handlers = {}, {}, hang, {}
        self.released_meanwhile = released_meanwhile

    def add(self, address, name, keys):
        ws = FakeWorker(address, name)
        self.workers[address] = ws
        for key in keys:
            ts = self.tasks.setdefault(key, FakeTask(key))
            ts.who_has.add(ws)
            ws.has_what.add(ts)

    async def retire_workers(self, workers, close_workers, remove, stimulus_id):
        if self.hang:
            await asyncio.sleep(60)
        for key in self.released_meanwhile:  # the client let them go: the scheduler forgets
            self.tasks.pop(key)
        stay = next(ws for a, ws in self.workers.items() if a not in workers)
        for address in workers:
            for ts in self.workers[address].has_what:
                ts.who_has.add(stay)
            self.workers[address].status = SimpleNamespace(name="closing_gracefully")


def test_drain_moves_keys_and_records_the_event():
    scheduler = FakeScheduler()
    scheduler.add("w1", "a-n1-0", ["x", "y"])
    scheduler.add("w2", "b-n1-0", ["z"])
    log = drain.install(scheduler)
    event = asyncio.run(scheduler.handlers[drain.HANDLER](names=["a-n1-0"], timeout=5))
    assert (event["workers"], event["keys"], event["keys_moved"], event["keys_lost"]) == (
        ["w1"], 2, 2, 0)
    assert log.summary()["count"] == 1 and log.summary()["keys_moved"] == 2
    assert drain.describe(event).startswith("drained 1 worker (a-n1-0): 2 of 2 keys moved")
    line = drain_line(log.summary())
    assert line.startswith("1, 2 keys moved, 0 lost; last: drained 1 worker")


def test_drain_with_no_worker_staying_or_out_of_time_says_what_was_lost():
    alone = FakeScheduler()
    alone.add("w1", "a-n1-0", ["x"])
    event = asyncio.run(drain.drain(alone, drain.DrainLog(), ["a-n1-0"], 5))
    assert event["keys_lost"] == 1 and event["why"] == "no other running worker to take them"
    slow = FakeScheduler(hang=True)
    slow.add("w1", "a-n1-0", ["x"])
    slow.add("w2", "b-n1-0", [])
    event = asyncio.run(drain.drain(slow, drain.DrainLog(), ["a-n1-0"], 0.2))
    assert event["keys_lost"] == 1 and event["why"] == "drain timeout of 0.2 s"
    assert "1 lost (drain timeout of 0.2 s)" in drain.describe(event)
    unknown = asyncio.run(drain.drain(slow, drain.DrainLog(), ["nobody"], 1))
    assert drain.describe(unknown) == "drain of nobody: none of them is connected"


def test_keys_the_client_releases_during_a_drain_are_not_counted_lost():
    # seen on the testbed: a client closed while a rolled-over job drained; its 12 keys were
    # forgotten by the scheduler, not lost, and `status` said "12 lost"
    scheduler = FakeScheduler(released_meanwhile=["x"])
    scheduler.add("w1", "a-n1-0", ["x", "y"])
    scheduler.add("w2", "b-n1-0", [])
    event = asyncio.run(drain.drain(scheduler, drain.DrainLog(), ["a-n1-0"], 5))
    assert (event["keys_moved"], event["keys_released"], event["keys_lost"]) == (1, 1, 0)
    assert event["why"] == ""
    assert drain.describe(event) == ("drained 1 worker (a-n1-0): 1 of 2 keys moved in "
                                     f"{event['seconds']:.2f} s, 1 released by their client "
                                     "meanwhile")


def test_drain_timeout_option():
    assert drain_args(UpOptions()) == ["--drain-timeout", "20"]
    assert drain_args(replace(UpOptions(), drain_timeout=0)) == []
    with pytest.raises(UsageError, match="--drain-timeout must be >= 0 seconds, not -1"):
        drain_args(replace(UpOptions(), drain_timeout=-1))
    assert drain_line(None) is None and drain_line({"count": 0}) is None


def test_a_shielded_child_ignores_sigterm_from_its_start_and_ends_on_sigkill():
    child = proc.start_child([sys.executable, "-c", "import time; time.sleep(30)"],
                             ignore_sigterm=True)
    try:
        child.send_signal(signal.SIGTERM)  # at once: the interpreter may not have started yet
        with pytest.raises(subprocess.TimeoutExpired):
            child.wait(timeout=1)
    finally:
        child.kill()
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL

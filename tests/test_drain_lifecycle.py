"""Draining with real Dask on the local backend: a persisted collection spread over two pools;
stopping one pool gracefully moves its keys to the other (nothing recomputed), stopping it hard
loses them (recomputed, the result still right)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from procs import STANDINS

pytestmark = pytest.mark.lifecycle

FAST = ["--local-tasks", "2", "--dashboard-address", ":0", "--timeout", "90"]
POOLS = ["--pool", "a:nodes=1,share=yes,ntasks-per-node=1",
         "--pool", "b:nodes=1,share=yes,ntasks-per-node=1"]
PARTS = 12


def count_runs_plugin():
    """A scheduler plugin counting the tasks that finished computing (processing -> memory);
    built here, so that it is pickled by value (the scheduler cannot import this module)."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class CountRuns(SchedulerPlugin):
        name = "count-runs"

        def __init__(self):
            self.runs = 0

        def transition(self, key, start, finish, *args, **kwargs):
            if start == "processing" and finish == "memory":
                self.runs += 1

    return CountRuns()


def runs(client) -> int:
    return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.plugins[
        "count-runs"].runs)


def persist_over_pools(client):
    """PARTS keys, half on each pool's worker; the scheduler counts computations from here."""
    client.register_plugin(count_runs_plugin())
    names = {info["name"]: addr for addr, info in client.scheduler_info()["workers"].items()}
    a = next(addr for name, addr in names.items() if name.startswith("a-"))
    b = next(addr for name, addr in names.items() if name.startswith("b-"))
    futures = [client.submit(lambda i: list(range(i * 1000, (i + 1) * 1000)), i,
                             workers=[a if i % 2 else b], allow_other_workers=True,
                             key=f"part-{i}")
               for i in range(PARTS)]
    client.gather(futures)
    assert runs(client) == PARTS
    return futures


def check_kept(client, futures) -> tuple[int, int]:
    """(computations since the start, keys held) after the stop; the result is always right."""
    total = client.submit(lambda *parts: sum(map(sum, parts)), *futures).result(timeout=60)
    assert total == sum(range(PARTS * 1000))
    held = client.who_has(futures)
    return runs(client) - 1, sum(1 for w in held.values() if w)


def test_restart_of_one_pool_drains_its_keys_to_the_other(local_runner):
    runner = local_runner
    runner("up", *FAST, *POOLS, check=True)
    import dasklaunch

    with dasklaunch.connect(runner.state_dir, timeout="30s") as client:
        futures = persist_over_pools(client)
        held_before = client.who_has(futures)
        old_log = next(p["log"] for p in runner.record()["pools"] if p["pool"] == "a")
        before = time.monotonic()
        restart = runner("restart-workers", "--pool", "a", check=True)
        took = time.monotonic() - before
        # every key is still in memory (on b, or moved back to a's new worker later), none ran
        held = client.who_has(futures)
        assert all(held.values()), held
        ran, kept = check_kept(client, futures)
        assert ran == PARTS and kept == PARTS, (ran, kept, held_before)
    status = json.loads(runner("status", "--json", check=True).stdout)
    drains = status["drains"]
    assert drains["count"] == 1 and drains["keys_moved"] == PARTS // 2
    assert drains["keys_lost"] == 0 and drains["last"][-1]["names"][0].startswith("a-")
    text = runner("status", check=True).stdout
    assert f"drains     1, {PARTS // 2} keys moved, 0 lost" in text
    with open(old_log) as handle:
        log = handle.read()
    assert f"{PARTS // 2} of {PARTS // 2} keys moved" in log, log
    # once its keys moved, the drained worker closed when told: its nanny did not have to kill
    # it (closed by the scheduler as its nanny closed too, it hung for the nanny's 8 s)
    assert "still alive after" not in log and "was killed by signal" not in log, log
    # the command says what the drain did
    assert f"stopped; drained: {PARTS // 2} keys moved, 0 lost" in restart.stderr + restart.stdout
    assert took < 60
    runner("down", check=True)


def test_hard_restart_loses_the_keys_and_they_are_recomputed(local_runner):
    runner = local_runner
    runner("up", *FAST, *POOLS, check=True)
    import dasklaunch

    with dasklaunch.connect(runner.state_dir, timeout="30s") as client:
        futures = persist_over_pools(client)
        runner("restart-workers", "--pool", "a", "--hard", check=True)
        ran, _ = check_kept(client, futures)
        assert ran == PARTS + PARTS // 2
    assert json.loads(runner("status", "--json", check=True).stdout)["drains"]["count"] == 0
    runner("down", check=True)


def test_sigterm_from_outside_drains_and_drain_timeout_zero_does_not(local_runner):
    """SIGTERM sent to a pool's step by someone else (Slurm, a user) drains too; with
    --drain-timeout 0 the workers end at once and their keys are recomputed."""
    runner = local_runner
    runner("up", *FAST, *POOLS, check=True)
    import dasklaunch

    with dasklaunch.connect(runner.state_dir, timeout="30s") as client:
        futures = persist_over_pools(client)
        pool_a = next(p for p in runner.record()["pools"] if p["pool"] == "a")
        os.kill(pool_a["leader"]["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 60
        while len(client.scheduler_info()["workers"]) > 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        # the signal did act: pool a's worker left (a leader that ignored it would keep every
        # key where it was, and the counts below would hold without any drain)
        names = [w["name"] for w in client.scheduler_info()["workers"].values()]
        assert [name.split("-")[0] for name in names] == ["b"], names
        ran, kept = check_kept(client, futures)
        assert ran == PARTS and kept == PARTS
    drains = json.loads(runner("status", "--json", check=True).stdout)["drains"]
    assert (drains["count"], drains["keys_moved"], drains["keys_lost"]) == (1, PARTS // 2, 0)
    runner("down", check=True)

    runner("up", *FAST, *POOLS, "--drain-timeout", "0", check=True)
    with dasklaunch.connect(runner.state_dir, timeout="30s") as client:
        futures = persist_over_pools(client)
        runner("restart-workers", "--pool", "a", check=True)
        ran, _ = check_kept(client, futures)
        assert ran == PARTS + PARTS // 2
    runner("down", check=True)


def group_members(group: int) -> list[int]:
    """The pids of process group `group` (read from /proc: field 5 of each stat)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == group:
            members.append(int(entry))
    return members


# pool a as dask-cuda workers (tests/standins: a stand-in that waits for signals as dask-cuda's
# `dask cuda worker` does), on a fake GPU
CUDA_POOLS = ["--pool", "a:nodes=1,share=yes,gpus-per-worker=1,nworkers=1,dask-cuda=yes",
              "--pool", "b:nodes=1,share=yes,ntasks-per-node=1,gpus-per-worker=0"]


@pytest.mark.parametrize("start_method", ["prefork", "spawn", "dask-cuda"])
def test_sigterm_to_every_process_of_the_step_drains(local_runner, start_method):
    """As Slurm does (scancel --signal=TERM, walltime, preemption): SIGTERM reaches the launcher,
    the nanny, its fork server and the worker process at once (here: the step's process group).
    The workers leave it to the launcher, which drains them first."""
    runner = local_runner
    if start_method == "dask-cuda":
        runner.env.update(PYTHONPATH=STANDINS, CUDA_VISIBLE_DEVICES="0")
        runner("up", *FAST, *CUDA_POOLS, check=True)
        assert "-m dask cuda worker" in " ".join(runner.record()["pools"][0]["command"])
    else:
        runner("up", *FAST, *POOLS, "--start-method", start_method, check=True)
    import dasklaunch

    with dasklaunch.connect(runner.state_dir, timeout="30s") as client:
        futures = persist_over_pools(client)
        pool_a = next(p for p in runner.record()["pools"] if p["pool"] == "a")
        leader = pool_a["leader"]["pid"]  # the local step leads its own process group
        assert os.getpgid(leader) == leader
        targets = group_members(leader)
        if start_method != "prefork":
            # the leader is srun's stand-in here (with prefork it is the task itself), and
            # `scancel --signal=TERM` of a step does not signal srun
            targets.remove(leader)
        for pid in targets:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while len(client.scheduler_info()["workers"]) > 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        ran, kept = check_kept(client, futures)
        assert (ran, kept) == (PARTS, PARTS)
    drains = json.loads(runner("status", "--json", check=True).stdout)["drains"]
    assert drains["keys_moved"] == PARTS // 2 and drains["keys_lost"] == 0
    runner("down", check=True)

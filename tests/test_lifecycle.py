"""The whole lifecycle with real Dask processes on 127.0.0.1, through the local backend and
through the fake srun (the Slurm backend's real code path)."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time

import pytest
from procs import group_alive, recorded_groups

pytestmark = pytest.mark.lifecycle

FAST = ["--dashboard-address", ":0", "--timeout", "90"]
NO_SUCH_MODULE = "dasklaunch_no_such_module"


@pytest.fixture(params=["local", "fake-slurm"])
def runner(request):
    if request.param == "local":
        runner = request.getfixturevalue("local_runner")
        runner.up_args = ["--local-tasks", "2"]
    else:
        runner = request.getfixturevalue("fake_slurm_runner")
        runner.up_args = ["--interface", "lo"]
    runner.backend = request.param
    return runner


def compute_on_all_workers(scheduler_file: str, expected: int) -> set:
    import dasklaunch

    with dasklaunch.connect(os.path.dirname(scheduler_file), timeout="30s") as client:
        pids = client.run(os.getpid)
        assert len(pids) == expected
        futures = client.map(lambda x: x * x, range(40))
        assert sum(client.gather(futures)) == sum(x * x for x in range(40))
        return set(pids.values())


def assert_nothing_runs(runner):
    """No process group that any command of this test recorded still runs."""
    for pgid, started in runner.groups_seen():
        assert not group_alive(pgid, started), f"process group {pgid} still runs"


def test_up_compute_kill_restart_down(runner):
    up = runner("up", *runner.up_args, *FAST, "--json", check=True)
    facts = json.loads(up.stdout)
    sfile = facts["scheduler_file"]
    assert facts["workers"]["expected"] == 2
    address = facts["scheduler"]["address"]
    assert address.startswith("tls://127.0.0.1:")
    pids_before = compute_on_all_workers(sfile, 2)

    status = json.loads(runner("status", "--json", check=True).stdout)
    assert status["scheduler"]["alive"] and status["workers"]["connected"] == 2
    assert status["hosts"] == {"127.0.0.1": 2}
    assert status["pools"][0]["state"] == "running"

    # The OOM storm: the whole worker step dies at once.
    pgid = runner.record()["pools"][0]["pgid"]
    os.killpg(pgid, signal.SIGKILL)
    deadline = time.time() + 30
    while time.time() < deadline:
        status = json.loads(runner("status", "--json").stdout)
        if status["workers"]["connected"] == 0 and status["pools"][0]["state"] == "exited":
            break
        time.sleep(0.3)
    assert status["scheduler"]["alive"] and status["workers"]["connected"] == 0
    assert status["pools"][0]["state"] == "exited"

    restart = runner("restart-workers", "--json", check=True)
    assert json.loads(restart.stdout)["workers"] == 2
    pids_after = compute_on_all_workers(sfile, 2)
    assert not pids_before & pids_after
    status = json.loads(runner("status", "--json", check=True).stdout)
    assert status["scheduler"]["address"] == address and status["restarts"] == 1

    # everything in the state dir is the owner's only, what Dask writes (scheduler.json) too
    for path in runner.state_dir.rglob("*"):
        mode = path.stat().st_mode & 0o777
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))

    env = runner("env", check=True).stdout
    assert f"export SCHEDULER_FILE={sfile}" in env
    assert runner("env", "--path", check=True).stdout.strip() == str(runner.state_dir / "env.sh")

    runner("down", check=True)
    assert_nothing_runs(runner)
    assert not (runner.state_dir / "scheduler.json").exists()
    assert list((runner.state_dir / "logs").glob("*.log")), "logs are kept"
    again = runner("down", check=True)  # idempotent
    assert "not running" in again.stderr
    gone = runner("status")
    assert gone.returncode == 1
    assert "scheduler  down (stopped by `dasklaunch down` at " in gone.stdout
    assert "GONE" not in gone.stdout
    after = runner("restart-workers")
    assert after.returncode == 1
    assert "stopped by `dasklaunch down` at " in after.stderr and "`dasklaunch up`" in after.stderr


def test_restart_half_dead_pool_and_graceful_down(runner):
    runner("up", *runner.up_args, *FAST, check=True)
    sfile = str(runner.state_dir / "scheduler.json")
    # kill one worker task's whole tree (nanny + worker): the pool is half dead
    import dasklaunch

    with dasklaunch.connect(runner.state_dir, timeout="30s") as client:
        worker_pids = list(client.run(os.getpid).values())
    import psutil

    nanny = psutil.Process(worker_pids[0]).parent()
    nanny.kill()
    psutil.Process(worker_pids[0]).kill()
    result = runner("restart-workers", check=True)
    assert "stopped" in result.stderr  # the live half went down gracefully
    compute_on_all_workers(sfile, 2)
    logs = "".join(p.read_text() for p in (runner.state_dir / "logs").glob("dl-workers1-*.log"))
    if runner.backend == "fake-slurm":
        calls = (runner.state_dir.parent / "fakeslurm" / "calls.log").read_text()
        assert '"scancel", "--signal=TERM"' in calls
    assert "Stopping worker" in logs or "Closing Nanny" in logs
    runner("down", check=True)
    assert_nothing_runs(runner)


def test_stale_scheduler_file_is_removed_and_a_live_one_refused(runner):
    runner.state_dir.mkdir(mode=0o700)
    stale = runner.state_dir / "scheduler.json"
    # what a SIGKILLed scheduler of an earlier job leaves: a valid file, nobody listening
    stale.write_text(json.dumps({"type": "Scheduler", "id": "Scheduler-old",
                                 "address": "tcp://127.0.0.1:9", "services": {"dashboard": 9}}))
    first = runner("up", *runner.up_args, *FAST, check=True)
    assert "removed stale scheduler file" in first.stderr
    second = runner("up", *runner.up_args, *FAST)
    assert second.returncode == 3
    assert second.stderr.startswith("dasklaunch: error: already up")
    assert len(second.stderr.strip().splitlines()) == 1
    status = json.loads(runner("status", "--json", check=True).stdout)
    assert status["workers"]["connected"] == 2, "the refused up must not disturb the cluster"
    runner("down", check=True)
    assert_nothing_runs(runner)


def test_garbled_scheduler_file_counts_as_stale(local_runner):
    local_runner.state_dir.mkdir(mode=0o700)
    (local_runner.state_dir / "scheduler.json").write_text('{"address": "tcp://')
    result = local_runner("up", "--local-tasks", "1", *FAST, check=True)
    assert "unreadable" in result.stderr
    local_runner("down", check=True)


def test_ctrl_c_during_up_rolls_back(runner):
    proc = runner.popen("up", *runner.up_args, *FAST)
    record = runner.state_dir / "state.json"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if json.loads(record.read_text()).get("pools"):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "rolled back" in err
    assert_nothing_runs(runner)
    assert not (runner.state_dir / "scheduler.json").exists()
    assert runner.record()["status"] == "failed"


def test_sigterm_during_up_rolls_back(local_runner):
    proc = local_runner.popen("up", "--local-tasks", "1", *FAST)
    # SIGTERM once up has started both steps (not before: a rollback of nothing proves nothing)
    deadline = time.time() + 30
    while time.time() < deadline and len(set(recorded_groups(local_runner.state_dir))) < 2:
        time.sleep(0.02)
    started = local_runner.groups_seen()
    assert len(started) == 2, started
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "rolled back" in err
    assert_nothing_runs(local_runner)


def test_worker_pool_that_dies_at_once_is_reported_with_its_log(runner):
    # dask worker drops an unknown option (seen with click 8.5); a failing preload is fatal
    result = runner("up", *runner.up_args, *FAST, f"--worker-arg=--preload={NO_SUCH_MODULE}")
    assert result.returncode == 1
    assert "worker pool exited" in result.stderr and NO_SUCH_MODULE in result.stderr
    assert_nothing_runs(runner)


def test_unknown_interface_is_a_quick_clear_error(runner):
    start = time.monotonic()
    result = runner("up", "--interface", "nosuch0", *FAST)
    elapsed = time.monotonic() - start
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("dasklaunch: error:")]
    assert len(errors) == 1, result.stderr
    assert "nosuch0" in errors[0] and re.search(r"\blo\b", errors[0]), errors[0]
    assert elapsed < 30  # not the readiness timeout
    assert_nothing_runs(runner)


def test_per_node_layout(runner):
    facts = json.loads(runner("up", *runner.up_args, *FAST, "--per-node", "--json",
                              check=True).stdout)
    assert facts["workers"]["expected"] == 1
    status = json.loads(runner("status", "--json", check=True).stdout)
    assert status["workers"]["connected"] == 1 and status["workers"]["threads"] == 2
    runner("down", check=True)


def test_down_workers_only_keeps_the_scheduler(local_runner):
    local_runner("up", "--local-tasks", "1", *FAST, check=True)
    local_runner("down", "--workers-only", check=True)
    status = json.loads(local_runner("status", "--json", check=True).stdout)
    assert status["scheduler"]["alive"] and status["workers"]["connected"] == 0
    local_runner("restart-workers", check=True)
    assert json.loads(local_runner("status", "--json").stdout)["workers"]["connected"] == 1
    local_runner("down", check=True)
    assert_nothing_runs(local_runner)



def worker_facts() -> tuple:  # module-level, but sent by value: see cloudpickle below
    import dask
    import psutil

    me = psutil.Process()
    server = me.parent()
    return (dask.config.get("distributed.worker.multiprocessing-method"),
            os.environ.get("OMP_NUM_THREADS"), os.environ.get("PYTHONHASHSEED"),
            hash("dasklaunch"), "spawn_main" in " ".join(me.cmdline()),
            server.pid, server.num_threads(), server.parent().pid)


@pytest.mark.parametrize("method", ["prefork", "fork", "spawn"])
def test_start_method_reaches_the_nannies(runner, method):
    """prefork (the default): each worker is forked by a fork server with one thread, the
    child of its nanny; the pre-spawn environment and the nanny's hash seed reach every worker
    (one hash for all), whatever the method."""
    import cloudpickle

    import dasklaunch

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    extra = [] if method == "prefork" else ["--start-method", method]
    runner("up", *runner.up_args, *FAST, *extra, check=True)
    try:
        with dasklaunch.connect(runner.state_dir, timeout="30s") as client:
            facts = client.run(worker_facts)
            nannies = client.run(os.getpid, nanny=True)
    finally:
        runner("down", check=True)
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    dask_method = {"prefork": "forkserver"}.get(method, method)
    assert {f[:5] for f in facts.values()} == {
        (dask_method, "1", "6640", hash_with_seed("dasklaunch", 6640), method == "spawn")}
    if method == "prefork":
        servers = {f[5] for f in facts.values()}
        assert len(servers) == len(facts)  # one per nanny process here (one nanny each)
        assert {f[6] for f in facts.values()} == {1}
        assert {f[7] for f in facts.values()} == set(nannies.values())


def hash_with_seed(text: str, seed: int) -> int:
    import subprocess

    return int(subprocess.run([sys.executable, "-c", f"print(hash({text!r}))"],
                              env=dict(os.environ, PYTHONHASHSEED=str(seed)),
                              capture_output=True, text=True, check=True).stdout)


SITECUSTOMIZE = """
import threading
threading.Thread(target=threading.Event().wait, daemon=True).start()
"""


def test_a_threaded_launcher_does_not_fork(runner, tmp_path):
    """A launcher with a second thread after importing distributed (here a sitecustomize's;
    in life a BLAS pool) says so and starts its workers with spawn."""
    import dasklaunch

    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join(p for p in (str(site), runner.env.get("PYTHONPATH")) if p)
    runner("up", *runner.up_args, *FAST, check=True, extra_env={"PYTHONPATH": path})
    try:
        with dasklaunch.connect(runner.state_dir, timeout="30s") as client:
            spawned = client.run(lambda: "spawn_main" in " ".join(__import__("psutil")
                                                                  .Process().cmdline()))
        logs = runner("logs", "workers", "-n", "all", check=True).stdout
    finally:
        runner("down", check=True)
    assert set(spawned.values()) == {True}
    assert "not preforking: 2 threads after importing distributed" in logs


def test_deleted_state_dir_does_not_lose_the_cluster(runner):
    import shutil

    runner("up", *runner.up_args, *FAST, check=True)
    groups = recorded_groups(runner.state_dir)
    assert groups
    shutil.rmtree(runner.state_dir)

    status = runner("status")
    assert status.returncode == 1 and "was deleted" in status.stderr
    assert len(status.stderr.strip().splitlines()) == 1
    again = runner("up", *runner.up_args, *FAST)
    assert again.returncode == 3 and "still runs" in again.stderr
    assert all(group_alive(pgid, started) for pgid, started in groups), "nothing was harmed"

    down = runner("down", check=True)
    assert "is gone" in down.stderr
    assert not any(group_alive(pgid, started) for pgid, started in groups)
    # the cluster is really gone, so the job can start over
    runner("up", *runner.up_args, *FAST, check=True)
    runner("down", check=True)
    assert_nothing_runs(runner)

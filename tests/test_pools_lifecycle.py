"""Pools on the local backend with real Dask: a CPU pool and a GPU pool (the GPUs are tokens in
CUDA_VISIBLE_DEVICES; nothing uses them), each worker pinned, restarted and stopped per pool."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from procs import group_alive

pytestmark = pytest.mark.lifecycle

FAST = ["--local-tasks", "2", "--dashboard-address", ":0", "--timeout", "90"]
GPUS = {"CUDA_VISIBLE_DEVICES": "0,1"}
POOLS = ["--pool", "cpu:nodes=1,share=yes", "--pool", "gpu:nodes=1,share=yes"]


def look(state_dir):
    import dasklaunch

    with dasklaunch.connect(state_dir, timeout="30s") as client:
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        names = {w["name"]: (addr, w["resources"])
                 for addr, w in client.scheduler_info()["workers"].items()}
        on_gpu = client.submit(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"),
                               resources={"GPU": 1}, pure=False).result(timeout=30)
        pids = client.run(os.getpid)
    return {name: (seen[addr], resources, pids[addr]) for name, (addr, resources) in
            names.items()}, on_gpu


def test_cpu_and_gpu_pools_pinned_restarted_and_stopped_one_at_a_time(local_runner):
    runner = local_runner
    up = runner("up", *FAST, *POOLS, "--json", check=True, extra_env=GPUS)
    assert json.loads(up.stdout)["workers"]["expected"] == 4
    workers, on_gpu = look(runner.state_dir)
    host = next(iter(workers)).split("-")[1]
    assert {n: (v[0], v[1]) for n, v in workers.items()} == {
        f"cpu-{host}-0": ("", {}), f"cpu-{host}-1": ("", {}),
        f"gpu-{host}-gpu0": ("0", {"GPU": 1.0}), f"gpu-{host}-gpu1": ("1", {"GPU": 1.0})}
    assert on_gpu in ("0", "1")
    status = json.loads(runner("status", "--json", check=True).stdout)
    rows = {row["pool"]: row for row in status["pools"]}
    assert rows["gpu"]["connected"] == rows["gpu"]["expected"] == 2 and rows["gpu"]["gpus"] == 2
    assert rows["cpu"]["connected"] == 2 and rows["cpu"]["gpus"] == 0

    # restart only the GPU pool: the CPU workers keep their processes
    old = runner.record()
    runner("restart-workers", "--pool", "gpu", check=True, extra_env=GPUS)
    after, _ = look(runner.state_dir)
    cpu_pids = {n: v[2] for n, v in workers.items() if n.startswith("cpu-")}
    assert {n: v[2] for n, v in after.items() if n.startswith("cpu-")} == cpu_pids
    assert all(after[n][2] != workers[n][2] for n in after if n.startswith("gpu-"))
    old_gpu = next(p for p in old["pools"] if p["pool"] == "gpu")
    assert not group_alive(old_gpu["pgid"], old_gpu["started"])

    # down one pool: the other and the scheduler stay
    runner("down", "--pool", "gpu", check=True)
    status = json.loads(runner("status", "--json", check=True).stdout)
    rows = {row["pool"]: row for row in status["pools"]}
    assert rows["gpu"]["state"] == "stopped" and rows["cpu"]["state"] == "running"
    assert status["workers"]["connected"] == 2 and status["workers"]["expected"] == 2
    unknown = runner("restart-workers", "--pool", "nosuch")
    assert unknown.returncode == 2 and "no pool 'nosuch' in this cluster (pools: cpu, gpu)" \
        in unknown.stderr
    runner("down", check=True)


def test_join_adds_workers_over_tls_and_down_stops_them(local_runner):
    runner = local_runner
    runner("up", *FAST, check=True)
    joined = runner("join", "--pool", "extra", "--json", check=True)
    assert json.loads(joined.stdout)["workers"] == 1
    custom = runner("join", "--pool", "mine", "--", sys.executable, "-m",
                    "distributed.cli.dask_worker", "--name", "mine-by-hand", "--host",
                    "127.0.0.1", check=True)
    assert "pool       mine: 1 worker joined" in custom.stdout
    status = json.loads(runner("status", "--json", check=True).stdout)
    rows = {row["pool"]: row for row in status["pools"]}
    assert status["workers"]["connected"] == status["workers"]["expected"] == 4
    assert rows["extra"]["connected"] == 1 and rows["mine"]["connected"] == 1
    # joined workers are sized like up's (the first pool's), not with Dask's `auto` memory
    workers = json.loads(runner("status", "--json", "--workers", check=True).stdout)
    limits = {w["name"]: w["memory_limit"] for w in workers["worker_list"]}
    ups = {v for k, v in limits.items() if k.startswith("workers-")}
    assert len(ups) == 1 and limits["extra-" + socket.gethostname().split(".")[0] + "-join0"] \
        in ups, limits
    # a second join adds to the pool; a dask worker COMMAND is named into its pool and sized
    # as it says
    runner("join", "--pool", "extra", "--nthreads", "1", "--memory-limit", "1GiB", check=True)
    runner("join", "--pool", "sized", "--", sys.executable, "-m", "distributed.cli.dask_worker",
           "--nthreads", "1", "--memory-limit", "1GiB", "--host", "127.0.0.1", check=True)
    status = json.loads(runner("status", "--json", "--workers", check=True).stdout)
    rows = {row["pool"]: row for row in status["pools"]}
    assert rows["extra"]["connected"] == rows["extra"]["expected"] == 2, rows
    assert rows["sized"]["connected"] == rows["sized"]["expected"] == 1, rows
    assert sorted(w["memory_limit"] for w in status["worker_list"]
                  if w["name"].startswith(("extra-", "sized-"))) == sorted(
        [2**30, 2**30, int(next(iter(ups)))])
    bad = runner("join", "--pool", "extra", "--memory-limit", "1.5")
    assert bad.returncode == 2 and "--memory-limit takes a fraction" in bad.stderr
    record = runner.record()
    runner("down", check=True)
    for step in record["pools"]:
        assert not group_alive(step["pgid"], step["started"]), step["pool"]


def test_a_worker_started_by_hand_joins_with_env_worker(local_runner, tmp_path):
    """The client env file carries only the client certificate; a worker's listener needs the
    worker's (`TLS expects a ssl_context argument` otherwise)."""
    runner = local_runner
    runner("up", *FAST, check=True)
    exports = runner("env", "--worker", check=True).stdout
    assert "TLS__WORKER__CERT" in exports and "TLS__CLIENT__" not in exports
    script = (f'eval "$1" && exec {sys.executable} -m distributed.cli.dask_worker '
              f'--scheduler-file "$DASK_SCHEDULER_FILE" --name by-hand --host 127.0.0.1')
    worker = subprocess.Popen(["sh", "-c", script, "sh", exports], env=runner.env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = json.loads(runner("status", "--json", check=True).stdout)
            if status["workers"]["connected"] == 3:
                break
            assert worker.poll() is None, "the hand-started worker exited"
            time.sleep(0.5)
        assert status["workers"]["connected"] == 3
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
        runner("down", check=True)


def test_a_cluster_whose_record_holds_pool_text_keeps_working(local_runner):
    """A cluster started before pools were stored structured (its record holds their --pool
    text): status, restart-workers --pool and down read it in the middle of the job."""
    runner = local_runner
    runner("up", *FAST, "--pool", "a:nodes=1,share=yes,ntasks-per-node=1",
           "--pool", "b:nodes=1,share=yes,ntasks-per-node=1", check=True)
    path = runner.state_dir / "state.json"
    record = json.loads(path.read_text())
    record["options"]["pools"] = ["a:nodes=1,share=yes,ntasks-per-node=1",
                                  "b:nodes=1,share=yes,ntasks-per-node=1"]
    path.write_text(json.dumps(record))
    status = json.loads(runner("status", "--json", check=True).stdout)
    assert sorted(row["pool"] for row in status["pools"]) == ["a", "b"]
    runner("restart-workers", "--pool", "a", check=True)
    status = json.loads(runner("status", "--json", check=True).stdout)
    assert status["workers"]["connected"] == 2
    runner("down", check=True)

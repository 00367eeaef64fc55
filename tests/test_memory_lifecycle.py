"""Profiles reach the scheduler and every worker, and the OOM paths behave as the seed saw them:
terminate restarts workers until KilledWorker; no-terminate pauses instead; a pool that died
whole comes back with restart-workers."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from dasklaunch.profiles.load import list_profiles, load_profile

pytestmark = pytest.mark.lifecycle
FAST = ["--dashboard-address", ":0", "--timeout", "90", "--local-tasks", "1"]


def leaves(tree: dict, prefix: str = "distributed") -> dict:
    out = {}
    for key, value in tree.items():
        path = f"{prefix}.{key}"
        out.update(leaves(value, path) if isinstance(value, dict) else {path: value})
    return out


SHIPPED = sorted(entry.name for entry in list_profiles() if entry.origin == "shipped")


def test_every_shipped_profile_is_tested():
    assert {"dask-default", "seed", "conservative", "no-terminate", "large-scale"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_profile_reaches_scheduler_and_workers(local_runner, name):
    import dask

    import dasklaunch

    facts = json.loads(local_runner("up", "--profile", name, *FAST, "--json", check=True).stdout)
    expected = leaves(load_profile(name).distributed)
    try:
        with dasklaunch.connect(facts["state_dir"]) as client:
            for key, value in expected.items():
                on_workers = client.run(dask.config.get, key)
                assert set(map(repr, on_workers.values())) == {repr(value)}, key
                assert client.run_on_scheduler(dask.config.get, key) == value, key
    finally:
        local_runner("down", check=True)
    env = (local_runner.state_dir / "env.sh").exists()
    assert not env  # down removed it; while up it exported DASK_CONFIG (checked below)


def test_env_file_points_clients_at_the_job_config(local_runner):
    local_runner("up", "--profile", "seed", *FAST, check=True)
    try:
        values = json.loads(local_runner("env", "--format", "json", check=True).stdout)
        config_dir = local_runner.state_dir / "dask"
        assert values["DASK_CONFIG"] == str(config_dir)
        assert (config_dir / "distributed.yaml").exists()
        status = json.loads(local_runner("status", "--json", check=True).stdout)
        assert status["profile"].endswith("seed.yaml")
        assert " x 0.9 - " in status["workers"]["memory_sizing"]
        assert " for the scheduler / 1 worker = " in status["workers"]["memory_sizing"]
        # where a setting came from, kept for as long as the cluster runs
        assert status["sources"] == {"per_node": "profile seed: layout=per-node"}
        shown = local_runner("status", check=True).stdout
        assert "setting    per-node from profile seed: layout=per-node" in shown
    finally:
        local_runner("down", check=True)


def make_allocate():
    """A task that really takes `megabytes` of RSS for `hold` seconds. Nested, so cloudpickle
    ships it by value (workers cannot import this test module)."""

    def allocate(megabytes: int, hold: float):
        import time as _time

        block = bytearray(megabytes * 2**20)
        for i in range(0, len(block), 4096):  # touch every page: RSS, not just address space
            block[i] = 1
        _time.sleep(hold)
        return len(block)

    return allocate


def test_terminate_restarts_workers_until_killed_worker_then_restart_workers(local_runner,
                                                                              tmp_path):
    from distributed import KilledWorker

    import dasklaunch

    profile = tmp_path / "strict.yaml"
    profile.write_text("description: test\ndistributed:\n  scheduler:\n"
                       "    allowed-failures: 1\n")
    local_runner("up", "--profile", str(profile), "--memory-limit", "400MB", *FAST,
                 check=True)
    try:
        with dasklaunch.connect(local_runner.state_dir) as client:
            with pytest.raises(KilledWorker):
                client.submit(make_allocate(), 600, 5, pure=False).result(timeout=120)
            status = json.loads(local_runner("status", "--json", check=True).stdout)
            assert status["workers"]["memory_restarts"] >= 2  # allowed-failures 1 -> 2 deaths
            log = "".join(p.read_text() for p in (local_runner.state_dir / "logs").glob(
                "dl-workers*.log"))
            assert "exceeded 95% memory budget" in log
            # an OOM storm that takes the whole pool down
            os.killpg(local_runner.record()["pools"][0]["pgid"], signal.SIGKILL)
            local_runner("restart-workers", check=True)
            assert client.submit(sum, range(10)).result(timeout=60) == 45
    finally:
        local_runner("down", check=True)


def test_no_terminate_pauses_instead_of_killing(local_runner):
    import dasklaunch

    local_runner("up", "--profile", "no-terminate", "--memory-limit", "400MB", *FAST,
                 check=True)
    try:
        with dasklaunch.connect(local_runner.state_dir) as client:
            pid = list(client.run(os.getpid).values())[0]
            future = client.submit(make_allocate(), 600, 3, pure=False)
            assert future.result(timeout=120) == 600 * 2**20
            assert list(client.run(os.getpid).values())[0] == pid, "the worker was restarted"
        log = "".join(p.read_text() for p in (local_runner.state_dir / "logs").glob(
            "dl-workers*.log"))
        assert "Pausing worker" in log and "memory budget. Restarting" not in log
        deadline = time.time() + 10
        while time.time() < deadline:
            status = json.loads(local_runner("status", "--json", check=True).stdout)
            if status["workers"]["paused"] == 0:
                break
            time.sleep(0.5)
        # the worker paused, then resumed once the memory was freed (status sees both)
        assert status["workers"]["paused"] == 0
        assert status["workers"]["memory_restarts"] == 0
    finally:
        local_runner("down", check=True)


def test_bad_profile_is_refused_before_anything_starts(local_runner, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("distributed:\n  worker:\n    memory:\n      pause: 0.96\n"
                   "      terminate: 0.95\n")
    result = local_runner("up", "--profile", str(bad), *FAST)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pause 0.96 is above terminate 0.95" in lines[0]
    assert not local_runner.state_dir.exists()

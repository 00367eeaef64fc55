"""Faults the cluster must survive (local backend; the Slurm ones are in tests/slurm)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from procs import group_alive, wait_for
from test_lifecycle import compute_on_all_workers

pytestmark = pytest.mark.lifecycle
FAST = ["--dashboard-address", ":0", "--timeout", "90", "--local-tasks", "2"]
GRACE = 2.0
SUPERVISE = ["--interval", "0.3", "--grace", str(GRACE), "--backoff", "0.5"]


def status(runner) -> dict:
    return json.loads(runner("status", "--json").stdout)


def supervisor_file(runner) -> dict:
    try:
        return json.loads((runner.state_dir / "supervisor.json").read_text())
    except (OSError, ValueError):
        return {}


def stop_supervisor(proc: subprocess.Popen) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_sigkill_one_worker_the_nanny_restarts_it(local_runner):
    local_runner("up", *FAST, check=True)
    sfile = str(local_runner.state_dir / "scheduler.json")
    import dasklaunch

    try:
        with dasklaunch.connect(local_runner.state_dir) as client:
            before = client.run(os.getpid)
            victim, pid = next(iter(before.items()))
            os.kill(pid, signal.SIGKILL)
            replaced = wait_for(lambda: victim not in (now := client.scheduler_info()["workers"])
                                and len(now) == 2)
            assert replaced, client.scheduler_info()["workers"].keys()
        compute_on_all_workers(sfile, 2)
    finally:
        local_runner("down", check=True)


def test_supervisor_relaunches_a_killed_step_and_leaves_on_sigterm(local_runner):
    local_runner("up", *FAST, check=True)
    sup = local_runner.popen("supervise", *SUPERVISE)
    try:
        assert wait_for(lambda: (status(local_runner)["supervisor"] or {}).get("attached"))
        started = time.monotonic()
        os.killpg(local_runner.record()["pools"][0]["pgid"], signal.SIGKILL)
        back = wait_for(lambda: (s := status(local_runner))["restarts"] == 1
                        and s["workers"]["connected"] == 2 and s)
        recovery = time.monotonic() - started
        assert back, status(local_runner)
        assert "exited" in back["supervisor"]["last_reason"]
        assert back["supervisor"]["restarts"] == 1
        print(f"recovery after SIGKILL of the worker step: {recovery:.1f}s")
    finally:
        code, err = stop_supervisor(sup)
    assert code == 0 and "the cluster keeps running" in err, err
    assert status(local_runner)["workers"]["connected"] == 2  # SIGTERM left the cluster alone
    local_runner("down", check=True)


def test_a_pool_that_dies_at_once_backs_off_then_gives_up(local_runner):
    local_runner("up", *FAST, "--wait-workers", "0",
                 "--worker-arg=--preload=dasklaunch_no_such_module", check=True)
    result = local_runner("supervise", *SUPERVISE, "--max-restarts", "3", timeout=120)
    assert result.returncode == 1
    waits = [float(line.split("next try in ")[1].rstrip("s")) for line in
             result.stderr.splitlines() if "next try in" in line]
    assert waits == sorted(waits) and len(waits) >= 2 and waits[1] > waits[0], result.stderr
    assert "giving up after 3 restarts" in result.stderr
    sup = status(local_runner)["supervisor"]
    assert not sup["attached"] and sup["restarts"] == 3
    local_runner("down", check=True)


def test_supervisor_does_not_fight_restart_workers_and_exits_after_down(local_runner):
    local_runner("up", *FAST, check=True)
    sup = local_runner.popen("supervise", *SUPERVISE)
    try:
        assert wait_for(lambda: (status(local_runner)["supervisor"] or {}).get("attached"))
        first_pool = local_runner.record()["pools"][0]
        local_runner("restart-workers", check=True)
        assert not group_alive(first_pool["pgid"], first_pool["started"])
        # a fighting supervisor relaunches once --grace has passed: wait until it has looked at
        # the restarted cluster after that and found nothing to do, then check it did nothing
        after = time.time() + GRACE
        assert wait_for(lambda: supervisor_file(local_runner).get("checked", 0) > after), \
            supervisor_file(local_runner)
        assert status(local_runner)["supervisor"]["restarts"] == 0
        assert local_runner.record()["generation"] == 2  # restart-workers' own, no other
        local_runner("down", check=True)
        assert sup.wait(timeout=30) == 0
    finally:
        code, err = stop_supervisor(sup)
    assert "brought down" in err
    seen = local_runner.groups_seen()
    assert (first_pool["pgid"], first_pool["started"]) in seen  # the pool restart-workers stopped
    assert len(seen) == 3
    for pgid, started in seen:
        assert not group_alive(pgid, started)


def test_sigkill_the_scheduler_status_says_gone_and_up_works_again(local_runner):
    local_runner("up", *FAST, check=True)
    orphan = local_runner.record()["pools"][0]
    # workers leave a dead scheduler within seconds; a frozen pool cannot, so up must stop it
    os.killpg(orphan["pgid"], signal.SIGSTOP)
    os.killpg(local_runner.record()["scheduler"]["pgid"], signal.SIGKILL)
    gone = wait_for(lambda: local_runner("status").returncode == 1)
    assert gone
    text = local_runner("status").stdout
    assert "GONE" in text
    # no `down` first: up finds the stale file and the orphaned pool and cleans both
    again = local_runner("up", *FAST, check=True)
    assert "removed stale scheduler file" in again.stderr
    assert f"stopped leftover workers ({orphan['name']})" in again.stderr
    assert not group_alive(orphan["pgid"], orphan["started"]), again.stderr
    assert local_runner.record()["pools"][0]["pgid"] != orphan["pgid"]
    assert status(local_runner)["workers"]["connected"] == 2
    local_runner("down", check=True)
    for pgid, started in local_runner.groups_seen():
        assert not group_alive(pgid, started)


def test_supervisor_restart_scheduler(local_runner):
    local_runner("up", *FAST, check=True)
    old = status(local_runner)["scheduler"]["address"]
    sup = local_runner.popen("supervise", *SUPERVISE, "--restart-scheduler")
    try:
        assert wait_for(lambda: (status(local_runner)["supervisor"] or {}).get("attached"))
        os.killpg(local_runner.record()["scheduler"]["pgid"], signal.SIGKILL)
        fresh = wait_for(lambda: (s := status(local_runner))["scheduler"]["alive"]
                         and s["scheduler"]["address"] != old and
                         s["workers"]["connected"] == 2 and s, timeout=90)
        assert fresh
    finally:
        code, err = stop_supervisor(sup)
    assert "clients must reconnect" in err
    local_runner("down", check=True)


def test_two_ups_race_one_wins(local_runner):
    first = local_runner.popen("up", *FAST)
    second = local_runner.popen("up", *FAST)
    results = [p.communicate(timeout=120) + (p.returncode,) for p in (first, second)]
    codes = sorted(code for _, _, code in results)
    assert codes == [0, 3], results
    loser = [err for _, err, code in results if code == 3][0]
    assert "busy" in loser or "already up" in loser
    assert status(local_runner)["workers"]["connected"] == 2
    local_runner("down", check=True)


def test_up_racing_down(local_runner):
    up = local_runner.popen("up", *FAST)
    time.sleep(0.5)
    down = local_runner("down")
    up_out, up_err = up.communicate(timeout=120)
    assert down.returncode in (0, 3), down.stderr
    if down.returncode == 3:
        assert "busy" in down.stderr and up.returncode == 0
    local_runner("down", check=True)
    for pgid, started in local_runner.groups_seen():
        assert not group_alive(pgid, started)


def test_damaged_state_record_does_not_lose_the_cluster(local_runner):
    local_runner("up", *FAST, check=True)
    (local_runner.state_dir / "state.json").write_text('{"version": 1, "job_')
    result = local_runner("status", "--json")
    assert result.returncode == 0 and "using the backup copy" in result.stderr
    assert json.loads(result.stdout)["workers"]["connected"] == 2
    down = local_runner("down")
    assert down.returncode == 0, down.stderr
    for pgid, started in local_runner.groups_seen():
        assert not group_alive(pgid, started)


def test_garbled_scheduler_file_while_running(local_runner):
    local_runner("up", *FAST, check=True)
    sfile = local_runner.state_dir / "scheduler.json"
    sfile.write_text(sfile.read_text()[:20])
    result = local_runner("status")
    assert result.returncode == 1
    restart = local_runner("restart-workers")
    assert restart.returncode == 1 and "scheduler is gone" in restart.stderr
    assert len([line for line in restart.stderr.splitlines() if "error" in line]) == 1
    local_runner("down", check=True)
    for pgid, started in local_runner.groups_seen():
        assert not group_alive(pgid, started)


def test_env_file_that_cannot_be_written_does_not_kill_the_cluster(local_runner):
    local_runner.state_dir.mkdir(mode=0o700)
    (local_runner.state_dir / "env.sh").mkdir()  # rename onto a directory fails
    result = local_runner("up", *FAST)
    assert result.returncode == 0, result.stderr
    assert "the cluster is up" in result.stderr and "env.sh" in result.stderr
    assert status(local_runner)["workers"]["connected"] == 2
    local_runner("down", check=True)


def test_lifetime_is_passed_to_the_workers(local_runner):
    out = local_runner("up", "--dry-run", "--lifetime", "1h", "--lifetime-stagger", "5m",
                       check=True).stdout
    assert "--lifetime 1h --lifetime-restart --lifetime-stagger 5m" in out
    bad = local_runner("up", "--lifetime-stagger", "5m")
    assert bad.returncode == 2


def test_parse_end_time():
    import datetime

    from dasklaunch.slurm.commands import parse_end_time

    assert parse_end_time("N/A") is None and parse_end_time("Unknown") is None
    assert parse_end_time("2026-11-26T18:30:00") == \
        datetime.datetime(2026, 11, 26, 18, 30).timestamp()  # squeue prints local time


def test_walltime_margin_brings_the_cluster_down(local_runner, monkeypatch):
    local_runner("up", *FAST, check=True)
    # the local backend has no walltime: emulate one through the supervisor's own API
    from dasklaunch.ops.supervise import SuperviseOptions, Supervisor
    from dasklaunch.runtime.report import Reporter
    from dasklaunch.runtime.state import StateDir

    sup = Supervisor(StateDir(local_runner.state_dir),
                     SuperviseOptions(walltime_margin=60, interval=0.2), Reporter(quiet=True))
    assert sup.tick(end=time.time() + 30) == 0
    assert local_runner("status").returncode == 1
    assert local_runner.record()["status"] == "down"

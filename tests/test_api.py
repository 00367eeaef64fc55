"""dasklaunch.connect(job=...): a job's cluster from any shell of its user, e.g. a notebook on a
login node, found as the CLI finds it."""

from __future__ import annotations

import re
import socket

import pytest
from procs import outside_any_job

import dasklaunch
from dasklaunch.api import job_state_dir
from dasklaunch.errors import NotUpError
from dasklaunch.runtime.record import ClusterRecord
from dasklaunch.runtime.state import StateDir


@pytest.fixture
def login_shell(tmp_path, monkeypatch):
    """A shell outside any job: no SLURM_*, no DASKLAUNCH_*/DASK_* variables."""
    outside_any_job(monkeypatch, "SCRATCH")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


def recorded(path, job_id: str) -> StateDir:
    state = StateDir(path)
    state.create()
    state.write_record(ClusterRecord(job_id=job_id, backend="slurm"))
    return state


def test_a_job_is_found_under_scratch_else_home(login_shell, tmp_path):
    assert job_state_dir(job=1234).path == tmp_path / "home" / ".dasklaunch" / "1234"
    login_shell.setenv("SCRATCH", str(tmp_path / "scratch"))
    assert job_state_dir(job="1234").path == tmp_path / "scratch" / "dasklaunch" / "1234"


def test_state_dir_rules_come_first_but_never_give_another_job(login_shell, tmp_path):
    mine = recorded(tmp_path / "mine", "1234")
    assert job_state_dir(mine.path, job=1234).path == mine.path
    login_shell.setenv("DASKLAUNCH_STATE_DIR", str(mine.path))
    assert job_state_dir(job="1234").path == mine.path
    with pytest.raises(NotUpError, match=r"\(from DASKLAUNCH_STATE_DIR\) holds job 1234, not "
                                         r"job 99"):
        job_state_dir(job=99)
    with pytest.raises(NotUpError, match=r"\(given\) holds job 1234"):
        dasklaunch.connect(mine.path, job=99)


def test_a_job_that_is_not_up(login_shell, tmp_path):
    login_shell.setenv("SCRATCH", str(tmp_path / "scratch"))
    with pytest.raises(NotUpError, match=r"scratch/dasklaunch/777: the cluster of job 777 is "
                                         r"not up"):
        dasklaunch.connect(job=777)


@pytest.mark.lifecycle
def test_connect_by_job_from_a_shell_that_knows_nothing_else(local_runner, no_leftovers,
                                                             login_shell, tmp_path):
    """`up` in one shell (its state dir under $SCRATCH), connect(job=) in another, TLS
    included."""
    scratch = tmp_path / "scratch"
    job = f"local-{socket.gethostname()}"
    state_dir = scratch / "dasklaunch" / job
    no_leftovers.append(state_dir)
    env = {k: v for k, v in local_runner.env.items() if k != "DASKLAUNCH_STATE_DIR"}
    local_runner.env = {**env, "SCRATCH": str(scratch)}
    up = local_runner("up", "--local-tasks", "1", "--dashboard-address", ":0", check=True)
    try:
        assert (state_dir / "scheduler.json").exists(), up.stderr
        login_shell.setenv("SCRATCH", str(scratch))
        with dasklaunch.connect(job=job) as client:
            assert client.scheduler.address.startswith("tls://")
            assert client.submit(sum, [40, 2]).result() == 42
    finally:
        local_runner("down", check=True)


def test_connect_uses_the_dashboard_link_up_chose(tmp_path):
    import dask
    import distributed  # noqa: F401  (its config defaults, as in connect())

    from dasklaunch.ops.client_access import use_recorded_dashboard_link

    state = StateDir(tmp_path / "state")
    state.create()
    link = "/user/alice/proxy/{port}/status"
    state.write_record(ClusterRecord(job_id="local-vm", backend="local",
                                     client_env={"DASK_DISTRIBUTED__DASHBOARD__LINK": link}))
    default = "{scheme}://{host}:{port}/status"
    # the outer set() puts the default back on exit, whatever connect set meanwhile
    with dask.config.set({"distributed.dashboard.link": default}):
        use_recorded_dashboard_link(state)
        assert dask.config.get("distributed.dashboard.link") == link
    with dask.config.set({"distributed.dashboard.link": "mine/{port}"}):
        use_recorded_dashboard_link(state)  # a link of the user's own stays
        assert dask.config.get("distributed.dashboard.link") == "mine/{port}"
    assert dask.config.get("distributed.dashboard.link") == default


def test_a_failed_connect_leaves_no_client_for_the_garbage_collector(login_shell, tmp_path):
    """A failed Client left to the cyclic collector can be closed inside the next Client's
    loop start, which then deadlocks on its own lock (Python 3.13, distributed 2026.8; the
    slurm suite's test_a_second_connect_after_a_failed_one_returns runs it there). connect()
    closes the failed one before it returns: no Client object is left behind."""
    import gc
    import json

    with socket.socket() as sock:   # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    state = StateDir(tmp_path / "state")
    state.create()
    state.scheduler_file.write_text(json.dumps({"address": f"tcp://127.0.0.1:{port}"}))
    gc.collect()
    gc.disable()   # the collector runs only where connect() runs it
    try:
        with pytest.raises(OSError, match="127.0.0.1"):
            dasklaunch.connect(state.path, timeout=1)
        left = [o for o in gc.get_objects() if type(o).__name__ == "Client"]
    finally:
        gc.enable()
    assert not left, "a failed Client is left for the garbage collector"


@pytest.mark.parametrize("keywords, message", [
    ({"pol": ["a:nodes=1"]}, "unknown option 'pol'; did you mean pool?"),
    ({"worker_argz": ["--x"]}, "did you mean worker_arg?"),
    ({"pool": ["a"], "pools": ["b"]}, "pool= and pools= are the same option; give one"),
])
def test_cluster_keywords_are_up_options_and_a_misspelling_is_named(keywords, message,
                                                                    login_shell):
    """The API's keywords are the command line's (pool=, worker_arg=; pools= taken too): a
    misspelled one is refused before anything starts, naming the closest."""
    with pytest.raises(dasklaunch.errors.UsageError, match=re.escape(message)), \
            dasklaunch.cluster(**keywords):
        pass


def test_cluster_keywords_map_as_the_command_line_does():
    from dasklaunch.domain.settings import options_from

    opts, given = options_from({"pool": ["a:nodes=1"], "worker_arg": "--lifetime=1h",
                                "enable_cudf_spill": True})
    from dasklaunch.domain.pool_spec import PoolSpec, parse_pool

    # pools are parsed once, here at the boundary: text or PoolSpecs alike
    assert opts.pools == (PoolSpec(name="a", nodes="1"),)
    assert opts.worker_args == ("--lifetime=1h",)
    assert opts.cudf_spill and given == {"pools", "worker_args", "cudf_spill"}
    assert options_from({"pools": [parse_pool("a:nodes=1")]})[0].pools == opts.pools

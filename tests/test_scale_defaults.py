"""Settings that grow with the number of workers: pure arithmetic, the user's settings never
lowered, and what `up` hands its steps (in-process launcher: no Dask process started)."""

from __future__ import annotations

import dask
import pytest
from inprocess import InProcessLauncher

from dasklaunch.domain.scale import BACKLOG_VARIABLE, CONNECT_VARIABLE, scale_defaults
from dasklaunch.domain.settings import UpOptions
from dasklaunch.ops.scaling import apply_scale_defaults
from dasklaunch.ops.up import up
from dasklaunch.profiles.load import Profile
from dasklaunch.runtime.report import Reporter
from dasklaunch.runtime.state import StateDir

DEFAULTS = {"connect": None, "backlog": None, "death_timeout": 60.0, "timeout": 120.0}


def test_small_clusters_keep_dasks_defaults():
    assert scale_defaults(499, **DEFAULTS).changes == ()


@pytest.mark.parametrize("workers, env, death, timeout", [
    (1000, {CONNECT_VARIABLE: "100s"}, 130.0, 160.0),
    (5000, {CONNECT_VARIABLE: "500s", BACKLOG_VARIABLE: "5000"}, 530.0, 560.0),
])
def test_timeouts_cover_the_whole_registration(workers, env, death, timeout):
    scaled = scale_defaults(workers, **DEFAULTS)
    assert (scaled.env, scaled.death_timeout, scaled.timeout) == (env, death, timeout)


def test_what_the_user_set_is_never_lowered():
    scaled = scale_defaults(5000, connect=900.0, backlog=65536, death_timeout=None,
                            timeout=None)
    assert scaled == type(scaled)()


def test_the_profile_and_the_dask_config_count_as_the_users():
    profile = Profile(name="p", source=None, distributed={"comm": {"timeouts": {
        "connect": "10 minutes"}, "socket-backlog": 8192}})
    opts, env = apply_scale_defaults(UpOptions(), 5000, profile, Reporter(quiet=True))
    assert env == {} and opts.death_timeout == 530.0
    with dask.config.set({"distributed.comm.timeouts.connect": "1000s"}):
        opts, env = apply_scale_defaults(UpOptions(death_timeout=30), 5000, None,
                                         Reporter(quiet=True))
    assert env == {BACKLOG_VARIABLE: "5000"} and opts.death_timeout == 30


def test_up_hands_the_raised_settings_to_its_steps(tmp_path):
    opts = UpOptions(backend="local", local_tasks=2, nworkers=500, nthreads=1, tls=False,
                     memory_limit="1MiB")
    launcher = InProcessLauncher(workers_per_task=500)
    up(opts, state_dir=tmp_path / "state", report=Reporter(quiet=True), launcher=launcher,
       probe=launcher.probe)
    record = StateDir(tmp_path / "state").read_record()
    assert record.options.death_timeout == 130.0 and record.options.timeout == 160.0
    pool, sched = record.pools[0], record.scheduler
    assert pool.env[CONNECT_VARIABLE] == sched.env[CONNECT_VARIABLE] == "100s"
    assert pool.command[pool.command.index("--death-timeout") + 1] == "130"

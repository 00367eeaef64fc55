import json
import os
import stat
from pathlib import Path

import pytest

from dasklaunch.errors import BusyError, StateDirError
from dasklaunch.runtime.record import ClusterRecord
from dasklaunch.runtime.state import StateDir, default_state_dir


def test_default_state_dir_order():
    assert str(default_state_dir("7", {"DASKLAUNCH_STATE_DIR": "/x", "SCRATCH": "/s"})) == "/x"
    assert str(default_state_dir("7", {"SCRATCH": "/s", "HOME": "/h"})) == "/s/dasklaunch/7"
    assert str(default_state_dir("7", {"HOME": "/h"})) == "/h/.dasklaunch/7"


def test_created_owner_only_and_files_0600(tmp_path):
    state = StateDir(tmp_path / "a" / "job")
    state.create()
    assert stat.S_IMODE(os.stat(state.path).st_mode) == 0o700
    path = state.write_text("env.sh", "x\n")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_text() == "x\n"
    assert not [p for p in state.path.iterdir() if p.name.endswith(".tmp")]


def test_record_round_trip_and_damage(tmp_path):
    state = StateDir(tmp_path / "job")
    state.create()
    assert state.read_record() is None
    state.write_record(ClusterRecord(job_id="1", backend="local"))
    assert state.read_record().job_id == "1"
    state.record_file.write_text('{"job_id": ')
    with pytest.raises(StateDirError, match="damaged"):
        state.read_record()


def test_refuses_symlink_and_group_writable(tmp_path):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(StateDirError, match="symlink"):
        StateDir(link).create()
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    with pytest.raises(StateDirError, match="writable by others"):
        StateDir(open_dir).create()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_refuses_a_dir_owned_by_someone_else(tmp_path):
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)
    with pytest.raises(StateDirError, match="belongs to uid 65534"):
        StateDir(other).create()


def test_unwritable_parent_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        target = "/proc/dasklaunch-cannot-exist/job"  # root can write anywhere else
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        target = ro / "job"
    with pytest.raises(StateDirError, match="cannot create state dir"):
        StateDir(target).create()


def test_lock_is_exclusive(tmp_path):
    state = StateDir(tmp_path / "job")
    state.create()
    with state.lock("up"), pytest.raises(BusyError, match="dasklaunch up"), state.lock("down"):
        pass
    with state.lock("down"):
        pass


def test_a_record_written_by_dasklaunch_0_1_still_loads(tmp_path):
    """state.json as `dasklaunch up` 0.1 wrote it (before the record was typed)."""
    state = StateDir(tmp_path / "job")
    state.create()
    old = (Path(__file__).parent / "expected" / "state-0.1.json").read_text()
    state.record_file.write_text(old)
    record = state.read_record()
    assert record.backend == "local" and record.status == "up"
    assert record.scheduler.role == "scheduler" and record.scheduler.pgid
    assert [p.role for p in record.pools] == ["workers"]
    assert record.options.profile == "seed" and record.options.nworkers == 1
    assert record.client_env["DASK_CONFIG"].endswith("/dask")
    # written back, it keeps the same keys (tools that read state.json keep working)
    state.write_record(record)
    assert set(json.loads(old)) <= set(json.loads(state.record_file.read_text()))
    written = json.loads(state.record_file.read_text())
    for key in ("scheduler", "pools"):
        old_steps = json.loads(old)[key]
        old_steps = old_steps if isinstance(old_steps, list) else [old_steps]
        new_steps = written[key] if isinstance(written[key], list) else [written[key]]
        for before, after in zip(old_steps, new_steps):
            assert set(before) <= set(after) and "plan" not in after  # one flat object


def test_a_step_is_its_frozen_plan_and_what_starting_it_gave():
    import dataclasses

    from dasklaunch.runtime.record import StepRun

    flat = {"role": "workers", "name": "dl-workers2-x", "placement": "tasks", "ntasks": 4,
            "nnodes": 2, "command": ["dask", "worker"], "log": "l", "env": {"A": "1"},
            "pool": "cpu", "expected": 0, "argv": ["srun", "dask", "worker"], "started": 5.0,
            "pgid": 42, "task_pids": [42], "step_id": "7.1", "leader": None}
    run = StepRun.from_dict(flat, nworkers=2)
    # a pool written before pools were counted: every task ran --nworkers workers
    assert run.workers == 8 and run.plan.expected == 8
    assert run.name == "dl-workers2-x" and run.command == ("dask", "worker")
    assert (run.pgid, run.step_id) == (42, "7.1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.plan.name = "other"   # a next generation is a new plan, never an edited run
    with pytest.raises(AttributeError, match="expected is the plan's"):
        run.expected = 7          # would shadow the plan's and never reach state.json
    run.step_id = "7.2"           # the run's own fields change as it runs
    assert StepRun.from_dict(run.to_dict()).to_dict() == run.to_dict()
    with pytest.raises(AttributeError):
        run.nonexistent


def test_options_keep_pools_structured_and_read_the_text_older_records_hold():
    """The record stores pools as PoolSpecs (dicts); a record written before holds their
    --pool text, which is parsed as it is read."""
    import json

    from dasklaunch.domain.pool_spec import parse_pool
    from dasklaunch.domain.settings import UpOptions

    opts = UpOptions(pools=(parse_pool("gpu:nodes=nid[01,03],resources=GPU:1,worker-arg=--x"),))
    data = json.loads(json.dumps(opts.to_dict()))
    assert data["pools"][0]["nodes"] == "nid[01,03]" and data["pools"][0]["resources"] == [
        ["GPU", "1"]]
    assert UpOptions.from_dict(data) == opts
    older = dict(data, pools=["gpu:nodes=nid[01,03],resources=GPU:1,worker-arg=--x"])
    assert UpOptions.from_dict(older) == opts

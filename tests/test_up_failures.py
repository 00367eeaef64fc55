"""`up`'s failure paths with the in-process launcher: each stage fails on demand, and `up`
rolls back what it started, records the failure and raises the right typed error. No Dask
process is started."""

from __future__ import annotations

import pytest
from inprocess import InProcessLauncher

from dasklaunch.domain.settings import UpOptions
from dasklaunch.errors import CommandError, Interrupted, StartupError, StartupTimeout
from dasklaunch.ops.up import up
from dasklaunch.runtime.report import Reporter
from dasklaunch.runtime.state import StateDir

OPTS = UpOptions(backend="local", local_tasks=2, tls=False, timeout=0.5)


def bring_up(tmp_path, launcher: InProcessLauncher, opts: UpOptions = OPTS) -> StateDir:
    up(opts, state_dir=tmp_path / "state", report=Reporter(quiet=True), launcher=launcher,
       probe=launcher.probe)
    return StateDir(tmp_path / "state")


def assert_rolled_back(tmp_path, launcher: InProcessLauncher) -> None:
    assert launcher.running_steps == set(), "a step that up started still runs"
    state = StateDir(tmp_path / "state")
    assert state.read_record().status == "failed"
    assert not state.scheduler_file.exists()
    assert not state.env_file.exists()


def test_up_succeeds_with_every_worker_counted(tmp_path):
    launcher = InProcessLauncher()
    state = bring_up(tmp_path, launcher)
    record = state.read_record()
    assert record.status == "up" and record.backend == "inprocess"
    assert len(launcher.running_steps) == 2
    assert record.expected_workers == 2
    assert state.env_file.exists()


def test_a_benchmark_can_run_another_worker_program(tmp_path, monkeypatch):
    # bench/scale.py: simulated workers take dask worker's command line in its place
    monkeypatch.setenv("DASKLAUNCH_WORKER_MODULE", "simworkers")
    state = bring_up(tmp_path, InProcessLauncher())
    command = state.read_record().pools[0].command
    worker = command[command.index("--") + 1:]
    assert list(worker[1:3]) == ["-m", "simworkers"] and "--scheduler-file" in worker
    monkeypatch.delenv("DASKLAUNCH_WORKER_MODULE")
    state = bring_up(tmp_path / "again", InProcessLauncher())
    assert "distributed.cli.dask_worker" in state.read_record().pools[0].command


@pytest.mark.parametrize("role", ["scheduler", "workers"])
def test_a_step_that_cannot_start_is_rolled_back(tmp_path, role):
    launcher = InProcessLauncher(fail_at="start", fail_role=role)
    with pytest.raises(CommandError, match="injected failure"):
        bring_up(tmp_path, launcher)
    assert_rolled_back(tmp_path, launcher)
    if role == "workers":
        # the scheduler had started: rollback stopped it, hard
        assert [how for _, how in launcher.stopped] == ["killed"]


def test_a_scheduler_that_never_answers_times_out_and_is_rolled_back(tmp_path):
    launcher = InProcessLauncher(fail_at="readiness")
    with pytest.raises(StartupTimeout, match="scheduler not ready after 0.5s"):
        bring_up(tmp_path, launcher)
    assert_rolled_back(tmp_path, launcher)
    assert len(launcher.stopped) == 2


@pytest.mark.parametrize("role, message", [
    ("workers", "worker pool exited with 0/2 workers connected"),
    ("scheduler", "scheduler exited before it was ready"),
])
def test_a_step_that_exits_early_is_reported_not_waited_for(tmp_path, role, message):
    launcher = InProcessLauncher(fail_at="early-exit", fail_role=role)
    with pytest.raises(StartupError, match=message):
        bring_up(tmp_path, launcher, UpOptions(**{**OPTS.to_dict(), "timeout": 60.0}))
    assert_rolled_back(tmp_path, launcher)


def test_an_interrupt_while_waiting_rolls_back(tmp_path):
    launcher = InProcessLauncher(fail_at="interrupt")
    with pytest.raises(Interrupted, match="stopped the scheduler and workers"):
        bring_up(tmp_path, launcher)
    assert_rolled_back(tmp_path, launcher)


def test_fewer_workers_than_expected_times_out_naming_the_count(tmp_path):
    launcher = InProcessLauncher(workers_per_task=0)
    with pytest.raises(StartupTimeout, match="only 0/2 workers connected after 0.5s"):
        bring_up(tmp_path, launcher)
    assert_rolled_back(tmp_path, launcher)


class RecordingLauncher(InProcessLauncher):
    """Notes, as each step starts, whether a scheduler file is there for it to be misled by."""

    def __init__(self, state: StateDir, **kwargs):
        super().__init__(**kwargs)
        self.state = state
        self.file_at_start: dict[str, bool] = {}

    def start(self, step):
        self.file_at_start[step.role] = self.state.scheduler_file.exists()
        return super().start(step)


def test_a_stale_scheduler_file_is_gone_before_the_scheduler_starts(tmp_path):
    import io
    import json

    state = StateDir(tmp_path / "state")
    state.create()
    # what a SIGKILLed scheduler of an earlier job leaves: a valid file, nobody listening
    state.scheduler_file.write_text(json.dumps({
        "type": "Scheduler", "id": "Scheduler-old", "address": "tcp://127.0.0.1:9",
        "services": {"dashboard": 9}}))
    launcher = RecordingLauncher(state)
    messages = io.StringIO()
    up(OPTS, state_dir=state.path, report=Reporter(stream=messages), launcher=launcher,
       probe=launcher.probe)
    assert launcher.file_at_start == {"scheduler": False, "workers": False}
    assert f"removed stale scheduler file {state.scheduler_file} (its scheduler is gone)" \
        in messages.getvalue()


def test_the_interface_error_is_the_exceptions_line_not_the_quoted_source(tmp_path):
    """Python 3.13 tracebacks quote the raising source line, which holds the same words."""
    from dasklaunch.ops.readiness import interface_error

    log = tmp_path / "sched.log"
    log.write_text(
        'Traceback (most recent call last):\n'
        '    raise ValueError(\n'
        '        f"{ifname!r} is not a valid network interface. "\n'
        "ValueError: 'nosuch0' is not a valid network interface. Valid network interfaces are: "
        "['lo', 'lab0']\n")
    err = interface_error(UpOptions(interface="nosuch0"), str(log))
    assert str(err) == ("--interface nosuch0: 'nosuch0' is not a valid network interface. Valid "
                        "network interfaces are: ['lo', 'lab0']")

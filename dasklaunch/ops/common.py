"""What the use cases share: finding a job's record, step names, signals during a change."""

from __future__ import annotations

import json
import secrets
import signal
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import NotUpError
from ..runtime import proc, schedfile
from ..runtime.record import ClusterRecord, StepRun
from ..runtime.report import Reporter
from ..runtime.state import StateDir

GRACE_SECONDS = 10.0


def stop_pool(launcher, state: StateDir, record: ClusterRecord, step: StepRun,
              hard: bool = False) -> str:
    """Stop one worker pool's step, gracefully unless `hard` (its workers drain first, to the
    pools that stay); how it ended, with what the drain did ("stopped; drained: 3 keys moved,
    0 lost")."""
    info = schedfile.read(state.scheduler_file)
    before = _drains(info) if info is not None and not hard else None
    outcome = launcher.stop(step, grace=stop_grace(record), hard=hard)
    after = _drains(info) if before is not None else None
    if before is None or after is None:
        return outcome
    new = after.get("count", 0) - before.get("count", 0)
    events = [e for e in (after.get("last") or [])[-new:] if new > 0 and any(
        str(name).startswith(f"{step.pool}-") for name in e.get("names", ()))]
    if not events:
        return outcome
    moved = sum(e["keys_moved"] for e in events)
    lost = sum(e["keys_lost"] for e in events)
    return f"{outcome}; drained: {moved} keys moved, {lost} lost"


def _drains(info: schedfile.SchedulerInfo) -> dict | None:
    summary = schedfile.summary(info)
    return (summary or {}).get("drains") if summary is not None else None


def stop_grace(record: ClusterRecord) -> float:
    """How long a graceful stop of workers waits before SIGKILL: the drain, then the exit."""
    return GRACE_SECONDS + max(0.0, record.options.drain_timeout)


@contextmanager
def nothing_stays(state: StateDir):
    """While every worker of the cluster is being stopped: no drain (no worker would stay to
    take the results), so the stop takes no longer than it did."""
    from ..launch.node_drain import NO_DRAIN_FILE

    state.write_text(NO_DRAIN_FILE, "every worker is being stopped\n")
    try:
        yield
    finally:
        state.remove(NO_DRAIN_FILE)
SUPERVISOR_FILE = "supervisor.json"


def load_record(state: StateDir, report: Reporter | None = None) -> ClusterRecord:
    if not state.exists():
        recovered = state.recovered_record()
        if recovered is not None and recovered.status != "down":
            raise NotUpError(f"state dir {state.path} was deleted while its cluster may still "
                             f"run; `dasklaunch down` stops it from the copy of its record")
        raise NotUpError(f"no dasklaunch cluster here: {state.path} does not exist "
                         f"(run `dasklaunch up`, or set --state-dir/DASKLAUNCH_STATE_DIR)")
    record, warning = state.read_record_or_backup()
    if warning:
        (report or Reporter()).warn(warning)
    if record is None:
        raise NotUpError(f"no dasklaunch cluster recorded in {state.path}")
    return record


def step_name(role: str, generation: int = 0) -> str:
    suffix = secrets.token_hex(3)
    return f"dl-sched-{suffix}" if role == "scheduler" else f"dl-workers{generation}-{suffix}"


def log_tail(path: str | Path, lines: int = 8) -> str:
    try:
        text = Path(path).read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


@contextmanager
def interrupts_raise():
    """Turn SIGTERM/SIGHUP into KeyboardInterrupt so a change rolls back on them as on Ctrl-C."""
    def handler(signum, _frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        with suppress(ValueError):  # not the main thread: leave signals alone
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def memory_restarts(pools: list[StepRun]) -> int:
    """Workers the nannies restarted for exceeding `terminate`, as their logs say."""
    count = 0
    for pool in pools:
        with suppress(OSError), open(pool.log, errors="replace") as log:
            count += sum("memory budget. Restarting" in line for line in log)
    return count


def read_supervisor(state: StateDir) -> dict | None:
    """supervisor.json with `attached` = whether its process still runs."""
    try:
        data = json.loads((state.path / SUPERVISOR_FILE).read_text())
    except (OSError, ValueError):
        return None
    pid = data.get("process")
    data["attached"] = bool(pid) and proc.alive(proc.ProcessId.from_dict(pid))
    return data

"""What an earlier run left in a state dir, as `up` finds it: a live cluster (refused, also by a
dry run), a stale scheduler file, a damaged record, leftover steps, a no-drain mark."""

from __future__ import annotations

import os
import time
from contextlib import suppress

from ..errors import AlreadyUpError, StateDirError
from ..launch.factory import launcher_for
from ..launch.node_drain import NO_DRAIN_FILE
from ..runtime import schedfile
from ..runtime.report import Reporter
from ..runtime.state import StateDir


def clear_stale(state: StateDir, job_id: str, report: Reporter) -> None:
    """Refuse a live cluster; otherwise remove what an earlier run left behind, saying so."""
    try:
        record = state.read_record()
    except StateDirError as err:
        record = None
        damaged = state.path / f"state.json.damaged-{int(time.time())}"
        os.replace(state.record_file, damaged)
        report.warn(f"{err}; moved it to {damaged.name}")
    info = schedfile.read(state.scheduler_file)
    owner = record.job_id if record else None
    if refusal := live_cluster(state, job_id, owner, info):
        raise refusal
    if state.scheduler_file.exists():
        why = "its scheduler is gone" if info else "it is unreadable"
        if owner and owner != job_id:
            why += f", it belongs to job {owner}"
        state.remove(state.scheduler_file.name)
        report.info(f"removed stale scheduler file {state.scheduler_file} ({why})")
    # a `down` cut short (a requeued or preempted job's earlier run) must not keep the new
    # cluster's workers from draining
    state.remove(NO_DRAIN_FILE)
    if record:
        launcher = launcher_for(record)
        for step in record.steps:
            if launcher.running(step):
                launcher.stop(step, hard=True)
                report.info(f"stopped leftover {step.role} ({step.name}) of an earlier run")


def live_cluster(state: StateDir, job_id: str, owner: str | None,
                 info: schedfile.SchedulerInfo | None) -> AlreadyUpError | None:
    """Why `up` must not start here (a live scheduler in the state dir), or None."""
    if info is None or not schedfile.answers(info):
        return None
    if owner in (None, job_id):
        return AlreadyUpError(f"already up: job {job_id} has a live scheduler at "
                              f"{info.address}; use status/restart-workers/down")
    return AlreadyUpError(f"state dir {state.path} is in use by job {owner} (live scheduler "
                          f"at {info.address}); use another --state-dir")


def dry_run_refusal(state: StateDir, job_id: str) -> str | None:
    """What would make a real `up` refuse to start, read without changing anything."""
    if not state.exists():
        return None
    with suppress(StateDirError):
        record = state.read_record()
        refusal = live_cluster(state, job_id, record.job_id if record else None,
                               schedfile.read(state.scheduler_file))
        return str(refusal) if refusal else None
    return None


def refuse_orphaned_cluster(state: StateDir) -> None:
    """A cluster whose state dir was deleted under it must be stopped before a new one starts."""
    recovered = state.recovered_record()
    if recovered is None or recovered.status == "down":
        return
    launcher = launcher_for(recovered)
    if any(launcher.running(step) for step in recovered.steps):
        raise AlreadyUpError(f"the cluster of {state.path} still runs although that dir was "
                             f"deleted; run `dasklaunch down` first")
    state.forget_recovery_copy()

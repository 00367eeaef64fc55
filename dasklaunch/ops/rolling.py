"""Rolling worker jobs (`scale-out --jobs N --keep --walltime W`), driven by the supervisor.

Each kept job gets a walltime. Ahead of its end the supervisor submits its replacement; once
the replacement's workers have connected it tells the old job to drain (SIGTERM to its step:
its workers hand their results to the others, then exit), so the number of workers never drops
below what was asked while the queue starts the replacement in time. The plan lives in the
record (`scale_out_keep`), so a restarted supervisor carries on where the last one stopped;
`down` cancels every job.
"""

from __future__ import annotations

import time

from ..domain.rolling_times import START_ALLOWANCE_SECONDS, lead_seconds
from ..runtime.record import ClusterRecord, ScaleOutJob
from ..runtime.report import Reporter
from ..runtime.state import StateDir
from ..slurm import queue
from .scale_out import submit_job


def keep_rolling(state: StateDir, record: ClusterRecord, connected: int, report: Reporter,
                 now: float | None = None) -> list[str]:
    """One look at the kept jobs: drain the ones whose replacement is in, submit replacements
    for those near their end and for any that ended; the record is updated (the caller writes
    it and holds the job lock). What was done, one line each."""
    keep = record.scale_out_keep
    if not keep or record.status != "up":
        return []
    now = time.time() if now is None else now
    infos = queue.jobs(j.job_id for j in record.scale_out)
    if infos is None:
        return []  # Slurm does not answer: change nothing
    live = [j for j in record.scale_out if j.job_id in infos]
    # said, so the record that forgets them is written: `status` lists live jobs only
    done = [f"worker job {j.job_id} has left the queue" for j in record.scale_out
            if j.job_id not in infos]
    by_id = {j.job_id: j for j in live}
    # the workers expected now: the job's own pools and every kept job that is not draining
    expected = record.expected_workers + sum(j.processes for j in live
                                             if j.draining_since is None)
    for job in live:
        if job.replaced_by is None or job.draining_since is not None:
            continue
        new = by_id.get(job.replaced_by)
        end = infos[job.job_id].end_time
        arrived = (new is not None and infos[new.job_id].state == "RUNNING"
                   and connected >= expected)
        # past this, Slurm's own --signal may come at any moment: drain on our terms
        late = end is not None and now >= end - (lead_seconds(record.options.drain_timeout)
                                                 - START_ALLOWANCE_SECONDS)
        if arrived or late or new is None:
            queue.cancel(job.job_id, signal="TERM")
            job.draining_since = now
            why = ("its replacement's workers are in" if arrived
                   else "its replacement is gone" if new is None
                   else "its end is near, replacement or not")
            done.append(f"draining worker job {job.job_id} ({why})")
    lead = lead_seconds(record.options.drain_timeout)
    for job in list(live):
        end = infos[job.job_id].end_time
        if (job.replaced_by is None and job.draining_since is None and end is not None
                and end - now <= lead and infos[job.job_id].state == "RUNNING"):
            new = submit(record, state, keep, live, report)
            job.replaced_by = new.job_id
            done.append(f"submitted worker job {new.job_id} to replace {job.job_id} "
                        f"({end - now:.0f} s before its end)")
    active = [j for j in live if j.replaced_by is None and j.draining_since is None]
    for _ in range(keep["jobs"] - len(active)):
        new = submit(record, state, keep, live, report)
        done.append(f"submitted worker job {new.job_id} (keeping {keep['jobs']})")
    record.scale_out = live
    return done


def submit(record: ClusterRecord, state: StateDir, keep: dict, live: list[ScaleOutJob],
           report: Reporter) -> ScaleOutJob:
    record.scale_out = live
    job = submit_job(record, state, keep, report)
    live.append(job)
    return job

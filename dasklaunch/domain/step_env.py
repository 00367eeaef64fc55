"""The environments of a job's Dask processes: what every one of them gets, and what workers get
on top (pools and scale-out jobs derive theirs here, in one place)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .dask_argv import start_method_env
from .settings import UpOptions

# Set by a dasklaunch.Cluster's scheduler job (ops/scheduler_job): `up` records that the job is
# the cluster's own, which Cluster.from_job may then end.
SCHEDULER_JOB_VARIABLE = "DASKLAUNCH_SCHEDULER_JOB"


def job_env(opts: UpOptions, config_dir: str | None,
            extra_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables every Dask process of the job gets: the caller's, the options', and the
    job's own Dask config directory (DASK_CONFIG) when it has a profile."""
    env = dict(extra_env or {})
    env.update(dict(opts.extra_env))
    if opts.profile and config_dir:
        env["DASK_CONFIG"] = config_dir
    return env


def worker_env(opts: UpOptions, config_dir: str | None,
               extra_env: Mapping[str, str] | None = None,
               inherited: Mapping[str, str] | None = None) -> dict[str, str]:
    """job_env plus --start-method's variables, for any worker: pools and scale-out jobs.
    `inherited` is what the workers get anyway (default: this process's environment)."""
    env = job_env(opts, config_dir, extra_env)
    inherited = os.environ if inherited is None else inherited
    env.update(start_method_env(opts.start_method, {**inherited, **env}))
    return env

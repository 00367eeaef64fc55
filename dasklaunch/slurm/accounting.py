"""The user's Slurm limits and what counts against them now, read through runtime.proc.

Limits come from `sacctmgr` (slurmdbd's view, the same on every version the testbed runs);
without accounting, or when slurmdbd does not answer, there is nothing to honour and the
callers plan as before. Reading them costs four short commands: callers read them once.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Sequence

from ..domain import job_limits as jl
from ..errors import CommandError
from ..runtime import proc
from . import commands as cmd


def limits(job_options: Sequence[str] = ()) -> list[jl.Limit] | None:
    """The limits a job with these sbatch options meets; None when Slurm keeps no accounting
    here (or slurmdbd does not answer)."""
    qos, account = jl.job_qos_and_account(job_options)
    try:
        user = pwd.getpwuid(os.getuid()).pw_name   # as Slurm knows the user, not $USER
        qos_table = proc.run(cmd.sacctmgr_qos_argv(), timeout=20).stdout
        cluster = os.environ.get("SLURM_CLUSTER_NAME") or jl.parse_cluster_name(
            proc.run(cmd.scontrol_config_argv(), timeout=20).stdout)
        assoc = proc.run(cmd.sacctmgr_assoc_argv(user, cluster), timeout=20).stdout
        default = proc.run(cmd.sacctmgr_user_argv(user), timeout=20).stdout.strip() or None
    except (CommandError, KeyError, OSError):
        return None
    return jl.user_limits(user, assoc, qos_table, default_account=default, qos=qos,
                          account=account)


def room(found: list[jl.Limit] | None, *, cpus: int, nodes: int = 1) -> jl.Room:
    """How many more such jobs fit now (Room(None): no limit, or Slurm did not answer)."""
    if not found:
        return jl.Room(None)
    try:
        live = jl.parse_queue(proc.run(cmd.squeue_live_argv(), timeout=20).stdout)
    except (CommandError, OSError):
        return jl.Room(None)
    return jl.headroom(found, live, cpus=cpus, nodes=nodes)

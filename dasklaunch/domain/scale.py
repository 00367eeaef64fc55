"""Pure: settings that must grow with the number of workers.

Dask's defaults suit tens of workers. When thousands start at once, the scheduler registers
them one at a time on its event loop (13 a second with TLS on a loaded 2-core machine here;
a 921-node start stalled a scheduler's loop for 33 s on Summit), so the last ones wait in its
accept queue and in their handshakes: Dask's 30 s connect timeout and dasklaunch's 60 s
--death-timeout (the whole start of a worker must fit in it) then kill workers that were only
waiting their turn, and `up`'s own 120 s --timeout gives up on a start that was going fine.
From SCALE_FROM workers on, each of these is raised to cover the whole registration at
REGISTER_RATE workers a second; settings the user made higher are never lowered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

SCALE_FROM = 500
REGISTER_RATE = 10.0          # workers a busy scheduler registers per second, at the least
CONNECT_DEFAULT = 30.0        # distributed.comm.timeouts.connect
BACKLOG_DEFAULT = 2048        # distributed.comm.socket-backlog
DEATH_TIMEOUT_DEFAULT = 60.0  # up --death-timeout
TIMEOUT_DEFAULT = 120.0       # up --timeout
CONNECT_VARIABLE = "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT"
BACKLOG_VARIABLE = "DASK_DISTRIBUTED__COMM__SOCKET_BACKLOG"


@dataclass(frozen=True)
class ScaleDefaults:
    env: dict[str, str] = field(default_factory=dict)  # for the scheduler and the workers
    death_timeout: float | None = None                 # new --death-timeout, if raised
    timeout: float | None = None                       # new up --timeout, if raised
    changes: tuple[str, ...] = ()                      # what was raised, in words


def scale_defaults(workers: int, *, connect: float | None, backlog: int | None,
                   death_timeout: float | None, timeout: float | None) -> ScaleDefaults:
    """What to raise for `workers`. `connect` and `backlog` are the values the user's Dask
    config or profile sets (None: Dask's default); `death_timeout` and `timeout` are up's
    options when left at their defaults, None when the user gave them."""
    if workers < SCALE_FROM:
        return ScaleDefaults()
    span = float(math.ceil(workers / REGISTER_RATE))
    env: dict[str, str] = {}
    changes = []
    if span > (connect or CONNECT_DEFAULT):
        env[CONNECT_VARIABLE] = f"{span:g}s"
        changes.append(f"connect timeout {span:g}s")
    if workers > (backlog or BACKLOG_DEFAULT):
        env[BACKLOG_VARIABLE] = str(workers)
        changes.append(f"socket backlog {workers}")
    new_death = max(death_timeout, span + CONNECT_DEFAULT) if death_timeout else None
    if new_death is not None and new_death > death_timeout:
        changes.append(f"--death-timeout {new_death:g}s")
    else:
        new_death = None
    new_timeout = max(timeout, span + 2 * CONNECT_DEFAULT) if timeout else None
    if new_timeout is not None and new_timeout > timeout:
        changes.append(f"--timeout {new_timeout:g}s")
    else:
        new_timeout = None
    return ScaleDefaults(env=env, death_timeout=new_death, timeout=new_timeout,
                         changes=tuple(changes))

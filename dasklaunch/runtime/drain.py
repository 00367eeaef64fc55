"""Draining, scheduler side: workers about to end in a planned way hand the results they hold
to workers that stay, before they exit.

The node launcher of a worker (launch/node.py) calls the scheduler's `dasklaunch_drain` handler
(added by the scheduler preload) when its task gets SIGTERM, with the names of its workers. The
handler runs Dask's own `retire_workers` (what `close_gracefully` does for `--lifetime`): the
scheduler copies every key those workers hold to a worker that stays, and the signal the
launcher then passes on closes them. It is
bounded by a timeout that must fit in Slurm's KillWait / GraceTime; whatever had not moved by
then is lost with the worker and recomputed from its inputs when next needed.

Each drain is logged (scheduler log) and kept (the last few) for `status` to show.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

from ..domain.units import plural

logger = logging.getLogger("dasklaunch.drain")
HANDLER = "dasklaunch_drain"
KEPT_EVENTS = 20


@dataclass
class DrainLog:
    """The drains this scheduler did: totals, and the last KEPT_EVENTS of them."""

    events: deque = field(default_factory=lambda: deque(maxlen=KEPT_EVENTS))
    count: int = 0
    keys_moved: int = 0
    keys_lost: int = 0

    def add(self, event: dict) -> None:
        self.events.append(event)
        self.count += 1
        self.keys_moved += event["keys_moved"]
        self.keys_lost += event["keys_lost"]

    def summary(self) -> dict:
        return {"count": self.count, "keys_moved": self.keys_moved,
                "keys_lost": self.keys_lost, "last": list(self.events)}


def chosen_workers(workers: dict, names: list[str]) -> list:
    """The worker states whose name is one of `names`."""
    wanted = {str(n) for n in names}
    return [ws for ws in list(workers.values()) if str(ws.name) in wanted]


def held_keys(targets: list) -> set:
    return {ts.key for ws in targets for ts in ws.has_what}


def key_fates(tasks: dict, keys: set, leaving: set[str]) -> tuple[int, int]:
    """Of `keys`: how many some worker outside `leaving` holds in memory, and how many the
    scheduler let go meanwhile (the client released them: nobody needs them, nothing is lost)."""
    kept = released = 0
    for key in keys:
        ts = tasks.get(key)
        if ts is None or getattr(ts, "state", None) in ("released", "forgotten"):
            released += 1
        elif any(ws.address not in leaving for ws in ts.who_has or ()):
            kept += 1
    return kept, released


def describe(event: dict) -> str:
    if not event["workers"]:
        return f"drain of {', '.join(event['names']) or 'no workers'}: none of them is connected"
    text = (f"drained {plural(len(event['workers']), 'worker')} ({', '.join(event['names'])}): "
            f"{event['keys_moved']} of {event['keys']} keys moved in {event['seconds']:.2f} s")
    if event.get("keys_released"):
        text += f", {event['keys_released']} released by their client meanwhile"
    if event["keys_lost"]:
        text += f", {event['keys_lost']} lost ({event['why']})"
    return text


async def drain(scheduler, log: DrainLog, names: list[str], timeout: float,
                reason: str = "SIGTERM") -> dict:
    """Retire the workers named `names`, bounded by `timeout` seconds; the event, as kept."""
    start = time.monotonic()
    targets = chosen_workers(scheduler.workers, names)
    leaving = {ws.address for ws in targets}
    keys = held_keys(targets)
    stay = [ws for ws in scheduler.workers.values()
            if ws.address not in leaving and ws.status.name == "running"]
    why = ""
    if targets and keys and not stay:
        why = "no other running worker to take them"
    elif targets:
        stimulus = f"dasklaunch-drain-{time.time()}"
        # Keys moved, the workers are left open (closing_gracefully: no new tasks) for the
        # signal their launcher passes on next. Closed from here (close_workers), a worker
        # closes its nanny over RPC while that nanny, signalled meanwhile, is closing too: the
        # worker's process then hangs until the nanny kills it 8 s later.
        try:
            await asyncio.wait_for(
                scheduler.retire_workers(workers=sorted(leaving), close_workers=False,
                                         remove=False, stimulus_id=stimulus), timeout)
        except asyncio.TimeoutError:
            why = f"drain timeout of {timeout:g} s"
    moved, released = key_fates(scheduler.tasks, keys, leaving)
    lost = len(keys) - moved - released
    if not why and lost:
        why = "no worker could take them"
    event = {"time": time.time(), "reason": reason, "names": sorted(str(n) for n in names),
             "workers": sorted(leaving), "keys": len(keys), "keys_moved": moved,
             "keys_released": released, "keys_lost": lost,
             "seconds": round(time.monotonic() - start, 3), "why": why if lost else ""}
    if targets:
        log.add(event)
    logger.info("dasklaunch: %s", describe(event))
    return event


def install(scheduler) -> DrainLog:
    """Add the `dasklaunch_drain` handler to `scheduler`; its DrainLog."""
    log = DrainLog()

    async def dasklaunch_drain(names=(), timeout=20.0, reason="SIGTERM"):
        return await drain(scheduler, log, list(names), float(timeout), str(reason))

    scheduler.handlers[HANDLER] = dasklaunch_drain
    return log

"""Scale defaults for `up`: timeouts and the accept queue raised for thousands of workers (see
domain/scale.py), never below what the user's Dask config, profile or options set."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..domain.scale import (
    DEATH_TIMEOUT_DEFAULT,
    SCALE_FROM,
    TIMEOUT_DEFAULT,
    scale_defaults,
)
from ..domain.settings import UpOptions
from ..runtime.report import Reporter


def apply_scale_defaults(opts: UpOptions, workers: int, profile, report: Reporter
                         ) -> tuple[UpOptions, dict[str, str]]:
    """The options and the extra environment for a cluster of `workers`."""
    if workers < SCALE_FROM:
        return opts, {}
    connect, backlog = _configured(profile)
    scaled = scale_defaults(
        workers, connect=connect, backlog=backlog,
        death_timeout=opts.death_timeout if opts.death_timeout == DEATH_TIMEOUT_DEFAULT else None,
        timeout=opts.timeout if opts.timeout == TIMEOUT_DEFAULT else None)
    if scaled.death_timeout is not None:
        opts = replace(opts, death_timeout=scaled.death_timeout)
    if scaled.timeout is not None:
        opts = replace(opts, timeout=scaled.timeout)
    if scaled.changes:
        limit = _somaxconn()
        cap = (f"; the kernel caps the backlog at net.core.somaxconn={limit}"
               if limit is not None and limit < workers else "")
        report.info(f"{workers} workers: {', '.join(scaled.changes)} (Dask's defaults are sized "
                    f"for fewer workers; set them to choose){cap}")
    return opts, scaled.env


def _configured(profile) -> tuple[float | None, int | None]:
    """distributed.comm.timeouts.connect (seconds) and .socket-backlog as the user's Dask
    config (files and DASK_* variables) or the profile set them; None where neither does."""
    import dask.config
    from dask.utils import parse_timedelta

    from ..profiles.values import lookup

    connect = dask.config.get("distributed.comm.timeouts.connect", None)
    backlog = dask.config.get("distributed.comm.socket-backlog", None)
    if profile is not None:
        comm = lookup(profile.distributed, "comm")
        connect = lookup(comm, "timeouts").get("connect", connect)
        backlog = comm.get("socket-backlog", comm.get("socket_backlog", backlog))
    try:
        seconds = parse_timedelta(connect, default="s") if connect is not None else None
    except (TypeError, ValueError):
        seconds = None
    try:
        queue = int(backlog) if backlog is not None else None
    except (TypeError, ValueError):
        queue = None
    return seconds, queue


def _somaxconn() -> int | None:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return None

"""The workers' logs for `Cluster.get_logs()`, as distributed's Cluster fetches them, except
that a worker leaving meanwhile (a scale-down under way) costs that worker's log, not the
whole answer: the scheduler's broadcast fails as a whole when one worker closes during it, so
it is asked again for the workers still running."""

from __future__ import annotations

ATTEMPTS = 3


async def worker_logs(scheduler_comm, workers=True) -> dict:
    """{worker address: Log} for `workers` (True: all of them)."""
    from distributed.utils import Log

    chosen = None if workers is True else list(workers)
    for _ in range(ATTEMPTS):
        try:
            found = await scheduler_comm.worker_logs(workers=chosen)
        except OSError:   # CommClosedError: one of them closed meanwhile
            identity = await scheduler_comm.identity(n_workers=-1)
            chosen = [address for address, info in identity.get("workers", {}).items()
                      if info.get("status") == "running"
                      and (workers is True or address in workers)]
            continue
        return {address: Log("\n".join(line for _, line in lines))
                for address, lines in found.items()}
    return {}

"""Simulated workers: K real `distributed.Worker`s in one process, for scale benchmarks.

    python -m simworkers --scheduler-file F --nworkers K [dask worker's other options]

It takes `dask worker`'s command line (the one dasklaunch builds for a pool) and starts
--nworkers in-process workers, concurrently as `dask worker` starts its nannies, named NAME-i
as `dask worker --name NAME --nworkers K` names them. Each is a real Worker: its own listener
and HTTP server, its own connections to the scheduler (TLS from the Dask config in the
environment, as the real workers of a dasklaunch cluster get it), heartbeats, and it runs
tasks (on --nthreads threads). SIGTERM/SIGINT close all of them gracefully (they unregister);
the process exits when all have closed, or with 1 when none could start.

dasklaunch starts it in place of `distributed.cli.dask_worker` when its environment has
DASKLAUNCH_WORKER_MODULE=simworkers and this directory is on PYTHONPATH (bench/scale.py does
both). What it does NOT simulate:
- worker start-up cost: no process per worker, no interpreter start and import of distributed
  (about 1 s of CPU per worker on this machine), no nanny;
- memory: all K workers share one process, so Dask's memory monitor (which measures the
  process) is switched off here (no spilling, pausing or termination); memory limits are
  passed on and reported to the scheduler as given;
- the network: every worker is on this host, so the scheduler sees one host, and there is no
  latency, loss or per-node SYN queue;
- the CPU of K separate processes: the K workers share one event loop and one GIL.
Options that make no sense in one process (--nanny, --preload-nanny, --pid-file, ports) are
accepted and ignored. Each simulated worker gets a local directory of its own under one made
for this process (inside --local-directory, else the temporary directory), removed at exit: K
workers sharing one would each scan the others' lock files when they start (O(K^2), and more
with every stale directory earlier runs left there), which a real node with a few workers does
not pay.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile

CLOSE_TIMEOUT = 30.0


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="simworkers", allow_abbrev=False)
    parser.add_argument("scheduler", nargs="?")
    parser.add_argument("--scheduler-file")
    parser.add_argument("--nworkers", type=int, default=1)
    parser.add_argument("--nthreads", type=int, default=1)
    parser.add_argument("--memory-limit", default="auto")
    parser.add_argument("--death-timeout", type=float)
    parser.add_argument("--host")
    parser.add_argument("--interface")
    parser.add_argument("--protocol")
    parser.add_argument("--local-directory")
    parser.add_argument("--name")
    parser.add_argument("--resources")
    parser.add_argument("--worker-class", default="distributed.Worker")
    parser.add_argument("--dashboard-address", default=":0")
    parser.add_argument("--dashboard", dest="dashboard", action="store_true", default=True)
    parser.add_argument("--no-dashboard", dest="dashboard", action="store_false")
    parser.add_argument("--nanny", action="store_true")
    parser.add_argument("--no-nanny", action="store_true")
    parser.add_argument("--lifetime")
    parser.add_argument("--lifetime-stagger")
    parser.add_argument("--lifetime-restart", action="store_true")
    parser.add_argument("--preload", action="append", default=[])
    return parser.parse_known_args(argv)


def worker_kwargs(args: argparse.Namespace) -> dict:
    """The keywords each simulated Worker gets, as `dask worker` passes them."""
    kwargs: dict = {"scheduler_ip": args.scheduler, "scheduler_file": args.scheduler_file,
                    "nthreads": args.nthreads, "memory_limit": args.memory_limit,
                    "dashboard": args.dashboard, "dashboard_address": args.dashboard_address,
                    "host": args.host, "interface": args.interface, "protocol": args.protocol,
                    "local_directory": args.local_directory, "preload": args.preload}
    if args.death_timeout is not None:
        kwargs["death_timeout"] = args.death_timeout
    if args.lifetime:
        kwargs.update(lifetime=args.lifetime, lifetime_stagger=args.lifetime_stagger,
                      lifetime_restart=args.lifetime_restart)
    if args.resources:
        pairs = args.resources.replace(",", " ").split()
        kwargs["resources"] = {k: float(v) for k, v in (p.split("=") for p in pairs)}
    return {k: v for k, v in kwargs.items() if v is not None}


def names(base: str | None, count: int) -> list[str | None]:
    if count == 1:
        return [base]
    return [None if base is None else f"{base}-{i}" for i in range(count)]


async def run(args: argparse.Namespace) -> int:
    import dask
    from distributed.utils import import_term

    # One process holds every worker: a per-worker monitor of the process's memory would see
    # the sum of all of them (and cost K polls every 100 ms).
    dask.config.set({"distributed.worker.memory.target": False,
                     "distributed.worker.memory.spill": False,
                     "distributed.worker.memory.pause": False,
                     "distributed.worker.memory.terminate": False})
    worker_class = import_term(args.worker_class)
    kwargs = worker_kwargs(args)
    base = tempfile.mkdtemp(prefix=f"simworkers-{os.getpid()}-", dir=args.local_directory)
    try:
        return await run_workers(worker_class, kwargs, base, args)
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def run_workers(worker_class, kwargs: dict, base: str, args: argparse.Namespace) -> int:
    workers = [worker_class(name=name, **{**kwargs, "local_directory": f"{base}/{i}"})
               for i, name in enumerate(names(args.name, args.nworkers))]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    started = await asyncio.gather(*(w.start() for w in workers), return_exceptions=True)
    live = [w for w, result in zip(workers, started, strict=True)
            if not isinstance(result, BaseException)]
    failed = len(workers) - len(live)
    if failed:
        first = next(r for r in started if isinstance(r, BaseException))
        logging.getLogger("simworkers").error("%d of %d workers failed to start: %r", failed,
                                              len(workers), first)
    if not live:
        return 1
    logging.getLogger("simworkers").info("%d simulated workers running", len(live))
    finished = asyncio.ensure_future(asyncio.gather(*(w.finished() for w in live)))
    waiter = asyncio.ensure_future(stop.wait())
    await asyncio.wait([finished, waiter], return_when=asyncio.FIRST_COMPLETED)
    if stop.is_set():
        closing = asyncio.gather(*(w.close(reason="simworkers-signal", nanny=False,
                                           executor_wait=False) for w in live),
                                 return_exceptions=True)
        try:
            await asyncio.wait_for(closing, CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            # the process exits anyway: its connections close and the scheduler removes
            # whoever had not unregistered yet, as after a SIGKILL
            logging.getLogger("simworkers").warning("not all workers closed within %gs",
                                                    CLOSE_TIMEOUT)
    finished.cancel()
    waiter.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    args, unknown = parse(sys.argv[1:] if argv is None else argv)
    import distributed  # noqa: F401 - sets up Dask's logging config, as `dask worker` does

    if unknown:
        logging.getLogger("simworkers").warning("ignored options: %s", " ".join(unknown))
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())

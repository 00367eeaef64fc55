"""Draining, node side: before a node launcher passes SIGTERM on to its workers, it asks the
scheduler to retire them (runtime/drain.py), so the results they hold move to workers that stay.

This works whoever sends the signal: `restart-workers` and `down --pool` (through srun or the
local step), `scancel --signal=TERM` of a worker step or job, a job's walltime (`--signal`),
Slurm preemption with a grace time. It is bounded by the drain timeout; when it runs out, or when
the scheduler cannot be reached, the workers get the signal anyway and what they held is
recomputed when next needed.

The request goes over Dask's comms with the workers' own TLS files (read from their command
line), so it needs no other credential. distributed is imported only when a drain happens.
"""

from __future__ import annotations

import json
import os
import sys
import time

# How long to wait for the scheduler's answer beyond the drain timeout itself (connect, reply).
SLACK_SECONDS = 5.0
# In the state dir (beside the scheduler file) while every worker is being stopped (`down`,
# restart-workers of every pool): no worker stays to take results, so none is drained.
NO_DRAIN_FILE = "no-drain"


def flag_value(argv: list[str], flag: str) -> str | None:
    """The value of `flag` in a `dask worker` argv (`--flag VALUE` or `--flag=VALUE`); the last
    one wins, as with click."""
    value = None
    for index, arg in enumerate(argv):
        if arg == flag and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith(flag + "="):
            value = arg.partition("=")[2]
    return value


def worker_names(argvs: list[list[str]]) -> list[str]:
    """The names Dask gives the workers of these `dask worker` command lines: `--name NAME`, or
    NAME-0 .. NAME-(k-1) with `--nworkers k` (distributed's cli/dask_worker.py)."""
    names = []
    for argv in argvs:
        name = flag_value(argv, "--name")
        if name is None:
            continue
        count = int(flag_value(argv, "--nworkers") or "1")
        names += [name] if count <= 1 else [f"{name}-{i}" for i in range(count)]
    return names


class Drainer:
    """Called by the task's leader on the first SIGTERM, before it passes the signal on."""

    def __init__(self, argvs: list[list[str]], timeout: float, no_drain_file: str | None = None):
        self.argv = argvs[0] if argvs else []
        self.names = worker_names(argvs)
        self.timeout = timeout
        # where `down` says that no worker stays: given (scale-out jobs), else beside the
        # scheduler file (the pools)
        scheduler_file = flag_value(self.argv, "--scheduler-file")
        self.no_drain_file = no_drain_file or (scheduler_file and os.path.join(
            os.path.dirname(scheduler_file), NO_DRAIN_FILE))

    def __call__(self, signum: int) -> None:
        if not self.names or self.timeout <= 0 or self.everything_stops():
            return
        start = time.monotonic()
        try:
            event = request(self.argv, self.names, self.timeout, reason=f"signal {signum}")
        except Exception as error:  # noqa: BLE001 - a failed drain must never stop the shutdown
            say(f"drain of {', '.join(self.names)} failed after "
                f"{time.monotonic() - start:.1f} s ({type(error).__name__}: {error}); "
                f"passing the signal on")
            return
        from ..runtime.drain import describe

        say(describe(event))


    def everything_stops(self) -> bool:
        return bool(self.no_drain_file) and os.path.exists(self.no_drain_file)


def say(message: str) -> None:
    print(f"dasklaunch.launch.node: {message}", file=sys.stderr, flush=True)


def request(argv: list[str], names: list[str], timeout: float, reason: str) -> dict:
    """Ask the scheduler of `dask worker` argv `argv` to drain `names`; its event."""
    import asyncio

    return asyncio.run(_request(scheduler_address(argv), security_args(argv), names, timeout,
                                reason))


def scheduler_address(argv: list[str]) -> str:
    """The scheduler of a `dask worker` argv: from its --scheduler-file (dasklaunch's pools) or
    its address argument (dask-jobqueue's scale-out jobs: `dask worker tls://HOST:PORT ...`)."""
    scheduler_file = flag_value(argv, "--scheduler-file")
    if scheduler_file:
        with open(scheduler_file) as handle:
            return json.load(handle)["address"]
    # the positional address: not the value of an option (--contact-address tls://...)
    for before, arg in zip(argv, argv[1:], strict=False):
        if "://" in arg and not arg.startswith("-") and not (
                before.startswith("-") and "=" not in before):
            return arg
    raise ValueError("the worker command has neither --scheduler-file nor a scheduler address")


def security_args(argv: list[str]) -> dict:
    """Security(...) keyword arguments with the workers' own TLS files: from their command line
    (--tls-ca-file/--tls-cert/--tls-key), else from the Dask config dasklaunch gives the step
    (distributed.comm.tls.*, set through the environment); empty without TLS."""
    ca, cert, key = (flag_value(argv, f) for f in ("--tls-ca-file", "--tls-cert", "--tls-key"))
    if not (ca and cert and key):
        import dask.config

        ca = dask.config.get("distributed.comm.tls.ca-file", None)
        cert = dask.config.get("distributed.comm.tls.worker.cert", None)
        key = dask.config.get("distributed.comm.tls.worker.key", None)
    if not (ca and cert):
        return {}
    return {"tls_ca_file": ca, "tls_client_cert": cert, "tls_client_key": key,
            "require_encryption": True}


async def _request(address: str, security: dict, names: list[str], timeout: float,
                   reason: str) -> dict:
    import asyncio

    from distributed.core import rpc
    from distributed.security import Security

    args = Security(**security).get_connection_args("client") if security else {}
    scheduler = rpc(address, connection_args=args, timeout=SLACK_SECONDS)
    try:
        return await asyncio.wait_for(
            scheduler.dasklaunch_drain(names=names, timeout=timeout, reason=reason),
            timeout + SLACK_SECONDS)
    finally:
        await scheduler.close_rpc()

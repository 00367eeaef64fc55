"""`dask cuda worker` stand-in: see the package docstring."""

from __future__ import annotations

import json
import os
import sys

import click

# dask-cuda's cli.py waits for SIGINT/SIGTERM with this name, imported into its module
from distributed._signals import wait_for_signals  # noqa: F401

# dask-cuda's own options (the rest are `dask worker`'s, passed on)
CUDA_VALUES = ("--rmm-pool-size", "--device-memory-limit", "--rmm-maximum-pool-size")
CUDA_FLAGS = ("--enable-cudf-spill", "--disable-cudf-spill")
NOT_DASK_CUDA = ("--nworkers", "--nprocs", "--preload-nanny", "--no-nanny", "--lifetime")


@click.group()
def cuda():
    """dask-cuda stand-in."""


@cuda.command(name="worker", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def worker(args):
    cuda_options: dict = {}
    rest: list[str] = []
    items = iter(args)
    for arg in items:
        flag = arg.partition("=")[0]
        if flag in NOT_DASK_CUDA:
            sys.exit(f"dask cuda worker (stand-in): no such option: {flag}")
        if flag in CUDA_VALUES:
            cuda_options[flag] = arg.partition("=")[2] or next(items)
        elif flag in CUDA_FLAGS:
            cuda_options[flag] = True
        else:
            rest.append(arg)
    devices = [t for t in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if t]
    if not devices:
        sys.exit("dask cuda worker (stand-in): no GPU in CUDA_VISIBLE_DEVICES")
    if len(devices) > 1 and "--name" in rest:
        # dask-cuda appends -0, -1, ... to the name of each of several workers
        sys.exit("dask cuda worker (stand-in): dasklaunch shows each process one GPU")
    os.environ["STANDIN_DASK_CUDA"] = json.dumps(cuda_options)
    from distributed.cli import dask_worker

    # in this process, as dask-cuda's nannies are: it waits for signals through this module's
    # name, looked up when it starts waiting (so a patch of it acts as on dask-cuda's)
    dask_worker.wait_for_signals = lambda: sys.modules[__name__].wait_for_signals()
    dask_worker.main.main(args=[*rest, "--nworkers", str(len(devices))],
                          prog_name="dask cuda worker")

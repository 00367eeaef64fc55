"""`dask cuda worker` stand-in: see the package docstring."""

from __future__ import annotations

import json
import os
import sys

import click

# dask-cuda's cli.py waits for SIGINT/SIGTERM with this name, imported into its module
from distributed._signals import wait_for_signals  # noqa: F401

# What `dask cuda worker` declares (dask_cuda/cli.py, 26.08-26.10): real dask-cuda reads any
# other option as the scheduler's address and fails, so the stand-in refuses it. Copied from
# dask-cuda, not imported from dasklaunch.domain.dask_cuda.OPTIONS: the stand-in plays dask-cuda,
# so a wrong list in dasklaunch must show up here as a failing test, not pass through.
DECLARED = {
    "--scheduler-file", "--tls-ca-file", "--tls-cert", "--tls-key", "--host", "--worker-port",
    "--listen-address", "--contact-address", "--nthreads", "--name", "--memory-limit",
    "--device-memory-limit", "--enable-cudf-spill", "--disable-cudf-spill",
    "--cudf-spill-stats", "--rmm-pool-size", "--rmm-maximum-pool-size", "--rmm-managed-memory",
    "--no-rmm-managed-memory", "--rmm-async", "--no-rmm-async", "--set-rmm-allocator-for-libs",
    "--rmm-release-threshold", "--rmm-log-directory", "--rmm-track-allocations",
    "--no-rmm-track-allocations", "--pid-file", "--resources", "--dashboard", "--no-dashboard",
    "--dashboard-address", "--local-directory", "--protocol", "--interface", "--preload",
    "--death-timeout", "--dashboard-prefix", "--enable-tcp-over-ucx",
    "--disable-tcp-over-ucx", "--enable-infiniband", "--disable-infiniband",
    "--enable-nvlink", "--disable-nvlink", "--enable-rdmacm", "--disable-rdmacm",
    "--worker-class", "--pre-import", "--multiprocessing-method",
}
# dask-cuda's own (recorded, not passed to `dask worker`); the rest are `dask worker`'s too
CUDA_VALUES = {"--rmm-pool-size", "--device-memory-limit", "--rmm-maximum-pool-size",
               "--multiprocessing-method"}
CUDA_FLAGS = {"--enable-cudf-spill", "--disable-cudf-spill"}


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
        if arg.startswith("-") and flag not in DECLARED:
            sys.exit(f"dask cuda worker (stand-in): the scheduler address can't start with "
                     f"'-' ({flag} is not an option of dask cuda worker)")
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
    import dask

    # as dask-cuda: its own --multiprocessing-method (default spawn) over Dask's config
    method = cuda_options.get("--multiprocessing-method", "spawn")
    with dask.config.set({"distributed.worker.multiprocessing-method": method}):
        dask_worker.main.main(args=[*rest, "--nworkers", str(len(devices))],
                              prog_name="dask cuda worker")

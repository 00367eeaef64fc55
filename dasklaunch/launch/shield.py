"""A `dask worker` that leaves SIGTERM to its node launcher, so that the launcher can drain it.

Slurm signals every process of a step at once (`scancel --signal=TERM` of a step or job, the
walltime's `--signal`, preemption, and srun passing on its own SIGTERM): the nanny, its worker
process and the node launcher all get the same SIGTERM. A nanny that reacts closes its worker
while the launcher is still asking the scheduler to move the worker's results elsewhere, and a
worker process dies of it at once; either way the results are lost. So, under a draining
launcher:

- the nanny process and everything it starts ignore SIGTERM (SIG_IGN is inherited across fork
  and exec, so the fork server and the worker processes, forked or spawned, ignore it too);
- `dask worker` waits for SIGINT only, which closes its nannies as SIGTERM would;
- the launcher drains on SIGTERM, then passes SIGINT on.

The worker process still ends when it should: its nanny stops it through its stop queue, then
SIGKILL; it exits when its nanny dies; and Slurm's SIGKILL after KillWait ends everything.

    python -m dasklaunch.launch.shield DASK-WORKER-ARGS...   (the spawn start of a drained pool)
    python -m dasklaunch.launch.shield --cuda DASK-CUDA-WORKER-ARGS...   (a dask-cuda pool's)

`dask cuda worker` waits for its signals the same way (distributed's wait_for_signals, imported
into dask_cuda.cli), so the same holds for it.
"""

from __future__ import annotations

import signal
import sys

from ..domain import dask_cuda
from ..domain.dask_argv import WORKER_MODULE

# What the launcher passes on, after draining, to a worker that ignores SIGTERM.
PASSED_ON = signal.SIGINT


def own_dask_worker(argv: list[str]) -> bool:
    """Whether `argv` is this Python's `dask worker`, which this process can run in itself
    (prefork) or through this module (shielded)."""
    return argv[:3] == [sys.executable, "-m", WORKER_MODULE]


def own_cuda_worker(argv: list[str]) -> bool:
    """Whether `argv` is this Python's `dask cuda worker` (a dask-cuda pool's)."""
    return argv[:1] == [sys.executable] and dask_cuda.is_worker(argv)


def shieldable(argv: list[str]) -> bool:
    return own_dask_worker(argv) or own_cuda_worker(argv)


def shielded_argv(argv: list[str]) -> list[str]:
    """`argv` (this Python's `dask worker` or `dask cuda worker`) run through this module."""
    if own_cuda_worker(argv):
        return [sys.executable, "-m", __name__, "--cuda", *argv[5:]]
    return [sys.executable, "-m", __name__, *argv[3:]]


async def wait_for_sigint() -> int:
    """distributed's wait_for_signals (distributed/_signals.py) for SIGINT alone."""
    import asyncio

    loop = asyncio.get_running_loop()
    event = asyncio.Event()

    def handle(signum, _frame):
        # as distributed's: a second SIGINT ends the process the default way
        signal.signal(signum, previous)
        loop.call_soon_threadsafe(event.set)

    previous = signal.signal(signal.SIGINT, handle)
    try:
        await event.wait()
        return signal.SIGINT
    finally:
        signal.signal(signal.SIGINT, previous)


def leave_sigterm_to_launcher(cli=None) -> bool:
    """Make this process (about to run `dask worker`, or the CLI module `cli`'s worker) and
    what it starts ignore SIGTERM. False, changing nothing, where that CLI waits for signals
    some other way."""
    if cli is None:
        from distributed.cli import dask_worker as cli

    if not hasattr(cli, "wait_for_signals"):
        return False
    cli.wait_for_signals = wait_for_sigint
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    return True


def run_dask_worker_cli(args: list[str]) -> None:
    """Run `dask worker ARGS` in this process (click exits)."""
    from distributed.cli import dask_worker

    sys.argv = [dask_worker.__file__, *args]
    dask_worker.main.main(args=args, prog_name="dask worker")


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--cuda"]:
        from dask_cuda import cli

        args, name = args[1:], "dask_cuda.cli"
    else:
        cli, name = None, "distributed.cli.dask_worker"
    if not leave_sigterm_to_launcher(cli):
        print(f"dasklaunch.launch.shield: {name} has no wait_for_signals; the worker reacts "
              "to SIGTERM itself", file=sys.stderr, flush=True)
    if cli is None:
        run_dask_worker_cli(args)
    else:
        cli.worker.main(args=args, prog_name="dask cuda worker")


if __name__ == "__main__":
    main()

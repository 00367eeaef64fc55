"""`join`: workers started here (`dask worker`, `dask cuda worker`, an srun of them) that join
the running cluster with its worker TLS material, recorded as a pool so that status,
restart-workers and down know them."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from pathlib import Path

from ..domain.dask_argv import WORKER_MODULE, WORKER_TLS_ARGS, network_args, start_method_env
from ..domain.pool_spec import POOL_NAME
from ..domain.step_env import job_env
from ..domain.step_plan import StepPlan
from ..domain.units import check_memory_limit
from ..errors import NotUpError, UsageError
from ..launch.factory import launcher_for
from ..launch.node_drain import flag_value
from ..runtime import proc, schedfile
from ..runtime.report import Reporter
from ..runtime.state import JOB_CONFIG_DIR, find_state_dir
from ..runtime.tls import TLSFiles
from .common import interrupts_raise, load_record, step_name
from .readiness import wait_ready

# Workers listen with the scheduler's scheme: a command that takes no --protocol (dask cuda
# worker) still opens a TLS listener.
DEFAULT_SCHEME = "DASK_DISTRIBUTED__COMM__DEFAULT_SCHEME"


def join(state_dir: Path | str | None = None, *, pool: str = "joined",
         command: list[str] | None = None, nworkers: int = 1, expect: int | None = None,
         nthreads: int | None = None, memory_limit: str | None = None,
         timeout: float | None = None, report: Reporter | None = None) -> dict:
    """Start workers here that join the cluster as pool `pool` (a new pool, or more workers
    for one that exists). The default `dask worker` is sized like the workers `up` planned:
    those of the pool it joins, else of the cluster's first pool, unless `nthreads` /
    `memory_limit` say otherwise."""
    report = report or Reporter()
    if nworkers < 1:
        raise UsageError(f"--nworkers must be at least 1, not {nworkers}")
    if nthreads is not None and nthreads < 1:
        raise UsageError(f"--nthreads must be at least 1, not {nthreads}")
    if memory_limit is not None:
        memory_limit = check_memory_limit("--memory-limit", memory_limit)
    if not POOL_NAME.fullmatch(pool):
        raise UsageError(f"--pool takes a name of letters, digits and _ (the first a letter), "
                         f"not {pool!r}")
    expected = nworkers if expect is None else expect
    if expected < 0:
        raise UsageError(f"--expect must be >= 0, not {expected}")
    state = find_state_dir(state_dir)
    with state.lock("join"), interrupts_raise():
        record = load_record(state, report)
        info = schedfile.read(state.scheduler_file)
        if record.status != "up" or info is None or not schedfile.answers(info):
            raise NotUpError("the cluster is not up: run `dasklaunch up` first")
        opts = record.options
        if timeout is not None:
            opts = replace(opts, timeout=timeout)
        local = record.backend != "slurm"
        sfile = str(state.scheduler_file)
        # unique among the pool's workers (Dask refuses a second worker of the same name), and
        # POOL-... so that status counts it in its pool
        name = f"{pool}-{_host()}-join{sum(p.pool == pool for p in record.pools)}"
        argv = list(command or [])
        if not argv:
            threads, memory = sized_like(record, pool)
            argv = [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                    sfile, "--nworkers", str(nworkers), "--name", name,
                    "--nthreads", str(nthreads or threads),
                    "--memory-limit", memory_limit or memory,
                    *network_args(opts, local), *(WORKER_TLS_ARGS if opts.tls else [])]
        elif nthreads is not None or memory_limit is not None:
            raise UsageError("--nthreads and --memory-limit size the default dask worker; "
                             "give them to COMMAND instead")
        else:
            argv = with_worker_name(argv, name)
        env = job_env(opts, str(state.path / JOB_CONFIG_DIR))
        env.update(start_method_env(opts.start_method, env))
        env.update({"DASK_SCHEDULER_FILE": sfile, "SCHEDULER_FILE": sfile,
                    "DASK_SCHEDULER_ADDRESS": info.address})
        if opts.tls:
            env.update(TLSFiles.in_state_dir(state).server_env("worker"))
            env[DEFAULT_SCHEME] = "tls"
        name = step_name("workers", record.generation)
        plan = StepPlan(role="workers", name=name, placement="here", ntasks=1, nnodes=1,
                        command=tuple(argv), log=str(state.logs / f"{name}.log"), env=env,
                        pool=pool, expected=expected)
        launcher = launcher_for(record)
        # count only workers that join from here on (the scheduler numbers them as they join)
        since = (schedfile.count(info) or {}).get("seq", 0)
        step = launcher.start(plan)
        record.pools.append(step)
        record.expected_workers += expected
        state.write_record(record)
        report.info(f"pool {pool}: started {proc.display(argv)}, log {step.log}")
        try:
            wait_ready(launcher, state, record.scheduler, [step], expected, opts, report,
                       deadline=time.monotonic() + opts.timeout, since=since)
        except BaseException:
            launcher.stop(step, hard=True)
            record.pools.remove(step)
            record.expected_workers -= expected
            state.write_record(record)
            raise
    return {"pool": pool, "workers": expected, "command": proc.display(argv), "log": step.log}


def sized_like(record, pool: str) -> tuple[int, str]:
    """(threads, memory limit) of the workers `up` planned for pool `pool`, else for the
    cluster's first pool: a joined worker is one more of them."""
    steps = [p for p in record.pools if p.pool == pool] or list(record.pools)
    for step in steps:
        if step.nthreads is not None and step.memory_limit:
            return step.nthreads, step.memory_limit
        # a record written before plans kept the shape: read it from the command
        threads = flag_value(step.command, "--nthreads")
        memory = flag_value(step.command, "--memory-limit")
        if threads and memory:
            return int(threads), memory
    plan = record.memory.get("per_worker") if record.memory else None
    return 1, str(plan or "auto")


def with_worker_name(argv: list[str], name: str) -> list[str]:
    """A `dask worker` COMMAND without --name gets `name` (so status counts it in its pool);
    any other command is left as given."""
    if any(a == "--name" or a.startswith("--name=") for a in argv):
        return argv
    for head in (["dask", "worker"], ["dask-worker"], ["-m", "dask", "worker"],
                 ["-m", WORKER_MODULE]):
        for start in range(min(2, len(argv))):
            if argv[start:start + len(head)] == head or (
                    len(head) == 1 and os.path.basename(argv[start]) == head[0]):
                cut = start + len(head)
                return [*argv[:cut], "--name", name, *argv[cut:]]
    return argv


def _host() -> str:
    import socket

    return socket.gethostname().split(".")[0]

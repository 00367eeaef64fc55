"""`join`: workers started here (`dask worker`, `dask cuda worker`, an srun of them) that join
the running cluster with its worker TLS material, recorded as a pool so that status,
restart-workers and down know them."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

from ..domain.commands import network_args, start_method_env
from ..domain.env import job_env
from ..errors import NotUpError, UsageError
from ..launch.factory import launcher_for
from ..runtime import proc, schedfile
from ..runtime.record import Step
from ..runtime.report import Reporter
from ..runtime.state import JOB_CONFIG_DIR, find_state_dir
from ..runtime.tls import WORKER_TLS_ARGS, TLSFiles
from .common import interrupts_raise, load_record, step_name
from .readiness import wait_ready

# Workers listen with the scheduler's scheme: a command that takes no --protocol (dask cuda
# worker) still opens a TLS listener.
DEFAULT_SCHEME = "DASK_DISTRIBUTED__COMM__DEFAULT_SCHEME"


def join(state_dir: Path | str | None = None, *, pool: str = "joined",
         command: list[str] | None = None, nworkers: int = 1, expect: int | None = None,
         timeout: float | None = None, report: Reporter | None = None) -> dict:
    report = report or Reporter()
    if nworkers < 1:
        raise UsageError(f"--nworkers must be at least 1, not {nworkers}")
    expected = nworkers if expect is None else expect
    if expected < 0:
        raise UsageError(f"--expect must be >= 0, not {expected}")
    state = find_state_dir(state_dir)
    with state.lock("join"), interrupts_raise():
        record = load_record(state, report)
        info = schedfile.read(state.scheduler_file)
        if record.status != "up" or info is None or not schedfile.answers(info):
            raise NotUpError("the cluster is not up: run `dasklaunch up` first")
        if pool in {p.pool for p in record.pools}:
            raise UsageError(f"pool {pool!r} exists already; give --pool another name")
        opts = record.options
        if timeout is not None:
            opts = replace(opts, timeout=timeout)
        local = record.backend != "slurm"
        sfile = str(state.scheduler_file)
        argv = list(command or [])
        if not argv:
            argv = [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                    sfile, "--nworkers", str(nworkers), "--name", f"{pool}-{_host()}",
                    *network_args(opts, local), *(WORKER_TLS_ARGS if opts.tls else [])]
        env = job_env(opts, str(state.path / JOB_CONFIG_DIR))
        env.update(start_method_env(opts.start_method, env))
        env.update({"DASK_SCHEDULER_FILE": sfile, "SCHEDULER_FILE": sfile,
                    "DASK_SCHEDULER_ADDRESS": info.address})
        if opts.tls:
            env.update(TLSFiles.in_state_dir(state).server_env("worker"))
            env[DEFAULT_SCHEME] = "tls"
        name = step_name("workers", record.generation)
        step = Step(role="workers", name=name, placement="here", ntasks=1, nnodes=1,
                    command=argv, log=str(state.logs / f"{name}.log"), env=env, pool=pool,
                    expected=expected)
        launcher = launcher_for(record)
        # count only workers that join from here on (the scheduler numbers them as they join)
        since = (schedfile.count(info) or {}).get("seq", 0)
        launcher.start(step)
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


def _host() -> str:
    import socket

    return socket.gethostname().split(".")[0]

"""What a pool's task runs on its node: names the node's workers, pins GPU workers, and starts
them without a second import of distributed.

    python -m dasklaunch.launch.node --pool NAME --gpus-per-worker G [--prefork]
        [--drain-timeout SECONDS] -- dask worker ...

Its workers: with no GPUs to pin (G = 0, or none visible), one `dask worker --name POOL-HOST-N`
(N: the task's SLURM_LOCALID); with --workers-per-task K, K of them (N = 0..K-1), each on its
slice of the task's CPUs: one task per node standing in for K tasks, with one import of
distributed instead of K. With G > 0, one worker per G of the GPUs it sees (all of the
node's, one task per node; or the task's own with gpu-tasks=yes), each seeing only its own
through the vendor's variable, with its share of the task's CPUs, named POOL-HOST-gpuTOKEN. The
worker command may be `dask cuda worker` (dask-cuda pools): shown one GPU, it starts one worker.

With --prefork (the default start method) it imports distributed once and forks them, and
their nannies fork their workers from a fork server forked from it: see launch/prefork.py.
Otherwise (--start-method spawn/fork/forkserver, or when prefork cannot be used) it imports no
Dask: with one worker it becomes `dask worker` (exec: the same process, so signals, pids and the
end of the step are exactly as before); with several it starts them as children. Either way it
passes SIGTERM/SIGINT on to its workers once and exits when all have exited.

With --drain-timeout T > 0 it stays its workers' parent (it neither becomes nor runs `dask
worker` itself) and, on the first SIGTERM, asks the scheduler to retire them before it passes
the signal on: the results they hold move to workers that stay (launch/node_drain.py). Its `dask
worker` processes leave SIGTERM to it and get SIGINT after the drain (launch/shield.py), since
under srun Slurm's SIGTERM reaches every process of the step at once.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from dataclasses import replace
from pathlib import Path

from ..domain import dask_cuda
from ..domain.gpus import VisibleGPUs, visible_gpus
from ..runtime import proc
from . import node_drain as drain
from . import prefork
from . import shield as shielding


def host_name(env: dict[str, str]) -> str:
    return (env.get("SLURMD_NODENAME") or socket.gethostname()).split(".")[0]


def split_cpus(cpus: list[int], parts: int) -> list[list[int]]:
    """`cpus` in `parts` contiguous slices, as even as they come (never an empty one)."""
    if parts <= 0:
        return []
    if len(cpus) < parts:
        return [list(cpus) for _ in range(parts)]
    size, extra = divmod(len(cpus), parts)
    out, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        out.append(cpus[start:end])
        start = end
    return out


def by_core(cpus, topology: str = "/sys/devices/system/cpu") -> list[int]:
    """`cpus` ordered by socket, then core, so that contiguous slices of the list hold whole
    cores (hyperthread siblings are often numbered k and k + the core count); by number where
    the kernel does not say."""
    def place(cpu: int) -> tuple[int, int, int]:
        try:
            return tuple(int(Path(f"{topology}/cpu{cpu}/topology/{name}").read_text())
                         for name in ("physical_package_id", "core_id")) + (cpu,)
        except (OSError, ValueError):
            return (0, cpu, cpu)
    return sorted(cpus, key=place)


def gpu_workers(pool: str, host: str, gpus: VisibleGPUs, per_worker: int,
                command: list[str], cpus: list[int]) -> list[tuple[list[str], dict, list[int]]]:
    """(argv, environment additions, CPUs) of each GPU worker on this node."""
    groups = [gpus.tokens[i:i + per_worker]
              for i in range(0, len(gpus.tokens) - per_worker + 1, per_worker)]
    slices = split_cpus(cpus, len(groups))
    return [([*command, "--name", f"{pool}-{host}-gpu{'-'.join(group)}"],
             gpus.variables(group), cpu_slice)
            for group, cpu_slice in zip(groups, slices, strict=True)]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="dasklaunch.launch.node")
    parser.add_argument("--pool", default="")
    parser.add_argument("--gpus-per-worker", type=int, default=0)
    # one worker per task (srun --gpus-per-task): Slurm binds each task to its own GPUs; where
    # it does not (no per-task binding), the task takes its SLURM_LOCALID-th share
    parser.add_argument("--gpu-tasks", action="store_true")
    parser.add_argument("--prefork", action="store_true")
    parser.add_argument("--workers-per-task", type=int, default=1)
    parser.add_argument("--drain-timeout", type=float, default=0.0)
    # no drain while this file exists (`down` stopping every worker); default: the one beside
    # the workers' scheduler file
    parser.add_argument("--no-drain-file")
    # workers that dask-jobqueue's script names (scale-out jobs without a pool)
    parser.add_argument("--keep-name", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    args.command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not args.command:
        parser.error("no command given")
    if not args.pool and not args.keep_name:
        parser.error("--pool or --keep-name is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    env = dict(os.environ)
    workers = task_workers(args, env)
    if workers is None:
        return 2
    drainer, shield = draining(args, [workers])
    if args.prefork:
        code = prefork.run([(env, workers)], before_term=drainer, shield=shield)
        if code is not None:
            return code
        if "distributed" in sys.modules:
            # imported, and it left threads: start afresh without it, the usual way
            proc.become(without_prefork(list(sys.orig_argv)))
    if len(workers) == 1 and not workers[0][2] and drainer is None:
        argv, extra, _ = workers[0]
        os.environ.update(extra)
        proc.become(argv)
    return run_workers(workers, env, drainer, shield)


def under_srun(env) -> bool:
    """A task of a real srun step, where Slurm signals every process of the step at once."""
    return "SLURM_STEP_ID" in env and "DASKLAUNCH_STEP" not in env


def draining(args: argparse.Namespace,
             tasks: list[list[prefork.NodeWorker] | None]) -> tuple[drain.Drainer | None, bool]:
    """What drains these tasks' workers before SIGTERM reaches them (None: no draining, with
    --drain-timeout 0), and whether the workers leave SIGTERM to it (launch/shield.py: every
    one is this Python's `dask worker` or `dask cuda worker`). The launcher then stays their
    parent rather than becoming one. Under a real srun step Slurm's SIGTERM reaches the
    workers too, so other worker commands are not drained there."""
    argvs = [argv for workers in tasks for argv, _, _ in workers or ()]
    if args.drain_timeout <= 0:
        return None, False
    shield = all(shielding.shieldable(argv) for argv in argvs)
    if under_srun(os.environ) and not shield:
        prefork.say("not draining: Slurm signals every process of the step, and only this "
                    "Python's dask worker or dask cuda worker can leave SIGTERM to this "
                    "launcher")
        return None, False
    return drain.Drainer(argvs, args.drain_timeout, args.no_drain_file), shield


def is_prefork(command: list[str]) -> bool:
    """Whether a task command is this Python's node launcher with --prefork."""
    head = command[:3] == [sys.executable, "-m", "dasklaunch.launch.node"]
    return head and "--prefork" in command[3:command.index("--") if "--" in command else None]


def without_prefork(command: list[str]) -> list[str]:
    """The same command without its (first) --prefork."""
    out = list(command)
    out.remove("--prefork")
    return out


def run_tasks(command: list[str], envs: list[dict[str, str]]) -> int | None:
    """The local step's tasks (one environment each) of a --prefork node launcher `command`,
    forked from this one process with one import of distributed: the local step is the node's
    one launcher. None, having said why, when they cannot be (start them the usual way, without
    --prefork)."""
    args = parse(command[3:])
    tasks = [(env, task_workers(args, env))
             for env in envs]
    drainer, shield = draining(args, [w for _, w in tasks])
    return prefork.run(tasks, before_term=drainer, shield=shield)


def task_workers(args: argparse.Namespace,
                 env: dict[str, str]) -> list[prefork.NodeWorker] | None:
    if args.keep_name:
        return [(args.command, {}, None)]
    return node_workers(args.pool, args.gpus_per_worker, args.command, env, args.gpu_tasks,
                        args.workers_per_task)


def node_workers(pool: str, gpus_per_worker: int, command: list[str],
                 env: dict[str, str], gpu_tasks: bool = False,
                 workers_per_task: int = 1) -> list[prefork.NodeWorker] | None:
    """The `dask worker` processes of this task; None (said why) when it has too few GPUs, or
    GPUs dask-cuda cannot use."""
    host = host_name(env)
    gpus = visible_gpus(env) if gpus_per_worker else None
    if gpus is not None and gpu_tasks and len(gpus.tokens) > gpus_per_worker:
        rank = int(env.get("SLURM_LOCALID", "0"))
        share = gpus.tokens[rank * gpus_per_worker:(rank + 1) * gpus_per_worker]
        gpus = replace(gpus, tokens=share) if share else None
    if gpus is not None and gpus.vendor != "nvidia" and dask_cuda.is_worker(command):
        print(f"dasklaunch.launch.node: pool {pool} runs dask cuda worker, but this task's GPUs "
              f"are {gpus.vendor}'s ({gpus.source}); use dask-cuda=no", file=sys.stderr,
              flush=True)
        return None
    if gpus is None or len(gpus.tokens) < gpus_per_worker:
        if gpus_per_worker:
            print(f"dasklaunch.launch.node: pool {pool} wants {gpus_per_worker} GPUs "
                  f"per worker but this task sees {len(gpus.tokens) if gpus else 0}",
                  file=sys.stderr, flush=True)
            return None
        hidden = visible_gpus(env)
        # a CPU-only pool on a node with GPUs: its workers must not use them
        extra = hidden.variables(()) if hidden is not None else {}
        if workers_per_task > 1:
            # the names and CPU shares the node's K tasks would have had: whole cores, a
            # socket's together, as Slurm binds tasks
            slices = split_cpus(by_core(os.sched_getaffinity(0)), workers_per_task)
            return [([*command, "--name", f"{pool}-{host}-{index}"], dict(extra), cpus)
                    for index, cpus in enumerate(slices)]
        name = f"{pool}-{host}-{env.get('SLURM_LOCALID', '0')}"
        return [([*command, "--name", name], extra, None)]
    return gpu_workers(pool, host, gpus, gpus_per_worker, command,
                       sorted(os.sched_getaffinity(0)))


def run_workers(workers: list[prefork.NodeWorker], env: dict[str, str],
                before_term=None, shield: bool = False) -> int:
    if not shield:
        return proc.lead([proc.start_child(argv, env={**env, **extra}, cpus=cpus)
                          for argv, extra, cpus in workers], before_term)
    # SIGTERM ignored from the start: Slurm's may come while the interpreter is still starting
    children = [proc.start_child(shielding.shielded_argv(argv), env={**env, **extra}, cpus=cpus,
                                 ignore_sigterm=True)
                for argv, extra, cpus in workers]
    return proc.lead(children, before_term, shielding.PASSED_ON)


if __name__ == "__main__":
    sys.exit(main())

"""What a pool's task runs on its node: names the node's workers and pins GPU workers.

    python -m dasklaunch.launch.node --pool NAME --gpus-per-worker G -- dask worker ...

With no GPUs to pin (G = 0, or none visible), it becomes `dask worker --name POOL-HOST-N` (exec:
the same process, so signals, pids and the end of the step are exactly as before). With G > 0 it
starts one `dask worker` per G of the GPUs it sees (the node's GPUs stay visible to this one
process, so workers of a node can still reach each other's GPUs over CUDA IPC), each seeing only
its own through the vendor's variable, with its share of the task's CPUs, named
POOL-HOST-gpuTOKEN; it passes SIGTERM/SIGINT on to them once and exits when all have exited.

It imports neither Dask nor anything that starts threads, and reads only its environment.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from ..domain.gpus import VisibleGPUs, visible_gpus
from ..runtime import proc


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


def gpu_workers(pool: str, host: str, gpus: VisibleGPUs, per_worker: int,
                command: list[str], cpus: list[int]) -> list[tuple[list[str], dict, list[int]]]:
    """(argv, environment additions, CPUs) of each GPU worker on this node."""
    groups = [gpus.tokens[i:i + per_worker]
              for i in range(0, len(gpus.tokens) - per_worker + 1, per_worker)]
    slices = split_cpus(cpus, len(groups))
    return [([*command, "--name", f"{pool}-{host}-gpu{'-'.join(group)}"],
             gpus.variables(group), cpu_slice)
            for group, cpu_slice in zip(groups, slices, strict=True)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dasklaunch.launch.node")
    parser.add_argument("--pool", required=True)
    parser.add_argument("--gpus-per-worker", type=int, default=0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    env = dict(os.environ)
    host = host_name(env)
    gpus = visible_gpus(env) if args.gpus_per_worker else None
    if gpus is None or len(gpus.tokens) < args.gpus_per_worker:
        if args.gpus_per_worker:
            print(f"dasklaunch.launch.node: pool {args.pool} wants {args.gpus_per_worker} GPUs "
                  f"per worker but this task sees {len(gpus.tokens) if gpus else 0}",
                  file=sys.stderr, flush=True)
            return 2
        name = f"{args.pool}-{host}-{env.get('SLURM_LOCALID', '0')}"
        hidden = visible_gpus(env)
        if hidden is not None:
            # a CPU-only pool on a node with GPUs: its workers must not use them
            os.environ.update(hidden.variables(()))
        proc.become([*command, "--name", name])
    workers = gpu_workers(args.pool, host, gpus, args.gpus_per_worker, command,
                          sorted(os.sched_getaffinity(0)))
    return run_workers(workers, env)


def run_workers(workers: list[tuple[list[str], dict, list[int]]], env: dict[str, str]) -> int:
    return proc.lead([proc.start_child(argv, env={**env, **extra}, cpus=cpus)
                      for argv, extra, cpus in workers])


if __name__ == "__main__":
    sys.exit(main())

"""A local job step: what srun does, on this machine. Used by the local backend.

Starts NTASKS copies of COMMAND with SLURM_PROCID/SLURM_LOCALID/SLURM_NTASKS set, stays in the
foreground as the step's leader (like srun), forwards SIGTERM/SIGINT to the tasks, and exits
when every task has exited, with the highest exit code. The launcher starts it as the leader of
a new process group, so the whole step (nanny children included) is one killpg away.

When COMMAND is the node launcher with --prefork, this step is the node's one launcher: it
imports distributed once and forks the tasks, each with the environment it would have had as a
separate process (see launch/prefork.py).

With --gpus-per-task G, task N sees only the Nth G of the GPUs this step sees (through the
vendor's variable), as Slurm's --gpus-per-task gives each task its own.

Usage: python -m dasklaunch.launch.localstep --ntasks N [--job-name NAME] [--gpus-per-task G]
           -- COMMAND ...
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from ..domain.gpus import visible_gpus
from ..runtime import proc
from . import node


def task_environ(rank: int, ntasks: int, name: str, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    env.update({
        "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank), "SLURM_NODEID": "0",
        "SLURM_NTASKS": str(ntasks), "SLURM_STEP_NUM_TASKS": str(ntasks),
        "SLURMD_NODENAME": socket.gethostname(), "DASKLAUNCH_STEP": name,
    })
    return env


def task_gpus(base: dict[str, str], ntasks: int, per_task: int) -> list[dict[str, str]]:
    """Each task's share of the GPUs in `base`, as the vendor's variables; an error (as srun's)
    when there are too few."""
    gpus = visible_gpus(base)
    have = len(gpus.tokens) if gpus else 0
    if have < ntasks * per_task:
        raise SystemExit(f"dasklaunch.localstep: {ntasks} tasks x {per_task} GPUs, but this "
                         f"step sees {have} GPUs")
    return [gpus.variables(gpus.tokens[rank * per_task:(rank + 1) * per_task])
            for rank in range(ntasks)]


def run_tasks(command: list[str], ntasks: int, name: str, gpus_per_task: int = 0) -> int:
    envs = [task_environ(rank, ntasks, name, dict(os.environ)) for rank in range(ntasks)]
    if gpus_per_task:
        for env, gpus in zip(envs, task_gpus(dict(os.environ), ntasks, gpus_per_task),
                             strict=True):
            env.update(gpus)
    if node.is_prefork(command):
        # this step is the node's one launcher: one import of distributed, its tasks forked
        code = node.run_tasks(command, envs)
        if code is not None:
            return code
        command = node.without_prefork(command)
    return proc.lead([proc.start_child(command, env=env) for env in envs])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dasklaunch.localstep")
    parser.add_argument("--ntasks", type=int, required=True)
    parser.add_argument("--job-name", default="step")
    parser.add_argument("--gpus-per-task", type=int, default=0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command or args.ntasks < 1:
        parser.error("need --ntasks >= 1 and a command")
    return run_tasks(command, args.ntasks, args.job_name, args.gpus_per_task)


if __name__ == "__main__":
    sys.exit(main())

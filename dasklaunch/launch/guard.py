"""Run a command that must not outlive its Slurm job (the `--scheduler-here` scheduler).

Processes started outside any job step are not tracked by every proctrack plugin, so this
wrapper watches the job with squeue and ends the command when the job is gone. It forwards
SIGTERM/SIGINT to the command and exits with the command's exit code.

Usage: python -m dasklaunch.launch.guard --job-id JOB [--interval S] -- COMMAND ...
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

from ..runtime import proc
from ..slurm.queue import job_gone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dasklaunch.guard")
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    child = proc.start_child(command)

    def forward(signum, _frame):
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    next_check = time.monotonic() + args.interval
    while True:
        try:
            return_code = child.wait(timeout=0.5)
            return return_code if return_code >= 0 else 128 - return_code
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() >= next_check:
            next_check = time.monotonic() + args.interval
            if job_gone(args.job_id):
                print(f"dasklaunch.guard: job {args.job_id} has ended; stopping "
                      f"{command[0]} (pid {child.pid})", file=sys.stderr, flush=True)
                child.terminate()
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
                return 143


if __name__ == "__main__":
    sys.exit(main())

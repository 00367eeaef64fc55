"""Fake srun/scancel/squeue/scontrol for tests of the Slurm backend on one machine.

They accept only the flags dasklaunch sends (argparse; anything else fails loudly), keep their
state in $FAKE_SLURM_DIR, and REALLY run the tasks locally with SLURM_* set. A step is a process
group led by the fake srun, so `scancel --signal=TERM JOB.STEP` reaches every task of it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
from pathlib import Path


def state_dir() -> Path:
    path = os.environ.get("FAKE_SLURM_DIR")
    if not path:
        sys.exit("fake slurm: FAKE_SLURM_DIR is not set")
    Path(path, "steps").mkdir(parents=True, exist_ok=True)
    return Path(path)


def log_call(tool: str, argv: list[str]) -> None:
    with open(state_dir() / "calls.log", "a") as handle:
        handle.write(json.dumps([tool, *argv]) + "\n")


def next_step_id(job: str) -> int:
    counter = state_dir() / f"{job}.counter"
    with open(counter, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        value = int(handle.read() or 0)
        handle.seek(0)
        handle.truncate()
        handle.write(str(value + 1))
    return value


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def live_steps(job: str) -> list[dict]:
    steps = []
    for path in sorted((state_dir() / "steps").glob(f"{job}.*.json")):
        try:
            step = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(step["pid"]):
            steps.append(step)
        else:
            path.unlink(missing_ok=True)
    return steps


def srun(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="srun", exit_on_error=False)
    parser.add_argument("--jobid", required=True)
    parser.add_argument("--job-name", required=True)
    parser.add_argument("--overlap", action="store_true", required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--ntasks", type=int, required=True)
    parser.add_argument("--ntasks-per-node", type=int)
    parser.add_argument("--nodelist")
    parser.add_argument("--kill-on-bad-exit", type=int, choices=[0, 1], required=True)
    parser.add_argument("--no-kill", action="store_true")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if not args.command:
        parser.error("no command")
    if args.jobid != os.environ.get("FAKE_SLURM_JOB_ID"):
        print(f"srun: error: Invalid job id specified: {args.jobid}", file=sys.stderr)
        return 1
    step_id = next_step_id(args.jobid)
    full_id = f"{args.jobid}.{step_id}"
    record = state_dir() / "steps" / f"{full_id}.json"
    record.write_text(json.dumps({"id": full_id, "name": args.job_name, "pid": os.getpid(),
                                  "pgid": os.getpgid(0)}))
    children = []
    for rank in range(args.ntasks):
        env = dict(os.environ, SLURM_JOB_ID=args.jobid, SLURM_STEP_ID=str(step_id),
                   SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank), SLURM_NODEID="0",
                   SLURM_NTASKS=str(args.ntasks), SLURM_STEPID=str(step_id))
        children.append(subprocess.Popen(args.command, env=env, stdin=subprocess.DEVNULL))

    def on_term(signum, _frame):
        # like Slurm 22.05: a TERM to srun itself kills the tasks at once
        for child in children:
            if child.poll() is None:
                child.kill()

    signal.signal(signal.SIGTERM, on_term)
    codes = [child.wait() for child in children]
    record.unlink(missing_ok=True)
    return max((c if c >= 0 else 128 - c) for c in codes)


def scancel(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="scancel", exit_on_error=False)
    parser.add_argument("--signal", choices=["TERM", "INT", "KILL"])
    parser.add_argument("id")
    args = parser.parse_args(argv)
    job, _, step = args.id.partition(".")
    targets = [s for s in live_steps(job) if not step or s["id"] == args.id]
    if not targets:
        print(f"scancel: error: Kill job error on job id {args.id}: Invalid job id specified",
              file=sys.stderr)
        return 1
    sig = getattr(signal, f"SIG{args.signal or 'KILL'}")
    for target in targets:
        # Like slurmstepd: every process of the step's tasks, but not srun itself.
        for pid in group_pids(target["pgid"]):
            if pid != target["pid"]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
    return 0


def squeue(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="squeue", exit_on_error=False)
    parser.add_argument("--noheader", action="store_true", required=True)
    parser.add_argument("--steps", action="store_true")
    parser.add_argument("--jobs", required=True)
    parser.add_argument("--format", required=True, choices=["%i %j", "%T"])
    args = parser.parse_args(argv)
    if args.jobs != os.environ.get("FAKE_SLURM_JOB_ID") or (state_dir() / "ended").exists():
        print("slurm_load_jobs error: Invalid job id specified", file=sys.stderr)
        return 1
    if args.steps:
        for step in live_steps(args.jobs):
            print(f"{step['id']} {step['name']}")
    else:
        print("RUNNING")
    return 0


def scontrol(argv: list[str]) -> int:
    if argv[:3] == ["show", "job", "--oneliner"] and len(argv) == 4:
        print(f"JobId={argv[3]} JobState=RUNNING NodeList=localhost NumNodes=1")
        return 0
    if argv[:2] != ["show", "hostnames"] or len(argv) != 3:
        print(f"fake scontrol: unsupported {argv}", file=sys.stderr)
        return 2
    for host in argv[2].split(","):
        print(host)
    return 0


TOOLS = {"srun": srun, "scancel": scancel, "squeue": squeue, "scontrol": scontrol}


def main() -> int:
    tool = Path(sys.argv[0]).name
    log_call(tool, sys.argv[1:])
    try:
        return TOOLS[tool](sys.argv[1:])
    except (argparse.ArgumentError, SystemExit) as err:
        if isinstance(err, SystemExit) and err.code in (0, None):
            raise
        print(f"fake {tool}: rejected arguments {sys.argv[1:]}: {err}", file=sys.stderr)
        return 99


if __name__ == "__main__":
    sys.exit(main())

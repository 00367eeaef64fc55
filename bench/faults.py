#!/usr/bin/env python3
"""Recovery time after each fault, on the local backend: one command, one table.

    python bench/faults.py               # 3 rounds, 2 workers
    python bench/faults.py --rounds 5 --workers 4

Every clock runs from the fault until the cluster serves again: the expected workers are
connected and a task pinned to each has run. Processes are only ever signalled by the process
group recorded in the job's state.json, or by the worker pid the scheduler reports.
Benchmarks print; they never assert.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt, summary, table  # noqa: E402

UP = ["--dashboard-address", ":0", "--timeout", "120"]
SUPERVISE = ["--interval", "0.5", "--grace", "2", "--backoff", "0.5"]


class Job:
    def __init__(self, root: Path, workers: int):
        self.state = root / "state"
        self.workers = workers
        self.env = {**os.environ, "DASKLAUNCH_STATE_DIR": str(self.state),
                    "XDG_RUNTIME_DIR": str(root)}
        for key in [k for k in self.env if k.startswith("SLURM_")]:
            del self.env[key]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dasklaunch", *args], env=self.env,
                              capture_output=True, text=True, timeout=300, check=check,
                              stdin=subprocess.DEVNULL)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "dasklaunch", *args], env=self.env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL)

    def up(self, *extra: str) -> None:
        self.cli("up", "--local-tasks", str(self.workers), *UP, *extra)

    def record(self) -> dict:
        return json.loads((self.state / "state.json").read_text())

    def serves(self, deadline: float = 120) -> bool:
        """Wait until the expected workers are connected and each ran a task."""
        import dasklaunch

        end = time.monotonic() + deadline
        while time.monotonic() < end:
            try:
                with dasklaunch.connect(self.state, timeout="5s") as client:
                    workers = list(client.scheduler_info()["workers"])
                    if len(workers) >= self.workers:
                        futures = [client.submit(lambda i: i, i, workers=[w], pure=False,
                                                 allow_other_workers=False)
                                   for i, w in enumerate(workers)]
                        client.gather(futures, errors="raise")
                        return True
            except Exception:  # noqa: BLE001 - the cluster is recovering; try again
                pass
            time.sleep(0.1)
        return False

    def worker_pids(self) -> list[int]:
        import dasklaunch

        with dasklaunch.connect(self.state, timeout="10s") as client:
            return sorted(client.run(os.getpid).values())


def killpg(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_attached(job: Job, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        status = json.loads(job.cli("status", "--json", check=False).stdout or "{}")
        if (status.get("supervisor") or {}).get("attached"):
            return
        time.sleep(0.2)


# ------------------------------------------------------------------------------------- faults

def worker_sigkill(job: Job) -> dict:
    job.up()
    victim = job.worker_pids()[0]
    started = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.2)  # let the nanny see it; else the old worker still counts
    ok = job.serves() and victim not in job.worker_pids()
    return {"s": time.monotonic() - started, "ok": ok}


def step_sigkill_supervised(job: Job) -> dict:
    job.up()
    sup = job.popen("supervise", *SUPERVISE)
    try:
        wait_attached(job)
        before = job.worker_pids()
        started = time.monotonic()
        killpg(job.record()["pools"][0]["pgid"])
        end = time.monotonic() + 120
        ok = False
        while time.monotonic() < end:
            if job.serves(30) and not set(before) & set(job.worker_pids()):
                ok = True
                break
        return {"s": time.monotonic() - started, "ok": ok}
    finally:
        stop(sup)


def step_sigkill_restart_workers(job: Job) -> dict:
    job.up()
    started = time.monotonic()
    killpg(job.record()["pools"][0]["pgid"])
    job.cli("restart-workers")
    return {"s": time.monotonic() - started, "ok": job.serves()}


def scheduler_sigkill(job: Job) -> dict:
    job.up()
    started = time.monotonic()
    killpg(job.record()["scheduler"]["pgid"])
    time.sleep(0.1)
    said_gone = job.cli("status", check=False).returncode == 1
    job.cli("down")
    job.up()
    return {"s": time.monotonic() - started, "ok": said_gone and job.serves()}


def state_dir_deleted(job: Job) -> dict:
    job.up()
    started = time.monotonic()
    shutil.rmtree(job.state)
    job.cli("down")
    job.up()
    return {"s": time.monotonic() - started, "ok": job.serves()}


def pool_dies_at_once(job: Job) -> dict:
    job.up("--wait-workers", "0", "--worker-arg=--preload=dasklaunch_no_such_module")
    started = time.monotonic()
    result = job.cli("supervise", *SUPERVISE, "--max-restarts", "3", check=False)
    gave_up = result.returncode == 1 and "giving up" in result.stderr
    return {"s": time.monotonic() - started, "ok": gave_up}


FAULTS = {
    "SIGKILL one worker (its nanny restarts it)": worker_sigkill,
    "SIGKILL the worker step, supervisor attached": step_sigkill_supervised,
    "SIGKILL the worker step, then restart-workers": step_sigkill_restart_workers,
    "SIGKILL the scheduler: status, down, up again": scheduler_sigkill,
    "state dir deleted: down from the copy, up again": state_dir_deleted,
    "pool that dies at once: supervisor gives up (3 tries)": pool_dies_at_once,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {name: [] for name in FAULTS}
    for round_ in range(args.rounds):
        for name, fault in FAULTS.items():
            root = Path(tempfile.mkdtemp(prefix="dl-faults-"))
            root.chmod(0o700)
            job = Job(root, args.workers)
            try:
                outcome = fault(job)
            except Exception as err:  # noqa: BLE001 - report it, go on with the others
                outcome = {"s": float("nan"), "ok": False, "error": str(err).splitlines()[0]}
            finally:
                job.cli("down", check=False)
                shutil.rmtree(root, ignore_errors=True)
            results[name].append(outcome)
            print(f"round {round_} {name}: {outcome['s']:.2f} s "
                  f"{'ok' if outcome['ok'] else 'FAILED ' + outcome.get('error', '')}",
                  file=sys.stderr)
    print(f"\nRecovery after faults, local backend, {args.workers} nanny workers, "
          f"{args.rounds} rounds ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")
    rows = []
    for name, outcomes in results.items():
        times = summary([o["s"] for o in outcomes if o["ok"]])
        rows.append([name, f"{times['n']}/{len(outcomes)}", fmt(times["median"]),
                     fmt(times["min"]), fmt(times["max"])])
    print(table(["fault", "ok", "median s", "min", "max"], rows))
    print("clock: from the fault until the expected workers are connected and each ran a "
          "task\n(scheduler and state-dir rows: until the new cluster serves; the last row: "
          "until the supervisor exits 1)")


if __name__ == "__main__":
    main()

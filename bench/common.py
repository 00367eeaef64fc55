"""Helpers shared by bench/run (the orchestrator) and bench/driver.py (runs inside allocations).

Nothing here imports distributed at module level: the orchestrator never needs it, and the
drivers import it before their clocks start.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PY = sys.executable                      # the real interpreter, never the pyenv shim
BIN = str(Path(PY).parent)               # its bin dir: dask, dasklaunch console scripts
DASKLAUNCH = str(Path(BIN) / "dasklaunch")
IFACE = "lab0"
NODES = 3
POLL = 0.05                              # client-side polling interval, same for every contender


# ------------------------------------------------------------------------------- environment

def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment every contender starts from: no Dask/dasklaunch/Slurm-job leftovers,
    the real interpreter's bin dir first on PATH (so `dask`, `python3` are not pyenv shims)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DASK_", "DASKLAUNCH_", "SCHEDULER_FILE", "SCHEDULE_FILE"))}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def slurm_job_env_removed(env: dict[str, str]) -> dict[str, str]:
    """For things that must run outside any allocation (dask-jobqueue's sbatch)."""
    return {k: v for k, v in env.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}


# -------------------------------------------------------------------------------------- stats

def summary(values: list[float]) -> dict:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(vals), "median": statistics.median(vals), "min": min(vals),
            "max": max(vals)}


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def table(headers: list[str], rows: list[list[str]], title: str = "") -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    out = []
    if title:
        out.append(title)
    line = "  ".join(str(h).ljust(w) if i == 0 else str(h).rjust(w)
                     for i, (h, w) in enumerate(zip(headers, widths, strict=True)))
    out.append(line)
    out.append("  ".join("-" * w for w in widths))
    for r in rows:
        out.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(out)


# ------------------------------------------------------------------------------ process care

def record_pgid(pidfile: Path, pgid: int, what: str) -> None:
    """Remember a process group we created (pid + start time), so the orchestrator can clean up
    after a driver that was killed. Groups are only ever signalled from this record."""
    import psutil

    try:
        created = psutil.Process(pgid).create_time()
    except psutil.Error:
        created = time.time()
    with open(pidfile, "a") as f:
        f.write(json.dumps({"pgid": pgid, "create_time": created, "what": what}) + "\n")


def group_alive(pgid: int, create_time: float | None = None) -> bool:
    """Any live, non-zombie member in process group `pgid` (started no earlier than the leader)."""
    import psutil

    for p in psutil.process_iter(["pid", "status", "create_time"]):
        try:
            if os.getpgid(p.pid) != pgid or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
        except OSError:
            continue
        if create_time is not None and (p.info["create_time"] or 0) < create_time - 1.0:
            continue
        return True
    return False


def kill_group(pgid: int, create_time: float | None = None, grace: float = 5.0) -> str:
    """SIGTERM the recorded group, wait, SIGKILL what is left."""
    if not group_alive(pgid, create_time):
        return "gone"
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return "gone"
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not group_alive(pgid, create_time):
                return "terminated" if sig == signal.SIGTERM else "killed"
            time.sleep(0.1)
    return "STILL ALIVE"


def sweep_pidfile(pidfile: Path) -> list[str]:
    """Kill every recorded group that is still alive (after a driver died or timed out)."""
    notes = []
    if not pidfile.exists():
        return notes
    for line in pidfile.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        outcome = kill_group(int(rec["pgid"]), rec.get("create_time"), grace=3.0)
        if outcome != "gone":
            notes.append(f"swept {rec.get('what')} pgid {rec['pgid']}: {outcome}")
    return notes


def spawn(argv: list[str], log: Path, env: dict[str, str], pidfile: Path | None = None,
          what: str = "", cwd: str | None = None) -> subprocess.Popen:
    """Start a process in its own session/group, output to `log`; record its group."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 env=env, start_new_session=True, cwd=cwd)
    if pidfile is not None:
        record_pgid(pidfile, child.pid, what or Path(argv[0]).name)
    return child


# ----------------------------------------------------------------------------------- Slurm

def squeue_steps(job_id: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """{step name: JOB.STEP} for our own job."""
    r = subprocess.run(["squeue", "--noheader", "--steps", f"--jobs={job_id}", "--format=%i %j"],
                       capture_output=True, text=True, timeout=20, env=env,
                       stdin=subprocess.DEVNULL)
    steps = {}
    for line in r.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2:
            steps[parts[1].strip()] = parts[0]
    return steps


def job_in_queue(job_id: str, env: dict[str, str] | None = None) -> bool:
    r = subprocess.run(["squeue", "--noheader", f"--jobs={job_id}", "--format=%i"],
                       capture_output=True, text=True, timeout=20, env=env,
                       stdin=subprocess.DEVNULL)
    return job_id in r.stdout.split()


# ------------------------------------------------------------------------------ Dask logs

_TS = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - ([\w.]+) - \w+ - (.*)$")
_EVENTS = {
    "sched_listen": re.compile(r"Scheduler at:"),
    "nanny_start": re.compile(r"Start Nanny at"),
    "worker_start": re.compile(r"Start worker at"),
    "register": re.compile(r"Register worker addr"),
}


def log_events(root: Path, since: float) -> dict[str, list[float]]:
    """Timestamps (epoch s) of Dask start-up events in every log under `root` after `since`."""
    found: dict[str, list[float]] = {k: [] for k in _EVENTS}
    for path in root.rglob("*"):
        if not path.is_file() or path.suffix in (".json", ".pem", ".sh", ".py") or \
                path.stat().st_size > 20_000_000:
            continue
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            m = _TS.match(line.strip())
            if not m:
                continue
            try:
                ts = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            except ValueError:
                continue
            if ts < since - 0.5:
                continue
            for key, pat in _EVENTS.items():
                if pat.search(m.group(3)):
                    found[key].append(ts)
    for v in found.values():
        v.sort()
    return found


def phases(root: Path, t0_wall: float, n: int) -> dict[str, float | None]:
    """Seconds after t0: scheduler listening, first/last nanny, last worker started, N-th
    registration at the scheduler."""
    ev = log_events(root, t0_wall)

    def rel(values: list[float], idx: int) -> float | None:
        if len(values) > idx >= -len(values):
            return round(values[idx] - t0_wall, 3)
        return None

    return {"sched_listen": rel(ev["sched_listen"], 0),
            "first_nanny": rel(ev["nanny_start"], 0),
            "last_worker_start": rel(ev["worker_start"][:n], n - 1) if ev["worker_start"] else None,
            "nth_register": rel(ev["register"], n - 1)}


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: dict) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)

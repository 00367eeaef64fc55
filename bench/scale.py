"""dasklaunch at scale, with simulated workers (bench/simworkers.py), local backend, no Slurm.

    python bench/scale.py [--workers 1000] [--per-process 500] [--json]
                          [--contenders dasklaunch,floor] [--repeats 1]

`dasklaunch`: `dasklaunch up --backend local` with DASKLAUNCH_WORKER_MODULE=simworkers, so each
of its ceil(N / per-process) tasks runs per-process in-process Workers (TLS on, as by default);
`dasklaunch-notls`: the same with --no-tls. `floor`: a plain `dask scheduler` (no preload, no
TLS) and the same simworkers processes, started at the same instant, watched through the
scheduler's log (a free observer); `floor-tls`: the floor with dasklaunch's TLS material.

Per contender: ready_s (launch until N connected: `up` returning, for the floor the N-th
"Register worker" in the scheduler's log), registered_s (the N-th "Register worker", from the
log, for all), the scheduler's CPU seconds until then. For dasklaunch also: probes (HTTP
requests `up` made, counted in its process by count_hook.py), probe_bytes_per_poll,
status_s (`dasklaunch status --json`, median of 3) and its bytes, and the scheduler CPU per
request of each route, measured on the idle cluster at N workers as (CPU during M requests -
the idle rate x their duration) / M; scheduler_cpu_s = requests during up x that, plus the
preload's counting of N arrivals. Benchmarks print numbers; they never assert.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
PY = sys.executable
sys.path[:0] = [str(REPO), str(BENCH)]

from common import clean_env  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
REGISTER = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*Register worker")
CONTENDERS = ("dasklaunch", "dasklaunch-notls", "floor", "floor-tls")


def cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK


def registrations(log: Path) -> list[float]:
    stamps = []
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return stamps
    for line in text.splitlines():
        match = REGISTER.match(line)
        if match:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            stamps.append(when.timestamp())
    return stamps


def phases(out: dict, stamps: list[float], workers: int, t0: float) -> None:
    """registered_s: launch until the N-th "Register worker"; first_registered_s: until the
    first (mostly the simulated workers' own start-up in their shared processes);
    register_span_s: from the first to the N-th (the scheduler registering them)."""
    if len(stamps) >= workers:
        out["registered_s"] = stamps[workers - 1] - t0
        out["first_registered_s"] = stamps[0] - t0
        out["register_span_s"] = stamps[workers - 1] - stamps[0]


def bench_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return clean_env({"PYTHONPATH": os.pathsep.join([str(BENCH), str(REPO)]), **(extra or {})})


def layout(workers: int, per_process: int) -> tuple[int, int]:
    tasks = max(1, math.ceil(workers / per_process))
    if workers % tasks:
        raise SystemExit(f"--workers {workers} does not split evenly into {tasks} processes")
    return tasks, workers // tasks


# ----------------------------------------------------------------------------------- dasklaunch

def run_dasklaunch(workers: int, per_process: int, tls: bool, work: Path) -> dict:
    from dasklaunch.runtime import schedfile

    tasks, each = layout(workers, per_process)
    state = work / "state"
    env = bench_env({"DASKLAUNCH_WORKER_MODULE": "simworkers"})
    hook = [PY, str(BENCH / "count_hook.py")]
    argv = ["up", "--backend", "local", "--local-tasks", str(tasks), "--nworkers", str(each),
            "--nthreads", "1", "--state-dir", str(state), "--timeout", "900",
            *([] if tls else ["--no-tls"])]
    out: dict = {"contender": "dasklaunch" if tls else "dasklaunch-notls", "workers": workers,
                 "processes": tasks}
    t0 = time.time()
    up = subprocess.run([*hook, str(work / "up.json"), "--", *argv], env=env, cwd=work,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out["ready_s"] = time.time() - t0
    record = json.loads((state / "state.json").read_text()) if (state / "state.json").exists() \
        else {}
    try:
        if up.returncode:
            out["error"] = up.stdout[-2000:]
            return out
        sched_pid = record["scheduler"]["leader"]["pid"]
        out["scheduler_cpu_up_s"] = cpu_seconds(sched_pid)
        phases(out, registrations(Path(record["scheduler"]["log"])), workers, t0)
        counts = json.loads((work / "up.json").read_text())
        http, nbytes = counts["http"], counts["http_bytes"]
        out["http_requests"] = http
        out["probes"] = sum(http.values())
        count_path = "/dasklaunch/count.json"
        out["probe_bytes_per_poll"] = (round(nbytes.get(count_path, 0) / http[count_path])
                                       if http.get(count_path) else None)
        out["up_cpu_s"] = counts["cpu_self"]
        status_times, status_bytes = [], None
        for i in range(3):
            s0 = time.perf_counter()
            subprocess.run([*hook, str(work / f"status{i}.json"), "--", "status", "--json",
                            "--state-dir", str(state)], env=env, cwd=work, check=True,
                           stdout=subprocess.DEVNULL)
            status_times.append(time.perf_counter() - s0)
            sc = json.loads((work / f"status{i}.json").read_text())
            status_bytes = sum(sc["http_bytes"].values())
        out["status_s"] = statistics.median(status_times)
        out["status_bytes"] = status_bytes
        s0 = time.perf_counter()
        subprocess.run([PY, "-m", "dasklaunch", "status", "--json", "--workers", "--state-dir",
                        str(state)], env=env, cwd=work, check=True, stdout=subprocess.DEVNULL)
        out["status_workers_s"] = time.perf_counter() - s0
        info = schedfile.read(state / "scheduler.json")
        out["route_cpu_ms"], out["route_bytes"] = route_costs(info, sched_pid)
        hooks = tally_cost(workers)
        out["plugin_hooks_cpu_s"] = hooks
        per_probe = out["route_cpu_ms"]["count"] / 1000
        out["scheduler_cpu_s"] = out["probes"] * per_probe + hooks
        if out.get("scheduler_cpu_up_s"):
            out["scheduler_cpu_share"] = out["scheduler_cpu_s"] / out["scheduler_cpu_up_s"]
    finally:
        d0 = time.perf_counter()
        down = subprocess.run([PY, "-m", "dasklaunch", "down", "--state-dir", str(state)],
                              env=env, cwd=work, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        out["down_s"] = time.perf_counter() - d0
        if down.returncode:
            out["down_error"] = down.stdout[-1000:]
            kill_recorded(state)
    return out


def kill_recorded(state: Path) -> None:
    """Last resort after a failed `down`: the process groups that state.json records."""
    try:
        record = json.loads((state / "state.json").read_text())
    except (OSError, ValueError):
        return
    steps = [record.get("scheduler") or {}, *(record.get("pools") or [])]
    for step in steps:
        if step.get("pgid"):
            with contextlib.suppress(OSError):
                os.killpg(step["pgid"], signal.SIGKILL)


def route_costs(info, sched_pid: int) -> tuple[dict, dict]:
    """Scheduler CPU (ms) and bytes per request of each route, on the idle cluster."""
    from dasklaunch.runtime import schedfile

    calls = {"count": (lambda: schedfile.count(info), 300),
             "summary": (lambda: schedfile.summary(info), 60),
             "workers (before)": (lambda: schedfile.identity(info), 30)}
    paths = {"count": "dasklaunch/count.json", "summary": "dasklaunch/summary.json",
             "workers (before)": "dasklaunch/workers.json"}
    cpu, size = {}, {}
    for name, (call, repeats) in calls.items():
        call()  # warm
        status, body = schedfile._fetch(info, paths[name], 10.0)
        size[name] = len(body or b"")
        # the idle rate (heartbeats) over as long a window as the requests take
        w0, c0 = time.perf_counter(), cpu_seconds(sched_pid)
        for _ in range(repeats):
            call()
        busy_wall, busy_cpu = time.perf_counter() - w0, cpu_seconds(sched_pid) - c0
        i0, ic0 = time.perf_counter(), cpu_seconds(sched_pid)
        time.sleep(max(busy_wall, 1.0))
        idle_rate = (cpu_seconds(sched_pid) - ic0) / (time.perf_counter() - i0)
        cpu[name] = round(max(0.0, busy_cpu - idle_rate * busy_wall) / repeats * 1000, 3)
    return cpu, size


def tally_cost(workers: int) -> float:
    """CPU seconds the preload spends counting `workers` arrivals, one waiter listening."""
    import asyncio

    from dasklaunch.runtime.scheduler_plugin import Tally

    async def measure() -> float:
        tally = Tally()
        waiter = asyncio.ensure_future(tally.wait(workers + 1, timeout=60))
        await asyncio.sleep(0)
        c0 = time.process_time()
        for i in range(workers):
            tally.add(f"tls://127.0.0.1:{10000 + i}", f"workers-host-0-{i}")
        spent = time.process_time() - c0
        waiter.cancel()
        return spent

    return asyncio.run(measure())


# ---------------------------------------------------------------------------------------- floor

def run_floor(workers: int, per_process: int, tls: bool, work: Path) -> dict:
    tasks, each = layout(workers, per_process)
    sfile, log = work / "scheduler.json", work / "scheduler.log"
    extra, proto = {}, []
    if tls:
        from dasklaunch.domain.dask_argv import PROTOCOL_ARGS
        from dasklaunch.runtime import tls as tlsmod
        from dasklaunch.runtime.state import StateDir

        state = StateDir(work / "tls-state")
        state.create()
        files = tlsmod.create(state, "floor")
        extra, proto = files, PROTOCOL_ARGS
    sched_env = bench_env(extra.server_env("scheduler") if tls else {})
    worker_env = bench_env(extra.server_env("worker") if tls else {})
    out: dict = {"contender": "floor-tls" if tls else "floor", "workers": workers,
                 "processes": tasks}
    procs: list[subprocess.Popen] = []
    t0 = time.time()
    try:
        with open(log, "w") as sched_log:
            sched = subprocess.Popen(
                [PY, "-m", "distributed.cli.dask_scheduler", "--scheduler-file", str(sfile),
                 "--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0",
                 *proto], env=sched_env, cwd=work, stdout=sched_log,
                stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(sched)
        for i in range(tasks):
            with open(work / f"workers{i}.log", "w") as wlog:
                procs.append(subprocess.Popen(
                    [PY, "-m", "simworkers", "--scheduler-file", str(sfile), "--nworkers",
                     str(each), "--nthreads", "1", "--host", "127.0.0.1", "--death-timeout",
                     "60", "--name", f"floor-host-{i}", *proto], env=worker_env, cwd=work,
                    stdout=wlog, stderr=subprocess.STDOUT, start_new_session=True))
        seen, deadline = 0, time.time() + 900
        while seen < workers and time.time() < deadline:
            time.sleep(0.02)
            with open(log, errors="replace") as f:
                seen = sum("Register worker" in line for line in f)
            if any(p.poll() is not None for p in procs):
                out["error"] = "a process exited early"
                return out
        out["seen_s"] = time.time() - t0
        if seen < workers:
            out["error"] = f"only {seen} of {workers} workers registered in 900 s"
            return out
        out["scheduler_cpu_up_s"] = cpu_seconds(sched.pid)
        phases(out, registrations(log), workers, t0)
        # the log's own stamps when every registration line parsed, else when we saw them
        out["ready_s"] = out.get("registered_s", out["seen_s"])
    finally:
        d0 = time.perf_counter()
        stop(procs[1:], signal.SIGTERM, 60)
        stop(procs[:1], signal.SIGTERM, 20)
        out["down_s"] = time.perf_counter() - d0
    return out


def stop(procs: list[subprocess.Popen], sig: int, grace: float) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(sig)
    end = time.time() + grace
    for p in procs:
        try:
            p.wait(max(0.1, end - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


# ------------------------------------------------------------------------------------------ run

def one(name: str, workers: int, per_process: int, keep: Path | None) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"scale-{name}-", dir=keep))
    if name.startswith("dasklaunch"):
        result = run_dasklaunch(workers, per_process, name == "dasklaunch", work)
    else:
        result = run_floor(workers, per_process, name == "floor-tls", work)
    result["dir"] = str(work)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--per-process", type=int, default=500,
                        help="simulated workers per process (one task each)")
    parser.add_argument("--contenders", default="dasklaunch,floor",
                        help=f"comma list of {', '.join(CONTENDERS)}")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one line of JSON")
    parser.add_argument("--keep", type=Path, help="put the runs' dirs (logs) under this dir")
    args = parser.parse_args()
    names = [n for n in args.contenders.split(",") if n]
    for name in names:
        if name not in CONTENDERS:
            raise SystemExit(f"unknown contender {name!r} ({', '.join(CONTENDERS)})")
    runs: dict[str, list[dict]] = {n: [] for n in names}
    load = os.getloadavg()[0]
    for round_ in range(args.repeats):
        order = names[round_ % len(names):] + names[:round_ % len(names)]
        for name in order:
            result = one(name, args.workers, args.per_process, args.keep)
            runs[name].append(result)
            if not args.json:
                print(json.dumps(result, sort_keys=True), file=sys.stderr, flush=True)
    report = summarize(runs, args.workers, load)
    if args.json:
        print(json.dumps(report, sort_keys=True))
    else:
        print_tables(report)


def med(rows: list[dict], key: str):
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(runs: dict[str, list[dict]], workers: int, load: float) -> dict:
    keys = ("ready_s", "registered_s", "first_registered_s", "register_span_s",
            "scheduler_cpu_up_s", "probes", "probe_bytes_per_poll",
            "status_s", "status_bytes", "status_workers_s", "scheduler_cpu_s",
            "scheduler_cpu_share", "up_cpu_s", "down_s")
    contenders = {name: {k: med(rows, k) for k in keys if med(rows, k) is not None}
                  for name, rows in runs.items()}
    for name, rows in runs.items():
        for row in rows:
            for extra in ("route_cpu_ms", "route_bytes", "http_requests", "error"):
                if extra in row:
                    contenders[name][extra] = row[extra]
        contenders[name]["runs"] = len(rows)
    main_name = next((n for n in ("dasklaunch", "dasklaunch-notls") if n in contenders), None)
    report: dict = {"workers": workers, "date": datetime.now().isoformat(timespec="seconds"),
                    "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, load "
                               f"{load:.2f} at start (shared)",
                    "contenders": contenders}
    if main_name:
        dl = contenders[main_name]
        for key in ("ready_s", "probe_bytes_per_poll", "probes", "status_s", "scheduler_cpu_s",
                    "scheduler_cpu_share"):
            report[key] = dl.get(key)
    floor = contenders.get("floor")
    if floor:
        report["floor"] = {k: floor.get(k) for k in ("ready_s", "scheduler_cpu_up_s")}
    ratios = {}
    for a, b in (("dasklaunch", "floor"), ("dasklaunch-notls", "floor"),
                 ("dasklaunch", "floor-tls"), ("floor-tls", "floor")):
        for key in ("ready_s", "register_span_s", "scheduler_cpu_up_s"):
            if a in contenders and b in contenders:
                x, y = contenders[a].get(key), contenders[b].get(key)
                if x and y:
                    ratios[f"{key} {a} / {b}"] = round(x / y, 3)
    report["ratios"] = ratios
    return report


def print_tables(report: dict) -> None:
    print(f"{report['workers']} simulated workers, {report['machine']}, {report['date']}")
    cols = ("ready_s", "first_registered_s", "register_span_s", "scheduler_cpu_up_s", "probes",
            "probe_bytes_per_poll", "status_s", "scheduler_cpu_s", "scheduler_cpu_share")
    print(f"{'':18}" + "".join(f"{c:>21}" for c in cols))
    for name, row in report["contenders"].items():
        cells = []
        for c in cols:
            v = row.get(c)
            cells.append("-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v))
        print(f"{name:18}" + "".join(f"{c:>21}" for c in cells))
    for name, row in report["contenders"].items():
        if "route_cpu_ms" in row:
            print(f"{name}: scheduler CPU per request (ms) {row['route_cpu_ms']}, "
                  f"bytes {row['route_bytes']}, up's requests {row.get('http_requests')}")
    for pair, value in report["ratios"].items():
        print(f"{pair}: {value:.2f}")


if __name__ == "__main__":
    main()

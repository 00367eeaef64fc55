"""Start-up at scale on the local backend: N 1-thread nanny workers on this machine, no Slurm.

    python bench/local.py                       # N = 4, 16, 64 (those up to 8 per CPU), 3 rounds
    python bench/local.py --workers 4 --repeats 5 --contenders floor,dasklaunch
    bench/run --sections local                  # the same, from the orchestrator

Contenders, each from a cold start of every process (the page cache warm):
  floor              `dask scheduler` and N `dask worker` (spawn, no TLS) started at once
  floor-fork         the same with Dask's fork method (optional)
  dasklaunch         `dasklaunch up --local-tasks N --nthreads 1` (defaults: TLS, prefork)
  dasklaunch-notls   the same with --no-tls
  dasklaunch-fork    the same with --start-method fork
  dasklaunch-spawn   the same with --start-method spawn (the default before prefork)

The clock runs from launch start until all N workers are connected (as a client sees them), and
until a trivial task pinned to each has run; `distributed` is imported before it starts. CPU
seconds (all processes of the run, `dasklaunch up` included, until ready) move less than wall
time with other users' load on a shared machine.
Contenders run round-robin, the order rotated every round; ratios are paired (the median of
each round's ratio to that round's floor). The whole run holds /tmp/dasklaunch-bench.lock, so it
never overlaps another benchmark on this machine. Benchmarks print numbers; they never assert.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402
import driver as D  # noqa: E402  (imports distributed: before any clock)

LOCK = "/tmp/dasklaunch-bench.lock"
CONTENDERS = ["floor", "dasklaunch", "dasklaunch-notls", "dasklaunch-fork", "dasklaunch-spawn"]
OPTIONAL = ["floor-fork"]
DL_EXTRA = {"dasklaunch": [], "dasklaunch-notls": ["--no-tls"],
            "dasklaunch-fork": ["--start-method", "fork"],
            "dasklaunch-spawn": ["--start-method", "spawn"]}


def _one(i):
    return i


D._one = _one  # defined here, in __main__: sent by value (workers cannot import `driver`)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def one(name: str, n: int, rundir: Path, timeout: float) -> dict:
    """One cold start of `name` with n workers; everything it started is stopped after."""
    rundir.mkdir(parents=True, exist_ok=True)
    pidfile = rundir / "pids.jsonl"
    env = C.clean_env()
    state = rundir / "state"
    res: dict = {"contender": name, "n": n, "load": os.getloadavg()[0], "ok": False}
    client = None
    deadline = time.monotonic() + timeout
    try:
        if name.startswith("dasklaunch"):
            env["DASKLAUNCH_STATE_DIR"] = str(state)
            argv = [C.DASKLAUNCH, "up", "--backend", "local", "--local-tasks", str(n),
                    "--nthreads", "1", "--dashboard-address", ":0", "--timeout", str(timeout),
                    *DL_EXTRA[name]]
            t0 = time.perf_counter()
            with open(rundir / "dasklaunch.out", "ab") as out:
                up = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                      stderr=subprocess.STDOUT)
            # wait4: this child's own CPU (RUSAGE_CHILDREN would add any child reaped meanwhile)
            _, status, usage = os.wait4(up.pid, 0)
            up.returncode = os.waitstatus_to_exitcode(status)
            res["t_launcher"] = time.perf_counter() - t0
            res["cpu_up"] = usage.ru_utime + usage.ru_stime
            if up.returncode:
                raise RuntimeError(f"dasklaunch up exited {up.returncode}")
            client = D.connect(state / "scheduler.json", D.security_for(state), deadline)
        else:
            sfile = rundir / "scheduler.json"
            if name == "floor-fork":
                env["DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"] = "fork"
            t0 = time.perf_counter()
            C.spawn([C.PY, "-m", "distributed.cli.dask_scheduler", "--scheduler-file",
                     str(sfile), "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                     ":0"], rundir / "scheduler.log", env, pidfile, "floor scheduler")
            for i in range(n):
                C.spawn([C.PY, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                         str(sfile), "--host", "127.0.0.1", "--nthreads", "1",
                         "--death-timeout", "60"], rundir / "workers.log", env, pidfile,
                        f"floor worker {i}")
            res["t_launcher"] = time.perf_counter() - t0
            client = D.connect(sfile, None, deadline)
        res["t_connected"], res["t_ready"] = D.client_ready(client, n, t0, deadline)
        res["cpu_procs"] = cpu_seconds(groups(name, state, pidfile))
        res["cpu"] = res.get("cpu_up", 0.0) + res["cpu_procs"]
        res["ok"] = True
    except Exception as err:  # noqa: BLE001 - a benchmark reports, it does not stop
        res["error"] = f"{type(err).__name__}: {err}"
    finally:
        if client is not None:
            client.close()
        if name.startswith("dasklaunch") and state.exists():
            subprocess.run([C.DASKLAUNCH, "down"], env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=120)
        for note in C.sweep_pidfile(pidfile):
            res.setdefault("notes", []).append(note)
    return res


def groups(name: str, state: Path, pidfile: Path) -> list[int]:
    if name.startswith("dasklaunch"):
        record = C.read_json(state / "state.json") or {}
        return [step["pgid"] for step in [record.get("scheduler"), *record.get("pools", [])]
                if step and step.get("pgid")]
    return [json.loads(line)["pgid"] for line in pidfile.read_text().splitlines()]


def cpu_seconds(pgids: list[int]) -> float:
    """CPU seconds so far of every live process in these process groups (the scheduler, local
    step, launchers, nannies, fork servers, workers, resource trackers)."""
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["cpu_times"]):
        try:
            if os.getpgid(proc.pid) in pgids:
                times = proc.info["cpu_times"]
                total += times.user + times.system
        except (OSError, TypeError):
            continue
    return total


def report(rows: list[dict], sizes: list[int], contenders: list[str]) -> str:
    out = []
    for key, what in (("t_connected", "all workers connected"),
                      ("t_ready", "connected and a task ran on each"),
                      ("cpu", "CPU seconds of all processes until ready")):
        table = []
        for n in sizes:
            floor = {r["rep"]: r[key] for r in rows
                     if r["n"] == n and r["contender"] == "floor" and r["ok"]}
            cells = [str(n)]
            for c in contenders:
                mine = [r for r in rows if r["n"] == n and r["contender"] == c and r["ok"]]
                med = C.summary([r[key] for r in mine])["median"]
                paired = C.summary([r[key] / floor[r["rep"]] for r in mine
                                    if r["rep"] in floor])["median"]
                unit = "" if key == "cpu" else " s"
                cells.append("-" if med is None else
                             f"{med:.2f}{unit}" + ("" if c == "floor" or paired is None
                                                   else f" ({paired:.2f}x)"))
            table.append(cells)
        title = (what if key == "cpu" else f"seconds until {what}")
        out.append(C.table(["workers", *contenders], table,
                           f"Local backend, N 1-thread nanny workers: {title} "
                           f"(medians; paired ratio to the floor)"))
        out.append("")
    fails = [r for r in rows if not r["ok"]]
    for r in fails:
        out.append(f"   FAILED rep {r['rep']} N={r['n']} {r['contender']}: {r.get('error')}")
    load = C.summary([r["load"] for r in rows])
    out.append(f"   1-min load average at run starts: median {C.fmt(load['median'], 1)}, "
               f"max {C.fmt(load['max'], 1)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="bench/local.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    cpus = os.cpu_count() or 1
    ap.add_argument("--workers", default=None,
                    help="worker counts [those of 4,16,64 up to 8 per CPU]")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--contenders", default=",".join(CONTENDERS),
                    help=f"[{','.join(CONTENDERS)}]; also {','.join(OPTIONAL)}")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--settle", type=float, default=1.0, help="pause between runs (s)")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    sizes = ([int(x) for x in a.workers.split(",")] if a.workers else
             [n for n in (4, 16, 64) if n <= 8 * cpus])
    contenders = a.contenders.split(",")
    if set(contenders) - set(CONTENDERS + OPTIONAL):
        ap.error(f"unknown contenders {sorted(set(contenders) - set(CONTENDERS + OPTIONAL))}")
    out = (a.out or C.BENCH / "results" / f"local-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    with open(LOCK, "a") as lock:
        log(f"waiting for {LOCK}")
        fcntl.flock(lock, fcntl.LOCK_EX)
        log(f"results in {out}")
        subprocess.run([C.PY, "-c", "import distributed, dasklaunch.cli"], capture_output=True,
                       timeout=120)  # warm the page cache
        rows = []
        for rep in range(a.repeats):
            for si, n in enumerate(sizes):
                shift = (rep + si) % len(contenders)
                for name in contenders[shift:] + contenders[:shift]:
                    res = one(name, n, out / f"r{rep}-n{n}-{name}", a.timeout)
                    res["rep"] = rep
                    rows.append(res)
                    log(f"rep {rep} N={n:<3} {name:<17} " +
                        (f"connected {res['t_connected']:6.2f} s, ready {res['t_ready']:6.2f} s"
                         if res["ok"] else f"FAILED: {res.get('error')}"))
                    time.sleep(a.settle)
    C.write_json(out / "results.json", {"rows": rows, "sizes": sizes, "contenders": contenders,
                                        "cpus": cpus, "date": time.strftime("%Y-%m-%d %H:%M %Z")})
    text = (f"machine: {os.uname().nodename}, {cpus} CPUs, Python {sys.version.split()[0]}, "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}\n" + report(rows, sizes, contenders))
    (out / "tables.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""Runs ONE measurement and writes its result as JSON. Started by bench/run, inside an
allocation (`salloc ... python driver.py ...`) or, for dask-jobqueue, outside one.

    driver.py ttr --contender NAME --k K --rundir DIR      time-to-ready of one contender
    driver.py session --k K --rundir DIR --repeats R ...   restart-workers vs floor, CLI
                                                           latency, resource cost
    driver.py scale --m M --rundir DIR                     dasklaunch's own work for 3*M workers

Every driver imports distributed BEFORE its clock starts (an analysis script pays that anyway),
measures the client part identically for all contenders (`client_ready`), records every process
group it creates in DIR/pids.jsonl, and cleans up in `finally`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
import traceback
from contextlib import suppress
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as C  # noqa: E402

# Imported before any clock starts.
import distributed  # noqa: E402,F401
from distributed import Client, Security  # noqa: E402


def _one(i):
    return i


# --------------------------------------------------------------------------------- the client

def wait_file(sfile: Path, deadline: float) -> dict:
    """Poll the scheduler file until it parses and has an address (written non-atomically)."""
    while True:
        data = C.read_json(sfile)
        if isinstance(data, dict) and data.get("address"):
            return data
        if time.monotonic() > deadline:
            raise TimeoutError(f"no valid scheduler file {sfile}")
        time.sleep(C.POLL)


def connect(sfile: Path, security, deadline: float) -> Client:
    wait_file(sfile, deadline)
    return Client(scheduler_file=str(sfile), security=security, timeout=30,
                  set_as_default=False)


def worker_addrs(client: Client) -> set[str]:
    return set(client.scheduler_info(n_workers=-1)["workers"])


def wait_new_workers(client: Client, n: int, known: set[str], deadline: float) -> list[str]:
    """Poll until `n` workers not in `known` are connected (the same for every contender)."""
    while True:
        new = sorted(worker_addrs(client) - known)
        if len(new) >= n:
            return new
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(new)}/{n} workers connected")
        time.sleep(C.POLL)


def run_on_each(client: Client, workers: list[str]) -> None:
    """A trivial task pinned to each worker, gathered."""
    futs = [client.submit(_one, i, workers=[w], allow_other_workers=False, pure=False)
            for i, w in enumerate(workers)]
    client.gather(futs)


def client_ready(client: Client, n: int, t0: float, deadline: float,
                 known: set[str] = frozenset()) -> tuple[float, float]:
    """Seconds after t0 at which n (new) workers were connected, and at which a trivial task had
    run on each of them."""
    workers = wait_new_workers(client, n, set(known), deadline)
    t_conn = time.perf_counter() - t0
    run_on_each(client, workers[:n])
    return t_conn, time.perf_counter() - t0


def security_for(state_dir: Path) -> Security | None:
    """What `source $(dasklaunch env --path)` gives an analysis script, as a Security object."""
    rec = C.read_json(state_dir / "state.json") or {}
    env = dict(rec.get("client_env") or {})
    if not env and (state_dir / "env.sh").exists():
        for line in (state_dir / "env.sh").read_text().splitlines():
            if line.startswith("export ") and "=" in line:
                key, _, value = line[7:].partition("=")
                env[key.strip()] = (shlex.split(value) or [""])[0]
    ca = env.get("DASK_DISTRIBUTED__COMM__TLS__CA_FILE")
    if not ca:
        return None
    return Security(tls_ca_file=ca,
                    tls_client_cert=env.get("DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT"),
                    tls_client_key=env.get("DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"),
                    require_encryption=True)


# ------------------------------------------------------------------------------ small helpers

class Ctx:
    def __init__(self, args):
        self.args = args
        self.rundir = Path(args.rundir).resolve()
        self.rundir.mkdir(parents=True, exist_ok=True)
        self.pidfile = self.rundir / "pids.jsonl"
        self.env = C.clean_env(json.loads(args.extra_env or "{}"))
        self.job = os.environ.get("SLURM_JOB_ID", "")
        self.result: dict = {"ok": False, "job_id": self.job, "host": os.uname().nodename}
        self.notes: list[str] = []

    def dl(self, *argv: str, state_dir: Path, timeout: float = 150, env: dict | None = None,
           log: str | None = None) -> subprocess.CompletedProcess:
        """Run a dasklaunch command the way a user does (the real console script)."""
        e = dict(env or self.env)
        e["DASKLAUNCH_STATE_DIR"] = str(state_dir)
        with open(self.rundir / (log or "dasklaunch.out"), "ab") as out:
            return subprocess.run([C.DASKLAUNCH, *argv], env=e, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=subprocess.STDOUT, timeout=timeout)

    def tail(self, name: str = "dasklaunch.out", lines: int = 6) -> str:
        try:
            return "\n".join((self.rundir / name).read_text(errors="replace")
                             .strip().splitlines()[-lines:])
        except OSError:
            return ""

    def finish(self) -> None:
        self.result["notes"] = self.notes
        C.write_json(self.rundir / "result.json", self.result)


def stop_my_steps(ctx: Ctx, sruns: list[subprocess.Popen], names: set[str] | None = None) -> None:
    """Graceful stop of the steps of this job that we started by hand (all, or those named),
    then wait for their sruns."""
    if ctx.job:
        for name, step_id in C.squeue_steps(ctx.job, ctx.env).items():
            if step_id.endswith((".batch", ".extern", ".interactive")):
                continue
            if names is not None and name not in names:
                continue
            subprocess.run(["scancel", "--signal=TERM", step_id], env=ctx.env,
                           capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    for p in sruns:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            C.kill_group(p.pid)


# ------------------------------------------------------------------------------ time to ready

def cpu_to_ready(ctx: Ctx, client: Client, ru0: tuple, pgids: list[int]) -> dict:
    """CPU seconds (user+sys) burnt from launch start to ready, by everyone involved: Dask's
    processes (scheduler, nannies, workers, their helpers), srun and slurmstepd, the launcher
    (waited children of this driver: `dasklaunch up`, the seed's scripts) and this driver
    (the client; for dask-jobqueue also its in-process scheduler). Less sensitive than wall
    time to other users' load on this 2-core machine."""
    import resource

    import psutil

    me = os.getpid()
    pids: set[int] = set()

    def chain(pid: int) -> None:  # pid and its ancestors up to slurmstepd (not us, not init)
        try:
            p = psutil.Process(pid)
            while p is not None and p.pid not in (me, 1):
                pids.add(p.pid)
                if p.name() == "slurmstepd":
                    break
                p = p.parent()
        except psutil.Error:
            pass

    try:
        chain(client.run_on_scheduler(os.getpid))
        for pid in client.run(os.getpid).values():
            chain(pid)
    except Exception as err:  # noqa: BLE001
        ctx.notes.append(f"cpu accounting: {err}")
    for pid in list(pids):
        with suppress(psutil.Error):
            pids.update(ch.pid for ch in psutil.Process(pid).children(recursive=True))
    if pgids:
        for p in psutil.process_iter():
            try:
                if os.getpgid(p.pid) in pgids:
                    pids.add(p.pid)
            except OSError:
                pass
    pids.discard(me)
    out = {"dask": 0.0, "srun": 0.0, "slurmstepd": 0.0}
    for pid in pids:
        try:
            p = psutil.Process(pid)
            name = p.name()
            cpu = sum(p.cpu_times()[:2])
        except psutil.Error:
            continue
        out["srun" if name == "srun" else "slurmstepd" if name == "slurmstepd" else "dask"] += cpu
    ru_self = resource.getrusage(resource.RUSAGE_SELF)
    ru_ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["launcher"] = ru_ch.ru_utime + ru_ch.ru_stime - ru0[1]
    out["driver"] = ru_self.ru_utime + ru_self.ru_stime - ru0[0]
    out["total"] = sum(out.values())
    return {k: round(v, 3) for k, v in out.items()}


def _ru() -> tuple[float, float]:
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime


def ttr(args) -> None:
    ctx = Ctx(args)
    k, n = args.k, C.NODES * args.k
    nthreads = 1  # CR_Core gives each task one core: dasklaunch's default is 1 thread here
    mem = str((2000 * 2**20) // k)  # DefMemPerNode=2000 (MiB) divided among the node's workers
    ctx.result.update(contender=args.contender, k=k, n=n)
    deadline_s = args.timeout
    sruns: list[subprocess.Popen] = []
    client = cluster = None
    sfile = ctx.rundir / "scheduler.json"
    t0_wall = time.time()
    t0 = time.perf_counter()
    ru0 = _ru()
    deadline = time.monotonic() + deadline_s
    try:
        name = args.contender
        if name.startswith("dasklaunch"):
            state = ctx.rundir / "state"
            extra = {"dasklaunch-notls": ["--no-tls"],
                     "dasklaunch-here": ["--scheduler-here"],
                     "dasklaunch-spawn": ["--start-method", "spawn"],
                     # one launcher per node with K nannies: what a per-node prefork would be
                     "dasklaunch-pernode": ["--per-node", "--nworkers", str(k),
                                            "--nthreads", "1"]}.get(name, [])
            env = dict(ctx.env)
            if name in ("dasklaunch-fork", "dasklaunch-forkserver"):
                env["DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"] = name.split("-")[1]
            ru0 = _ru()
            t0_wall = time.time()
            t0 = time.perf_counter()
            r = ctx.dl("up", "--interface", C.IFACE, *extra, state_dir=state, env=env,
                       timeout=deadline_s)
            ctx.result["t_launcher"] = time.perf_counter() - t0
            if r.returncode != 0:
                raise RuntimeError(f"dasklaunch up exited {r.returncode}: {ctx.tail()}")
            rec = C.read_json(state / "state.json") or {}
            if rec.get("scheduler"):
                ctx.result["t_sched_spawn"] = rec["scheduler"]["started"] - t0_wall
            if rec.get("pools"):
                ctx.result["t_pool_spawn"] = rec["pools"][0]["started"] - t0_wall
            client = connect(state / "scheduler.json", security_for(state), deadline)
        elif name == "seed":
            sched_sh = ctx.rundir / "start-scheduler.sh"
            work_sh = ctx.rundir / "start-workers.sh"
            sched_sh.write_text(SEED_SCHEDULER)
            work_sh.write_text(SEED_WORKERS)
            env = dict(ctx.env, SCHEDULE_FILE=str(sfile), NTHREADS=str(nthreads), NPROCS="1",
                       MEMLIMIT=mem)
            ru0 = _ru()
            t0_wall = time.time()
            t0 = time.perf_counter()
            # as the seed has it: one script starts the scheduler and sleeps 5 s, the next
            # starts the workers in the background; then the analysis polls.
            p = C.spawn(["bash", str(sched_sh)], ctx.rundir / "scheduler.log", env,
                        ctx.pidfile, "seed scheduler script")
            p.wait()
            w = C.spawn(["bash", str(work_sh)], ctx.rundir / "workers.log", env, ctx.pidfile,
                        "seed workers script")
            sruns.append(w)
            ctx.result["t_launcher"] = time.perf_counter() - t0
            client = connect(sfile, None, deadline)
        elif name in ("floor", "floor-fork", "floor-step"):
            env = dict(ctx.env)
            if name == "floor-fork":
                env["DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"] = "fork"
            sched_argv = [C.PY, "-m", "distributed.cli.dask_scheduler", "--scheduler-file",
                          str(sfile), "--interface", C.IFACE]
            if name == "floor-step":
                # the placement dasklaunch's default obeys: the scheduler in its own job step
                sched_argv = ["srun", "--overlap", "-N1", "-n1", *sched_argv]
            ru0 = _ru()
            t0_wall = time.time()
            t0 = time.perf_counter()
            sched = C.spawn(sched_argv, ctx.rundir / "scheduler.log", env, ctx.pidfile,
                            "floor scheduler")
            if name == "floor-step":
                sruns.append(sched)
            w = C.spawn(["srun", C.PY, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                         str(sfile), "--interface", C.IFACE, "--nthreads", str(nthreads),
                         "--nworkers", "1", "--memory-limit", mem],
                        ctx.rundir / "workers.log", env, ctx.pidfile, "floor srun")
            sruns.append(w)
            ctx.result["t_launcher"] = time.perf_counter() - t0
            client = connect(sfile, None, deadline)
        elif name == "jobqueue":
            import logging

            from dask_jobqueue import SLURMCluster  # before the clock, like distributed
            logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                                format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
            jq_env = C.slurm_job_env_removed(ctx.env)
            os.environ.clear()
            os.environ.update(jq_env)  # sbatch inherits this environment
            ru0 = _ru()
            t0_wall = time.time()
            t0 = time.perf_counter()
            cluster = SLURMCluster(
                queue="debug", cores=k, processes=k, memory="1900MiB", job_mem="1900M",
                interface=C.IFACE, walltime="00:10:00", job_name=args.job_name or "dlbench-jq",
                python=C.PY, log_directory=str(ctx.rundir / "jq-logs"), death_timeout=60,
                job_extra_directives=["--exclusive"], silence_logs=False)
            cluster.scale(jobs=C.NODES)
            ctx.result["t_launcher"] = time.perf_counter() - t0
            client = Client(cluster, set_as_default=False)
            ctx.result["job_script"] = cluster.job_script()
        else:
            raise SystemExit(f"unknown contender {name}")
        t_conn, t_ready = client_ready(client, n, t0, deadline)
        ctx.result.update(t_connected=t_conn, t_ready=t_ready, ok=True)
        pgids = []
        if name.startswith("dasklaunch"):
            rec = C.read_json(ctx.rundir / "state" / "state.json") or {}
            pgids = [s.get("pgid") for s in [rec.get("scheduler") or {}, *(rec.get("pools") or [])]
                     if s.get("pgid")]
        elif ctx.pidfile.exists():
            pgids = [json.loads(line)["pgid"] for line in ctx.pidfile.read_text().splitlines()]
        ctx.result["cpu"] = cpu_to_ready(ctx, client, ru0, pgids)
    except BaseException as err:  # noqa: BLE001 - record and clean up
        ctx.result["error"] = f"{type(err).__name__}: {err}"
        ctx.result["traceback"] = traceback.format_exc(limit=3)
    finally:
        ctx.result["phases"] = C.phases(ctx.rundir, t0_wall, n)
        # ----- teardown, not timed into time-to-ready
        td = time.perf_counter()
        try:
            if cluster is not None:
                ctx.result["jq_job_ids"] = [getattr(j, "job_id", None)
                                            for j in cluster.workers.values()]
            if client is not None:
                client.close(timeout=10)
            if args.contender.startswith("dasklaunch"):
                t = time.perf_counter()
                r = ctx.dl("down", state_dir=ctx.rundir / "state", timeout=60)
                ctx.result["t_down"] = time.perf_counter() - t
                if r.returncode != 0:
                    ctx.notes.append(f"down exited {r.returncode}")
            if cluster is not None:
                cluster.close(timeout=30)
            stop_my_steps(ctx, sruns)
        except BaseException as err:  # noqa: BLE001
            ctx.notes.append(f"teardown: {type(err).__name__}: {err}")
        # the seed's and the floor's schedulers run outside any step: stop them by their group
        ctx.result["teardown_groups"] = C.sweep_pidfile(ctx.pidfile)
        ctx.result["t_teardown"] = time.perf_counter() - td
        ctx.finish()


# The seed's two scripts, with only what current Dask requires changed: `dask-scheduler` ->
# `dask scheduler`, `$(which dask-worker)` -> `-m distributed.cli.dask_worker`, `--nprocs` ->
# `--nworkers`, INTERFACE=lab0 (and --interface for the scheduler, which runs in the salloc
# shell's namespace, so the workers can reach it).
SEED_SCHEDULER = """#!/usr/bin/env bash
# delete any stale scheduler files
if [ -f "$SCHEDULE_FILE" ]; then
    rm -f "$SCHEDULE_FILE"
fi
dask scheduler --scheduler-file "$SCHEDULE_FILE" --interface lab0 &
sleep 5
echo "Scheduler file: $SCHEDULE_FILE"
"""

SEED_WORKERS = """#!/usr/bin/env bash
# Starts up a Dask cluster from within a Slurm job.  Does not pass -n or -N to
# srun, so your batch job should already have this set up correctly.
INTERFACE="lab0"
if [ ! -z "$MEMLIMIT" ]; then
    MEMLIMIT="--memory-limit $MEMLIMIT"
fi
echo "Scheduler file: $SCHEDULE_FILE"
srun python3 -m distributed.cli.dask_worker --interface=$INTERFACE --nthreads $NTHREADS \\
    --nworkers $NPROCS $MEMLIMIT --scheduler-file "$SCHEDULE_FILE" &
"""


# ------------------------------------------------------------------------------------ session

def _pool(state: Path) -> dict:
    rec = C.read_json(state / "state.json") or {}
    return (rec.get("pools") or [{}])[0]


def _leader_gone(leader: dict | None) -> bool:
    import psutil

    if not leader:
        return True
    try:
        p = psutil.Process(int(leader["pid"]))
        if p.status() == psutil.STATUS_ZOMBIE:
            return True
        return abs(p.create_time() - float(leader["create_time"])) > 1.0
    except psutil.Error:
        return True


def session(args) -> None:
    """restart-workers vs its floor, CLI latency and resource cost, in one allocation."""
    ctx = Ctx(args)
    k, n = args.k, C.NODES * args.k
    ctx.result.update(k=k, n=n, restart=[], cli={}, resources={})
    state_a, state_b = ctx.rundir / "A", ctx.rundir / "B"
    clients: list[Client] = []
    floor_srun: subprocess.Popen | None = None
    started: list[Path] = []
    sections = set(args.sections.split(","))
    try:
        deadline = time.monotonic() + 300
        for st in (state_a, state_b) if "restart" in sections else (state_a,):
            t = time.perf_counter()
            r = ctx.dl("up", "--interface", C.IFACE, state_dir=st)
            started.append(st)
            if r.returncode != 0:
                raise RuntimeError(f"up ({st.name}) exited {r.returncode}: {ctx.tail()}")
            ctx.result[f"up_{st.name}"] = time.perf_counter() - t
        ca = connect(state_a / "scheduler.json", security_for(state_a), deadline)
        clients.append(ca)
        if "restart" in sections:
            cb = connect(state_b / "scheduler.json", security_for(state_b), deadline)
            clients.append(cb)
            b_pool = _pool(state_b)
            b_step_name, b_leader = b_pool["name"], b_pool["leader"]
            b_srun_argv = list(b_pool["argv"])
            for rep in range(args.repeats):
                order = ["dasklaunch", "floor"] if rep % 2 == 0 else ["floor", "dasklaunch"]
                for who in order:
                    row = {"contender": who, "rep": rep}
                    try:
                        if who == "dasklaunch":
                            known = worker_addrs(ca)
                            t0w, t0 = time.time(), time.perf_counter()
                            r = ctx.dl("restart-workers", state_dir=state_a, timeout=180)
                            row["t_command"] = time.perf_counter() - t0
                            if r.returncode != 0:
                                raise RuntimeError(f"restart-workers exited {r.returncode}: "
                                                   f"{ctx.tail()}")
                            row["t_new_step_spawn"] = _pool(state_a).get("started", t0w) - t0w
                            dl_deadline = time.monotonic() + 120
                            row["t_connected"], row["t_ready"] = client_ready(
                                ca, n, t0, dl_deadline, known)
                        else:
                            known = worker_addrs(cb)
                            step_id = C.squeue_steps(ctx.job, ctx.env).get(b_step_name)
                            t0w, t0 = time.time(), time.perf_counter()
                            # the floor: graceful stop of the step, wait for it, same step again
                            if step_id:
                                subprocess.run(["scancel", "--signal=TERM", step_id],
                                               env=ctx.env, capture_output=True, timeout=20,
                                               stdin=subprocess.DEVNULL)
                            if floor_srun is not None:
                                floor_srun.wait(timeout=30)
                            else:
                                while not _leader_gone(b_leader):
                                    time.sleep(C.POLL)
                            row["t_stopped"] = time.perf_counter() - t0
                            b_step_name = f"floor-{rep}-{os.getpid()}"
                            argv = [a if not a.startswith("--job-name=") else
                                    f"--job-name={b_step_name}" for a in b_srun_argv]
                            b_env = dict(ctx.env)
                            b_env.update(b_pool.get("env") or {})
                            floor_srun = C.spawn(argv, ctx.rundir / f"floor-{rep}.log", b_env,
                                                 ctx.pidfile, "floor restart srun")
                            row["t_new_step_spawn"] = time.perf_counter() - t0
                            row["t_connected"], row["t_ready"] = client_ready(
                                cb, n, t0, time.monotonic() + 120, known)
                        row["ok"] = True
                    except BaseException as err:  # noqa: BLE001
                        row["ok"] = False
                        row["error"] = f"{type(err).__name__}: {err}"
                    ctx.result["restart"].append(row)
                    time.sleep(0.5)
            # hand the floor's pool back: stop it, then let dasklaunch stop B's scheduler
            stop_my_steps(ctx, [floor_srun] if floor_srun else [], names={b_step_name})
            cb.close(timeout=10)
            clients.remove(cb)
            ctx.dl("down", state_dir=state_b, timeout=60)
            started.remove(state_b)
        if "cli" in sections:
            ctx.result["cli"] = cli_latency(ctx, state_a, args.cli_repeats)
        if "resources" in sections:
            ctx.result["resources"]["default"] = resources(ctx, state_a, ca)
            ca.close(timeout=10)
            clients.remove(ca)
            state_c = ctx.rundir / "C"
            r = ctx.dl("up", "--interface", C.IFACE, "--scheduler-here", state_dir=state_c)
            started.append(state_c)
            if r.returncode == 0:
                cc = connect(state_c / "scheduler.json", security_for(state_c), deadline)
                clients.append(cc)
                ctx.result["resources"]["scheduler-here"] = resources(
                    ctx, state_c, cc, window=args.cpu_window)
            else:
                ctx.result["resources"]["scheduler-here"] = {"error": ctx.tail()}
        ctx.result["ok"] = True
    except BaseException as err:  # noqa: BLE001
        ctx.result["error"] = f"{type(err).__name__}: {err}"
        ctx.result["traceback"] = traceback.format_exc(limit=4)
    finally:
        for c in clients:
            with suppress(Exception):
                c.close(timeout=10)
        for st in started:
            ctx.dl("down", state_dir=st, timeout=60)
        stop_my_steps(ctx, [floor_srun] if floor_srun else [])  # what is left, if anything
        ctx.notes += C.sweep_pidfile(ctx.pidfile)
        ctx.finish()


# --------------------------------------------------------------------------------- CLI latency

CLI_CASES = [
    ("python -c pass", [C.PY, "-c", "pass"]),
    ("python -c 'import typer'", [C.PY, "-c", "import typer"]),
    ("python -c 'import distributed'", [C.PY, "-c", "import distributed"]),
    ("dasklaunch --help", [C.DASKLAUNCH, "--help"]),
    ("dasklaunch env", [C.DASKLAUNCH, "env"]),
    ("dasklaunch status --json", [C.DASKLAUNCH, "status", "--json"]),
]


def cli_latency(ctx: Ctx, state: Path, repeats: int) -> dict:
    env = dict(ctx.env, DASKLAUNCH_STATE_DIR=str(state))
    cases = list(CLI_CASES)
    shim = Path(os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))) / "shims" / "dasklaunch"
    if shim.exists():  # what `dasklaunch` on PATH is on this machine
        cases.append(("dasklaunch --help (pyenv shim)", [str(shim), "--help"]))
        env_shim = dict(env, PATH=os.environ.get("PATH", ""))
    times: dict[str, list[float]] = {name: [] for name, _ in cases}
    rcs: dict[str, set] = {name: set() for name, _ in cases}
    for _ in range(repeats):  # round-robin, like everything else
        for name, argv in cases:
            e = env_shim if "shim" in name else env
            t = time.perf_counter()
            r = subprocess.run(argv, env=e, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - t)
            rcs[name].add(r.returncode)
    out = {"times": times, "rcs": {k: sorted(v) for k, v in rcs.items()}, "imports": {}}
    # Which modules does each command import, and what dominates? (-X importtime)
    for name, argv in cases:
        if not name.startswith("dasklaunch") or "shim" in name:
            continue
        r = subprocess.run([C.PY, "-X", "importtime", *argv], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        mods, top = [], []
        for line in r.stderr.splitlines():
            if not line.startswith("import time:") or "|" not in line:
                continue
            parts = line[len("import time:"):].split("|")
            try:
                cum = int(parts[1])
            except ValueError:
                continue
            raw = parts[2]
            mod = raw.strip()
            mods.append(mod)
            if raw.startswith(" ") and not raw.startswith("  "):  # top-level import
                top.append((cum / 1e6, mod))
        top.sort(reverse=True)
        out["imports"][name] = {
            "distributed": any(m == "distributed" or m.startswith("distributed.") for m in mods),
            "dask": any(m == "dask" or m.startswith("dask.") for m in mods),
            "n_modules": len(mods),
            "top": [(round(s, 3), m) for s, m in top[:6]],
        }
    return out


# ---------------------------------------------------------------------------- resource cost

def _proc_row(p) -> dict:
    import psutil

    try:
        with p.oneshot():
            return {"pid": p.pid, "name": p.name(), "rss": p.memory_info().rss,
                    "cpu": sum(p.cpu_times()[:2]), "cmd": " ".join(p.cmdline()[:4])[:100]}
    except psutil.Error:
        return {"pid": p.pid, "name": "?", "rss": 0, "cpu": 0.0, "cmd": ""}


def resources(ctx: Ctx, state: Path, client: Client, window: float = 0.0) -> dict:
    """Processes and RSS: what dasklaunch adds (the process groups recorded in state.json:
    srun step leaders, the --scheduler-here guard) vs Dask's own (scheduler, nannies, workers,
    found by pid through the scheduler) vs Slurm's per-step slurmstepd."""
    import psutil

    rec = C.read_json(state / "state.json") or {}
    steps = ([rec["scheduler"]] if rec.get("scheduler") else []) + list(rec.get("pools") or [])
    dask_pids: set[int] = set()
    sched_pid = client.run_on_scheduler(os.getpid)
    dask_pids.add(sched_pid)
    for pid in client.run(os.getpid).values():
        dask_pids.add(pid)
    for pid in client.run(os.getppid).values():  # nannies (or slurmstepd with --no-nanny)
        try:
            if psutil.Process(pid).name() != "slurmstepd":
                dask_pids.add(pid)
        except psutil.Error:
            pass
    for pid in list(dask_pids):  # multiprocessing helpers the nannies started
        try:
            for ch in psutil.Process(pid).children(recursive=True):
                dask_pids.add(ch.pid)
        except psutil.Error:
            pass
    ours: dict[int, dict] = {}
    for step in steps:
        pgid = step.get("pgid")
        if not pgid:
            continue
        for p in psutil.process_iter():
            try:
                if os.getpgid(p.pid) == pgid and p.pid not in dask_pids and \
                        p.status() != psutil.STATUS_ZOMBIE:
                    ours[p.pid] = dict(_proc_row(p), step=step.get("role"))
            except (OSError, psutil.Error):
                continue
    stepds: dict[int, dict] = {}
    for pid in dask_pids:
        try:
            par = psutil.Process(pid).parent()
            if par is not None and par.name() == "slurmstepd":
                stepds[par.pid] = _proc_row(par)
        except psutil.Error:
            pass
    dask_rows = []
    for pid in sorted(dask_pids):
        with suppress(psutil.Error):
            dask_rows.append(_proc_row(psutil.Process(pid)))
    out = {
        "dasklaunch": {"n": len(ours), "rss": sum(r["rss"] for r in ours.values()),
                       "procs": list(ours.values())},
        "dask": {"n": len(dask_rows), "rss": sum(r["rss"] for r in dask_rows),
                 "scheduler_rss": next((r["rss"] for r in dask_rows if r["pid"] == sched_pid), 0)},
        "slurmstepd": {"n": len(stepds), "rss": sum(r["rss"] for r in stepds.values())},
    }
    if window > 0:  # CPU the resident dasklaunch processes burn while the cluster idles
        before = {pid: r["cpu"] for pid, r in ours.items()}
        time.sleep(window)
        used = 0.0
        for pid, cpu0 in before.items():
            with suppress(psutil.Error):
                used += sum(psutil.Process(pid).cpu_times()[:2]) - cpu0
        out["dasklaunch"]["cpu_s_per_min"] = used * 60.0 / window
    return out


# -------------------------------------------------------------------------------------- scale

def scale(args) -> None:
    """dasklaunch up / status / down with 3*M --no-nanny 1-thread workers, counting its own work:
    slurm commands (PATH wrappers that log and exec), HTTP polls, psutil walks, CPU time."""
    ctx = Ctx(args)
    m, n = args.m, C.NODES * args.m
    ctx.result.update(m=m, n=n, calls={})
    wrap = ctx.rundir / "wrap"
    wrap.mkdir(exist_ok=True)
    calls_log = ctx.rundir / "slurm-calls.log"
    for tool in ("srun", "squeue", "scancel", "scontrol", "sbatch", "sacct"):
        real = subprocess.run(["bash", "-c", f"command -v {tool}"], capture_output=True,
                              text=True, env=ctx.env).stdout.strip()
        if not real:
            continue
        (wrap / tool).write_text(
            "#!/bin/bash\n"
            f"printf '%s %s %s\\n' \"$EPOCHREALTIME\" {tool} \"$DLBENCH_PHASE\" >> {calls_log}\n"
            f"exec {real} \"$@\"\n")
        (wrap / tool).chmod(0o755)
    env = dict(ctx.env, PATH=f"{wrap}{os.pathsep}{ctx.env['PATH']}",
               DLBENCH_CALLS_LOG=str(calls_log))
    state = ctx.rundir / "state"
    hook = str(Path(__file__).resolve().parent / "count_hook.py")
    started = False
    try:
        for phase, argv, tmo in (
                ("up", ["up", "--interface", C.IFACE, "--no-nanny", "--nthreads", "1"], 240),
                ("status", ["status", "--json"], 60),
                ("down", ["down"], 120)):
            counts = ctx.rundir / f"counts-{phase}.json"
            e = dict(env, DLBENCH_PHASE=phase, DASKLAUNCH_STATE_DIR=str(state))
            t_wall = time.time()
            t = time.perf_counter()
            with open(ctx.rundir / "dasklaunch.out", "ab") as out:
                p = subprocess.Popen([C.PY, hook, str(counts), "--", *argv], env=e,
                                     stdin=subprocess.DEVNULL, stdout=out,
                                     stderr=subprocess.STDOUT)
                try:
                    _pid, status, ru = os.wait4(p.pid, 0) if _wait_ok(p, tmo) else (0, 0, None)
                except ChildProcessError:
                    status, ru = 0, None
            elapsed = time.perf_counter() - t
            started = started or phase == "up"
            row = C.read_json(counts) or {}
            row["elapsed"] = elapsed
            row["rc"] = os.waitstatus_to_exitcode(status) if ru is not None else None
            if ru is not None:  # the command + the subprocesses it waited for
                row["cpu_total"] = ru.ru_utime + ru.ru_stime
            if phase == "up":  # the launcher's own critical path, from the logs
                srun_ts = [float(line.split()[0]) for line in calls_log.read_text().splitlines()
                           if line.split()[1:3] == ["srun", "up"]] if calls_log.exists() else []
                row["t_first_srun"] = (srun_ts[0] - t_wall) if srun_ts else None
                ph = C.phases(state, t_wall, n)
                row["t_nth_register"] = ph["nth_register"]
                row["t_sched_listen"] = ph["sched_listen"]
            ctx.result["calls"][phase] = row
            if phase == "up" and row.get("rc") not in (0, None):
                raise RuntimeError(f"up exited {row.get('rc')}: {ctx.tail()}")
            if phase == "down":
                started = False
        slurm: dict[str, dict[str, int]] = {}
        if calls_log.exists():
            for line in calls_log.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    slurm.setdefault(parts[2], {}).setdefault(parts[1], 0)
                    slurm[parts[2]][parts[1]] += 1
        ctx.result["slurm_calls"] = slurm
        ctx.result["ok"] = True
    except BaseException as err:  # noqa: BLE001
        ctx.result["error"] = f"{type(err).__name__}: {err}"
        ctx.result["traceback"] = traceback.format_exc(limit=3)
    finally:
        if started:
            ctx.dl("down", state_dir=state, timeout=120)
        stop_my_steps(ctx, [])
        ctx.notes += C.sweep_pidfile(ctx.pidfile)
        ctx.finish()


def _wait_ok(p: subprocess.Popen, timeout: float) -> bool:
    """Wait for p without reaping it (so os.wait4 can collect its rusage); kill on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return False
        time.sleep(0.05)
    p.kill()
    return True


# --------------------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("ttr", "session", "scale"):
        s = sub.add_parser(name)
        s.add_argument("--rundir", required=True)
        s.add_argument("--extra-env", default="{}")
        s.add_argument("--timeout", type=float, default=120)
        if name == "ttr":
            s.add_argument("--contender", required=True)
            s.add_argument("--k", type=int, required=True)
            s.add_argument("--job-name", default="")
        if name == "session":
            s.add_argument("--k", type=int, required=True)
            s.add_argument("--repeats", type=int, default=3)
            s.add_argument("--cli-repeats", type=int, default=10)
            s.add_argument("--cpu-window", type=float, default=10.0)
            s.add_argument("--sections", default="restart,cli,resources")
        if name == "scale":
            s.add_argument("--m", type=int, required=True)
    args = ap.parse_args()
    {"ttr": ttr, "session": session, "scale": scale}[args.cmd](args)


if __name__ == "__main__":
    main()

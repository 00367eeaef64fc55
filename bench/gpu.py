#!/usr/bin/env python3
"""GPU workers on one GPU node, local backend: dasklaunch against a hand-started
`dask cuda worker`, in one run, one table.

    python bench/gpu.py                  # on a GPU node: every GPU, 3 rounds
    python bench/gpu.py --simulate 2     # no GPU: 2 fake GPU tokens, NumPy, the dask-cuda
                                         # stand-in of tests/ (checks the script, not GPUs)

Contenders (each brings up its own scheduler and GPU workers, then tears them down):
  dasklaunch        `dasklaunch up --pool gpu:dask-cuda=no`: `dask worker`s pinned one per GPU
  dasklaunch-cuda   `dasklaunch up --pool gpu:dask-cuda=yes`: `dask cuda worker`s, one per GPU
                    (needs dask-cuda: pip install 'dasklaunch[gpu]')
  by-hand           `dask scheduler` + `dask cuda worker --scheduler-file` (the floor: what
                    users type today, no TLS), ready when the scheduler file lists every GPU
Clocks: ready (start to every GPU worker connected), then a CuPy matmul (N x N float32) sent
to each GPU worker with resources={"GPU": 1} (by-hand's workers get that resource too), timed
per round after one warm-up; each worker reports the GPU it used (PCI bus id), so a run where
two workers share a GPU says so. Ratios are to by-hand, medians, same run. Benchmarks print;
they never assert. Processes are stopped through `dasklaunch down` or by the process group
this script recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BIN, PY, REPO, clean_env, fmt, kill_group, ratio, spawn, summary, table  # noqa: E402

STANDINS = str(REPO / "tests" / "standins")


def gpu_tokens(simulate: int) -> list[str]:
    if simulate:
        return [str(i) for i in range(simulate)]
    out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=True).stdout
    return [line.split(":")[0].split()[1] for line in out.splitlines()
            if line.startswith("GPU ")]


def matmul_task(n: int, simulate: bool):
    """The task each GPU worker runs: (seconds, the GPU it used, CUDA_VISIBLE_DEVICES)."""
    def run():
        start = time.perf_counter()
        if simulate:
            import numpy as xp

            device = "sim-" + os.environ.get("CUDA_VISIBLE_DEVICES", "?")
        else:
            import cupy as xp

            device = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)["pciBusID"]
        a = xp.ones((n, n), dtype=xp.float32)
        b = (a @ a).sum()
        if not simulate:
            xp.cuda.Stream.null.synchronize()
        float(b)
        return time.perf_counter() - start, device, os.environ.get("CUDA_VISIBLE_DEVICES")
    return run


def measure(client, rounds: int, n: int, simulate: bool) -> dict:
    names = [a for a, w in client.scheduler_info()["workers"].items()
             if w.get("resources", {}).get("GPU")]
    task = matmul_task(n, simulate)
    times, devices = [], {}
    for rnd in range(rounds + 1):  # round 0 warms up (CUDA context, CuPy's kernels)
        start = time.perf_counter()
        futures = [client.submit(task, workers=[a], resources={"GPU": 1}, pure=False)
                   for a in names]
        results = client.gather(futures)
        if rnd:
            times.append(time.perf_counter() - start)
        devices = {a: (r[1], r[2]) for a, r in zip(names, results, strict=True)}
    distinct = len({d for d, _ in devices.values()})
    return {"round_s": summary(times)["median"], "gpu_workers": len(names),
            "distinct_gpus": distinct, "devices": sorted(devices.values())}


def wait_gpu_workers(client, count: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        gpus = [w for w in client.scheduler_info()["workers"].values()
                if w.get("resources", {}).get("GPU")]
        if len(gpus) >= count:
            return True
        time.sleep(0.05)
    return False


def run_dasklaunch(root: Path, env: dict, tokens: list[str], cuda: bool, args) -> dict:
    state = root / "state"
    env = {**env, "DASKLAUNCH_STATE_DIR": str(state), "XDG_RUNTIME_DIR": str(root),
           "CUDA_VISIBLE_DEVICES": ",".join(tokens)}
    pool = f"gpu:dask-cuda={'yes' if cuda else 'no'}"
    start = time.monotonic()
    up = subprocess.run([PY, "-m", "dasklaunch", "up", "--backend", "local", "--pool", pool,
                         "--dashboard-address", ":0", "--timeout", "180", "--json"],
                        env=env, capture_output=True, text=True)
    ready = time.monotonic() - start
    try:
        if up.returncode != 0:
            return {"error": up.stderr.strip().splitlines()[-1:] or [f"exit {up.returncode}"]}
        import dasklaunch

        with dasklaunch.connect(str(state), timeout="60s") as client:
            return {"ready_s": ready, **measure(client, args.rounds, args.n, bool(args.simulate))}
    finally:
        subprocess.run([PY, "-m", "dasklaunch", "down"], env=env, capture_output=True)


def run_by_hand(root: Path, env: dict, tokens: list[str], args) -> dict:
    sfile = root / "scheduler.json"
    env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(tokens)}
    pidfile = root / "pids"
    start = time.monotonic()
    sched = spawn([PY, "-m", "distributed.cli.dask_scheduler", "--scheduler-file", str(sfile),
                   "--host", "127.0.0.1", "--dashboard-address", ":0"],
                  root / "scheduler.log", env, pidfile, "scheduler")
    worker = spawn([PY, "-m", "dask", "cuda", "worker", "--scheduler-file", str(sfile),
                    "--host", "127.0.0.1", "--resources", "GPU=1"],
                   root / "worker.log", env, pidfile, "dask cuda worker")
    try:
        from distributed import Client

        deadline = time.monotonic() + 180
        while not sfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with Client(scheduler_file=str(sfile), timeout="60s") as client:
            if not wait_gpu_workers(client, len(tokens), deadline):
                return {"error": ["not ready in 180 s: see " + str(root / "worker.log")]}
            ready = time.monotonic() - start
            return {"ready_s": ready, **measure(client, args.rounds, args.n,
                                                bool(args.simulate))}
    finally:
        for child in (worker, sched):
            kill_group(child.pid, grace=10.0)
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)


def dask_cuda_available(env: dict) -> bool:
    probe = subprocess.run([PY, "-c", "import dask_cuda"], env=env, capture_output=True)
    return probe.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=8192, help="matrix size (N x N float32)")
    parser.add_argument("--simulate", type=int, default=0, metavar="GPUS",
                        help="no GPU: this many fake tokens, NumPy, the dask-cuda stand-in")
    parser.add_argument("--contenders", default="dasklaunch,dasklaunch-cuda,by-hand")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.simulate and args.n == 8192:
        args.n = 256
    env = clean_env()
    if args.simulate:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [STANDINS, env.get("PYTHONPATH")]))
        os.environ["PYTHONPATH"] = env["PYTHONPATH"]
    tokens = gpu_tokens(args.simulate)
    has_cuda = dask_cuda_available(env)
    results: dict[str, dict] = {}
    for name in args.contenders.split(","):
        if name != "dasklaunch" and not has_cuda:
            results[name] = {"error": ["dask-cuda is not installed"]}
            continue
        root = Path(tempfile.mkdtemp(prefix=f"dl-gpu-{name}-"))
        try:
            results[name] = (run_by_hand(root, env, tokens, args) if name == "by-hand" else
                             run_dasklaunch(root, env, tokens, name == "dasklaunch-cuda", args))
        finally:
            shutil.rmtree(root, ignore_errors=True)
    floor = results.get("by-hand", {})
    rows = []
    for name, r in results.items():
        if "error" in r:
            rows.append([name, "-", "-", "-", "-", "-", "; ".join(r["error"])[:60]])
            continue
        rows.append([name, fmt(r["ready_s"]), fmt(ratio(r["ready_s"], floor.get("ready_s"))),
                     fmt(r["round_s"], 3), fmt(ratio(r["round_s"], floor.get("round_s"))),
                     f"{r['distinct_gpus']}/{r['gpu_workers']}", ""])
    title = (f"{len(tokens)} GPU{'s' if len(tokens) != 1 else ''}"
             f"{' (simulated)' if args.simulate else ''}, matmul {args.n}x{args.n}, "
             f"{args.rounds} rounds, python {sys.version.split()[0]}, {BIN}")
    print(table(["contender", "ready s", "x by-hand", "round s", "x by-hand",
                 "GPUs used/workers", "note"], rows, title))
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The default start (`--start-method prefork`): distributed imported once per task, then forks,
never of a threaded process.

The node launcher, still single-threaded, imports `distributed.cli.dask_worker` (which imports
distributed, dask and, when installed, NumPy), checks that it still has one thread (counting
/proc/self/task: a BLAS that started its pool at import would show here), and then

- forks a fork server (Python's own `multiprocessing.forkserver` loop, in a process forked from
  this one, so it has distributed imported without a second import), and points this process's
  `forkserver` start method at it. A nanny's workers are forked from it: they start with
  distributed imported, from a process that has only ever had one thread;
- runs `dask worker` in this process: the task's process is the nanny process, as when it exec'd
  `dask worker` (same pid; srun's or the local step's SIGTERM reaches it once, as before).

With several workers per task (one per GPU), it forks one such nanny process per worker, each
with its GPU's variables and CPU slice set before its fork server is forked, and passes
SIGTERM/SIGINT on to them once.

Environments: everything forked inherits the task's environment (its SLURM_* from srun or the
local step) and CPU binding. Dask's `distributed.nanny.pre-spawn-environ` (with the nanny's
PYTHONHASHSEED) must be in effect from the process's start, since malloc, the hash seed and BLAS
read it then: dasklaunch exports it to the step, and a launcher that finds it missing (a Dask
config that adds a variable) execs itself once with it set. The nanny still passes its `env` to
each worker, as with spawn.

When the thread count is not 1, when the command is not this Python's `dask worker`, or when
the environment sets Dask's multiprocessing method explicitly, it says why (in the pool's log)
and `dask worker` starts the usual way (spawn).
"""

from __future__ import annotations

import functools
import gc
import os
import signal
import socket
import sys
import traceback

from ..runtime import forking, proc
from . import shield as shielding

METHOD_VARIABLE = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"
REEXEC_MARK = "DASKLAUNCH_PREFORK_REEXEC"
# What the nanny's Nanny.__init__ sets when pre-spawn-environ leaves it unset or 0.
NANNY_HASHSEED = "6640"

# (argv, environment additions, CPUs or None) of one `dask worker` process
NodeWorker = tuple[list[str], dict[str, str], list[int] | None]
# (the task's whole environment, its workers; None: it cannot start them, and said why)
Task = tuple[dict[str, str], list[NodeWorker] | None]


def say(message: str) -> None:
    print(f"dasklaunch.launch.node: {message}", file=sys.stderr, flush=True)


def why_not(tasks: list[Task]) -> str | None:
    """Why these tasks cannot be preforked (found before anything is imported); None: they can."""
    for env, workers in tasks:
        if METHOD_VARIABLE in env:
            return f"{METHOD_VARIABLE}={env[METHOD_VARIABLE]} is set"
        for argv, _, _ in workers or ():
            if not shielding.own_dask_worker(argv):
                return f"not this Python's dask worker: {proc.display(argv[:3])}"
    if forking.thread_count() is None:
        return "no /proc/self/task to count threads in"
    return None


def pre_spawn_environ(environ: dict[str, str]) -> dict[str, str]:
    """The variables the nanny sets before it spawns a worker, as it computes them."""
    import dask
    import distributed.config  # noqa: F401 - distributed's defaults in Dask's config

    config = dask.config.get("distributed.nanny.pre-spawn-environ") or {}
    wanted = {k: environ.get(k, str(v)) for k, v in config.items() if v is not None}
    if wanted.get("PYTHONHASHSEED") in (None, "0"):
        wanted["PYTHONHASHSEED"] = NANNY_HASHSEED
    return wanted


def ensure_pre_spawn_environ() -> None:
    """Exec this launcher again, once, with the pre-spawn variables it was started without."""
    wanted = pre_spawn_environ(dict(os.environ))
    missing = {k: v for k, v in wanted.items() if os.environ.get(k) != v}
    if not missing or os.environ.get(REEXEC_MARK):
        return
    say(f"starting again with {' '.join(f'{k}={v}' for k, v in sorted(missing.items()))} "
        f"(distributed.nanny.pre-spawn-environ), which take effect at a process's start")
    proc.become(list(sys.orig_argv), env={**os.environ, **missing, REEXEC_MARK: "1"})


def guard_forks(server: int) -> None:
    """Python's forkserver loop forks with os.fork(): make every fork of process `server` check
    first that it has one thread, and end it otherwise (its nanny then starts a fresh fork
    server the standard way). Its children inherit the hook, which does nothing there."""
    def before_fork() -> None:
        if os.getpid() == server and forking.thread_count() != 1:
            say(f"fork server {server}: {forking.thread_count()} threads; ending it rather than "
                f"forking a worker from it")
            os._exit(70)

    os.register_at_fork(before=before_fork)


def start_fork_server() -> int:
    """Fork this process into the fork server of the nanny that will run here, and point
    multiprocessing's forkserver start method at it. Returns its pid."""
    from multiprocessing import connection, forkserver, util

    server = forkserver._forkserver  # noqa: SLF001 - the client state of Python's forkserver
    address = connection.arbitrary_address("AF_UNIX")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(address)
    if not util.is_abstract_socket_namespace(address):
        os.chmod(address, 0o600)
    listener.listen()
    # every process that may ask for a fork holds alive_w; the server ends when all have closed it
    alive_r, alive_w = os.pipe()
    # Python 3.14's fork server authenticates each request with a key it reads from a pipe at its
    # start (the client asserts it has one); earlier ones take no key
    authkey = os.urandom(32) if hasattr(server, "_forkserver_authkey") else None
    key_args = {}
    if authkey is not None:
        key_r, key_w = os.pipe()
        os.write(key_w, authkey)   # 32 bytes: never blocks on a pipe
        os.close(key_w)
        key_args = {"authkey_r": key_r}
    pid = forking.fork()
    if pid == 0:
        os.close(alive_w)
        guard_forks(os.getpid())
        code = 0
        try:
            forkserver.main(listener.detach(), alive_r, [], **key_args)
        except SystemExit:
            pass
        except BaseException:  # noqa: BLE001 - report, then end this process whatever it was
            traceback.print_exc()
            code = 1
        os._exit(code)
    listener.close()
    os.close(alive_r)
    if authkey is not None:
        os.close(key_args["authkey_r"])
        server._forkserver_authkey = authkey  # noqa: SLF001
    server._forkserver_address = address  # noqa: SLF001
    server._forkserver_alive_fd = alive_w  # noqa: SLF001
    server._forkserver_pid = pid  # noqa: SLF001
    # should it ever have to start a fresh one (this one killed), Python's own preloads only this
    server._preload_modules = ["distributed"]  # noqa: SLF001
    return pid


def run_dask_worker(argv: list[str], extra: dict[str, str], cpus: list[int] | None,
                    shield: bool = False) -> None:
    """Be the `dask worker` process of `argv`: its nanny's workers are forked by a fork server
    forked from here. With `shield`, it and they leave SIGTERM to the launcher that drains them
    (launch/shield.py). Never returns."""
    import dask
    import distributed.utils

    if shield:
        shielding.leave_sigterm_to_launcher()
    os.environ.update(extra)
    if cpus:
        os.sched_setaffinity(0, cpus)
    args = argv[3:]
    if "--no-nanny" not in args:
        start_fork_server()
        dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
        # distributed would import every optional package here to preload a fork server
        # it starts itself; ours is running already
        distributed.utils._forkserver_preload_set = True  # noqa: SLF001
    shielding.run_dask_worker_cli(args)
    sys.exit(0)  # pragma: no cover - click exits


def in_child(body, *args) -> int:
    """Fork; the child runs body(*args) with SIGTERM/SIGINT unblocked and ends with its exit
    code (body ends in SystemExit). Returns the child's pid in the parent."""
    pid = forking.fork()
    if pid:
        return pid
    code = 1
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        body(*args)
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    except BaseException:  # noqa: BLE001 - a forked child must never return into its parent
        traceback.print_exc()
    forking.end_forked_child(code)
    return 0  # pragma: no cover


def run_task(env: dict[str, str], workers: list[NodeWorker] | None,
             shield: bool = False) -> None:
    """Be one task (its environment as srun or the local step sets it) and start its workers
    (`shield`: as for run_dask_worker). Never returns."""
    if os.environ != env:
        os.environ.clear()
        os.environ.update(env)
    if workers is None:
        sys.exit(2)  # said why when the workers were planned
    if len(workers) == 1:
        run_dask_worker(*workers[0], shield=shield)
    sys.exit(fork_all(functools.partial(run_dask_worker, shield=shield), workers, shield=shield))


def fork_all(body, items: list[tuple], before_term=None, shield: bool = False) -> int:
    """body(*item) in a forked child for each item; the highest exit code, passing SIGTERM and
    SIGINT on to each child once (blocked until then, so none is lost between the forks), after
    before_term(signum) for the first SIGTERM. With `shield` the children start with SIGTERM
    ignored (Slurm's reaches them too) and get SIGINT in its place."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    if shield:
        # inherited by each child; this process's own handler is set in wait_forked
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pids = [in_child(body, *item) for item in items]
    return forking.wait_forked(pids, before_term, shielding.PASSED_ON if shield else signal.SIGTERM)


def run(tasks: list[Task], before_term=None, shield: bool = False) -> int | None:
    """Start the workers of `tasks` (one: this process is the task; several: the local step,
    one forked process per task) with one import of distributed, by forking. Returns None,
    having said why, when they cannot be started so (then the caller starts them the usual
    way, without --prefork); otherwise returns, in the parent of forked tasks or workers only,
    their highest exit code. With `before_term` (draining) this process stays the parent of
    what it starts, and calls it on the first SIGTERM before passing the signal on; with
    `shield` too, what it starts leaves SIGTERM to it and gets SIGINT after the drain."""
    reason = why_not(tasks)
    if reason:
        say(f"not preforking ({reason}); dask worker starts its workers with spawn")
        return None
    from distributed.cli import dask_worker  # noqa: F401 - the one import of distributed

    ensure_pre_spawn_environ()
    threads = forking.thread_count()
    if threads != 1:
        loaded = [m for m in ("numpy", "torch", "cupy", "numba", "mkl") if m in sys.modules]
        say(f"not preforking: {threads} threads after importing distributed "
            f"(loaded: {', '.join(loaded) or 'none of numpy/torch/cupy/numba/mkl'}; a BLAS "
            f"starts a thread pool at import unless OPENBLAS_NUM_THREADS/OMP_NUM_THREADS=1); "
            f"dask worker starts its workers with spawn")
        return None
    from multiprocessing import resource_tracker

    # one resource tracker (fork+exec, now, while single-threaded), shared by all that follows
    resource_tracker.ensure_running()
    # objects that exist now are shared by every fork; keep the collector from touching them
    gc.freeze()
    if len(tasks) == 1 and before_term is None:
        run_task(*tasks[0])
    if len(tasks) == 1 and tasks[0][1] is not None:
        return fork_all(functools.partial(run_dask_worker, shield=shield), tasks[0][1],
                        before_term, shield)
    return fork_all(functools.partial(run_task, shield=shield), tasks, before_term, shield)

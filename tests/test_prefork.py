"""The prefork start (launch/prefork.py) without a cluster: fork refuses a threaded process, a
forked task gets each SIGTERM once from its parent, the pre-spawn environment, and which
commands prefork. The clusters it starts are in test_lifecycle.py and test_pools_lifecycle.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dasklaunch.domain.allocation import Allocation
from dasklaunch.domain.dask_argv import PRE_SPAWN_ENVIRON, pool_command
from dasklaunch.domain.pools import plan_pools
from dasklaunch.domain.settings import UpOptions
from dasklaunch.launch import node

REPO = Path(__file__).resolve().parent.parent


def run_python(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # as in a step that `up` started: Dask's pre-spawn variables set (without them, NumPy's
    # OpenBLAS starts a thread pool at import and nothing may be forked)
    env = dict(os.environ, PYTHONPATH=str(REPO), **PRE_SPAWN_ENVIRON)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_fork_refuses_a_process_with_a_second_thread():
    result = run_python("""
import os, threading
from dasklaunch.runtime import forking
assert forking.thread_count() == 1
stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()
try:
    forking.fork()
except forking.ThreadedForkError as err:
    print("refused:", err)
else:
    os._exit(3)  # the child too, if there was one: the test fails on the missing line
stop.set()
thread.join()
pid = forking.fork()
if pid == 0:
    os._exit(7)
print("forked:", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "refused: refusing to fork a process with 2 threads", "forked: 7"]


def test_the_fork_server_forks_only_while_it_has_one_thread():
    """Python's forkserver loop calls os.fork() itself: the fork server checks before each."""
    result = run_python("""
import multiprocessing, os, threading
from dasklaunch.launch import prefork
from dasklaunch.runtime import forking
prefork.guard_forks(os.getpid())
pid = forking.fork()                      # one thread: forks
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
threading.Thread(target=threading.Event().wait, daemon=True).start()
os.fork()                              # two: ends this process before forking
print("forked from a threaded process")
""")
    assert result.returncode == 70, result
    assert "2 threads; ending it rather than forking" in result.stderr
    assert "forked from" not in result.stdout


def test_workers_are_forked_by_a_one_thread_fork_server():
    result = run_python("""
import multiprocessing, os, sys
from dasklaunch.launch import prefork
from dasklaunch.runtime import forking

def child(queue):
    queue.put((os.getppid(), "distributed" in sys.modules))

import distributed  # what the launcher imports, before the server is forked
server = prefork.start_fork_server()
ctx = multiprocessing.get_context("forkserver")
queue = ctx.Queue()
process = ctx.Process(target=child, args=(queue,))
process.start()
parent, imported = queue.get(timeout=30)
process.join(30)
threads = len(os.listdir(f"/proc/{server}/task"))
print(parent == server, imported, threads, process.exitcode)
""")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True", "1", "0"]


# Each forked task blocks SIGTERM and records who sent each one, for a while after the first.
TASKS = """
import os, signal, sys
from dasklaunch.launch import prefork

out = sys.argv[1]

def task(rank):
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    open(f"{out}.{rank}.ready", "w").close()
    senders = [signal.sigwaitinfo({signal.SIGTERM}).si_pid]
    while (info := signal.sigtimedwait({signal.SIGTERM}, 1.5)) is not None:
        senders.append(info.si_pid)
    with open(f"{out}.{rank}", "w") as f:
        f.write(" ".join(map(str, [os.getppid(), *senders])))
    sys.exit(rank)

sys.exit(prefork.fork_all(task, [(0,), (1,)]))
"""


def test_forked_tasks_get_each_sigterm_once_from_their_parent(tmp_path):
    """As the local step's tasks do (test_localstep.py says why it matters): the parent of
    forked tasks passes one SIGTERM on to each, once, and exits with their highest code."""
    out = tmp_path / "sig"
    parent = subprocess.Popen([sys.executable, "-c", TASKS, str(out)],
                              env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"sig.{r}.ready").exists() for r in (0, 1)):
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.05)
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=30) == 1
    finally:
        if parent.poll() is None:
            parent.kill()
    for rank in (0, 1):
        ppid, *senders = (tmp_path / f"sig.{rank}").read_text().split()
        assert ppid == str(parent.pid) and senders == [ppid]


def test_pre_spawn_environ_is_computed_as_the_nanny_does():
    from dasklaunch.launch.prefork import pre_spawn_environ

    wanted = pre_spawn_environ({})
    # dasklaunch's copy of Dask's defaults, exported to every worker step, is the same
    assert wanted == PRE_SPAWN_ENVIRON
    assert pre_spawn_environ({"OMP_NUM_THREADS": "4"})["OMP_NUM_THREADS"] == "4"
    # the nanny's seed, whatever the environment says, unless Dask's config names one
    assert pre_spawn_environ({"PYTHONHASHSEED": "17"})["PYTHONHASHSEED"] == "6640"


def pool(opts: UpOptions) -> list[str]:
    alloc = Allocation(job_id="1", nodes=("n1",), tasks_per_node=(2,), cpus_per_node=(2,),
                       mem_per_node=4 * 2**30)
    pools = plan_pools(alloc, opts)
    return pool_command(opts, pools[0], "/s/scheduler.json", local=True)


@pytest.mark.parametrize("method, preforks", [(None, True), ("prefork", True),
                                              ("spawn", False), ("fork", False)])
def test_prefork_is_the_default_start_method(method, preforks):
    command = pool(UpOptions(start_method=method))
    assert node.is_prefork(command) is preforks
    assert command.count("--prefork") == int(preforks)
    if preforks:
        assert node.without_prefork(command) == pool(UpOptions(start_method="spawn"))


def test_only_this_pythons_dask_worker_is_preforked():
    from dasklaunch.launch.prefork import why_not

    worker = [sys.executable, "-m", "distributed.cli.dask_worker", "--nthreads", "1"]
    assert why_not([({}, [(worker, {}, None)])]) is None
    assert "not this Python's" in why_not([({}, [(["/other/python", *worker[1:]], {}, None)])])
    method = {"DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD": "fork"}
    assert "MULTIPROCESSING_METHOD=fork" in why_not([(method, [(worker, {}, None)])])
    # a dask worker argument that merely looks like the flag does not count
    assert not node.is_prefork([sys.executable, "-m", "dasklaunch.launch.node", "--pool", "p",
                                "--", "x", "--prefork"])

"""Forking without exec, for the prefork start (launch/prefork.py): only from a process with one
thread, children that end as an interpreter would, and a parent that waits for them while
passing signals on as srun does."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from ..errors import CommandError
from .proc import on_signals


class ThreadedForkError(CommandError):
    """fork() refused: the process has more than one thread (or an unknown number)."""


def thread_count() -> int | None:
    """This process's threads, counted in /proc/self/task; None where there is no /proc."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def fork() -> int:
    """os.fork(), only while this process has exactly one thread. A child forked from a threaded
    process inherits locks held by threads that do not exist in it (malloc's, the import lock,
    a BLAS pool's, logging's) and can hang on them; so this counts first, and refuses."""
    threads = thread_count()
    # A Python thread that was just joined may still be leaving /proc/self/task: threads are
    # detached, and join() returns before the kernel has removed the thread.
    deadline = time.monotonic() + 0.1
    while threads not in (1, None) and time.monotonic() < deadline:
        time.sleep(0.005)
        threads = thread_count()
    if threads != 1:
        raise ThreadedForkError(f"refusing to fork a process with "
                                f"{threads if threads else 'an unknown number of'} threads")
    return os.fork()


def end_forked_child(code: int) -> None:
    """End a forked child as an interpreter exit would (non-daemon threads joined, atexit
    handlers run, output flushed), without unwinding into the code of the parent it copied."""
    import atexit
    import sys
    import threading

    try:
        threading._shutdown()  # noqa: SLF001 - what Py_FinalizeEx calls first
        atexit._run_exitfuncs()  # noqa: SLF001
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
    finally:
        os._exit(code)


def wait_forked(pids: list[int], before_term=None, term_as: int = signal.SIGTERM) -> int:
    """Wait for forked children while passing SIGTERM/SIGINT on to each live one, once per
    signal received (as srun does to its tasks; before_term and term_as as for lead()); the
    highest exit code, 128+N for signal N. Call with both signals blocked: they are handled
    from here on."""
    live = set(pids)
    codes = []

    def send(signum):
        for pid in sorted(live):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    on_signals(send, before_term, term_as)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    while live:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid in live:
            live.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            codes.append(code if code >= 0 else 128 - code)
    return max(codes, default=0)

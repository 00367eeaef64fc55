"""Inside a Podman container: runs a step's command, passes it the signals Slurm sends, and
SIGKILLs it when the Slurm task outside has been killed.

Podman's containers run under conmon, outside the task's process tree: Slurm's SIGKILL of a
step (scancel, the end of the job, a time limit) ends `podman run` and leaves the container
running. The task's shell holds a lock on a file in the job's state dir for as long as it
lives (flock(1); domain/container_argv.podman_argv); the kernel releases it when the task is
killed, whatever the signal. This process, the container's command (under podman's --init),
polls that lock and, once it is free, does inside what Slurm did outside: SIGKILL to the
command's process group. SIGTERM and the other signals Slurm sends (FORWARDED, through
`podman run`'s signal proxy and the init) go to the same group, as Slurm sends them to a
step's processes.

No Dask import: it is started in the image before each node launcher or scheduler.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading

LOCK_VARIABLE = "DASKLAUNCH_OUTSIDE_LOCK"
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)
POLL_S = 1.0


def outside_gone(lock_path: str) -> bool:
    """Whether the task outside released its lock (it ended, or was killed). A missing file
    counts as gone (the state dir was removed under a running container); any other error
    reading it (NFS, a security label) as not gone: the container is not ended on a doubt."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError as err:
        _warn_once(f"cannot read {lock_path}: {err}")
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:
        _warn_once(f"cannot test the lock {lock_path}: {err}")
        return False
    finally:
        os.close(fd)    # drops the lock, if taken
    return True


_warned: set[str] = set()


def _warn_once(text: str) -> None:
    if text not in _warned:
        _warned.add(text)
        print(f"dasklaunch container watch: {text}; the container is not ended by it",
              file=sys.stderr, flush=True)


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)


def run(argv: list[str], lock_path: str | None) -> int:
    # The handlers go in before the command starts: a signal that comes meanwhile is kept and
    # passed on once there is a command to pass it to (not the default action, which would end
    # this process and leave the command running). The command gets the default handlers back
    # at exec.
    child: subprocess.Popen | None = None
    pending: list[int] = []

    def forward(signum: int, _frame) -> None:
        if child is None:
            pending.append(signum)
        else:
            _signal_group(child.pid, signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    child = subprocess.Popen(argv, start_new_session=True)
    for signum in pending:
        _signal_group(child.pid, signum)
    ended = threading.Event()
    threading.Thread(target=lambda: (child.wait(), ended.set()), daemon=True).start()
    while not ended.wait(POLL_S):
        if lock_path and outside_gone(lock_path):
            _signal_group(child.pid, signal.SIGKILL)
            child.wait()
            return 128 + signal.SIGKILL
    code = child.wait()
    return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        print("usage: python -m dasklaunch.launch.container_watch -- COMMAND...", file=sys.stderr)
        return 2
    return run(args, os.environ.pop(LOCK_VARIABLE, None))


if __name__ == "__main__":
    sys.exit(main())

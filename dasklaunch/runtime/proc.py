"""The one module that starts, inspects and signals processes.

Everything takes argv lists (never a shell string). Processes are identified by the pid and the
create time recorded when they were started, so a recycled pid is never mistaken for ours, and
groups are signalled only by the process-group id we created.
"""

from __future__ import annotations

import math
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import CommandError


def display(argv: list[str]) -> str:
    return shlex.join(argv)


def run(argv: list[str], *, timeout: float = 30.0, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a short command; raise CommandError with its output when it fails."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env,
                                stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise CommandError(f"command not found: {argv[0]}") from None
    except subprocess.TimeoutExpired:
        raise CommandError(f"timed out after {timeout:g}s: {display(argv)}") from None
    if check and result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        last = detail[-1] if detail else "no output"
        raise CommandError(f"{display(argv)} exited {result.returncode}: {last}")
    return result


@dataclass(frozen=True)
class ProcessId:
    """A pid plus its start time: the pair is unique for the life of the machine."""

    pid: int
    create_time: float

    def to_dict(self) -> dict:
        return {"pid": self.pid, "create_time": self.create_time}

    @classmethod
    def from_dict(cls, data: dict) -> ProcessId:
        return cls(int(data["pid"]), float(data["create_time"]))


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None


def identify(pid: int) -> ProcessId:
    created = _create_time(pid)
    return ProcessId(pid, created if created is not None else time.time())


def alive(proc: ProcessId) -> bool:
    """True while the recorded process runs. Zombies count as dead: init here reaps late."""
    created = _create_time(proc.pid)
    return created is not None and abs(created - proc.create_time) < 1.0


def group_members(pgid: int, not_before: float = 0.0) -> list[int]:
    """Live (non-zombie) pids in process group `pgid` started at or after `not_before`."""
    import psutil

    members = []
    for proc in psutil.process_iter(["pid", "create_time", "status"]):
        try:
            if os.getpgid(proc.pid) != pgid:
                continue
        except OSError:
            continue
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if proc.info["create_time"] is not None and proc.info["create_time"] < not_before - 1.0:
            continue
        members.append(proc.pid)
    return members


def signal_group(pgid: int, sig: int, not_before: float = 0.0) -> bool:
    """Signal a process group we created, if it still has live members. True if signalled."""
    if not group_members(pgid, not_before):
        return False
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def signal_process(proc: ProcessId, sig: int) -> bool:
    """Signal the recorded process if it is still the one we started. True if signalled."""
    if not alive(proc):
        return False
    try:
        os.kill(proc.pid, sig)
    except ProcessLookupError:
        return False
    return True


def spawn(argv: list[str], *, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start a detached process writing to `log`, leading a new session and process group.

    Detached, so a Ctrl-C in the user's terminal reaches only the dasklaunch command (which then
    rolls back explicitly), and the whole step is one process group to signal. Under umask 077:
    what Dask writes into the state dir (the scheduler file, worker spill) is the owner's only;
    srun passes the umask on to its tasks.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=env,
                                close_fds=True, start_new_session=True, umask=0o077)
    except FileNotFoundError:
        raise CommandError(f"command not found: {argv[0]}") from None
    finally:
        os.close(fd)


def start_child(argv: list[str], env: dict[str, str] | None = None,
                cpus: list[int] | None = None, ignore_sigterm: bool = False) -> subprocess.Popen:
    """Start a child that shares our stdio and process group (for step leaders and the guard),
    bound to `cpus` when given, and ignoring SIGTERM from its first instruction with
    `ignore_sigterm` (both set in the child before it runs: the caller is single-threaded, so
    the pre-exec hook is safe; SIG_IGN outlives exec)."""
    def prepare() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if ignore_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)

    preexec = prepare if cpus or ignore_sigterm else None
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env,
                                preexec_fn=preexec)  # noqa: PLW1509
    except FileNotFoundError:
        raise CommandError(f"command not found: {argv[0]}") from None


# A SIGTERM this soon after the one that started a drain is a copy of it, not a second
# request: Slurm signals every process of a step, and Apptainer's runtime parent passes the
# SIGTERM it gets on to its container's process, so a node launcher in an Apptainer container
# gets each scancel twice, up to a few hundred milliseconds apart on a loaded node.
DUPLICATE_TERM_S = 1.0
monotonic = time.monotonic      # the clock on_signals reads
# The drain's start time until the clock is read: Python runs a pending handler at that very
# call (after any builtin call), so a copy arriving then must already see the drain started.
STARTING = math.inf


def on_signals(send, before_term=None, term_as: int = signal.SIGTERM) -> None:
    """Handle SIGTERM/SIGINT by calling send(signum) once per signal received, as srun passes
    them on to its tasks. `before_term(signum)` runs before the first SIGTERM is passed on (the
    node launcher drains its workers there); a signal that arrives meanwhile is passed on at
    once, and the first SIGTERM is then not passed on a second time. A SIGTERM within
    DUPLICATE_TERM_S of the one that started the drain is the same one, and is dropped, during
    the drain or after it. SIGTERM is passed on as `term_as` (SIGINT to workers that leave
    SIGTERM to their launcher: launch/shield.py)."""
    state = {"before": before_term, "sent_during": False, "busy": False,
             "first_term": -math.inf}

    def pass_on(signum):
        send(term_as if signum == signal.SIGTERM else signum)

    def handler(signum, _frame):
        if (signum == signal.SIGTERM
                and monotonic() - state["first_term"] < DUPLICATE_TERM_S):
            return
        if state["busy"]:
            state["sent_during"] = True
            pass_on(signum)
            return
        hook = state["before"] if signum == signal.SIGTERM else None
        if hook is not None:
            # no call (where a pending handler could run) until busy and the start are set
            state["first_term"] = STARTING
            state["before"] = None
            state["busy"] = True
            state["first_term"] = monotonic()
            try:
                hook(signum)
            finally:
                state["busy"] = False
            if state["sent_during"]:
                return
        pass_on(signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def lead(children: list[subprocess.Popen], before_term=None,
         term_as: int = signal.SIGTERM) -> int:
    """Be the leader of `children`, as srun is of its tasks: pass SIGTERM/SIGINT on to each
    once (after before_term(signum) for the first SIGTERM; SIGTERM as `term_as`), wait for
    all, return the highest exit code (128+N for a signal N)."""
    def send(signum):
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    on_signals(send, before_term, term_as)
    codes = [child.wait() for child in children]
    return max((code if code >= 0 else 128 - code for code in codes), default=0)


def become(argv: list[str], env: dict[str, str] | None = None) -> None:
    """Replace this process with `argv` (same pid: signals and the step see no difference)."""
    try:
        if env is None:
            os.execvp(argv[0], argv)  # noqa: S606 - an argv list, no shell
        else:
            os.execvpe(argv[0], argv, env)  # noqa: S606
    except FileNotFoundError:
        raise CommandError(f"command not found: {argv[0]}") from None


def wait_until(predicate, timeout: float, interval: float = 0.1) -> bool:
    """Poll `predicate` until it is true or `timeout` passes; True if it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


SIGTERM = signal.SIGTERM
SIGKILL = signal.SIGKILL

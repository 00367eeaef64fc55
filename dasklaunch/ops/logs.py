"""`logs`: the scheduler's and the current pools' logs, tailed or followed across restarts."""

from __future__ import annotations

import os
import sys
import time
from contextlib import suppress
from pathlib import Path

from ..errors import StateDirError
from ..runtime.record import ClusterRecord
from ..runtime.state import StateDir, find_state_dir
from .common import load_record
from .restart import select_pools

POLL_SECONDS = 0.25
RECORD_POLL_SECONDS = 1.0
_BLOCK = 64 * 1024


def show_logs(state_dir: Path | str | None, which: str, lines: int | None,
              follow: bool, pool: str | None = None) -> None:
    """`which` is scheduler, workers or all; `pool` keeps only that pool's workers."""
    state = find_state_dir(state_dir)
    record = load_record(state)
    if pool is not None:
        select_pools(record, pool)   # an unknown pool is refused, naming the pools there are
        which = "workers"
    if follow:
        _follow(state, which, lines, record, pool)
    else:
        _print_logs(log_files(record, which, pool), lines, log_labels(record))


def log_files(record: ClusterRecord, which: str, pool: str | None = None) -> list[Path]:
    """The logs the state record names: the current scheduler's and the current pools' (or
    pool `pool`'s)."""
    files = []
    if which in ("scheduler", "all") and record.scheduler and record.scheduler.log:
        files.append(Path(record.scheduler.log))
    if which in ("workers", "all"):
        files += [Path(step.log) for step in record.pools
                  if step.log and pool in (None, step.pool)]
    return files


def log_labels(record: ClusterRecord) -> dict[Path, str]:
    """What a log's header says: whose log it is ("pool a", "scheduler"), then its file."""
    labels = {}
    if record.scheduler and record.scheduler.log:
        labels[Path(record.scheduler.log)] = "scheduler"
    for step in record.pools:
        if step.log:
            labels[Path(step.log)] = f"pool {step.pool}"
    return labels


def read_tail(path: Path, lines: int | None) -> tuple[bytes, int]:
    """The last `lines` lines of a file (all of it when None) and the offset it ends at.

    Reads backwards in blocks, so a long log costs only what is shown."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        if lines is None:
            handle.seek(0)
            return handle.read(end), end
        if lines == 0:
            return b"", end
        pos, data = end, b""
        while pos > 0 and data.count(b"\n") <= lines:
            step = min(_BLOCK, pos)
            pos -= step
            handle.seek(pos)
            data = handle.read(step) + data
    closed = data.endswith(b"\n")
    kept = (data[:-1] if closed else data).split(b"\n")[-lines:]
    return b"\n".join(kept) + (b"\n" if closed else b""), end


class _Printer:
    """Writes log text to stdout, with a tail-like `==> pool a (FILE) <==` header when the
    source changes."""

    def __init__(self, headers: bool, labels: dict[Path, str]):
        self.headers = headers
        self.labels = labels
        self.last: Path | None = None

    def header(self, path: Path) -> None:
        if self.headers and path != self.last:
            label = self.labels.get(path)
            title = f"{label} ({path})" if label else str(path)
            sys.stdout.write(("\n" if self.last is not None else "") + f"==> {title} <==\n")
            self.last = path

    def emit(self, path: Path, data: bytes) -> None:
        if not data:
            return
        self.header(path)
        sys.stdout.write(data.decode(errors="replace"))
        sys.stdout.flush()


def _missing(path: Path) -> None:
    print(f"dasklaunch: {path}: no such log (yet)", file=sys.stderr)


def _print_logs(files: list[Path], lines: int | None, labels: dict[Path, str]) -> None:
    printer = _Printer(headers=len(files) > 1, labels=labels)
    for path in files:
        try:
            data, _ = read_tail(path, lines)
        except FileNotFoundError:
            _missing(path)
            continue
        printer.header(path)
        if data and not data.endswith(b"\n"):
            data += b"\n"
        printer.emit(path, data)
    sys.stdout.flush()


def _follow(state: StateDir, which: str, lines: int | None, record: ClusterRecord,
            pool: str | None) -> None:
    """Print the tails, then whatever is appended, until Ctrl-C. Only whole lines are printed,
    so lines from different logs never mix; a log that appears later (a new scheduler or pool
    after up or restart-workers) is printed from its start."""
    files = log_files(record, which, pool)
    printer = _Printer(headers=which == "all" or len(files) > 1, labels=log_labels(record))
    offsets: dict[Path, int] = {}
    for path in files:
        try:
            data, end = read_tail(path, lines)
        except FileNotFoundError:
            continue
        cut = data.rfind(b"\n") + 1
        offsets[path] = end - (len(data) - cut)
        printer.emit(path, data[:cut])
    next_record = time.monotonic() + RECORD_POLL_SECONDS
    while True:
        if time.monotonic() >= next_record:
            next_record = time.monotonic() + RECORD_POLL_SECONDS
            with suppress(StateDirError):
                latest = state.read_record_or_backup()[0] or record
                current = log_files(latest, which, pool)
                printer.labels.update(log_labels(latest))
                # a new log (restart-workers, a new up) gets a header even when alone
                if current != files or len(current) > 1:
                    printer.headers = True
                files = current
        for path in files:
            offsets[path] = _emit_new(printer, path, offsets.get(path, 0))
        time.sleep(POLL_SECONDS)


def _emit_new(printer: _Printer, path: Path, offset: int) -> int:
    """Print the whole lines appended to `path` since `offset`; return the new offset."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size < offset:  # truncated or replaced: start over
                offset = 0
            handle.seek(offset)
            data = handle.read(size - offset)
    except FileNotFoundError:
        return offset
    cut = data.rfind(b"\n") + 1
    printer.emit(path, data[:cut])
    return offset + cut

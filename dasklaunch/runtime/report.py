"""Progress and messages for long commands: a live counter on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys


class Reporter:
    """Writes human messages to stderr; silent when `quiet` (the Python API)."""

    def __init__(self, quiet: bool = False, stream=None):
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self._last: tuple[int, int] | None = None
        self._inline = False

    @property
    def tty(self) -> bool:
        return hasattr(self.stream, "isatty") and self.stream.isatty()

    def _end_inline(self) -> None:
        if self._inline:
            self.stream.write("\n")
            self._inline = False

    def info(self, message: str) -> None:
        if self.quiet:
            return
        self._end_inline()
        print(message, file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        self.info(f"warning: {message}")

    def progress(self, connected: int, expected: int) -> None:
        if self.quiet or self._last == (connected, expected):
            return
        self._last = (connected, expected)
        if self.tty:
            self.stream.write(f"\rworkers connected: {connected}/{expected}")
            self.stream.flush()
            self._inline = True
        else:
            print(f"workers connected: {connected}/{expected}", file=self.stream, flush=True)

    def done(self) -> None:
        if not self.quiet:
            self._end_inline()

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
        self._width = 0  # length of the counter now on the terminal line

    @property
    def tty(self) -> bool:
        return hasattr(self.stream, "isatty") and self.stream.isatty()

    def _end_inline(self) -> None:
        if self._inline:
            self.stream.write("\n")
            self._inline = False
            self._width = 0

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
        text = f"workers connected: {connected}/{expected}"
        if self.tty:
            # `\r` only moves the cursor: a shorter counter (10/128 -> 9/128) must blank what is
            # left of the longer one, or the line reads 9/1288. Spaces, not an escape sequence,
            # so a dumb terminal (TERM=dumb, an editor's shell) shows it right too.
            self.stream.write("\r" + text + " " * (self._width - len(text)))
            self.stream.flush()
            self._width = len(text)
            self._inline = True
        else:
            print(text, file=self.stream, flush=True)

    def done(self) -> None:
        if not self.quiet:
            self._end_inline()

"""What the tests read from the CLI's output."""

from __future__ import annotations


def one_error_line(result) -> str:
    """The one stderr line of a refused command, as the CLI's single error handler writes it."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("dasklaunch: error: ")
    return lines[0]

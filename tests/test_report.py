"""The live worker counter as a terminal shows it."""

from __future__ import annotations

import io

from dasklaunch.runtime.report import Reporter


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def screen(text: str) -> list[str]:
    """What a terminal shows for `text`: `\\r` returns to column 0 and overwrites, nothing
    erases by itself."""
    lines, row, col = [[]], 0, 0
    for char in text:
        if char == "\n":
            lines.append([])
            row, col = row + 1, 0
        elif char == "\r":
            col = 0
        else:
            line = lines[row]
            line.extend(" " * (col + 1 - len(line)))
            line[col] = char
            col += 1
    return ["".join(line).rstrip() for line in lines]


def test_a_shorter_count_leaves_nothing_of_the_longer_one():
    stream = FakeTTY()
    report = Reporter(stream=stream)
    for connected in (0, 10, 9, 100, 7):
        report.progress(connected, 128)
    assert screen(stream.getvalue()) == ["workers connected: 7/128"]
    report.info("ready")
    assert screen(stream.getvalue()) == ["workers connected: 7/128", "ready", ""]


def test_a_message_after_the_counter_starts_a_fresh_counter():
    stream = FakeTTY()
    report = Reporter(stream=stream)
    report.progress(120, 128)
    report.warn("a worker died")
    report.progress(1, 128)
    assert screen(stream.getvalue()) == ["workers connected: 120/128",
                                         "warning: a worker died", "workers connected: 1/128"]


def test_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    report = Reporter(stream=stream)
    report.progress(10, 128)
    report.progress(9, 128)
    report.progress(9, 128)
    assert stream.getvalue() == "workers connected: 10/128\nworkers connected: 9/128\n"

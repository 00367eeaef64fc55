"""dasklaunch's own sizing hints in a profile (`dasklaunch:` layout, memory-fraction/limit)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from ..domain.units import format_bytes
from ..errors import UsageError
from .values import as_size, is_number, show_value

HINT_KEYS = ("layout", "memory-fraction", "memory-limit")


LAYOUTS = ("per-node", "per-task")


def check_hints(hints: Mapping, mem_per_node: int | None) -> None:
    for key, value in hints.items():
        path = f"dasklaunch.{key}"
        if key not in HINT_KEYS:
            raise UsageError(unknown_key_message(path, key, HINT_KEYS, "dasklaunch's sizing hints"))
        if key == "layout" and value not in LAYOUTS:
            raise UsageError(f"{path}: {show_value(value)} is not one of {', '.join(LAYOUTS)}")
        if key == "memory-fraction" and not (is_number(value) and 0 < value <= 1):
            raise UsageError(f"{path}: {show_value(value)} is not a fraction in (0, 1]"
                             f"{percent_hint(value)}")
    if "memory-limit" in hints:
        if "memory-fraction" in hints:
            raise UsageError("dasklaunch.memory-fraction and dasklaunch.memory-limit are both "
                             "set; keep one")
        limit = as_size("dasklaunch.memory-limit", hints["memory-limit"])
        if limit == 0:
            raise UsageError("dasklaunch.memory-limit: 0 would give workers no memory")
        if mem_per_node and limit > mem_per_node:
            raise UsageError(f"dasklaunch.memory-limit {format_bytes(limit)} is larger than the "
                             f"allocation's {format_bytes(mem_per_node)} per node")


def unknown_key_message(path: str, key: str, known: Iterable[str], where: str) -> str:
    close = difflib.get_close_matches(key.replace("_", "-"), list(known), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown key {path} (not in {where}{hint})"


def percent_hint(value: Any) -> str:
    if is_number(value) and 2 <= value <= 100:
        return f" (did you mean {value / 100:g}?)"
    return ""

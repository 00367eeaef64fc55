"""Sizes as users and Slurm write them: parse and format bytes."""

from __future__ import annotations

import re

from ..errors import UsageError

_UNITS = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
    "t": 10**12, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_bytes(text: str | int | float) -> int:
    """Parse sizes the way users write them: 12e9, "12 GB", "12GiB", "1.5 TB"."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = int(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*",
                             str(text))
        unit = match.group(2).lower() if match else None
        if not match or unit not in _UNITS:
            raise UsageError(f"not a memory size: {text!r} (use e.g. 12GB, 12GiB or 12e9)")
        value = int(float(match.group(1)) * _UNITS[unit])
    if value < 0:
        raise UsageError(f"memory size must not be negative: {text!r}")
    return value


def check_memory_limit(option: str, value: str) -> str:
    """A worker's memory limit as Dask takes it: `auto`, a fraction of the node in (0, 1], or
    a size; anything else is refused naming the option and what it takes."""
    text = str(value).strip()
    if text.lower() == "auto":
        return "auto"
    try:
        fraction = float(text)
    except ValueError:
        fraction = None
    if fraction is not None and "e" not in text.lower():
        if 0 < fraction <= 1:
            return text
        if fraction != int(fraction) or fraction <= 1:
            raise UsageError(f"{option} takes a fraction of the node's memory in (0, 1], a "
                             f"size (12GiB) or auto, not {value!r}")
    try:
        size = parse_bytes(text)
    except UsageError:
        size = 0
    if size <= 0:
        raise UsageError(f"{option} takes a fraction of the node's memory in (0, 1], a size "
                         f"(12GiB) or auto, not {value!r}")
    return text


def format_bytes(n: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def slurm_megabytes(name: str, value: str) -> int:
    """A SLURM_MEM_* value in bytes: Slurm's "MB" are mebibytes."""
    value = value.strip()
    if not value.isdigit():
        raise UsageError(f"{name}={value!r} is not a number of megabytes")
    return int(value) * 2**20


def plural(count: int, noun: str) -> str:
    """`1 worker`, `2 workers`: messages read as English at every count."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def check_device_size(what: str, value: str, limit: bool = False) -> str:
    """A size on a GPU as dask-cuda takes it: a fraction of the device's memory in (0, 1], or
    bytes (`40GB`); a device memory limit may also be `auto`/`default` (dask-cuda's 80%) or 0
    (no spilling to host). Returned as dask-cuda should get it (fractions as floats: `1.0`);
    raises UsageError with `what` otherwise."""
    text = str(value).strip()
    if limit and text in ("auto", "default", "0"):
        return text
    try:
        fraction = float(text)
    except ValueError:
        fraction = None
    if fraction is not None and "e" not in text.lower() and fraction <= 1:
        if fraction <= 0:
            raise UsageError(f"{what}: {text} is not a fraction in (0, 1] or a size")
        # as a float: dask-cuda reads a bare `1` as one byte, `1.0` as the whole GPU
        return repr(fraction)
    try:
        size = parse_bytes(text)
    except UsageError:
        raise UsageError(f"{what}: {text!r} is neither a fraction of the GPU's memory in (0, 1] "
                         f"nor a size such as 40GB") from None
    if size < 2**20:
        # `1.5` or `512`: a fraction or a unit gone missing, not a pool of a few bytes
        raise UsageError(f"{what}: {text} is {plural(size, 'byte')}, not a fraction of the "
                         f"GPU's memory in (0, 1] or a size such as 40GB")
    return text


_TIME = re.compile(r"(?:(?P<days>\d+)-(?P<dh>\d+)(?::(?P<dm>\d+)(?::(?P<ds>\d+))?)?"
                   r"|(?P<a>\d+)(?::(?P<b>\d+)(?::(?P<c>\d+))?)?)")


def slurm_time_seconds(text: str) -> int | None:
    """Seconds in a Slurm time limit; None for an unlimited one. UsageError if malformed.

    Slurm reads "M", "M:S", "H:M:S", "D-H", "D-H:M" and "D-H:M:S"; 0 means no limit."""
    value = text.strip()
    if value.lower() in ("unlimited", "infinite"):
        return None
    match = _TIME.fullmatch(value)
    if not match:
        raise UsageError(f"--time {text!r} is not a Slurm time limit (minutes, MM:SS, HH:MM:SS, "
                         f"D-HH, D-HH:MM or D-HH:MM:SS)")
    if match["days"] is not None:
        days, hours, minutes, seconds = (int(match[k] or 0) for k in ("days", "dh", "dm", "ds"))
    else:
        given = [int(match[k]) for k in ("a", "b", "c") if match[k] is not None]
        days = 0
        hours, minutes, seconds = {1: (0, given[0], 0), 2: (0, *given), 3: tuple(given)}[len(given)]
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return total or None

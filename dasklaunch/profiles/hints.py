"""dasklaunch's own hints in a profile (`dasklaunch:` layout, memory-fraction/limit, pools,
container)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from ..domain.container import RUNTIME_CHOICES, check_image
from ..domain.units import format_bytes
from ..errors import UsageError
from .values import as_size, is_number, show_value

# `dasklaunch:` keys of a profile: what each says (the docs' profile reference is made from
# this, beside the Dask keys of distributed's own schema)
HINTS = {
    "layout": "per-node (one threaded worker per node) or per-task (a worker per Slurm task); "
              "--per-node/--per-task win over it",
    "memory-fraction": "the share of a node's memory its workers get together, in (0, 1] "
                       "(default 0.9), less the scheduler's reserve",
    "memory-limit": "a size per worker instead of a fraction (12GiB); not with memory-fraction",
    "pools": "worker pools, as --pool texts (NAME:KEY=VALUE,...) or mappings with a name",
    "container": "the image the scheduler and workers run in (docs/containers.md); "
                 "--container wins over it",
    "container-runtime": "auto, apptainer, singularity, podman or pyxis; --container-runtime "
                         "wins over it",
}
HINT_KEYS = tuple(HINTS)


LAYOUTS = ("per-node", "per-task")


def check_hints(hints: Mapping, mem_per_node: int | None) -> None:
    for key, value in hints.items():
        path = f"dasklaunch.{key}"
        if key not in HINT_KEYS:
            raise UsageError(unknown_key_message(path, key, HINT_KEYS, "dasklaunch's sizing hints"))
        if key == "pools":
            profile_pools(value)
        if key == "container":
            check_image(path, str(value))
        if key == "container-runtime" and value not in RUNTIME_CHOICES:
            raise UsageError(f"{path}: {show_value(value)} is not one of "
                             f"{', '.join(RUNTIME_CHOICES)}")
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


def profile_pools(value) -> tuple:
    """`dasklaunch: pools:` as PoolSpecs: a list of `NAME:KEY=VALUE,...` strings, or of
    mappings (`{name: gpu, nodes: 2, worker-arg: [--lifetime=1h]}`), each key checked as
    `--pool` checks it."""
    from ..domain.pool_spec import parse_pool, pool_from_items

    if not isinstance(value, list):
        raise UsageError(f"dasklaunch.pools: expected a list of pools, not {show_value(value)}")
    specs = []
    for item in value:
        if isinstance(item, str):
            specs.append(parse_pool(item))
        elif isinstance(item, dict) and isinstance(item.get("name"), str):
            items = []
            for key, val in item.items():
                if key == "name":
                    continue
                for one in (val if isinstance(val, list) else [val]):
                    items.append((key, "yes" if one is True else "no" if one is False
                                  else str(one)))
            specs.append(pool_from_items(item["name"], items))
        else:
            raise UsageError(f"dasklaunch.pools: {show_value(item)} is neither NAME:KEY=VALUE,... "
                             f"nor a mapping with a name")
    return tuple(specs)

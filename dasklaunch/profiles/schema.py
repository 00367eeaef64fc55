"""Validation of profiles against the schema that ships inside the installed distributed
package, read as a file: importing distributed costs about a second, which `dasklaunch profile`
never pays. Also checks what the schema cannot: thresholds in order, sizes, fractions."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from ..domain.node_memory import slurm_memory
from ..domain.units import check_device_size, format_bytes
from ..errors import DasklaunchError, UsageError
from .hints import check_hints, percent_hint, unknown_key_message
from .load import RMM_POOL_SIZE, Profile, load_profile
from .values import (
    TYPE_NAMES,
    as_size,
    canonical_key,
    is_number,
    is_type,
    lookup,
    same_value,
    show_value,
)

THRESHOLDS = ("target", "spill", "pause", "terminate")


MEMORY_SECTION = "distributed.worker.memory"


# Fractions of the worker's memory limit; `false` switches the behaviour off.
_FRACTIONS = frozenset(f"{MEMORY_SECTION}.{name}" for name in (*THRESHOLDS, "transfer"))


# Byte sizes Dask parses with dask.utils.parse_bytes when it meets a string.
_SIZES = frozenset({
    f"{MEMORY_SECTION}.max-spill", "distributed.scheduler.default-data-size",
    "distributed.scheduler.bandwidth", "distributed.comm.offload", "distributed.comm.shard",
    "distributed.comm.websockets.shard", "distributed.admin.large-graph-warning-threshold",
})


_ORDER_REASONS = {
    ("target", "spill"): "spilling would start below the level it spills down to",
    ("spill", "pause"): "workers would pause before they spill",
    ("pause", "terminate"): "the nanny would kill workers before they pause",
}


def _distributed_dir() -> Path:
    spec = importlib.util.find_spec("distributed")
    if spec is None or not spec.origin:
        raise DasklaunchError("the distributed package is not installed; profiles are checked "
                              "against its config schema")
    return Path(spec.origin).parent


@cache
def _schema() -> dict:
    """The schema of the `distributed:` section."""
    path = _distributed_dir() / "distributed-schema.yaml"
    try:
        schema = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
        return schema["properties"]["distributed"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise DasklaunchError(f"cannot read distributed's config schema {path}: {err}") from None


@cache
def dask_defaults() -> dict:
    """distributed's shipped defaults (the `distributed:` section), {} when unreadable."""
    path = _distributed_dir() / "distributed.yaml"
    try:
        data = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
        return data["distributed"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return {}


def _distributed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"distributed {version('distributed')}"
    except PackageNotFoundError:  # pragma: no cover - found by find_spec but not installed
        return "distributed"


def validate_profile(profile: Profile, mem_per_node: int | None = None) -> None:
    """Check every key against distributed's schema and the memory settings for sense.

    Threshold order is checked on what workers will use: the profile's thresholds, and Dask's
    defaults for those it leaves out. With `mem_per_node` (bytes), a fixed memory-limit hint
    must fit in the node's memory. Raises UsageError naming the key and the problem on one
    line."""
    validate_layers(profile, mem_per_node, [])


def validate_layers(profile: Profile, mem_per_node: int | None,
              layers_below: list[tuple[dict, str]]) -> None:
    check_hints(profile.hints, mem_per_node)
    _check_tree(profile.distributed, _schema(), "distributed")
    _check_order([(lookup(profile.distributed, "worker", "memory"), ""), *layers_below,
                  (lookup(dask_defaults(), "worker", "memory"), " (Dask's default)")])


def _check_tree(value: Any, schema: dict, path: str) -> None:
    props = schema.get("properties")
    if props is None:
        _check_leaf(value, schema, path)
        return
    if not isinstance(value, dict):
        raise UsageError(f"{path} must be a mapping, not {show_value(value)}")
    seen: dict[str, str] = {}
    for key, sub in value.items():
        name = _schema_key(key, props)
        if name is None:
            raise UsageError(unknown_key_message(f"{path}.{key}", str(key), props,
                                          f"{_distributed_version()}'s config schema"))
        if name in seen:
            raise UsageError(f"{path}.{name} is written twice (as {seen[name]} and {key})")
        seen[name] = str(key)
        _check_tree(sub, props[name], f"{path}.{name}")


def _schema_key(key: Any, props: Mapping) -> str | None:
    if not isinstance(key, str):
        return None
    if key in props:
        return key
    # Dask treats `_` and `-` in key names alike; the schema spells them with `-`.
    alt = key.replace("_", "-")
    return alt if alt in props else None


def _check_leaf(value: Any, schema: dict, path: str) -> None:
    if path == RMM_POOL_SIZE and value is not None:
        # what dasklaunch passes to dask-cuda pools as --rmm-pool-size
        check_device_size(path, value)
        return
    if path in _FRACTIONS:
        _check_fraction(path, value)
        return
    if path in _SIZES and isinstance(value, str):
        as_size(path, value)
    if not _matches(schema, value):
        raise UsageError(f"{path}: {show_value(value)} is not {_expected(schema)}")


def _check_fraction(path: str, value: Any) -> None:
    if value is False:
        return
    if is_number(value) and value == 0 and path.endswith(".terminate"):
        raise UsageError(f"{path}: 0 would kill every worker as soon as it starts; "
                         f"use false to never terminate")
    if not (is_number(value) and 0 < value <= 1):
        raise UsageError(f"{path}: {show_value(value)} is not a fraction in (0, 1] or false"
                         f"{percent_hint(value)}")


def _check_order(layers: list[tuple[dict, str]]) -> None:
    """Thresholds must rise target <= spill <= pause <= terminate; `false` ones are skipped.
    `layers` are (memory section, origin note) from highest priority down."""
    present = []
    for name in THRESHOLDS:
        for section, origin in layers:
            key = canonical_key(name, section)
            if key in section:
                value = section[key]
                if is_number(value):
                    present.append((name, value, origin))
                break
    for index in range(len(present) - 1):
        (low, low_value, low_origin), (high, high_value, high_origin) = present[index:index + 2]
        if low_value > high_value:
            reason = _ORDER_REASONS.get((low, high), "thresholds must rise")
            raise UsageError(
                f"{MEMORY_SECTION}: {low} {low_value:g}{low_origin} is above {high} "
                f"{high_value:g}{high_origin}: {reason} (keep target <= spill <= pause <= "
                f"terminate)")


def _matches(schema: Mapping, value: Any) -> bool:
    if "oneOf" in schema:
        return any(_matches(option, value) for option in schema["oneOf"])
    if "enum" in schema and not any(same_value(value, option) for option in schema["enum"]):
        return False
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else list(types)
        if not any(is_type(value, kind) for kind in types):
            return False
    if is_number(value):
        if "minimum" in schema and value < schema["minimum"]:
            return False
        if "maximum" in schema and value > schema["maximum"]:
            return False
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return False
    return True


def _expected(schema: Mapping) -> str:
    if "oneOf" in schema:
        return " or ".join(_expected(option) for option in schema["oneOf"])
    if "enum" in schema:
        return "one of " + ", ".join(show_value(option) for option in schema["enum"])
    types = schema.get("type") or []
    types = [types] if isinstance(types, str) else list(types)
    text = " or ".join(TYPE_NAMES.get(kind, kind) for kind in types) or "valid"
    bounds = [f">= {schema['minimum']:g}" if "minimum" in schema else "",
              f"> {schema['exclusiveMinimum']:g}" if "exclusiveMinimum" in schema else "",
              f"<= {schema['maximum']:g}" if "maximum" in schema else ""]
    bounds = [b for b in bounds if b]
    return f"{text} {' and '.join(bounds)}" if bounds else text


def check_profile(name_or_path: str, *, mem_per_node: str | int | None = None,
                  environ: Mapping[str, str] | None = None) -> str:
    """`profile check`: validate, against the allocation's memory per node when known
    (`mem_per_node`, else SLURM_MEM_PER_NODE / SLURM_MEM_PER_CPU). Returns the report line."""
    profile = load_profile(name_or_path)
    node, source = None, None
    if mem_per_node is not None:
        node, source = as_size("--mem-per-node", mem_per_node), "--mem-per-node"
    else:
        found = slurm_memory(os.environ if environ is None else environ)
        if found:
            node, source = found
    validate_profile(profile, node)
    verdict = f"ok: profile {profile.name} ({profile.source}) is valid"
    if node:
        return f"{verdict} for {format_bytes(node)} per node ({source})"
    if "memory-limit" in profile.hints:
        return f"{verdict} (memory-limit not checked against a node: give --mem-per-node)"
    return verdict

"""Profile values as YAML shows them: types, one-line display, key spellings, sizes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from ..domain.units import parse_bytes
from ..errors import UsageError

TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false",
               "null": "null"}


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_type(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return is_number(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    return True


def kind_of(value: Any) -> str:
    for kind in ("array", "string", "boolean", "integer", "number", "null"):
        if is_type(value, kind):
            return TYPE_NAMES[kind]
    return type(value).__name__


def show_value(value: Any) -> str:
    """A value as the user would write it in YAML, on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**16).strip()
    text = text.removesuffix("...").strip()
    return text if len(text) <= 60 else text[:57] + "..."


def same_value(a: Any, b: Any) -> bool:
    # YAML false must not match 0, nor true match 1.
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def canonical_key(key: str, section: Mapping) -> str:
    """The spelling of `key` already used in `section` (`_` or `-`), as Dask resolves it."""
    if key in section:
        return key
    alt = key.replace("_", "-") if "_" in key else key.replace("-", "_")
    return alt if alt in section else key


def lookup(tree: Any, *keys: str) -> dict:
    for key in keys:
        if not isinstance(tree, dict):
            return {}
        tree = tree.get(canonical_key(key, tree))
    return tree if isinstance(tree, dict) else {}


def as_size(path: str, value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise UsageError(f"{path}: {show_value(value)} is not a memory size (use e.g. 12GB, 12GiB "
                         f"or 12e9)")
    try:
        return parse_bytes(value)
    except UsageError as err:
        raise UsageError(f"{path}: {err}") from None

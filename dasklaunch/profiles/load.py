"""Memory profiles: named sets of distributed config keys plus dasklaunch's own sizing hints.

A profile is a YAML file (shipped in configs/, the user's ~/.config/dasklaunch/profiles/, or any
path):

    description: one line
    why: |
      the reasons for the numbers
    dasklaunch:              # sizing hints, used by `dasklaunch up --profile`
      layout: per-node       # or per-task
      memory-fraction: 0.9   # share of the node's memory given to its workers
      memory-limit: 12GiB    # or a fixed limit per worker (not with memory-fraction)
    distributed:             # any key of distributed's config
      worker:
        memory: {target: false, spill: false, pause: 0.80, terminate: 0.95}

This module finds and loads them and applies `--set` overrides; `schema` validates them against
distributed's own schema; `dask_config` turns them into Dask config files.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..domain.resources import data_dir
from ..domain.units import check_device_size
from ..errors import UsageError
from .hints import HINT_KEYS, check_hints, profile_pools
from .values import as_size, canonical_key, kind_of, lookup, show_value

PROFILE_KEYS = ("description", "why", "dasklaunch", "distributed")


@dataclass(frozen=True)
class Profile:
    """A loaded profile. `distributed` holds the keys below `distributed:`, as written."""

    name: str
    source: Path
    description: str = ""
    why: str = ""
    hints: dict = field(default_factory=dict, hash=False)
    distributed: dict = field(default_factory=dict, hash=False)


# dask-cuda's RMM pool, in distributed's schema but read by no Dask: dasklaunch passes it to
# dask-cuda pools as --rmm-pool-size
RMM_POOL_SIZE = "distributed.rmm.pool-size"


def shipped_profile_dir() -> Path:
    return data_dir("configs")


def user_profile_dir() -> Path:
    return Path.home() / ".config" / "dasklaunch" / "profiles"


def _profile_files(directory: Path) -> dict[str, Path]:
    if not directory.is_dir():
        return {}
    files = sorted(directory.glob("*.yml")) + sorted(directory.glob("*.yaml"))
    return {path.stem: path for path in files if path.is_file()}


def _is_path(name_or_path: str) -> bool:
    # Bare words are always profile names, so a stray file called `seed` in the current
    # directory cannot shadow the shipped profile.
    return ("/" in name_or_path or os.sep in name_or_path or name_or_path in (".", "..")
            or name_or_path.endswith((".yaml", ".yml", ".json")))


def load_profile(name_or_path: str) -> Profile:
    """Load a profile by name (user dir first, then shipped) or from a file path.

    Checks the shape (a mapping with known top-level keys); `validate_profile` checks values.
    Raises UsageError with a one-line message."""
    text = str(name_or_path).strip()
    if not text:
        raise UsageError("empty profile name")
    if _is_path(text):
        path = Path(text).expanduser()
        if path.is_dir():
            raise UsageError(f"profile {text} is a directory, not a YAML file")
        if not path.exists():
            raise UsageError(f"profile file {text} does not exist")
    else:
        path = _profile_files(user_profile_dir()).get(text) or \
            _profile_files(shipped_profile_dir()).get(text)
        if path is None:
            known = ", ".join(sorted(set(_profile_files(shipped_profile_dir()))
                                     | set(_profile_files(user_profile_dir()))))
            raise UsageError(f"unknown profile {text!r} (known: {known}; or give a file path)")
    return _profile_from_data(path.stem, path, read_yaml(path, strict=True))


def _profile_from_data(name: str, path: Path, data: Any) -> Profile:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a profile: expected a YAML mapping, got "
                         f"{kind_of(data)}")
    for key in data:
        if key not in PROFILE_KEYS:
            raise UsageError(f"{path}: unknown top-level key {key!r} (a profile has "
                             f"{', '.join(PROFILE_KEYS)})")
    description, why = data.get("description") or "", data.get("why") or ""
    if not isinstance(description, str) or "\n" in description.strip():
        raise UsageError(f"{path}: description must be one line of text")
    if not isinstance(why, str):
        raise UsageError(f"{path}: why must be text")
    hints = data.get("dasklaunch") or {}
    if not isinstance(hints, dict):
        raise UsageError(f"{path}: dasklaunch must be a mapping of sizing hints, not "
                         f"{show_value(hints)}")
    settings = data.get("distributed")
    settings = {} if settings is None else settings
    if not isinstance(settings, dict):
        raise UsageError(f"{path}: distributed must be a mapping of distributed config keys, "
                         f"not {show_value(settings)}")
    return Profile(name=name, source=path, description=description.strip(), why=why.strip(),
                   hints={str(k).replace("_", "-"): v for k, v in hints.items()},
                   distributed=settings)


@dataclass(frozen=True)
class ProfileEntry:
    name: str
    description: str
    path: Path
    origin: str          # "shipped", "user" or "user, overrides shipped"
    error: str | None = None


def list_profiles() -> list[ProfileEntry]:
    """Every profile `load_profile` finds by name. A broken user profile is listed with its
    error rather than hiding the others."""
    shipped, user = _profile_files(shipped_profile_dir()), _profile_files(user_profile_dir())
    entries = []
    for name in sorted(set(shipped) | set(user)):
        path = user.get(name) or shipped[name]
        origin = "shipped" if name not in user else \
            "user, overrides shipped" if name in shipped else "user"
        try:
            profile = _profile_from_data(name, path, read_yaml(path, strict=True))
            entries.append(ProfileEntry(name, profile.description, path, origin))
        except UsageError as err:
            entries.append(ProfileEntry(name, "", path, origin, error=str(err)))
    return entries


class _StrictLoader(yaml.SafeLoader):
    """Rejects a key written twice in one mapping (plain YAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark)
            with suppress(TypeError):
                seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(path: Path, *, strict: bool) -> Any:
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not YAML: not UTF-8 text") from None
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from None
    return parse_yaml(text, str(path), strict=strict)


def parse_yaml(text: str, where: str, *, strict: bool) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader if strict else yaml.SafeLoader)  # noqa: S506 - both are safe loaders
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        at = f"line {mark.line + 1}: " if mark is not None else ""
        raise UsageError(f"{where} is not YAML: {at}{problem}") from None


def apply_overrides(profile: Profile, assignments: Iterable[str]) -> Profile:
    """A copy of `profile` with `key=value` settings applied. Keys are distributed config keys
    (with or without the leading `distributed.`) or `dasklaunch.<hint>`; values are YAML
    (`false`, `0.85`, `30s`)."""
    hints, settings = copy.deepcopy(profile.hints), copy.deepcopy(profile.distributed)
    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects key=value, not {assignment!r}")
        value = parse_yaml(raw, f"--set {key}", strict=True)
        parts = key.split(".")
        if parts[0] == "dasklaunch":
            if len(parts) != 2:
                raise UsageError(f"--set {key}: dasklaunch's own profile keys are "
                                 f"dasklaunch.<{'|'.join(HINT_KEYS)}>")
            hints[parts[1].replace("_", "-")] = value
            continue
        if parts[0] == "distributed":
            parts = parts[1:]
        if not parts or not all(parts):
            raise UsageError(f"--set {key}: not a config key (e.g. worker.memory.pause=0.85)")
        node = settings
        for depth, part in enumerate(parts[:-1]):
            name = canonical_key(part, node)
            if not isinstance(node.get(name), dict):
                if name in node:
                    where = ".".join(["distributed", *parts[:depth + 1]])
                    raise UsageError(f"--set {key}: {where} is {show_value(node[name])}, "
                                     f"not a mapping")
                node[name] = {}
            node = node[name]
        node[canonical_key(parts[-1], node)] = value
    return replace(profile, hints=hints, distributed=settings)


def profile_hints(profile: Profile) -> dict:
    """Sizing hints as `up` uses them: layout ("per-node", "per-task" or None), pools (--pool
    texts), container and container_runtime (or None), memory_fraction (float or None) and
    memory_limit (bytes per worker or None).
    Raises UsageError when a hint is invalid."""
    hints = profile.hints
    check_hints(hints, None)
    limit = hints.get("memory-limit")
    fraction = hints.get("memory-fraction")
    rmm = lookup(profile.distributed, "rmm")
    pool_size = rmm.get(canonical_key("pool-size", rmm))
    return {"layout": hints.get("layout"),
            "rmm_pool_size": None if pool_size is None
            else check_device_size(RMM_POOL_SIZE, pool_size),
            "pools": profile_pools(hints["pools"]) if "pools" in hints else (),
            "container": str(hints["container"]) if "container" in hints else None,
            "container_runtime": hints.get("container-runtime"),
            "memory_fraction": float(fraction) if fraction is not None else None,
            "memory_limit": as_size("dasklaunch.memory-limit", limit) if limit is not None
            else None}

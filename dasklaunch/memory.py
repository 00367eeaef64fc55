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

Keys are checked against the schema that ships inside the installed distributed package, read
as a file: importing distributed costs about a second, which `dasklaunch profile` never pays.

A profile reaches Dask in one of two ways: `job_config_yaml` renders the file a job points
DASK_CONFIG at (scheduler and workers of that job only), and `write_profile` merges it into the
user's ~/.config/dask/distributed.yaml (every later Dask process of that user).
"""

from __future__ import annotations

import copy
import difflib
import importlib.util
import os
import time
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from .errors import DasklaunchError, StateDirError, UsageError
from .plan import format_bytes, parse_bytes
from .resources import data_dir
from .state import atomic_write

PROFILE_KEYS = ("description", "why", "dasklaunch", "distributed")
HINT_KEYS = ("layout", "memory-fraction", "memory-limit")
LAYOUTS = ("per-node", "per-task")
THRESHOLDS = ("target", "spill", "pause", "terminate")

# Where a job's rendered profile goes inside its state dir; DASK_CONFIG points at the directory.
JOB_CONFIG_FILE = "distributed.yaml"

_MEMORY = "distributed.worker.memory"
# Fractions of the worker's memory limit; `false` switches the behaviour off.
_FRACTIONS = frozenset(f"{_MEMORY}.{name}" for name in (*THRESHOLDS, "transfer"))
# Byte sizes Dask parses with dask.utils.parse_bytes when it meets a string.
_SIZES = frozenset({
    f"{_MEMORY}.max-spill", "distributed.scheduler.default-data-size",
    "distributed.scheduler.bandwidth", "distributed.comm.offload", "distributed.comm.shard",
    "distributed.comm.websockets.shard", "distributed.admin.large-graph-warning-threshold",
})
_ORDER_REASONS = {
    ("target", "spill"): "spilling would start below the level it spills down to",
    ("spill", "pause"): "workers would pause before they spill",
    ("pause", "terminate"): "the nanny would kill workers before they pause",
}


@dataclass(frozen=True)
class Profile:
    """A loaded profile. `distributed` holds the keys below `distributed:`, as written."""

    name: str
    source: Path
    description: str = ""
    why: str = ""
    hints: dict = field(default_factory=dict, hash=False)
    distributed: dict = field(default_factory=dict, hash=False)


# ---------------------------------------------------------------- finding and loading profiles

def shipped_profile_dir() -> Path:
    return data_dir("configs")


def user_profile_dir() -> Path:
    return Path.home() / ".config" / "dasklaunch" / "profiles"


def default_user_config() -> Path:
    """The user's Dask config file. Not $DASK_CONFIG: that is a per-job or per-shell override,
    and writing a profile there would vanish with it."""
    return Path.home() / ".config" / "dask" / "distributed.yaml"


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
    return _profile_from_data(path.stem, path, _read_yaml(path, strict=True))


def _profile_from_data(name: str, path: Path, data: Any) -> Profile:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a profile: expected a YAML mapping, got "
                         f"{_kind(data)}")
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
                         f"{_show(hints)}")
    settings = data.get("distributed")
    settings = {} if settings is None else settings
    if not isinstance(settings, dict):
        raise UsageError(f"{path}: distributed must be a mapping of distributed config keys, "
                         f"not {_show(settings)}")
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
            profile = _profile_from_data(name, path, _read_yaml(path, strict=True))
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


def _read_yaml(path: Path, *, strict: bool) -> Any:
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not YAML: not UTF-8 text") from None
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}") from None
    return _parse_yaml(text, str(path), strict=strict)


def _parse_yaml(text: str, where: str, *, strict: bool) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader if strict else yaml.SafeLoader)  # noqa: S506 - both are safe loaders
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        at = f"line {mark.line + 1}: " if mark is not None else ""
        raise UsageError(f"{where} is not YAML: {at}{problem}") from None


# ---------------------------------------------------------------- distributed's schema

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
def _dask_defaults() -> dict:
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


# ---------------------------------------------------------------- validation

def validate_profile(profile: Profile, mem_per_node: int | None = None) -> None:
    """Check every key against distributed's schema and the memory settings for sense.

    Threshold order is checked on what workers will use: the profile's thresholds, and Dask's
    defaults for those it leaves out. With `mem_per_node` (bytes), a fixed memory-limit hint
    must fit in the node's memory. Raises UsageError naming the key and the problem on one
    line."""
    _validate(profile, mem_per_node, [])


def _validate(profile: Profile, mem_per_node: int | None,
              layers_below: list[tuple[dict, str]]) -> None:
    _check_hints(profile.hints, mem_per_node)
    _check_tree(profile.distributed, _schema(), "distributed")
    _check_order([(_lookup(profile.distributed, "worker", "memory"), ""), *layers_below,
                  (_lookup(_dask_defaults(), "worker", "memory"), " (Dask's default)")])


def _check_hints(hints: Mapping, mem_per_node: int | None) -> None:
    for key, value in hints.items():
        path = f"dasklaunch.{key}"
        if key not in HINT_KEYS:
            raise UsageError(_unknown_key(path, key, HINT_KEYS, "dasklaunch's sizing hints"))
        if key == "layout" and value not in LAYOUTS:
            raise UsageError(f"{path}: {_show(value)} is not one of {', '.join(LAYOUTS)}")
        if key == "memory-fraction" and not (_is_number(value) and 0 < value <= 1):
            raise UsageError(f"{path}: {_show(value)} is not a fraction in (0, 1]"
                             f"{_percent_hint(value)}")
    if "memory-limit" in hints:
        if "memory-fraction" in hints:
            raise UsageError("dasklaunch.memory-fraction and dasklaunch.memory-limit are both "
                             "set; keep one")
        limit = _size("dasklaunch.memory-limit", hints["memory-limit"])
        if limit == 0:
            raise UsageError("dasklaunch.memory-limit: 0 would give workers no memory")
        if mem_per_node and limit > mem_per_node:
            raise UsageError(f"dasklaunch.memory-limit {format_bytes(limit)} is larger than the "
                             f"allocation's {format_bytes(mem_per_node)} per node")


def _check_tree(value: Any, schema: dict, path: str) -> None:
    props = schema.get("properties")
    if props is None:
        _check_leaf(value, schema, path)
        return
    if not isinstance(value, dict):
        raise UsageError(f"{path} must be a mapping, not {_show(value)}")
    seen: dict[str, str] = {}
    for key, sub in value.items():
        name = _schema_key(key, props)
        if name is None:
            raise UsageError(_unknown_key(f"{path}.{key}", str(key), props,
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


def _unknown_key(path: str, key: str, known: Iterable[str], where: str) -> str:
    close = difflib.get_close_matches(key.replace("_", "-"), list(known), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"unknown key {path} (not in {where}{hint})"


def _check_leaf(value: Any, schema: dict, path: str) -> None:
    if path in _FRACTIONS:
        _check_fraction(path, value)
        return
    if path in _SIZES and isinstance(value, str):
        _size(path, value)
    if not _matches(schema, value):
        raise UsageError(f"{path}: {_show(value)} is not {_expected(schema)}")


def _check_fraction(path: str, value: Any) -> None:
    if value is False:
        return
    if _is_number(value) and value == 0 and path.endswith(".terminate"):
        raise UsageError(f"{path}: 0 would kill every worker as soon as it starts; "
                         f"use false to never terminate")
    if not (_is_number(value) and 0 < value <= 1):
        raise UsageError(f"{path}: {_show(value)} is not a fraction in (0, 1] or false"
                         f"{_percent_hint(value)}")


def _percent_hint(value: Any) -> str:
    if _is_number(value) and 2 <= value <= 100:
        return f" (did you mean {value / 100:g}?)"
    return ""


def _check_order(layers: list[tuple[dict, str]]) -> None:
    """Thresholds must rise target <= spill <= pause <= terminate; `false` ones are skipped.
    `layers` are (memory section, origin note) from highest priority down."""
    present = []
    for name in THRESHOLDS:
        for section, origin in layers:
            key = _canonical(name, section)
            if key in section:
                value = section[key]
                if _is_number(value):
                    present.append((name, value, origin))
                break
    for index in range(len(present) - 1):
        (low, low_value, low_origin), (high, high_value, high_origin) = present[index:index + 2]
        if low_value > high_value:
            reason = _ORDER_REASONS.get((low, high), "thresholds must rise")
            raise UsageError(
                f"{_MEMORY}: {low} {low_value:g}{low_origin} is above {high} "
                f"{high_value:g}{high_origin}: {reason} (keep target <= spill <= pause <= "
                f"terminate)")


def _matches(schema: Mapping, value: Any) -> bool:
    if "oneOf" in schema:
        return any(_matches(option, value) for option in schema["oneOf"])
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        return False
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, kind) for kind in types):
            return False
    if _is_number(value):
        if "minimum" in schema and value < schema["minimum"]:
            return False
        if "maximum" in schema and value > schema["maximum"]:
            return False
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    # YAML false must not match 0, nor true match 1.
    return a == b and isinstance(a, bool) == isinstance(b, bool)


_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string",
               "integer": "an integer", "number": "a number", "boolean": "true or false",
               "null": "null"}


def _is_type(value: Any, kind: str) -> bool:
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return _is_number(value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    return True


def _expected(schema: Mapping) -> str:
    if "oneOf" in schema:
        return " or ".join(_expected(option) for option in schema["oneOf"])
    if "enum" in schema:
        return "one of " + ", ".join(_show(option) for option in schema["enum"])
    types = schema.get("type") or []
    types = [types] if isinstance(types, str) else list(types)
    text = " or ".join(_TYPE_NAMES.get(kind, kind) for kind in types) or "valid"
    bounds = [f">= {schema['minimum']:g}" if "minimum" in schema else "",
              f"> {schema['exclusiveMinimum']:g}" if "exclusiveMinimum" in schema else "",
              f"<= {schema['maximum']:g}" if "maximum" in schema else ""]
    bounds = [b for b in bounds if b]
    return f"{text} {' and '.join(bounds)}" if bounds else text


def _size(path: str, value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise UsageError(f"{path}: {_show(value)} is not a memory size (use e.g. 12GB, 12GiB "
                         f"or 12e9)")
    try:
        return parse_bytes(value)
    except UsageError as err:
        raise UsageError(f"{path}: {err}") from None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    """A value as the user would write it in YAML, on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=2**16).strip()
    text = text.removesuffix("...").strip()
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    for kind in ("array", "string", "boolean", "integer", "number", "null"):
        if _is_type(value, kind):
            return _TYPE_NAMES[kind]
    return type(value).__name__


def _canonical(key: str, section: Mapping) -> str:
    """The spelling of `key` already used in `section` (`_` or `-`), as Dask resolves it."""
    if key in section:
        return key
    alt = key.replace("_", "-") if "_" in key else key.replace("-", "_")
    return alt if alt in section else key


def _lookup(tree: Any, *keys: str) -> dict:
    for key in keys:
        if not isinstance(tree, dict):
            return {}
        tree = tree.get(_canonical(key, tree))
    return tree if isinstance(tree, dict) else {}


# ---------------------------------------------------------------- overrides (--set key=value)

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
        value = _parse_yaml(raw, f"--set {key}", strict=True)
        parts = key.split(".")
        if parts[0] == "dasklaunch":
            if len(parts) != 2:
                raise UsageError(f"--set {key}: sizing hints are "
                                 f"dasklaunch.<{'|'.join(HINT_KEYS)}>")
            hints[parts[1].replace("_", "-")] = value
            continue
        if parts[0] == "distributed":
            parts = parts[1:]
        if not parts or not all(parts):
            raise UsageError(f"--set {key}: not a config key (e.g. worker.memory.pause=0.85)")
        node = settings
        for depth, part in enumerate(parts[:-1]):
            name = _canonical(part, node)
            if not isinstance(node.get(name), dict):
                if name in node:
                    where = ".".join(["distributed", *parts[:depth + 1]])
                    raise UsageError(f"--set {key}: {where} is {_show(node[name])}, "
                                     f"not a mapping")
                node[name] = {}
            node = node[name]
        node[_canonical(parts[-1], node)] = value
    return replace(profile, hints=hints, distributed=settings)


# ---------------------------------------------------------------- rendering

def job_config_yaml(profile: Profile) -> str:
    """The distributed.yaml a job points DASK_CONFIG at: the profile's keys under
    `distributed:`, its description and reasons as comments. Dask reads every YAML file in the
    DASK_CONFIG directory and lets it win over ~/.config/dask, so these keys apply to this job's
    scheduler and workers, and user settings the profile does not mention still apply."""
    title = f": {profile.description}" if profile.description else ""
    lines = [f"# dasklaunch profile {profile.name}{title}"]
    lines += [f"#   {line}".rstrip() for line in profile.why.splitlines()]
    sizing = _sizing_text(profile)
    if sizing:
        lines.append(f"# sizing (applied by dasklaunch up): {sizing}")
    body = yaml.safe_dump({"distributed": profile.distributed}, sort_keys=False,
                          default_flow_style=False, width=100)
    return "\n".join(lines) + "\n" + body


def _sizing_text(profile: Profile) -> str:
    hints = profile_hints(profile)
    sizing = [f"layout {hints['layout']}" if hints["layout"] else "",
              f"memory-fraction {hints['memory_fraction']:g}"
              if hints["memory_fraction"] is not None else "",
              f"memory-limit {format_bytes(hints['memory_limit'])}"
              if hints["memory_limit"] is not None else ""]
    return ", ".join(item for item in sizing if item)


def show_profile(name_or_path: str) -> str:
    """`profile show`: the job config YAML of a valid profile."""
    profile = load_profile(name_or_path)
    validate_profile(profile)
    return job_config_yaml(profile)


def profile_hints(profile: Profile) -> dict:
    """Sizing hints as `up` uses them: layout ("per-node", "per-task" or None),
    memory_fraction (float or None) and memory_limit (bytes per worker or None).
    Raises UsageError when a hint is invalid."""
    hints = profile.hints
    _check_hints(hints, None)
    limit = hints.get("memory-limit")
    fraction = hints.get("memory-fraction")
    return {"layout": hints.get("layout"),
            "memory_fraction": float(fraction) if fraction is not None else None,
            "memory_limit": _size("dasklaunch.memory-limit", limit) if limit is not None
            else None}


def check_profile(name_or_path: str, *, mem_per_node: str | int | None = None,
                  environ: Mapping[str, str] | None = None) -> str:
    """`profile check`: validate, against the allocation's memory per node when known
    (`mem_per_node`, else SLURM_MEM_PER_NODE / SLURM_MEM_PER_CPU). Returns the report line."""
    profile = load_profile(name_or_path)
    node, source = None, None
    if mem_per_node is not None:
        node, source = _size("--mem-per-node", mem_per_node), "--mem-per-node"
    else:
        found = _slurm_memory(os.environ if environ is None else environ)
        if found:
            node, source = found
    validate_profile(profile, node)
    verdict = f"ok: profile {profile.name} ({profile.source}) is valid"
    if node:
        return f"{verdict} for {format_bytes(node)} per node ({source})"
    if "memory-limit" in profile.hints:
        return f"{verdict} (memory-limit not checked against a node: give --mem-per-node)"
    return verdict


# ---------------------------------------------------------------- sizing from the allocation

def memory_per_worker(mem_per_node: int, workers_per_node: int, fraction: float) -> int:
    """Bytes per worker process: the node's memory x fraction, shared by its workers."""
    if workers_per_node < 1:
        raise UsageError(f"workers per node must be at least 1, not {workers_per_node}")
    if not (_is_number(fraction) and 0 < fraction <= 1):
        raise UsageError(f"memory fraction {fraction!r} is not in (0, 1]")
    if mem_per_node <= 0:
        raise UsageError(f"memory per node must be positive, not {mem_per_node}")
    return int(mem_per_node * fraction) // workers_per_node


@dataclass(frozen=True)
class WorkerMemory:
    limit: int                 # bytes per worker process (--memory-limit)
    workers_per_node: int
    mem_per_node: int
    source: str                # where mem_per_node came from
    explanation: str           # e.g. "1.95 GiB (SLURM_MEM_PER_NODE=2000) x 0.9 / 2 workers"
    warning: str | None = None  # set when the node's workers may use more than it has


def size_workers(hints: Mapping, mem_per_node: int, source: str,
                 workers_per_node: int) -> WorkerMemory:
    """Memory per worker from `profile_hints(...)` (a fixed memory-limit, or memory-fraction,
    default 1.0) and the node's memory, with the arithmetic spelled out for --dry-run/status."""
    node = f"{format_bytes(mem_per_node)} ({source})"
    if hints.get("memory_limit") is not None:
        limit = int(hints["memory_limit"])
        explanation = f"{format_bytes(limit)} per worker (profile memory-limit)"
    else:
        fraction = hints.get("memory_fraction") or 1.0
        limit = memory_per_worker(mem_per_node, workers_per_node, fraction)
        explanation = (f"{node} x {fraction:g} / {workers_per_node} workers = "
                       f"{format_bytes(limit)} per worker")
    warning = None
    if limit * workers_per_node > mem_per_node:
        warning = (f"{workers_per_node} workers x {format_bytes(limit)} = "
                   f"{format_bytes(limit * workers_per_node)} exceeds the {node} this job may "
                   f"use on a node: the kernel may kill workers before Dask's thresholds act")
    return WorkerMemory(limit=limit, workers_per_node=workers_per_node, mem_per_node=mem_per_node,
                        source=source, explanation=explanation, warning=warning)


def _slurm_memory(environ: Mapping[str, str]) -> tuple[int, str] | None:
    per_node = environ.get("SLURM_MEM_PER_NODE", "").strip()
    # --mem=0 means "all of the node's memory": the cgroup or the hardware tells how much.
    if per_node and per_node != "0":
        return _megabytes("SLURM_MEM_PER_NODE", per_node), f"SLURM_MEM_PER_NODE={per_node}"
    per_cpu = environ.get("SLURM_MEM_PER_CPU", "").strip()
    cpus = environ.get("SLURM_CPUS_ON_NODE", "").strip()
    if per_cpu and per_cpu != "0" and cpus:
        if not cpus.isdigit():
            raise UsageError(f"SLURM_CPUS_ON_NODE={cpus!r} is not a number")
        return (_megabytes("SLURM_MEM_PER_CPU", per_cpu) * int(cpus),
                f"SLURM_MEM_PER_CPU={per_cpu} x SLURM_CPUS_ON_NODE={cpus}")
    return None


def _megabytes(name: str, value: str) -> int:
    # Slurm's "MB" are mebibytes.
    if not value.isdigit():
        raise UsageError(f"{name}={value!r} is not a number of megabytes")
    return int(value) * 2**20


def node_memory(environ: Mapping[str, str] | None = None, *, proc_cgroup: str = "/proc/self/cgroup",
                cgroup_root: str = "/sys/fs/cgroup", physical: int | None = None
                ) -> tuple[int, str]:
    """The memory this job may use on this node, in bytes, and where that number came from:
    SLURM_MEM_PER_NODE, else SLURM_MEM_PER_CPU x SLURM_CPUS_ON_NODE, else the tightest cgroup
    limit above this process when below physical memory, else physical memory.

    Dask's `memory_limit="auto"` reads only the top-level cgroup file, which inside a Slurm step
    is usually the whole host; the job's limit sits on an ancestor of the step's cgroup."""
    found = _slurm_memory(os.environ if environ is None else environ)
    if found:
        return found
    if physical is None:
        import psutil

        physical = psutil.virtual_memory().total
    limit = cgroup_memory_limit(proc_cgroup=proc_cgroup, cgroup_root=cgroup_root)
    if limit is not None and limit[0] < physical:
        return limit
    return physical, "physical memory"


def cgroup_memory_limit(*, proc_cgroup: str = "/proc/self/cgroup",
                        cgroup_root: str = "/sys/fs/cgroup") -> tuple[int, str] | None:
    """The smallest memory limit on this process's cgroup or any ancestor (v2 memory.max, v1
    memory.limit_in_bytes), with the file it came from; None when there is none."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    root = Path(cgroup_root)
    candidates = []
    for line in lines:
        hier, _, rest = line.partition(":")
        controllers, _, cgroup = rest.partition(":")
        if hier == "0" and controllers == "":
            candidates += _ancestors(root, cgroup, "memory.max")
        elif "memory" in controllers.split(","):
            candidates += _ancestors(root / "memory", cgroup, "memory.limit_in_bytes")
    best = None
    for path in candidates:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (best is None or int(text) < best[0]):
            best = (int(text), f"cgroup {path}")
    return best


def _ancestors(mount: Path, cgroup: str, filename: str) -> list[Path]:
    # Inside a cgroup namespace the listed path may not exist under the mount; the files that
    # do exist (at least the mount's own) still bound this process.
    parts = [p for p in cgroup.strip().split("/") if p and p not in (".", "..")]
    return [mount.joinpath(*parts[:depth], filename) for depth in range(len(parts), -1, -1)]


# ---------------------------------------------------------------- writing ~/.config/dask

_MISSING = object()


@dataclass(frozen=True)
class Change:
    key: str        # dotted, as spelled in the resulting file
    old: Any        # _MISSING when the key is new
    new: Any

    @property
    def added(self) -> bool:
        return self.old is _MISSING


@dataclass(frozen=True)
class WriteResult:
    path: Path
    profile: str
    changes: tuple[Change, ...]
    written: bool
    backup: Path | None = None
    warnings: tuple[str, ...] = ()

    def diff(self) -> list[str]:
        """The changes as diff lines: `-key: old` / `+key: new`, one key per line."""
        if not self.changes:
            return []
        lines = [f"--- {self.path}", f"+++ {self.path} (profile {self.profile})"]
        for change in self.changes:
            if not change.added:
                lines.append(f"-{change.key}: {_show(change.old)}")
            lines.append(f"+{change.key}: {_show(change.new)}")
        return lines

    def summary(self) -> str:
        if not self.written:
            return f"{self.path} already has profile {self.profile}'s settings; nothing written"
        saved = f"; previous version kept as {self.backup}" if self.backup else ""
        return f"wrote profile {self.profile} to {self.path}{saved}"


def merge_config(existing: Mapping, updates: Mapping) -> tuple[dict, list[Change]]:
    """Deep-merge `updates` into a copy of `existing`. Keys only in `existing` stay; keys in
    both keep the spelling (`_` or `-`) already in the file, as Dask would resolve them."""
    merged = copy.deepcopy(dict(existing))
    changes: list[Change] = []
    _merge_into(merged, updates, "", changes)
    return merged, changes


def _merge_into(target: dict, updates: Mapping, prefix: str, changes: list[Change]) -> None:
    for key, new in updates.items():
        name = _canonical(str(key), target)
        path = f"{prefix}{name}"
        old = target.get(name, _MISSING)
        if isinstance(new, dict) and isinstance(old, dict):
            _merge_into(old, new, f"{path}.", changes)
        elif isinstance(new, dict) and new and old is _MISSING:
            target[name] = {}
            _merge_into(target[name], new, f"{path}.", changes)
        elif old is _MISSING or not _same(old, new):
            changes.append(Change(path, old, copy.deepcopy(new)))
            target[name] = copy.deepcopy(new)


def write_profile(name_or_path: str, *, dest: str | Path | None = None,
                  sets: Iterable[str] = (), force: bool = False,
                  environ: Mapping[str, str] | None = None) -> WriteResult:
    """Merge a profile's distributed keys into a Dask config file (default
    ~/.config/dask/distributed.yaml). Unrelated keys are kept; the previous file is copied to
    a timestamped backup first; changing a memory key the file already sets needs `force`."""
    env = os.environ if environ is None else environ
    sets = list(sets)
    for assignment in sets:
        key = assignment.partition("=")[0].strip()
        if key.startswith("dasklaunch."):
            raise UsageError(f"--set {key}: sizing hints are used by `dasklaunch up --profile`, "
                             f"not by distributed.yaml")
    profile = apply_overrides(load_profile(name_or_path), sets)

    path = Path(dest).expanduser() if dest is not None else default_user_config()
    if path.is_dir():
        path = path / "distributed.yaml"
    if path.is_symlink():
        # Write through a symlinked config (dotfile managers) instead of replacing the link.
        path = path.resolve()

    original = None
    existing: Any = {}
    if path.exists():
        try:
            original = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}"
                             ) from None
        existing = _parse_yaml(original, str(path), strict=False)
        if existing is None:
            existing = {}
        if not isinstance(existing, dict):
            raise UsageError(f"cannot merge into {path}: it is not a YAML mapping")

    # The thresholds that count are the merged file's: the profile's over the file's. A profile
    # that sets none leaves the file's own thresholds alone, in whatever order they are.
    own = _lookup(profile.distributed, "worker", "memory")
    sets_thresholds = any(_canonical(name, own) in own for name in THRESHOLDS)
    below = _lookup(existing, "distributed", "worker", "memory") if sets_thresholds else {}
    _validate(profile, None, [(below, f" (in {path})")])
    merged, changes = merge_config(existing, {"distributed": profile.distributed})
    memory_prefix = _canonical_memory_prefix(merged)
    blocked = [c for c in changes if not c.added and c.key.startswith(memory_prefix)]
    if blocked and not force:
        listed = ", ".join(f"{c.key.removeprefix(memory_prefix)} {_show(c.old)} -> "
                           f"{_show(c.new)}" for c in blocked)
        raise UsageError(f"{path} already sets memory keys that profile {profile.name} would "
                         f"change ({listed}); rerun with --force to replace them")
    warnings = _write_warnings(path, changes, env, original)
    sizing = _sizing_text(profile)
    if sizing:
        warnings.append(f"profile {profile.name}'s sizing ({sizing}) is not part of "
                        f"distributed.yaml; it applies with `dasklaunch up --profile "
                        f"{name_or_path}`")
    if not changes:
        return WriteResult(path, profile.name, (), written=False, warnings=tuple(warnings))

    backup = _backup(path) if original is not None else None
    header = (f"# Merged with dasklaunch profile {profile.name} on "
              f"{time.strftime('%Y-%m-%d %H:%M:%S')}"
              + (f"; previous version: {backup.name}" if backup else "") + "\n")
    body = yaml.safe_dump(merged, sort_keys=False, default_flow_style=False, width=100)
    _atomic_write(path, header + body)
    return WriteResult(path, profile.name, tuple(changes), written=True, backup=backup,
                       warnings=tuple(warnings))


def _canonical_memory_prefix(merged: Mapping) -> str:
    parts, node = [], merged
    for key in ("distributed", "worker", "memory"):
        name = _canonical(key, node) if isinstance(node, dict) else key
        parts.append(name)
        node = node.get(name, {}) if isinstance(node, dict) else {}
    return ".".join(parts) + "."


def _write_warnings(path: Path, changes: list[Change], env: Mapping[str, str],
                    original: str | None) -> list[str]:
    warnings = []
    if env.get("DASK_CONFIG") and path == default_user_config():
        warnings.append(f"DASK_CONFIG={env['DASK_CONFIG']} is set: Dask reads it after "
                        f"{path.parent} and its keys win over this file")
    changed = {_normalise(c.key) for c in changes}
    for name in sorted(env):
        if not name.startswith("DASK_") or name.startswith("DASK_INTERNAL"):
            continue
        key = _normalise(".".join(name[5:].lower().split("__")))
        if any(c == key or c.startswith(key + ".") for c in changed):
            warnings.append(f"{name} is set and overrides {key} from any config file")
    if original and any(line.lstrip().startswith("#") and "dasklaunch profile" not in line
                        for line in original.splitlines()):
        warnings.append(f"comments in {path} are not kept (the backup has them)")
    return warnings


def _normalise(key: str) -> str:
    return key.replace("_", "-")


def _backup(path: Path) -> Path:
    # `.bak` last: Dask loads every *.yaml/*.yml/*.json in ~/.config/dask, backups included.
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = path.read_bytes()
    for attempt in range(100):
        suffix = f"-{attempt}" if attempt else ""
        candidate = path.with_name(f"{path.name}.{stamp}{suffix}.bak")
        try:
            # Same permissions as the original from the first byte: it may hold credentials.
            fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                         path.stat().st_mode & 0o777)
        except FileExistsError:
            continue
        except OSError as err:
            raise UsageError(f"cannot back up {path}: {err.strerror}") from None
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return candidate
    raise UsageError(f"cannot back up {path}: too many backups named {path.name}.{stamp}*.bak")


def _atomic_write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a user's config file, not job state: keep its mode, or give a new one the umask's
        mode = path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask()
        atomic_write(path, text, mode)
    except OSError as err:
        raise UsageError(f"cannot write {path}: {err.strerror}") from None
    except StateDirError as err:
        raise UsageError(str(err)) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask



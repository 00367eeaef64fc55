"""Profiles as Dask config files.

A profile reaches Dask in one of two ways: `job_config_yaml` renders the file a job points
DASK_CONFIG at (scheduler and workers of that job only), and `write_profile` merges it into the
user's ~/.config/dask/distributed.yaml (every later Dask process of that user).
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..domain.units import format_bytes
from ..errors import StateDirError, UsageError
from ..runtime.state import atomic_write
from .load import Profile, apply_overrides, load_profile, parse_yaml, profile_hints
from .schema import THRESHOLDS, validate_layers, validate_profile
from .values import canonical_key, lookup, same_value, show_value

# Where a job's rendered profile goes inside its state dir; DASK_CONFIG points at the directory.
JOB_CONFIG_FILE = "distributed.yaml"


def default_user_config() -> Path:
    """The user's Dask config file. Not $DASK_CONFIG: that is a per-job or per-shell override,
    and writing a profile there would vanish with it."""
    return Path.home() / ".config" / "dask" / "distributed.yaml"


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
                lines.append(f"-{change.key}: {show_value(change.old)}")
            lines.append(f"+{change.key}: {show_value(change.new)}")
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
        name = canonical_key(str(key), target)
        path = f"{prefix}{name}"
        old = target.get(name, _MISSING)
        if isinstance(new, dict) and isinstance(old, dict):
            _merge_into(old, new, f"{path}.", changes)
        elif isinstance(new, dict) and new and old is _MISSING:
            target[name] = {}
            _merge_into(target[name], new, f"{path}.", changes)
        elif old is _MISSING or not same_value(old, new):
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
        existing = parse_yaml(original, str(path), strict=False)
        if existing is None:
            existing = {}
        if not isinstance(existing, dict):
            raise UsageError(f"cannot merge into {path}: it is not a YAML mapping")

    # The thresholds that count are the merged file's: the profile's over the file's. A profile
    # that sets none leaves the file's own thresholds alone, in whatever order they are.
    own = lookup(profile.distributed, "worker", "memory")
    sets_thresholds = any(canonical_key(name, own) in own for name in THRESHOLDS)
    below = lookup(existing, "distributed", "worker", "memory") if sets_thresholds else {}
    validate_layers(profile, None, [(below, f" (in {path})")])
    merged, changes = merge_config(existing, {"distributed": profile.distributed})
    memory_prefix = _canonical_memory_prefix(merged)
    blocked = [c for c in changes if not c.added and c.key.startswith(memory_prefix)]
    if blocked and not force:
        listed = ", ".join(f"{c.key.removeprefix(memory_prefix)} {show_value(c.old)} -> "
                           f"{show_value(c.new)}" for c in blocked)
        raise UsageError(f"{path} already sets memory keys that profile {profile.name} would "
                         f"change ({listed}); rerun with --force to replace them")
    warnings = _write_warnings(path, changes, env, original)
    sizing = sizing_text(profile)
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
        name = canonical_key(key, node) if isinstance(node, dict) else key
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


def job_config_yaml(profile: Profile) -> str:
    """The distributed.yaml a job points DASK_CONFIG at: the profile's keys under
    `distributed:`, its description and reasons as comments. Dask reads every YAML file in the
    DASK_CONFIG directory and lets it win over ~/.config/dask, so these keys apply to this job's
    scheduler and workers, and user settings the profile does not mention still apply."""
    title = f": {profile.description}" if profile.description else ""
    lines = [f"# dasklaunch profile {profile.name}{title}"]
    lines += [f"#   {line}".rstrip() for line in profile.why.splitlines()]
    sizing = sizing_text(profile)
    if sizing:
        lines.append(f"# sizing (applied by dasklaunch up): {sizing}")
    body = yaml.safe_dump({"distributed": profile.distributed}, sort_keys=False,
                          default_flow_style=False, width=100)
    return "\n".join(lines) + "\n" + body


def sizing_text(profile: Profile) -> str:
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

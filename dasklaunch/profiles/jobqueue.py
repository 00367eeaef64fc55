"""dask-jobqueue's `jobqueue.slurm` settings (the user's Dask config) as defaults for `up` and
`batch`. Reading them never imports dask_jobqueue (see ops/scale_out.py for why)."""

from __future__ import annotations

import os
import site
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from ..domain.settings import UpOptions
from ..domain.units import parse_bytes

# up option <- how it is derived from jobqueue.slurm
SOURCES = ("interface", "nthreads", "nworkers", "per_node", "memory_limit", "local_directory",
           "worker_args")


def _dask_config_paths(environ: dict[str, str]) -> list[str]:
    # the same places, in the same way, as dask.config._get_paths
    paths = [environ.get("DASK_ROOT_CONFIG", "/etc/dask"), os.path.join(sys.prefix, "etc", "dask"),
             *[os.path.join(prefix, "etc", "dask") for prefix in site.PREFIXES],
             os.path.join(os.path.expanduser("~"), ".config", "dask")]
    if "DASK_CONFIG" in environ:
        paths.append(environ["DASK_CONFIG"])
    return paths


def may_set_jobqueue(environ: dict[str, str] | None = None) -> bool:
    """False only when no Dask config file or variable can hold a jobqueue section.

    `import dask` costs a quarter of a second before `up` can start anything. Most users
    have no jobqueue config, or only the all-commented jobqueue.yaml that importing
    dask_jobqueue once leaves in ~/.config/dask; parsing a few small files settles that.
    Anything unreadable or unusual answers True and leaves the decision to dask.config."""
    env = os.environ if environ is None else environ
    if "DASK_INTERNAL_INHERIT_CONFIG" in env:
        return True
    if any(name.upper().startswith("DASK_JOBQUEUE") for name in env):
        return True
    for path in map(Path, _dask_config_paths(env)):
        try:
            if path.is_dir():
                files = [f for f in path.iterdir()
                         if f.suffix.lower() in (".json", ".yaml", ".yml")]
            elif path.exists():
                files = [path]
            else:
                continue
            if any(_holds_jobqueue(f.read_bytes()) for f in files):
                return True
        except OSError:
            return True
    return False


def _holds_jobqueue(text: bytes) -> bool:
    if b"jobqueue" not in text.lower():
        return False
    import yaml

    try:
        data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        return True
    if data is None:
        return False
    return not isinstance(data, Mapping) or any(
        not isinstance(key, str) or key.lower() == "jobqueue" for key in data)


def user_jobqueue_slurm() -> dict:
    """The `jobqueue.slurm` section of the user's Dask config (files and DASK_* variables),
    without dask_jobqueue's own defaults: only what the user set."""
    if not may_set_jobqueue():
        return {}
    import dask.config

    section = dask.config.get("jobqueue.slurm", default={}) or {}
    return {k.replace("_", "-"): v for k, v in section.items() if v not in (None, [], "")}


def job_script_prologue() -> list[str]:
    """jobqueue.slurm.job-script-prologue from the user's Dask config: shell lines, in order."""
    lines = user_jobqueue_slurm().get("job-script-prologue") or []
    if isinstance(lines, str):
        lines = [lines]
    return [str(line) for line in lines]


def apply_jobqueue_defaults(opts: UpOptions, explicit: frozenset[str] | set[str],
                            section: dict | None = None) -> tuple[UpOptions, dict[str, str]]:
    """Fill options the user did not give from jobqueue.slurm. Returns the options and where
    each of SOURCES came from ("command line", "jobqueue.yaml: key=value" or "default").

    As in dask-jobqueue, `cores`, `processes` and `memory` describe one job, and a node of the
    allocation plays that job's part: `processes` workers per node (one `dask worker
    --nworkers processes` per node), each with cores / processes threads and memory /
    processes bytes."""
    section = user_jobqueue_slurm() if section is None else section
    values: dict = {}
    origin: dict[str, str] = {}
    processes = int(section.get("processes") or 1)
    split = f" / processes={processes}" if section.get("processes") else ""
    if section.get("interface"):
        values["interface"] = (str(section["interface"]), f"interface={section['interface']}")
    if section.get("processes") and not {"per_node", "nworkers"} & set(explicit):
        values["nworkers"] = (processes, f"processes={processes}")
        values["per_node"] = (True, f"processes={processes} per job, a job being a node")
    if section.get("cores"):
        values["nthreads"] = (max(1, int(section["cores"]) // processes),
                              f"cores={section['cores']}{split}")
    if section.get("memory"):
        per_worker = parse_bytes(section["memory"]) // processes
        values["memory_limit"] = (str(per_worker), f"memory={section['memory']}{split}")
    if section.get("local-directory"):
        values["local_directory"] = (str(section["local-directory"]),
                                     f"local-directory={section['local-directory']}")
    if section.get("worker-extra-args"):
        values["worker_args"] = (tuple(str(a) for a in section["worker-extra-args"]),
                                 "worker-extra-args")
    updates = {}
    for name in SOURCES:
        if name in explicit:
            origin[name] = "command line"
        elif name in values:
            updates[name], key = values[name]
            origin[name] = f"jobqueue.yaml: {key}"
        else:
            origin[name] = "default"
    return replace(opts, **updates), origin

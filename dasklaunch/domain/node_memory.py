"""How much memory a job may use on a node: SLURM_MEM_*, the cgroup, or the hardware.

Dask's `memory_limit="auto"` reads only the top-level cgroup file, which inside a Slurm step is
usually the whole host; the job's limit sits on an ancestor of the step's cgroup, or in the
SLURM_MEM_* variables, and this module is the one place that reads them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import UsageError
from .units import slurm_megabytes


def slurm_memory(environ: Mapping[str, str], cpus_on_node: int | None = None
                 ) -> tuple[int, str] | None:
    """Memory per node from SLURM_MEM_PER_NODE, else SLURM_MEM_PER_CPU x the node's CPUs
    (`cpus_on_node`, else SLURM_CPUS_ON_NODE); None when neither is set. `--mem=0` means "the
    whole node": it gives None too, so the cgroup or the job record decides."""
    per_node = environ.get("SLURM_MEM_PER_NODE", "").strip()
    if per_node and per_node != "0":
        return slurm_megabytes("SLURM_MEM_PER_NODE", per_node), f"SLURM_MEM_PER_NODE={per_node}"
    per_cpu = environ.get("SLURM_MEM_PER_CPU", "").strip()
    if not per_cpu or per_cpu == "0":
        return None
    if cpus_on_node is not None:
        return (slurm_megabytes("SLURM_MEM_PER_CPU", per_cpu) * cpus_on_node,
                f"SLURM_MEM_PER_CPU={per_cpu} x {cpus_on_node} CPUs")
    cpus = environ.get("SLURM_CPUS_ON_NODE", "").strip()
    if not cpus:
        return None
    if not cpus.isdigit():
        raise UsageError(f"SLURM_CPUS_ON_NODE={cpus!r} is not a number")
    return (slurm_megabytes("SLURM_MEM_PER_CPU", per_cpu) * int(cpus),
            f"SLURM_MEM_PER_CPU={per_cpu} x SLURM_CPUS_ON_NODE={cpus}")


def node_memory(environ: Mapping[str, str] | None = None, *, proc_cgroup: str = "/proc/self/cgroup",
                cgroup_root: str = "/sys/fs/cgroup", physical: int | None = None
                ) -> tuple[int, str]:
    """The memory this job may use on this node, in bytes, and where that number came from:
    SLURM_MEM_PER_NODE, else SLURM_MEM_PER_CPU x SLURM_CPUS_ON_NODE, else the tightest cgroup
    limit above this process when below physical memory, else physical memory."""
    found = slurm_memory(os.environ if environ is None else environ)
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

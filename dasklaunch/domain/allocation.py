"""What the job gives us: nodes, tasks, CPUs and memory, from SLURM_* or the local machine."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

from ..errors import NoAllocationError, UsageError
from ..slurm.commands import parse_job_memory
from .node_memory import node_memory, slurm_memory


@dataclass(frozen=True)
class Allocation:
    job_id: str
    nodes: tuple[str, ...]
    tasks_per_node: tuple[int, ...]
    cpus_per_node: tuple[int, ...]
    cpus_per_task: int | None = None
    mem_per_node: int | None = None  # bytes
    submit_host: str | None = None
    mem_source: str = "unknown"

    @property
    def nnodes(self) -> int:
        return len(self.nodes)

    @property
    def ntasks(self) -> int:
        return sum(self.tasks_per_node)

    def to_dict(self) -> dict:
        return {
            "job_id": self.job_id, "nodes": list(self.nodes),
            "tasks_per_node": list(self.tasks_per_node), "cpus_per_node": list(self.cpus_per_node),
            "cpus_per_task": self.cpus_per_task, "mem_per_node": self.mem_per_node,
            "mem_source": self.mem_source,
        }


_RANGE = re.compile(r"^(\d+)-(\d+)$")


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand Slurm host lists such as `nid[00012-00015,00020],login1` (zero padding kept)."""
    hosts: list[str] = []
    for group in _split_top_level(nodelist):
        hosts.extend(_expand_group(group))
    return hosts


def _split_top_level(text: str) -> list[str]:
    parts, depth, current = [], 0, []
    for char in text:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth != 0:
        raise UsageError(f"malformed Slurm node list: {text!r}")
    if current:
        parts.append("".join(current))
    return [p for p in (part.strip() for part in parts) if p]


def _expand_group(group: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", group)
    if not match:
        return [group]
    prefix, suffix = group[: match.start()], group[match.end():]
    expanded = []
    for item in match.group(1).split(","):
        bounds = _RANGE.match(item)
        if bounds:
            low, high = bounds.groups()
            width = len(low)
            numbers = [str(n).zfill(width) for n in range(int(low), int(high) + 1)]
        elif item.isdigit():
            numbers = [item]
        else:
            raise UsageError(f"malformed Slurm node list: {group!r}")
        for number in numbers:
            expanded.extend(_expand_group(prefix + number + suffix))
    return expanded


def expand_counts(spec: str) -> list[int]:
    """Expand Slurm count lists: `2(x3),1` -> [2, 2, 2, 1]."""
    counts: list[int] = []
    for item in spec.split(","):
        item = item.strip()
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item)
        if not match:
            raise UsageError(f"malformed Slurm count list: {spec!r}")
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def from_slurm_env(env: dict[str, str], hostnames=None, job_record=None) -> Allocation:
    """Build the allocation from SLURM_* variables.

    `hostnames` expands a node list (scontrol show hostnames); `job_record` returns the job's
    `scontrol show job -o` line, asked only when no memory variable is set."""
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if not job_id:
        raise NoAllocationError("no Slurm allocation: SLURM_JOB_ID is not set "
                                "(run inside salloc/sbatch, or use --backend local)")
    nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST") or ""
    nodes = tuple((hostnames or expand_nodelist)(nodelist)) if nodelist else ()
    if not nodes:
        raise NoAllocationError(f"job {job_id}: SLURM_JOB_NODELIST is empty")
    nnodes = len(nodes)
    cpus = _per_node(env.get("SLURM_JOB_CPUS_PER_NODE"), nnodes,
                     fallback=int(env.get("SLURM_CPUS_ON_NODE", "1")))
    cpus_per_task = int(env["SLURM_CPUS_PER_TASK"]) if env.get("SLURM_CPUS_PER_TASK") else None
    if env.get("SLURM_TASKS_PER_NODE"):
        tasks = _per_node(env["SLURM_TASKS_PER_NODE"], nnodes, fallback=1)
    elif env.get("SLURM_NTASKS"):
        tasks = _spread(int(env["SLURM_NTASKS"]), nnodes)
    else:
        tasks = tuple(1 for _ in nodes)
    mem, source = slurm_memory(env, cpus[0]) or (None, "unknown")
    if mem is None and job_record is not None:
        mem = parse_job_memory(job_record(job_id), cpus[0])
        source = "the job record (scontrol show job)"
    return Allocation(job_id=job_id, nodes=nodes, tasks_per_node=tasks, cpus_per_node=cpus,
                      cpus_per_task=cpus_per_task, mem_per_node=mem,
                      submit_host=env.get("SLURM_SUBMIT_HOST"), mem_source=source)


def _per_node(spec: str | None, nnodes: int, fallback: int) -> tuple[int, ...]:
    if not spec:
        return tuple(fallback for _ in range(nnodes))
    counts = expand_counts(spec)
    if len(counts) != nnodes:
        raise UsageError(f"Slurm count list {spec!r} does not match {nnodes} nodes")
    return tuple(counts)


def _spread(ntasks: int, nnodes: int) -> tuple[int, ...]:
    base, extra = divmod(ntasks, nnodes)
    return tuple(base + (1 if i < extra else 0) for i in range(nnodes))


def local_cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def local_allocation(ntasks: int | None = None) -> Allocation:
    """The machine we run on, shaped like a one-node allocation of `ntasks` tasks."""
    cpus = local_cpu_count()
    tasks = cpus if ntasks is None else ntasks
    if tasks < 1:
        raise UsageError(f"--local-tasks must be at least 1, not {tasks}")
    host = socket.gethostname()
    memory, source = node_memory({})
    return Allocation(job_id=f"local-{host}", nodes=(host,), tasks_per_node=(tasks,),
                      cpus_per_node=(cpus,), mem_per_node=memory, submit_host=host,
                      mem_source=source)

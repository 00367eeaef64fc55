"""What the job gives us: nodes, tasks, CPUs, GPUs and memory, from SLURM_* or the local
machine. A heterogeneous job's components are laid end to end, each node tagged with its
component (`het_groups`)."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

from ..errors import NoAllocationError, UsageError
from ..slurm.commands import parse_job_memory
from .gpus import slurm_gpus_per_node
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
    gpus_per_node: tuple[int, ...] = ()          # empty: no GPUs anywhere
    het_groups: tuple[int, ...] = ()             # per node: its component; empty: not het
    gpu_tokens: tuple[str, ...] = ()             # local backend: the GPUs found here

    @property
    def nnodes(self) -> int:
        return len(self.nodes)

    def gpus_on(self, index: int) -> int:
        return self.gpus_per_node[index] if self.gpus_per_node else 0

    @property
    def ntasks(self) -> int:
        return sum(self.tasks_per_node)

    def to_dict(self) -> dict:
        return {
            "job_id": self.job_id, "nodes": list(self.nodes),
            "tasks_per_node": list(self.tasks_per_node), "cpus_per_node": list(self.cpus_per_node),
            "cpus_per_task": self.cpus_per_task, "mem_per_node": self.mem_per_node,
            "mem_source": self.mem_source, "gpus_per_node": list(self.gpus_per_node),
            "het_groups": list(self.het_groups), "gpu_tokens": list(self.gpu_tokens),
        }


_RANGE = re.compile(r"^(\d+)-(\d+)$")


def expand_nodelist(nodelist: str) -> list[str]:
    """Expand Slurm host lists such as `nid[00012-00015,00020],login1` (zero padding kept)."""
    hosts: list[str] = []
    for group in _split_top_level(nodelist):
        hosts.extend(_expand_group(group))
    return hosts


def _split_top_level(text: str) -> list[str]:
    try:
        return split_top_level(text)
    except ValueError:
        raise UsageError(f"malformed Slurm node list: {text!r}") from None


def split_top_level(text: str) -> list[str]:
    """`text` split on the commas outside Slurm host-list brackets (`nid[01,03-05],login1`)
    and outside quotes; ValueError for unbalanced brackets or quotes."""
    parts, current, depth, quote = [], [], 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    if quote or depth:
        raise ValueError(f"unbalanced {'quote' if quote else 'brackets'}")
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
    het_size = int(env.get("SLURM_HET_SIZE") or env.get("SLURM_PACK_SIZE") or 0)
    groups = list(range(het_size)) if het_size > 1 else [None]
    parts = [_component(env, job_id, group, hostnames) for group in groups]
    nodes = tuple(n for part in parts for n in part["nodes"])
    cpus = tuple(c for part in parts for c in part["cpus"])
    cpus_per_task = int(env["SLURM_CPUS_PER_TASK"]) if env.get("SLURM_CPUS_PER_TASK") else None
    mem, source = slurm_memory(env, cpus[0]) or (None, "unknown")
    if mem is None and job_record is not None:
        mem = parse_job_memory(job_record(job_id), cpus[0])
        source = "the job record (scontrol show job)"
    gpus = tuple(g for part in parts for g in part["gpus"])
    return Allocation(job_id=job_id, nodes=nodes,
                      tasks_per_node=tuple(t for part in parts for t in part["tasks"]),
                      cpus_per_node=cpus, cpus_per_task=cpus_per_task, mem_per_node=mem,
                      submit_host=env.get("SLURM_SUBMIT_HOST"), mem_source=source,
                      gpus_per_node=gpus if any(gpus) else (),
                      het_groups=tuple(g for part in parts for g in part["group"])
                      if het_size > 1 else ())


def _component(env: dict[str, str], job_id: str, group: int | None, hostnames) -> dict:
    """Nodes, tasks, CPUs and GPUs per node of the job, or of its heterogeneous component."""
    def get(name: str) -> str | None:
        if group is None:
            return env.get(name)
        return env.get(f"{name}_HET_GROUP_{group}", env.get(f"{name}_PACK_GROUP_{group}"))

    nodelist = get("SLURM_JOB_NODELIST") or (get("SLURM_NODELIST") if group is None else None)
    nodes = tuple((hostnames or expand_nodelist)(nodelist)) if nodelist else ()
    where = f"job {job_id}" + ("" if group is None else f" component {group}")
    if not nodes:
        raise NoAllocationError(f"{where}: SLURM_JOB_NODELIST is empty")
    nnodes = len(nodes)
    cpus = _per_node(get("SLURM_JOB_CPUS_PER_NODE"), nnodes,
                     fallback=int(env.get("SLURM_CPUS_ON_NODE", "1")))
    if get("SLURM_TASKS_PER_NODE"):
        tasks = _per_node(get("SLURM_TASKS_PER_NODE"), nnodes, fallback=1)
    elif get("SLURM_NTASKS"):
        tasks = _spread(int(get("SLURM_NTASKS")), nnodes)
    else:
        tasks = tuple(1 for _ in nodes)
    return {"nodes": nodes, "cpus": cpus, "tasks": tasks, "group": (group,) * nnodes,
            "gpus": slurm_gpus_per_node(env, nnodes, group)}


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


def local_allocation(ntasks: int | None = None, gpu_tokens: tuple[str, ...] = ()
                     ) -> Allocation:
    """The machine we run on, shaped like a one-node allocation of `ntasks` tasks, with the
    GPUs found here (`gpu_tokens`)."""
    cpus = local_cpu_count()
    tasks = cpus if ntasks is None else ntasks
    if tasks < 1:
        raise UsageError(f"--local-tasks must be at least 1, not {tasks}")
    host = socket.gethostname()
    memory, source = node_memory({})
    return Allocation(job_id=f"local-{host}", nodes=(host,), tasks_per_node=(tasks,),
                      cpus_per_node=(cpus,), mem_per_node=memory, submit_host=host,
                      mem_source=source, gpus_per_node=(len(gpu_tokens),) if gpu_tokens else (),
                      gpu_tokens=tuple(gpu_tokens))

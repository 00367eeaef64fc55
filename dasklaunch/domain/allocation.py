"""What the job gives us: nodes, tasks, CPUs, GPUs and memory (read from Slurm's variables by
slurm/environment.py, or from the local machine here). A heterogeneous job's components are
laid end to end, each node tagged with its component (`het_groups`)."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass

from ..errors import UsageError
from .node_memory import node_memory


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

"""GPUs, vendor-neutral: which a node or task has, from Slurm's variables or the vendor's own.

Tokens are opaque strings (indices, `GPU-<uuid>`, `MIG-...`): a worker is pinned by giving it a
subset of the tokens in its vendor's variable, never by renumbering them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import UsageError

# vendor -> the variables that select its devices for a process (the first is the one set)
VENDOR_VARIABLES = {
    "nvidia": ("CUDA_VISIBLE_DEVICES",),
    "amd": ("ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES"),
    "intel": ("ZE_AFFINITY_MASK",),
}
# Where a task finds its GPUs: the vendor variables (Slurm sets CUDA_VISIBLE_DEVICES, and
# ROCR_VISIBLE_DEVICES / ZE_AFFINITY_MASK on such nodes), then Slurm's own lists.
_TOKEN_SOURCES = (("CUDA_VISIBLE_DEVICES", "nvidia"), ("ROCR_VISIBLE_DEVICES", "amd"),
                  ("HIP_VISIBLE_DEVICES", "amd"), ("ZE_AFFINITY_MASK", "intel"),
                  ("SLURM_STEP_GPUS", None), ("SLURM_JOB_GPUS", None))


@dataclass(frozen=True)
class VisibleGPUs:
    tokens: tuple[str, ...]
    vendor: str            # nvidia | amd | intel
    source: str            # the variable (or command) they came from

    def variables(self, subset: tuple[str, ...]) -> dict[str, str]:
        """The environment that shows a process only `subset` of these GPUs."""
        # "" hides every GPU from CUDA; ROCm and Level Zero read an empty list the same way
        value = ",".join(subset)
        env = {name: value for name in VENDOR_VARIABLES[self.vendor]}
        if self.vendor == "nvidia":
            # the order nvidia-smi and Slurm use; CUDA's default (fastest first) differs
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        return env


def parse_tokens(value: str) -> tuple[str, ...]:
    """`0,1`, `GPU-8c1c...,GPU-1f2a...`, `MIG-...`: comma-separated, order kept, blanks out.
    `NoDevFiles` (what Slurm sets when a step has no GPU) and `-1` mean none."""
    tokens = tuple(t.strip() for t in value.split(",") if t.strip())
    if tokens in (("NoDevFiles",), ("-1",)):
        return ()
    return tokens


def visible_gpus(env: Mapping[str, str], vendor: str | None = None) -> VisibleGPUs | None:
    """The GPUs this process may use, from its environment; None when it names none."""
    for name, source_vendor in _TOKEN_SOURCES:
        if name in env:
            tokens = parse_tokens(env[name])
            if not tokens:
                return None
            return VisibleGPUs(tokens, vendor or source_vendor or "nvidia", name)
    return None


def parse_nvidia_smi(output: str) -> tuple[str, ...]:
    """`nvidia-smi -L` lines (`GPU 0: NVIDIA H200 (UUID: GPU-...)`, with MIG lines below)
    -> indices."""
    return tuple(m.group(1) for m in re.finditer(r"^GPU (\d+):", output, re.MULTILINE))


def parse_rocm_smi(output: str) -> tuple[str, ...]:
    """`rocm-smi --showid` lines (`GPU[0] : Device ID: 0x...`) -> indices."""
    return tuple(dict.fromkeys(m.group(1) for m in re.finditer(r"^GPU\[(\d+)\]", output,
                                                                 re.MULTILINE)))


def _count(spec: str) -> int | None:
    """GPUs in a Slurm GPU count such as `2`, `gpu:2`, `a100:2`, `gpu:a100:2` or
    `gpu:a100:2(IDX:0-1)`; None when it is not one."""
    spec = spec.strip().split("(")[0]
    match = re.fullmatch(r"(?:[A-Za-z_][\w.-]*:)*(\d+)", spec)
    return int(match.group(1)) if match else None


def slurm_gpus_per_node(env: Mapping[str, str], nnodes: int, group: int | None = None
                        ) -> tuple[int, ...]:
    """GPUs on each node of the job (or of its heterogeneous component `group`), from
    SLURM_GPUS_ON_NODE, SLURM_GPUS_PER_NODE, SLURM_JOB_GPUS, or SLURM_GPUS_PER_TASK x tasks.
    Zeros when the job asked for none."""
    def get(name: str) -> str | None:
        if group is None:
            return env.get(name)
        return env.get(f"{name}_HET_GROUP_{group}", env.get(f"{name}_PACK_GROUP_{group}"))

    for name in ("SLURM_GPUS_PER_NODE", "SLURM_GPUS_ON_NODE"):
        value = get(name)
        if value:
            counts = [_count(part) for part in value.split(",")]
            if None in counts:
                raise UsageError(f"{name}={value!r} is not a GPU count")
            return (sum(counts),) * nnodes
    job_gpus = get("SLURM_JOB_GPUS")
    if job_gpus:
        return (len(parse_tokens(job_gpus)),) * nnodes
    per_task, tasks = get("SLURM_GPUS_PER_TASK"), get("SLURM_NTASKS_PER_NODE")
    if per_task and tasks and _count(per_task) is not None and tasks.isdigit():
        return (_count(per_task) * int(tasks),) * nnodes
    return (0,) * nnodes

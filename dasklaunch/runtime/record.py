"""The cluster record (`state.json`): what runs, typed. Every reader goes through this module.

The JSON shape is that of dasklaunch 0.1, so records written by it still load (unknown keys are
ignored, missing ones take their defaults), and tools that read state.json keep working.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..domain.settings import UpOptions
from . import proc


@dataclass
class Step:
    """One launched unit: the scheduler, or one generation of a worker pool."""

    role: str                 # "scheduler" or "workers"
    name: str                 # unique: the Slurm step name, also used for log names
    placement: str            # "first-node" | "here" | "tasks" | "per-node"
    ntasks: int
    nnodes: int
    command: list[str]        # the dask command each task runs
    argv: list[str] = field(default_factory=list)  # what was actually executed (srun ... cmd)
    log: str = ""
    env: dict[str, str] = field(default_factory=dict)  # extra environment for the tasks
    started: float = 0.0
    leader: dict | None = None        # ProcessId of srun / the first local task
    pgid: int | None = None
    task_pids: list[int] = field(default_factory=list)
    step_id: str | None = None        # JOB.STEP under Slurm, once known
    pool: str = "workers"             # the worker pool this step starts (workers steps)
    expected: int = 0                 # workers it starts (0: ntasks, as before pools)
    nodelist: str | None = None       # the pool's nodes, when not all of the job's
    het_group: int | None = None      # the component of a heterogeneous job it runs in
    gpus_per_node: int = 0            # GPUs each of its nodes gives it (Slurm steps ask)
    gpus_per_task: int = 0            # or each of its tasks (a pool with gpu-tasks=yes)
    cpus_per_task: int | None = None  # CPUs each task holds (Slurm steps ask)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Step:
        return cls(**_known(cls, data))

    @property
    def workers(self) -> int:
        return self.expected or self.ntasks

    @property
    def leader_id(self) -> proc.ProcessId | None:
        return proc.ProcessId.from_dict(self.leader) if self.leader else None


@dataclass
class ScaleOutJob:
    """A worker-only Slurm job submitted by `scale-out`."""

    job_id: str
    name: str
    script: str = ""
    cores: int = 1
    memory: int = 0
    processes: int = 1
    replaced_by: str | None = None       # --keep: the job submitted to take over before the end
    draining_since: float | None = None  # --keep: when it was told to drain (SIGTERM)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ScaleOutJob:
        return cls(**_known(cls, data))


@dataclass
class ClusterRecord:
    job_id: str
    backend: str
    status: str = "starting"         # starting | up | workers-down | down | failed
    options: UpOptions = field(default_factory=UpOptions)
    allocation: dict = field(default_factory=dict)
    expected_workers: int = 0
    restarts: int = 0
    generation: int = 1
    started: float = 0.0
    scheduler: Step | None = None
    pools: list[Step] = field(default_factory=list)
    submit_host: str | None = None
    client_env: dict[str, str] = field(default_factory=dict)
    memory: dict = field(default_factory=dict)   # {"per_worker": ..., "how": ...}
    profile: str | None = None
    # where each option that is not dasklaunch's default came from ("profile seed: ...")
    sources: dict[str, str] = field(default_factory=dict)
    address: str | None = None
    dashboard_port: int | None = None
    last_restart: dict | None = None             # {"time": ..., "reason": ...}
    scale_out: list[ScaleOutJob] = field(default_factory=list)
    # scale-out --keep: how many worker jobs to keep and how to submit each (ops/rolling.py)
    scale_out_keep: dict | None = None
    stopped_at: float | None = None              # when `down` stopped the cluster
    stopped_pools: list[str] = field(default_factory=list)   # by `down --pool`

    @property
    def steps(self) -> list[Step]:
        """The pools, then the scheduler: the order in which they are stopped."""
        return [*self.pools, *([self.scheduler] if self.scheduler else [])]

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["options"] = self.options.to_dict()
        data["scheduler"] = self.scheduler.to_dict() if self.scheduler else None
        data["pools"] = [p.to_dict() for p in self.pools]
        data["scale_out"] = [j.to_dict() for j in self.scale_out]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ClusterRecord:
        values = _known(cls, data)
        values["options"] = UpOptions.from_dict(data.get("options") or {})
        values["scheduler"] = Step.from_dict(data["scheduler"]) if data.get("scheduler") else None
        values["pools"] = [Step.from_dict(p) for p in data.get("pools") or []]
        for pool in values["pools"]:
            if not pool.expected:  # written before pools: every task ran --nworkers workers
                pool.expected = pool.ntasks * values["options"].nworkers
        values["scale_out"] = [ScaleOutJob.from_dict(j) for j in data.get("scale_out") or []]
        for name in ("allocation", "client_env", "memory"):
            values[name] = values.get(name) or {}
        return cls(**values)


def _known(cls, data: dict) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}

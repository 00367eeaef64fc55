"""The cluster record (`state.json`): what runs, typed. Every reader goes through this module.

The JSON shape is that of dasklaunch 0.1, so records written by it still load (unknown keys are
ignored, missing ones take their defaults), and tools that read state.json keep working.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..domain.settings import UpOptions
from ..domain.step_plan import PLAN_FIELDS, StepPlan
from . import proc


@dataclass
class StepRun:
    """A planned step as it runs: its plan (domain/step_plan.StepPlan, frozen) and what
    starting it gave (the argv that ran, pids, the Slurm step id). The plan's fields read
    through (`run.name`, `run.pool`); they cannot be set here. In state.json both are one flat
    object, as dasklaunch 0.1 wrote it."""

    plan: StepPlan
    argv: list[str] = field(default_factory=list)  # what was actually executed (srun ... cmd)
    started: float = 0.0
    leader: dict | None = None        # ProcessId of srun / the first local task
    pgid: int | None = None
    task_pids: list[int] = field(default_factory=list)
    step_id: str | None = None        # JOB.STEP under Slurm, once known

    def __getattr__(self, name: str):
        # only called for names that are not the run's own: the plan's fields and properties
        if name != "plan" and name in PLAN_READS:
            return getattr(self.plan, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value) -> None:
        if name in PLAN_READS:   # else it would shadow the plan's, and never reach state.json
            raise AttributeError(f"{name} is the plan's: plan the step anew (dataclasses."
                                 f"replace(run.plan, ...)) rather than edit a run")
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        run = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "plan"}
        return {**self.plan.to_dict(), **run}

    @classmethod
    def from_dict(cls, data: dict, nworkers: int = 1) -> StepRun:
        values = {k: v for k, v in data.items() if k in PLAN_FIELDS}
        values["command"] = tuple(values.get("command") or ())
        values["env"] = dict(values.get("env") or {})
        values["resources"] = tuple(tuple(pair) for pair in values.get("resources") or ())
        values["srun_options"] = tuple(values.get("srun_options") or ())
        if not values.get("expected") and values.get("role", "workers") == "workers":
            # written before pools: every task ran --nworkers workers
            values["expected"] = int(values.get("ntasks", 1)) * nworkers
        run = {k: v for k, v in data.items()
               if k in {f.name for f in fields(cls)} and k != "plan"}
        return cls(plan=StepPlan(**values), **run)

    @property
    def leader_id(self) -> proc.ProcessId | None:
        return proc.ProcessId.from_dict(self.leader) if self.leader else None


PLAN_READS = PLAN_FIELDS | {"workers"}


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
    scheduler: StepRun | None = None
    pools: list[StepRun] = field(default_factory=list)
    submit_host: str | None = None
    client_env: dict[str, str] = field(default_factory=dict)
    memory: dict = field(default_factory=dict)   # {"per_worker": ..., "how": ...}
    profile: str | None = None
    # where each option that is not dasklaunch's default came from ("profile seed: ...")
    sources: dict[str, str] = field(default_factory=dict)
    scheduler_job: bool = False     # the job is a dasklaunch.Cluster's own (ops/scheduler_job)
    address: str | None = None
    dashboard_port: int | None = None
    last_restart: dict | None = None             # {"time": ..., "reason": ...}
    scale_out: list[ScaleOutJob] = field(default_factory=list)
    # scale-out --keep: how many worker jobs to keep and how to submit each (ops/rolling.py)
    scale_out_keep: dict | None = None
    stopped_at: float | None = None              # when `down` stopped the cluster
    stopped_pools: list[str] = field(default_factory=list)   # by `down --pool`
    # the containers' runtime, binds and checked images (domain/container.ContainerJob)
    container: dict | None = None

    @property
    def steps(self) -> list[StepRun]:
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
        nworkers = values["options"].nworkers
        values["scheduler"] = (StepRun.from_dict(data["scheduler"]) if data.get("scheduler")
                               else None)
        values["pools"] = [StepRun.from_dict(p, nworkers) for p in data.get("pools") or []]
        values["scale_out"] = [ScaleOutJob.from_dict(j) for j in data.get("scale_out") or []]
        for name in ("allocation", "client_env", "memory"):
            values[name] = values.get(name) or {}
        return cls(**values)


def _known(cls, data: dict) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}

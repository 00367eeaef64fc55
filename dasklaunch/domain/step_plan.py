"""Pure: one step as planned (what to run, where, with what), apart from the record of it
running (runtime/record.StepRun: pids, step id, the argv that ran). srun's argv and the local
backend's are built from a StepPlan alone; restart-workers plans a pool's next generation by
changing its plan, never by clearing a running step's fields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class StepPlan:
    """The scheduler, or one generation of a worker pool."""

    role: str                 # "scheduler" or "workers"
    name: str                 # unique: the Slurm step name, also used for log names
    placement: str            # "first-node" | "here" | "tasks" | "per-node"
    ntasks: int
    nnodes: int
    command: tuple[str, ...]  # the dask command each task runs
    log: str = ""
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment for the tasks
    pool: str = "workers"             # the worker pool this step starts (workers steps)
    expected: int = 0                 # workers it starts (the scheduler: 0)
    nodelist: str | None = None       # the pool's nodes, when not all of the job's
    het_group: int | None = None      # the component of a heterogeneous job it runs in
    gpus_per_node: int = 0            # GPUs each of its nodes gives it (Slurm steps ask)
    gpus_per_task: int = 0            # or each of its tasks (a pool with gpu-tasks=yes)
    cpus_per_task: int | None = None  # CPUs each task holds (Slurm steps ask)
    # each worker's shape, for what copies the pool (scale-out --pool, join); None or empty
    # in records written before they were kept (read from the command then)
    nthreads: int | None = None
    memory_limit: str | None = None
    gpus_per_worker: int | None = None
    resources: tuple[tuple[str, str], ...] = ()
    worker_class: str | None = None
    # srun's options of the step's container (Pyxis's); other runtimes are in `command`
    srun_options: tuple[str, ...] = ()

    @property
    def workers(self) -> int:
        return self.expected

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["command"], data["env"] = list(self.command), dict(self.env)
        data["resources"] = [list(pair) for pair in self.resources]
        data["srun_options"] = list(self.srun_options)
        return data


PLAN_FIELDS = frozenset(f.name for f in fields(StepPlan))

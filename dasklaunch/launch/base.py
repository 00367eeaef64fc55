"""The Launcher interface and the step record both backends share."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field

from .. import proc


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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Step:
        return cls(**data)

    @property
    def leader_id(self) -> proc.ProcessId | None:
        return proc.ProcessId.from_dict(self.leader) if self.leader else None


class Launcher(ABC):
    backend: str

    def __init__(self, job_id: str):
        self.job_id = job_id

    @abstractmethod
    def argv(self, step: Step) -> list[str]:
        """The full command line for `step` (pure: used for --dry-run and for launching)."""

    @abstractmethod
    def start(self, step: Step) -> Step:
        """Launch `step` detached; fill in pids. Returns the same step."""

    @abstractmethod
    def running(self, step: Step) -> bool:
        """True while any task of the step runs."""

    @abstractmethod
    def signal_graceful(self, step: Step) -> None:
        """Ask every task to shut down cleanly (SIGTERM), as the end of a job would."""

    @abstractmethod
    def kill(self, step: Step) -> None:
        """Kill what is left of the step, now."""

    def describe(self, step: Step) -> str:
        """A short where/how for status lines."""
        leader = step.leader_id.pid if step.leader_id else "?"
        return f"pid {leader}"

    def stop(self, step: Step, grace: float = 10.0, hard: bool = False) -> str:
        """Stop a step: graceful signal, wait up to `grace`, then kill. Returns how it ended."""
        if not self.running(step):
            return "not running"
        if not hard:
            self.signal_graceful(step)
            if proc.wait_until(lambda: not self.running(step), grace, interval=0.1):
                return "stopped"
        self.kill(step)
        if proc.wait_until(lambda: not self.running(step), 15.0, interval=0.1):
            return "killed"
        return "still running after SIGKILL"

    def wait_started(self, step: Step) -> None:  # noqa: B027 - optional hook
        """Called after start; a backend may resolve ids it could not know at once."""


def now() -> float:
    return time.time()

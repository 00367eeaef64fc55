"""Options of `up`, resolved once, recorded in the state record and reused by restart-workers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .pool_spec import PoolSpec, pool_spec

# prefork: the node launcher imports distributed once and forks (launch/prefork.py); the others
# are Dask's own multiprocessing methods, set for the nannies.
START_METHODS = ("prefork", "spawn", "fork", "forkserver")
DEFAULT_START_METHOD = "prefork"
# Seconds a worker that is told to end (SIGTERM) spends handing its results to workers that
# stay: inside Slurm's default KillWait (30 s), so a job's end still kills nothing mid-move.
DEFAULT_DRAIN_TIMEOUT = 20.0


@dataclass(frozen=True)
class UpOptions:
    backend: str = "auto"
    interface: str | None = None
    scheduler_here: bool = False
    per_node: bool | None = None  # None: the profile's layout hint, else per task
    nthreads: int | None = None
    nworkers: int = 1
    memory_limit: str | None = None
    local_directory: str | None = None
    death_timeout: float = 60.0
    worker_args: tuple[str, ...] = ()
    scheduler_args: tuple[str, ...] = ()
    dashboard_address: str = "8787"  # no host: the scheduler's own address, not 0.0.0.0
    port: int = 0
    nanny: bool = True
    wait_workers: str = "all"
    timeout: float = 120.0
    local_tasks: int | None = None
    tls: bool = True
    profile: str | None = None
    lifetime: str | None = None          # rotate workers: dask worker --lifetime ...
    lifetime_stagger: str | None = None
    start_method: str | None = None      # START_METHODS; None: DEFAULT_START_METHOD
    pools: tuple[PoolSpec, ...] = ()     # parsed where given (--pool text, a profile, the API)
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT  # 0: workers end without handing over results
    # dask-cuda pools: RMM pool and device memory limit (fractions of a GPU's memory, or sizes)
    rmm_pool_size: str | None = None
    device_memory_limit: str | None = None
    cudf_spill: bool = False
    # the image the scheduler and workers run in (domain/container.py; "none": no container,
    # over a profile's), how it is run (auto: the first runtime found), and more options for
    # the runtime, before the image
    container: str | None = None
    container_runtime: str = "auto"
    container_args: tuple[str, ...] = ()
    extra_env: tuple[tuple[str, str], ...] = field(default=())

    def to_dict(self) -> dict:
        data = asdict(self)
        data["worker_args"] = list(self.worker_args)
        data["scheduler_args"] = list(self.scheduler_args)
        data["container_args"] = list(self.container_args)
        data["pools"] = [pool.to_dict() for pool in self.pools]
        data["extra_env"] = [list(pair) for pair in self.extra_env]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> UpOptions:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("worker_args", "scheduler_args", "container_args"):
            if key in values:
                values[key] = tuple(values[key])
        if "pools" in values:   # dicts; text in a record written before pools were structured
            values["pools"] = tuple(pool_spec(item) for item in values["pools"])
        if "extra_env" in values:
            values["extra_env"] = tuple(tuple(pair) for pair in values["extra_env"])
        return cls(**values)


@dataclass(frozen=True)
class ProfileSizing:
    """A profile's sizing hints, under the options given: the fraction of a node's memory the
    workers share, a memory limit per worker (bytes), dask-cuda pools' RMM pool. None: the
    profile says nothing of it (or there is no profile)."""

    memory_fraction: float | None = None
    memory_limit: int | None = None
    rmm_pool_size: str | None = None


# The command line's names (and the API's, which are the same) where they differ from the
# fields: a repeatable option is named for one occurrence, a flag for what it does.
OPTION_ALIASES = {"worker_arg": "worker_args", "scheduler_arg": "scheduler_args",
                  "pool": "pools", "enable_cudf_spill": "cudf_spill",
                  "container_arg": "container_args"}
_TUPLES = ("worker_args", "scheduler_args", "pools", "container_args")


def options_from(values: dict) -> tuple[UpOptions, set[str]]:
    """UpOptions from `up`'s option names (`pool=`, `worker_arg=`, as on the command line) or
    the fields' (`pools=`), and the fields given. An unknown name is refused, with the closest
    known one."""
    from ..errors import UsageError

    known = {f.name for f in fields(UpOptions)} - {"extra_env"}
    converted: dict = {}
    named: dict[str, str] = {}
    for name, value in values.items():
        field_name = OPTION_ALIASES.get(name, name)
        if field_name not in known:
            import difflib

            names = sorted(known | set(OPTION_ALIASES))
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UsageError(f"unknown option {name!r}{hint}")
        if field_name in converted:
            raise UsageError(f"{named[field_name]}= and {name}= are the same option; give one")
        named[field_name] = name
        if field_name in _TUPLES:
            value = (value,) if isinstance(value, str) else tuple(value or ())
        if field_name == "pools":   # parsed here, once: --pool text, or PoolSpecs given
            value = tuple(pool_spec(item) for item in value)
        converted[field_name] = value
    return UpOptions(**converted), set(converted)

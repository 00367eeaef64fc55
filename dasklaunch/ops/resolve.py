"""One resolution of `up`'s options, for every entry point: the CLI's `up`, the Python API
(through `up`), and `batch` at submit time, against the allocation its request describes.

The precedence, once: an option given (command line or API keyword) > the profile's hints >
jobqueue.yaml's `jobqueue.slurm` > dasklaunch's default. The allocation then sizes what is
left (threads, memory per worker), and the pools are laid out on it. Whatever `up` would refuse
is refused here, in one line, before anything starts or is submitted."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ..domain import dask_cuda
from ..domain.allocation import Allocation, expand_nodelist
from ..domain.container import NO_CONTAINER, check_used, images_in_use
from ..domain.dask_argv import check_passthrough_args
from ..domain.option_checks import check_up_values
from ..domain.plan import expected_workers
from ..domain.pools import Layout, plan_pools
from ..domain.settings import ProfileSizing, UpOptions
from ..domain.units import check_device_size, plural
from ..errors import UsageError


@dataclass(frozen=True)
class Resolution:
    """`up`'s options as they will run, the pools laid out on the allocation, and where each
    option that is not a default came from."""

    opts: UpOptions
    layout: Layout
    wait_for: int                       # workers `up` waits for (--wait-workers, else all)
    profile: object | None = None
    sources: dict[str, str] = field(default_factory=dict)


def resolve(opts: UpOptions, alloc: Allocation,
            explicit: set[str] | frozenset[str] | None = None) -> Resolution:
    """`explicit` names the options the user gave; the others may come from jobqueue.yaml
    (None: do not consult it)."""
    sources: dict[str, str] = {}
    if explicit is not None:
        from ..profiles.jobqueue import apply_jobqueue_defaults

        opts, sources = apply_jobqueue_defaults(opts, explicit)
    opts = check_options(opts)
    opts, sizing, profile, from_profile = resolve_profile(opts, alloc)
    sources.update(from_profile)
    opts = check_container_use(opts)
    memory_origin = sources.get("memory_limit", "command line")
    layout = Layout(plan_pools(
        alloc, opts, opts.pools, sizing=sizing,
        memory_origin=("--memory-limit" if memory_origin in ("command line", "default")
                       else memory_origin),
        dask_cuda_unusable=dask_cuda_unusable()))
    # refuses a --wait-workers above what the layout starts
    return Resolution(opts=opts, layout=layout, wait_for=expected_workers(layout, opts),
                      profile=profile, sources=sources)


def check_options(opts: UpOptions) -> UpOptions:
    """The rules that hold whatever the allocation; the options with sizes normalised."""
    check_up_values(opts)
    check_passthrough_args(opts)
    if opts.rmm_pool_size:
        opts = replace(opts, rmm_pool_size=check_device_size("--rmm-pool-size",
                                                             opts.rmm_pool_size))
    if opts.device_memory_limit:
        opts = replace(opts, device_memory_limit=check_device_size(
            "--device-memory-limit", opts.device_memory_limit, limit=True))
    return opts


def check_container_use(opts: UpOptions) -> UpOptions:
    """A runtime or runtime options without an image are refused; `--container none` (over a
    profile's image) is no container."""
    images = images_in_use(opts.container, [spec.container for spec in opts.pools])
    check_used(images, opts.container_runtime, opts.container_args)
    return replace(opts, container=None) if opts.container == NO_CONTAINER else opts


def resolve_profile(opts: UpOptions, alloc: Allocation
                    ) -> tuple[UpOptions, ProfileSizing, object, dict[str, str]]:
    """Apply a profile's sizing hints under the explicit options. Returns the resolved
    options, its sizing hints, the profile (or None) and where the
    options it set came from ("profile seed: layout=per-node")."""
    if not opts.profile:
        # per_node stays None unless given: --per-task given is not the default (dask_argv.
        # workers_per_task folds a pool's tasks only by default)
        return opts, ProfileSizing(), None, {}
    from ..profiles.load import load_profile, profile_hints
    from ..profiles.schema import validate_profile

    profile = load_profile(opts.profile)
    validate_profile(profile, alloc.mem_per_node)
    hints = profile_hints(profile)
    per_node = opts.per_node if opts.per_node is not None else \
        {"per-node": True, "per-task": False}.get(hints["layout"])
    # rmm_pool_size: no Dask reads it itself; dask-cuda pools get it unless --rmm-pool-size is
    sizing = ProfileSizing(memory_fraction=hints["memory_fraction"],
                           memory_limit=hints["memory_limit"],
                           rmm_pool_size=hints["rmm_pool_size"])
    origin = {}
    if opts.per_node is None and hints["layout"]:
        origin["per_node"] = f"profile {opts.profile}: layout={hints['layout']}"
    if not opts.pools and hints["pools"]:
        origin["pools"] = f"profile {opts.profile}: pools"
    container = {}
    if opts.container is None and hints["container"]:
        container["container"] = hints["container"]
        origin["container"] = f"profile {opts.profile}: container={hints['container']}"
    pools = opts.pools or hints["pools"]
    images = images_in_use(container.get("container", opts.container),
                           [spec.container for spec in pools])
    # the profile's runtime, for the images it runs (`--container none` leaves none)
    if opts.container_runtime == "auto" and hints["container_runtime"] and images:
        container["container_runtime"] = hints["container_runtime"]
        origin["container_runtime"] = (f"profile {opts.profile}: container-runtime="
                                       f"{hints['container_runtime']}")
    # the profile's pools, unless --pool gave others
    return (replace(opts, per_node=per_node, pools=pools, **container),
            sizing, profile, origin)


def dask_cuda_unusable() -> str | None:
    """Why GPU pools cannot run `dask cuda worker` with the workers' Python (this one), read
    from the package's metadata without importing it; None when they can."""
    import importlib.metadata
    import importlib.util

    try:
        version = importlib.metadata.version("dask-cuda")
    except importlib.metadata.PackageNotFoundError:
        version = None
    if version is not None and importlib.util.find_spec("dask_cuda") is None:
        version = None
    return dask_cuda.unusable(version)


# A node count no job reaches: CPUs of a node whose count the request leaves to Slurm.
UNKNOWN_CPUS = 1 << 20


def requested_allocation(opts: UpOptions, *, nodes: str | None, ntasks_per_node: int | None,
                         gpus_per_node: int | None, cpus_per_task: int | None,
                         mem_per_node: int | None) -> Allocation:
    """The allocation an sbatch request describes, as `up` will see it inside the job: its
    nodes (the lower bound of MIN-MAX), tasks and GPUs per node, and memory where given. The
    nodes' names are Slurm's to choose: those that pools name by host are taken to be among
    them (`up` checks that inside the job), the others are placeholders. CPUs per node that the
    request leaves open are unbounded, so only what is refused on any node is refused."""
    count = int((nodes or "1").split("-")[0])
    named: list[str] = []
    for spec in opts.pools:
        if spec.nodes and not spec.nodes.isdigit():
            named += [h for h in expand_nodelist(spec.nodes) if h not in named]
    if len(named) > count:
        raise UsageError(f"the pools name {plural(len(named), 'node')} ({', '.join(named)}), "
                         f"but the job asks for {plural(count, 'node')} (--nodes)")
    hosts = tuple(named + [f"node{i}-of-the-job" for i in range(1, count - len(named) + 1)])
    tasks = ntasks_per_node or 1
    cpus = tasks * cpus_per_task if cpus_per_task else UNKNOWN_CPUS
    return Allocation(job_id="batch", nodes=hosts, tasks_per_node=(tasks,) * count,
                      cpus_per_node=(cpus,) * count, cpus_per_task=cpus_per_task,
                      mem_per_node=mem_per_node, mem_source="sbatch --mem",
                      gpus_per_node=(gpus_per_node,) * count if gpus_per_node else ())

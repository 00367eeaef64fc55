"""A worker pool as the user describes it: `--pool NAME:KEY=VALUE[,KEY=VALUE...]` (or an entry
under `dasklaunch: pools:` in a profile), parsed into a PoolSpec and checked key by key. Commas
inside a Slurm host list (`nodes=nid[01,03]`) or quotes stay in their value."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields

from ..errors import UsageError
from .allocation import split_top_level
from .container import check_image
from .units import check_device_size

DEFAULT_POOL = "workers"
KEYS = ("nodes", "het-group", "ntasks-per-node", "nworkers", "nthreads", "memory-limit",
        "gpus-per-worker", "resources", "worker-class", "local-directory", "worker-arg", "share",
        "gpu-tasks", "dask-cuda", "rmm-pool-size", "device-memory-limit", "cudf-spill",
        "container")
YES_NO = {"yes": True, "true": True, "no": False, "false": False}
DASK_CUDA_CHOICES = ("auto", "yes", "no")
# dask-cuda's own options, given per pool (or for every dask-cuda pool by `up`'s options)
CUDA_KEYS = ("rmm-pool-size", "device-memory-limit", "cudf-spill")
# Pools with these names default to this many GPUs per worker, whatever their nodes have.
NAMED_GPUS = {"cpu": 0, "gpu": 1}
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
POOL_NAME = _IDENTIFIER   # also what status reads back from a worker name POOL-HOST-N


@dataclass(frozen=True)
class PoolSpec:
    name: str
    nodes: str | None = None             # a count ("2") or a host list ("node[2-3]")
    het_group: int | None = None
    ntasks_per_node: int | None = None
    nworkers: int | None = None
    nthreads: int | None = None
    memory_limit: str | None = None
    gpus_per_worker: int | None = None   # None: 1 on nodes with GPUs (or NAMED_GPUS), else 0
    resources: tuple[tuple[str, str], ...] = ()
    worker_class: str | None = None
    local_directory: str | None = None
    worker_args: tuple[str, ...] = ()
    share: bool = False
    gpu_tasks: bool = False              # one Slurm task per GPU worker (srun --gpus-per-task)
    dask_cuda: str = "auto"              # auto: `dask cuda worker` when dask-cuda is installed
    rmm_pool_size: str | None = None
    device_memory_limit: str | None = None
    cudf_spill: bool | None = None
    container: str | None = None         # its own image (none: on the host); None: the job's

    def to_dict(self) -> dict:
        """As the record keeps it (JSON): every field, tuples as lists."""
        data = asdict(self)
        data["resources"] = [list(pair) for pair in self.resources]
        data["worker_args"] = list(self.worker_args)
        return data


def parse_pool(text: str) -> PoolSpec:
    """`gpu:nodes=2,gpus-per-worker=1,resources=BIGMEM:1+SSD:1,worker-arg=--lifetime=1h`."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if not POOL_NAME.fullmatch(name):
        raise UsageError(f"--pool {text!r}: a pool is NAME:KEY=VALUE,... with a NAME of "
                         f"letters, digits and _")
    items = []
    for item in split_items(name, rest):
        key, eq, value = item.partition("=")
        value = unquote(value)
        if not eq or not value:
            raise UsageError(f"--pool {name}: {item!r} is not KEY=VALUE")
        items.append((key, value))
    return pool_from_items(name, items)


def pool_text(spec: PoolSpec) -> str:
    """The `--pool` text that parse_pool reads back as `spec`: NAME:KEY=VALUE,... with only the
    fields that differ from their defaults. UsageError for a value the text cannot carry."""
    items = []
    for f in fields(PoolSpec)[1:]:
        value = getattr(spec, f.name)
        if value == f.default:
            continue
        key = "worker-arg" if f.name == "worker_args" else f.name.replace("_", "-")
        if f.name == "worker_args":
            items += [_item(spec.name, key, arg) for arg in value]
        elif f.name == "resources":
            text = "+".join(f"{res}:{amount}" for res, amount in value)
            if _resources(spec.name, text) != tuple(value):
                raise UsageError(f"pool {spec.name}: resources {value!r} cannot be written "
                                 f"as NAME:AMOUNT[+NAME:AMOUNT...]")
            items.append(_item(spec.name, key, text))
        elif isinstance(value, bool):
            items.append(f"{key}={'yes' if value else 'no'}")
        else:
            items.append(_item(spec.name, key, str(value)))
    return f"{spec.name}:{','.join(items)}" if items else spec.name


def _item(pool: str, key: str, value: str) -> str:
    """KEY=VALUE as split_items and unquote read it back: quoted when the value holds a comma,
    a quote, a bracket or spaces at its end."""
    for text in (value, f"'{value}'", f'"{value}"'):
        item = f"{key}={text}"
        try:
            whole = split_top_level(item) == [item]
        except ValueError:
            continue
        if whole and value and unquote(text) == value:
            return item
    raise UsageError(f"pool {pool}: {key} {value!r} cannot be written in --pool text (empty, "
                     f"or holding both ' and \" where it needs quotes)")


def pool_from_items(name: str, items: list[tuple[str, str]]) -> PoolSpec:
    """A pool from its name and (KEY, VALUE) items, each checked: what `--pool` text and a
    profile's pool mapping both become."""
    values: dict = {}
    worker_args: list[str] = []
    for key, value in items:
        if key not in KEYS:
            import difflib

            close = difflib.get_close_matches(key, KEYS, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise UsageError(f"--pool {name}: unknown key {key!r} (keys: {', '.join(KEYS)}"
                             f"{hint})")
        if key == "worker-arg":
            worker_args.append(value)
        elif key == "resources":
            values["resources"] = _resources(name, value)
        elif key in ("share", "gpu-tasks", "cudf-spill"):
            if value not in YES_NO:
                raise UsageError(f"--pool {name}: {key} takes yes or no, not {value!r}")
            values[key.replace("-", "_")] = YES_NO[value]
        elif key == "dask-cuda":
            if value not in DASK_CUDA_CHOICES:
                raise UsageError(f"--pool {name}: dask-cuda takes "
                                 f"{', '.join(DASK_CUDA_CHOICES)}, not {value!r}")
            values["dask_cuda"] = value
        elif key in ("rmm-pool-size", "device-memory-limit"):
            values[key.replace("-", "_")] = check_device_size(f"--pool {name}: {key}", value,
                                                              key == "device-memory-limit")
        elif key == "nodes":
            values["nodes"] = _nodes(name, value)
        elif key == "container":
            values["container"] = check_image(f"--pool {name}: container", value)
        elif key in ("het-group", "ntasks-per-node", "nworkers", "nthreads", "gpus-per-worker"):
            values[key.replace("-", "_")] = _count(name, key, value,
                                                   minimum=0 if key in ("het-group",
                                                                        "gpus-per-worker") else 1)
        else:
            values[key.replace("-", "_")] = value
    return PoolSpec(name=name, worker_args=tuple(worker_args), **values)


def pool_spec(item: PoolSpec | str | dict) -> PoolSpec:
    """A pool as it comes: parsed `--pool` text, a PoolSpec, or the record's dict of one (a
    record written before pools were stored structured holds their text)."""
    if isinstance(item, PoolSpec):
        return item
    if isinstance(item, str):
        return parse_pool(item)
    known = {f.name for f in fields(PoolSpec)}
    data = {k: v for k, v in item.items() if k in known}
    data["resources"] = tuple(tuple(pair) for pair in data.get("resources", ()))
    data["worker_args"] = tuple(data.get("worker_args", ()))
    return PoolSpec(**data)


def _nodes(pool: str, value: str) -> str:
    """nodes=: a count of 1 or more, or a Slurm host list (node[1-3],node7)."""
    if re.fullmatch(r"[+-]?\d+", value.strip()):
        if int(value) < 1:
            raise UsageError(f"--pool {pool}: nodes takes a node count of 1 or more or a Slurm "
                             f"host list (node[1-3]), not {value!r}")
        return str(int(value))
    if not re.fullmatch(r"[A-Za-z0-9_.\-\[\],]+", value):
        raise UsageError(f"--pool {pool}: nodes takes a node count of 1 or more or a Slurm "
                         f"host list (node[1-3]), not {value!r}")
    return value


def split_items(name: str, text: str) -> list[str]:
    """KEY=VALUE items of a pool's text, split on the commas outside Slurm host-list brackets
    (`nodes=nid[01,03-05]`) and outside quotes (`worker-arg='--resources=A=1,B=2'`)."""
    try:
        return split_top_level(text)
    except ValueError as err:
        raise UsageError(f"--pool {name}: {err} in {text!r}") from None


def unquote(value: str) -> str:
    """A value in matching quotes, without them."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _count(pool: str, key: str, value: str, minimum: int) -> int:
    if not value.isdigit() or int(value) < minimum:
        raise UsageError(f"--pool {pool}: {key} takes a whole number >= {minimum}, not {value!r}")
    return int(value)


def _resources(pool: str, value: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in value.split("+"):
        key, sep, amount = item.partition(":")
        if not sep or not _IDENTIFIER.fullmatch(key) or not re.fullmatch(r"[0-9.eE+-]+", amount):
            raise UsageError(f"--pool {pool}: resources are NAME:AMOUNT[+NAME:AMOUNT...], "
                             f"not {value!r}")
        pairs.append((key, amount))
    return tuple(pairs)

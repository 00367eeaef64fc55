"""`up`'s options back into `dasklaunch up` arguments (domain/up_argv.py) and a pool back into
its `--pool` text (pool_text): examples, and properties drawn at random (Hypothesis) that the
real parsers read them back as the same options."""

from __future__ import annotations

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st

from dasklaunch.cli.app import app
from dasklaunch.cli.cluster import explicit_options, up_options
from dasklaunch.domain.pool_spec import DASK_CUDA_CHOICES, PoolSpec, parse_pool, pool_text
from dasklaunch.domain.settings import START_METHODS, options_from
from dasklaunch.domain.units import check_device_size
from dasklaunch.domain.up_argv import up_argv
from dasklaunch.errors import UsageError

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True)


def parsed(argv: list[str]):
    """What `dasklaunch up ARGV` parses its options to, and the ones it counts as given."""
    up = typer.main.get_command(app).get_command(None, "up")
    ctx = up.make_context("up", list(argv))
    return up_options(ctx.params), explicit_options(ctx)


# ------------------------------------------------------------------------------------ examples

def test_pool_text_examples():
    assert pool_text(PoolSpec(name="workers")) == "workers"
    spec = PoolSpec(name="gpu", nodes="nid[01,03]", het_group=0, gpus_per_worker=1,
                    resources=(("GPU", "1"), ("SSD", "2")), share=True, cudf_spill=False,
                    worker_args=("--lifetime=1h", "--resources=A=1,B=2", "it's"))
    text = pool_text(spec)
    assert text == ("gpu:nodes=nid[01,03],het-group=0,gpus-per-worker=1,resources=GPU:1+SSD:2,"
                    "worker-arg=--lifetime=1h,worker-arg='--resources=A=1,B=2',"
                    "worker-arg=\"it's\",share=yes,cudf-spill=no")
    assert parse_pool(text) == spec


@pytest.mark.parametrize("spec", [
    PoolSpec(name="a", worker_args=("--x='1,2\"",)),   # a comma and both quotes
    PoolSpec(name="a", worker_args=("",)),
    PoolSpec(name="a", resources=(("A", "1e+3"),)),      # '+' separates resources
])
def test_pool_text_refuses_what_it_cannot_write(spec):
    with pytest.raises(UsageError) as err:
        pool_text(spec)
    assert "\n" not in str(err.value)


def test_up_argv_examples():
    opts, given_names = options_from({
        "interface": "ib0", "per_node": False, "tls": False, "nanny": True,
        "scheduler_here": True, "worker_arg": ["--lifetime=1h", "-x"], "death_timeout": 30,
        "pool": ["cpu:nodes=2,share=yes"], "enable_cudf_spill": True, "lifetime": None})
    argv = up_argv(opts, given_names)
    assert argv == ["--interface=ib0", "--scheduler-here", "--per-task", "--death-timeout=30",
                    "--worker-arg=--lifetime=1h", "--worker-arg=-x", "--nanny", "--no-tls",
                    "--pool=cpu:nodes=2,share=yes", "--enable-cudf-spill"]
    assert parsed(argv)[0] == opts
    assert up_argv(opts, set()) == []


def test_up_argv_refuses_extra_env():
    opts = options_from({})[0].__class__(extra_env=(("A", "1"),))
    with pytest.raises(UsageError, match="extra_env"):
        up_argv(opts, {"extra_env"})
    assert up_argv(options_from({})[0], {"extra_env"}) == []


# ---------------------------------------------------------------------------------- properties

def writable(text: str) -> bool:
    return bool(text) and not ("'" in text and '"' in text)


TEXT = st.text(max_size=12)
VALUE = TEXT.filter(writable)
COUNT = st.integers(1, 64)
NODES = st.one_of(COUNT.map(str), st.sampled_from(["node[1-3]", "nid[01,03-05],login1", "n7"]))
RESOURCES = st.lists(st.tuples(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,5}", fullmatch=True),
                               st.from_regex(r"[0-9][0-9.eE-]{0,3}", fullmatch=True)),
                     max_size=3).map(tuple)


def device_size(limit: bool):
    choices = ["0.5", "1", "40GB", "2GiB"] + (["auto", "default", "0"] if limit else [])
    return st.sampled_from(choices).map(lambda v: check_device_size("test", v, limit))


IMAGE = st.sampled_from(["none", "docker://python:3.12", "/scratch/my images/dask.sif"]) | \
    st.from_regex(r"[A-Za-z0-9/][A-Za-z0-9_./:@ ,'-]{0,12}", fullmatch=True).filter(writable)
POOL = st.builds(
    PoolSpec, name=st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,7}", fullmatch=True),
    nodes=st.none() | NODES, het_group=st.none() | st.integers(0, 3),
    ntasks_per_node=st.none() | COUNT, nworkers=st.none() | COUNT, nthreads=st.none() | COUNT,
    memory_limit=st.none() | VALUE, gpus_per_worker=st.none() | st.integers(0, 8),
    resources=RESOURCES, worker_class=st.none() | VALUE, local_directory=st.none() | VALUE,
    worker_args=st.lists(VALUE, max_size=3).map(tuple), share=st.booleans(),
    gpu_tasks=st.booleans(), dask_cuda=st.sampled_from(DASK_CUDA_CHOICES),
    rmm_pool_size=st.none() | device_size(False),
    device_memory_limit=st.none() | device_size(True), cudf_spill=st.none() | st.booleans(),
    container=st.none() | IMAGE)


@PROPERTY
@given(spec=POOL)
def test_pool_text_reads_back_as_the_pool(spec):
    assert parse_pool(pool_text(spec)) == spec


@PROPERTY
@given(arg=st.text(max_size=8, alphabet=st.sampled_from("ab ,'\"[]=-")))
def test_pool_text_refuses_only_what_it_cannot_write(arg):
    spec = PoolSpec(name="p", worker_args=(arg,))
    try:
        text = pool_text(spec)
    except UsageError:
        assert not writable(arg)
        return
    assert parse_pool(text) == spec


FLOAT = st.floats(allow_nan=False)
OPTIONS = st.fixed_dictionaries({}, optional={
    "backend": st.sampled_from(["auto", "slurm", "local"]), "interface": st.none() | TEXT,
    "scheduler_here": st.booleans(), "per_node": st.none() | st.booleans(),
    "nthreads": st.none() | st.integers(), "nworkers": st.integers(),
    "memory_limit": st.none() | TEXT, "local_directory": st.none() | TEXT,
    "death_timeout": FLOAT, "worker_args": st.lists(st.text(max_size=8), max_size=3),
    "scheduler_args": st.lists(st.text(max_size=8), max_size=3), "dashboard_address": TEXT,
    "port": st.integers(-1, 70000), "nanny": st.booleans(), "wait_workers": TEXT,
    "timeout": FLOAT, "local_tasks": st.none() | st.integers(), "tls": st.booleans(),
    "profile": st.none() | TEXT, "lifetime": st.none() | TEXT,
    "lifetime_stagger": st.none() | TEXT,
    "start_method": st.none() | st.sampled_from(START_METHODS),
    "pools": st.lists(POOL, max_size=2), "drain_timeout": FLOAT,
    "rmm_pool_size": st.none() | device_size(False),
    "device_memory_limit": st.none() | device_size(True), "cudf_spill": st.booleans(),
    "container": st.none() | TEXT, "container_runtime": TEXT,
    "container_args": st.lists(st.text(max_size=8), max_size=3)})


@PROPERTY
@given(values=OPTIONS)
def test_up_argv_parses_back_as_the_options(values):
    opts, given_names = options_from(values)
    argv = up_argv(opts, given_names)
    from_cli, explicit = parsed(argv)
    assert from_cli == opts
    assert explicit <= given_names

"""One resolution of options for every entry point, drawn at random (Hypothesis): the CLI's
`up`, the Python API and `batch` turn the same options into the same UpOptions and the same
plan, `batch` plans on the allocation its own request describes, and nothing ends in anything
but a plan or a one-line refusal (exit 2)."""

from __future__ import annotations

import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dasklaunch.cli.app import app
from dasklaunch.cli.cluster import explicit_options, up_options
from dasklaunch.domain.allocation import Allocation
from dasklaunch.domain.settings import options_from
from dasklaunch.domain.steps import StepContext, plan_steps
from dasklaunch.errors import UsageError
from dasklaunch.ops.resolve import requested_allocation, resolve
from dasklaunch.profiles.jobqueue import SOURCES

GiB = 2**30
# fast and reproducible in CI: a fixed number of examples, no deadline on a shared machine
PROPERTY = settings(max_examples=100, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

POOL_KEYS = st.fixed_dictionaries({}, optional={
    "nodes": st.sampled_from(["1", "2", "0", "-1", "node[1-2]", "node[1,3]", "node9"]),
    "nthreads": st.sampled_from(["1", "2", "0"]),
    "share": st.sampled_from(["yes", "no"]),
    "gpus-per-worker": st.sampled_from(["0", "1", "4"]),
    "ntasks-per-node": st.sampled_from(["1", "2"]),
    "memory-limit": st.sampled_from(["1GiB", "0.25"]),
    "worker-arg": st.sampled_from(["--lifetime=1h", "'--resources=A=1,B=2'"]),
})


@st.composite
def pools(draw):
    names = draw(st.lists(st.sampled_from(["a", "b", "cpu", "gpu"]), max_size=3, unique=True))
    texts = []
    for name in names:
        keys = draw(POOL_KEYS)
        texts.append(f"{name}:" + ",".join(f"{k}={v}" for k, v in keys.items()))
    return texts


OPTIONS = st.fixed_dictionaries({}, optional={
    "nthreads": st.sampled_from([1, 2, 8]),
    "nworkers": st.sampled_from([1, 2]),
    "memory_limit": st.sampled_from(["2GiB", "0.5", "auto", "1.5", "100GiB"]),
    "per_node": st.booleans(),
    "lifetime": st.sampled_from(["1h", "90s", "2x"]),
    "wait_workers": st.sampled_from(["all", "0", "1", "-1"]),
    "port": st.sampled_from([0, 8786, 99999]),
    "dashboard_address": st.sampled_from(["8787", ":0", "foo", "127.0.0.1:8788"]),
    "profile": st.sampled_from(["conservative", "seed"]),
    "drain_timeout": st.sampled_from([0.0, 5.0, -1.0]),
})


def argv_of(options: dict, pool_texts: list[str]) -> list[str]:
    argv = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if name == "per_node":
            argv.append("--per-node" if value else "--per-task")
        else:
            argv += [flag, str(value)]
    for text in pool_texts:
        argv += ["--pool", text]
    return argv


def cli_options(argv: list[str]):
    """What `dasklaunch up ARGV` resolves its options to, without running it."""
    command = typer.main.get_command(app)
    up = command.get_command(None, "up")
    ctx = up.make_context("up", list(argv))
    return up_options(ctx.params), explicit_options(ctx)


def allocation(nodes: int, tasks: int, gpus: int) -> Allocation:
    return Allocation(job_id="1", nodes=tuple(f"node{i}" for i in range(1, nodes + 1)),
                      tasks_per_node=(tasks,) * nodes, cpus_per_node=(8,) * nodes,
                      mem_per_node=16 * GiB, mem_source="sbatch --mem",
                      gpus_per_node=(gpus,) * nodes if gpus else ())


def outcome(opts, alloc):
    """The plan, or the one-line refusal: never another exception."""
    try:
        resolution = resolve(opts, alloc, explicit=None)
    except UsageError as err:
        assert "\n" not in str(err)
        return ("refused", str(err))
    return ("plan", resolution.opts, resolution.layout, resolution.wait_for)


@pytest.fixture(autouse=True)
def no_user_config(monkeypatch, tmp_path):
    """No jobqueue.yaml of this machine's user in the way."""
    monkeypatch.setenv("DASK_CONFIG", str(tmp_path))
    for name in ("HOME", "XDG_CONFIG_HOME"):
        monkeypatch.setenv(name, str(tmp_path))


@PROPERTY
@given(options=OPTIONS, pool_texts=pools(), nodes=st.integers(1, 3), tasks=st.integers(1, 2),
       gpus=st.sampled_from([0, 2]))
def test_cli_api_and_batch_resolve_alike(options, pool_texts, nodes, tasks, gpus):
    api_options = dict(options, **({"pool": pool_texts} if pool_texts else {}))
    try:
        from_cli, cli_given = cli_options(argv_of(options, pool_texts))
    except UsageError as err:   # a pool's text is parsed at the boundary, once
        with pytest.raises(UsageError) as api_err:
            options_from(api_options)
        assert str(api_err.value) == str(err) and "\n" not in str(err)
        return
    from_api, api_given = options_from(api_options)
    assert from_cli == from_api
    assert cli_given == api_given & set(SOURCES)
    alloc = allocation(nodes, tasks, gpus)
    planned = outcome(from_cli, alloc)
    assert outcome(from_api, alloc) == planned
    if planned[0] == "plan":
        # the CLI's up and the API plan the same steps, which start every worker expected
        steps = [plan_steps(opts, layout, alloc, CONTEXT(len(layout.pools)))
                 for opts, layout in ((outcome(from_cli, alloc)[1], planned[2]),
                                      (outcome(from_api, alloc)[1], planned[2]))]
        assert steps[0] == steps[1]
        assert sum(p.expected for p in steps[0][1]) == planned[2].expected_workers
    # batch, on the allocation its request describes: the same as up inside such a job,
    # whatever names Slurm gives the nodes that no pool names
    try:
        requested = requested_allocation(from_cli, nodes=str(nodes), ntasks_per_node=tasks,
                                         gpus_per_node=gpus or None, cpus_per_task=None,
                                         mem_per_node=16 * GiB)
    except UsageError as err:
        assert "\n" not in str(err)
        return
    requested = Allocation(**{**requested.__dict__, "cpus_per_node": (8,) * nodes,
                              "job_id": "1"})
    at_submit = outcome(from_cli, requested)
    if planned[0] == "plan":
        # what up plans in the job, batch plans at submit time: the same pools, workers,
        # threads, memory and GPUs (the nodes' order may differ: Slurm names them)
        assert at_submit[0] == "plan", at_submit
        assert shape(at_submit[2]) == shape(planned[2])
        assert at_submit[3] == planned[3]
    elif "not in the allocation" not in planned[1]:
        # a host that is not in this job: only the job itself can tell
        assert at_submit == planned


def CONTEXT(pools: int) -> StepContext:  # noqa: N802 - a factory, read as a constant
    return StepContext(scheduler_file="/s/scheduler.json", logs="/s/logs", config_dir="/s/dask",
                       local=False, scheduler_name="dl-sched-x",
                       pool_names=tuple(f"dl-workers1-{i}" for i in range(pools)),
                       tls_env={"scheduler": {"A": "1"}, "worker": {"B": "2"}})


def shape(layout) -> list[tuple]:
    return sorted((p.name, p.expected_workers, p.plan.memory_limit, p.plan.nthreads,
                   p.gpus_per_worker) for p in layout.pools)


@PROPERTY
@given(options=OPTIONS, pool_texts=pools(), nodes=st.integers(1, 3),
       gpus=st.sampled_from([0, 2]))
def test_batch_ends_in_a_script_or_a_one_line_refusal(cli, options, pool_texts, nodes, gpus):
    argv = ["batch", "--dry-run", "--nodes", str(nodes), "--ntasks-per-node", "2",
            *(["--gpus-per-node", str(gpus)] if gpus else []),
            *argv_of(options, pool_texts), "--", "python3", "x.py"]
    result = cli(*argv)
    if result.exit_code == 0:
        assert result.stdout.startswith("#!/bin/bash")
        return
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("dasklaunch: error: "), lines
    assert "internal error" not in lines[0] and "Traceback" not in result.stderr

import pytest

from dasklaunch.domain.allocation import Allocation
from dasklaunch.domain.dask_argv import scheduler_command, worker_command
from dasklaunch.domain.plan import expected_workers, plan_workers
from dasklaunch.domain.settings import UpOptions
from dasklaunch.domain.units import parse_bytes
from dasklaunch.errors import UsageError

GiB = 2**30
# 8 GiB nodes by default: 90% for the workers, less 5% of the node (0.4 GiB) for the scheduler
USABLE = int(8 * GiB * 0.9) - int(8 * GiB * 0.05)


def alloc(nodes=3, tasks=2, cpus=4, mem=8 * GiB, cpus_per_task=None):
    return Allocation(job_id="9", nodes=tuple(f"node{i}" for i in range(1, nodes + 1)),
                      tasks_per_node=(tasks,) * nodes, cpus_per_node=(cpus,) * nodes,
                      cpus_per_task=cpus_per_task, mem_per_node=mem)


@pytest.mark.parametrize("text, value", [
    ("12 GB", 12 * 10**9), ("12GiB", 12 * GiB), ("12e9", 12 * 10**9), ("1.5TB", 1.5e12),
    ("512MiB", 512 * 2**20), ("100", 100), (2000, 2000), (" 2 gb ", 2 * 10**9),
])
def test_parse_bytes(text, value):
    assert parse_bytes(text) == value


@pytest.mark.parametrize("bad", ["twelve", "12 XB", "", "GB", "-5GB"])
def test_parse_bytes_rejects(bad):
    with pytest.raises(UsageError):
        parse_bytes(bad)


def test_per_task_layout_inherits_the_allocation():
    plan = plan_workers(alloc(), UpOptions())
    assert (plan.placement, plan.ntasks, plan.nworkers, plan.nthreads) == ("tasks", 6, 1, 2)
    assert plan.expected_workers == 6
    assert int(plan.memory_limit) == USABLE // 2  # node memory shared by its 2 workers
    assert plan.memory_note == ("8.00 GiB per node (unknown) x 0.9 - 409.60 MiB for the "
                                "scheduler / 2 workers = 3.40 GiB per worker")


def test_per_node_layout_gives_each_node_one_worker_with_all_cpus():
    plan = plan_workers(alloc(), UpOptions(per_node=True))
    assert (plan.placement, plan.ntasks, plan.nthreads) == ("per-node", 3, 4)
    assert int(plan.memory_limit) == USABLE
    assert "/ 1 worker = " in plan.memory_note


def test_nworkers_splits_threads_and_memory():
    plan = plan_workers(alloc(tasks=1), UpOptions(nworkers=2))
    assert plan.nthreads == 2 and plan.expected_workers == 6
    assert int(plan.memory_limit) == USABLE // 2


def test_cpus_per_task_wins():
    assert plan_workers(alloc(cpus_per_task=3), UpOptions()).nthreads == 3


def test_no_memory_information_gives_each_worker_a_share_of_its_node():
    """Not Dask's `auto`, which splits a node by cores per `dask worker`, blind to the other
    tasks on the node: a fraction below 1, which Dask applies to the node's memory there."""
    plan = plan_workers(alloc(mem=None), UpOptions())
    assert plan.memory_limit == "0.45"  # 0.9 shared by the node's 2 workers
    assert "unknown memory per node" in plan.memory_note


def test_the_scheduler_reserve_is_at_most_1_gib():
    plan = plan_workers(alloc(mem=64 * GiB, tasks=1), UpOptions())
    assert int(plan.memory_limit) == int(64 * GiB * 0.9) - GiB


def test_memory_limit_larger_than_the_node_is_refused():
    with pytest.raises(UsageError, match="exceeds"):
        plan_workers(alloc(), UpOptions(memory_limit="6GiB"))
    assert plan_workers(alloc(), UpOptions(memory_limit="3GiB")).memory_limit == "3GiB"


def test_bad_options():
    with pytest.raises(UsageError):
        plan_workers(alloc(), UpOptions(nworkers=0))
    with pytest.raises(UsageError, match="no-nanny"):
        plan_workers(alloc(), UpOptions(nanny=False, nworkers=2))
    with pytest.raises(UsageError):
        expected_workers(plan_workers(alloc(), UpOptions()), UpOptions(wait_workers="7"))
    with pytest.raises(UsageError):
        expected_workers(plan_workers(alloc(), UpOptions()), UpOptions(wait_workers="x"))
    assert expected_workers(plan_workers(alloc(), UpOptions()), UpOptions(wait_workers="4")) == 4


def test_scheduler_command():
    opts = UpOptions(interface="ib0", scheduler_args=("--idle-timeout", "1h"))
    assert scheduler_command(opts, "/s/scheduler.json", local=False, python="py") == [
        "py", "-m", "distributed.cli.dask_scheduler", "--scheduler-file", "/s/scheduler.json",
        "--port", "0", "--dashboard-address", "8787", "--preload",
        "dasklaunch.runtime.scheduler_plugin", "--interface", "ib0",
        "--idle-timeout", "1h"]
    local = scheduler_command(UpOptions(), "/f", local=True, python="py")
    assert local[-2:] == ["--host", "127.0.0.1"]


def test_worker_command_never_uses_nprocs():
    opts = UpOptions(interface="ipogif0", local_directory="/tmp", worker_args=("--lifetime", "1h"))
    plan = plan_workers(alloc(), opts)
    argv = worker_command(opts, plan, "/s/f.json", local=False, python="py")
    assert argv == ["py", "-m", "distributed.cli.dask_worker", "--scheduler-file", "/s/f.json",
                    "--nthreads", "2", "--nworkers", "1", "--memory-limit", str(USABLE // 2),
                    "--death-timeout", "60", "--interface", "ipogif0", "--local-directory",
                    "/tmp", "--lifetime", "1h"]
    assert "--nprocs" not in argv
    no_nanny = worker_command(UpOptions(nanny=False), plan, "/f", local=True, python="py")
    assert "--no-nanny" in no_nanny and no_nanny[no_nanny.index("--host") + 1] == "127.0.0.1"


def test_options_round_trip_through_the_record():
    opts = UpOptions(interface="lab0", worker_args=("--a", "b"), extra_env=(("X", "1"),))
    assert UpOptions.from_dict(opts.to_dict()) == opts


def test_start_method_env():
    from dasklaunch.domain.dask_argv import (
        PRE_SPAWN_ENVIRON,
        START_METHOD_VARIABLE,
        start_method_env,
    )

    # the default, prefork, is the node launcher's own: no Dask variable, the pre-spawn
    # environment from the step's start (the hash seed included)
    assert start_method_env(None, {}) == start_method_env("prefork", {}) == PRE_SPAWN_ENVIRON
    assert PRE_SPAWN_ENVIRON["PYTHONHASHSEED"] == "6640"
    assert start_method_env("spawn", {}) == {START_METHOD_VARIABLE: "spawn"}
    forked = start_method_env("fork", {"OMP_NUM_THREADS": "8"})
    assert forked[START_METHOD_VARIABLE] == "fork"
    assert "OMP_NUM_THREADS" not in forked  # the user's own setting wins
    assert forked["MALLOC_TRIM_THRESHOLD_"] == PRE_SPAWN_ENVIRON["MALLOC_TRIM_THRESHOLD_"]
    with pytest.raises(UsageError, match="--start-method"):
        start_method_env("vfork", {})

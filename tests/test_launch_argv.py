import datetime

import pytest

from dasklaunch.domain.step_plan import StepPlan
from dasklaunch.errors import CommandError
from dasklaunch.launch.local import localstep_argv
from dasklaunch.launch.slurm import guard_argv
from dasklaunch.slurm.commands import (
    parse_jobs,
    parse_steps,
    parse_version,
    scancel_argv,
    squeue_jobs_argv,
    squeue_steps_argv,
    srun_argv,
)


def step(placement, ntasks=6, nnodes=3, role="workers"):
    return StepPlan(role=role, name="dl-workers1-abc", placement=placement, ntasks=ntasks,
                    nnodes=nnodes, command=("dask-cmd", "--x"))


def test_srun_for_the_scheduler_step_on_the_first_node():
    argv = srun_argv(step("first-node", 1, 1, "scheduler"), "123", "node1")
    assert argv == ["srun", "--jobid=123", "--job-name=dl-workers1-abc", "--overlap",
                    "--nodes=1", "--ntasks=1", "--nodelist=node1", "--kill-on-bad-exit=1",
                    "dask-cmd", "--x"]


def test_srun_for_workers_per_task_and_per_node():
    assert srun_argv(step("tasks"), "123") == [
        "srun", "--jobid=123", "--job-name=dl-workers1-abc", "--overlap", "--nodes=3",
        "--ntasks=6", "--kill-on-bad-exit=0", "--no-kill", "dask-cmd", "--x"]
    per_node = srun_argv(step("per-node", 3, 3), "123")
    assert "--ntasks-per-node=1" in per_node and "--ntasks=3" in per_node


def test_squeue_scancel_and_guard():
    assert squeue_steps_argv("7") == ["squeue", "--noheader", "--steps", "--jobs=7",
                                      "--format=%i %j"]
    assert scancel_argv("7.1", signal="TERM") == ["scancel", "--signal=TERM", "7.1"]
    assert scancel_argv("7.1") == ["scancel", "7.1"]
    assert guard_argv("7", ["a", "b"], python="py") == [
        "py", "-m", "dasklaunch.launch.guard", "--job-id", "7", "--", "a", "b"]


def test_parse_steps():
    out = "7.0 dl-sched-1\n7.1 dl-workers1-2\n7.extern extern\n\n"
    assert parse_steps(out) == {"dl-sched-1": "7.0", "dl-workers1-2": "7.1", "extern": "7.extern"}


def test_localstep_argv():
    assert localstep_argv(step("tasks", 2, 1), python="py") == [
        "py", "-m", "dasklaunch.launch.localstep", "--ntasks=2", "--job-name=dl-workers1-abc", "--",
        "dask-cmd", "--x"]


@pytest.mark.parametrize("output, version", [
    ("slurm 22.05.8\n", (22, 5, "22.05.8")),
    ("slurm-wlm 24.11.5\n", (24, 11, "24.11.5")),
    ("slurm 25.11.0-0rc1\n", (25, 11, "25.11.0-0rc1")),
])
def test_parse_version(output, version):
    assert parse_version(output) == version


def test_parse_version_without_a_version_is_an_error():
    with pytest.raises(CommandError, match="printed no version"):
        parse_version("srun: command not understood")


def test_squeue_jobs_is_one_call_for_many_jobs():
    assert squeue_jobs_argv(["7", "8"]) == ["squeue", "--noheader", "--jobs=7,8",
                                            "--format=%i %T %e %r"]
    jobs = parse_jobs("7 RUNNING 2026-12-01T05:00:00\n8 PENDING N/A\n")
    assert jobs["7"].state == "RUNNING"
    assert jobs["7"].end_time == datetime.datetime(2026, 12, 1, 5).timestamp()  # local time
    assert jobs["8"].end_time is None and not jobs["8"].ended
    assert parse_jobs("9 COMPLETED N/A\n")["9"].ended
    # the reason comes last, whole: Slurm's may hold spaces
    waiting = parse_jobs("10 PENDING N/A ReqNodeNotAvail, UnavailableNodes:node3\n"
                         "11 RUNNING N/A None\n")
    assert waiting["10"].reason == "ReqNodeNotAvail, UnavailableNodes:node3"
    assert waiting["11"].reason == "" and jobs["7"].reason == ""

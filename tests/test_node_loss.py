"""Which of a pool's nodes the job still has: the restart of a pool (restart-workers, the
supervisor, a relaunch after `down --pool`) relaunches it on those, at full size when none
was lost. A heterogeneous job's pool reads its own component's nodes."""

from __future__ import annotations

import pytest

from dasklaunch.domain.step_plan import StepPlan
from dasklaunch.ops.restart import nodes_left
from dasklaunch.runtime.record import StepRun
from dasklaunch.slurm.commands import parse_nodelist

# `scontrol show job --oneliner 5` of `salloc -N1 -n2 : -N2 --ntasks-per-node=2`: a line per
# component (trimmed to the keys that matter)
HET_RECORD = (
    "JobId=5 HetJobId=5 HetJobOffset=0 JobName=interactive JobState=RUNNING NodeList=node1 "
    "BatchHost=node1 NumNodes=1 NumCPUs=2\n"
    "JobId=6 HetJobId=5 HetJobOffset=1 JobName=interactive JobState=RUNNING "
    "NodeList=node[2-3] BatchHost=node2 NumNodes=2 NumCPUs=4\n")
PLAIN_RECORD = "JobId=7 JobName=x JobState=RUNNING NodeList=node[1-3] NumNodes=3\n"


def test_a_het_job_record_gives_each_component_its_own_nodes():
    assert parse_nodelist(HET_RECORD) == "node1"
    assert parse_nodelist(HET_RECORD, 0) == "node1"
    assert parse_nodelist(HET_RECORD, 1) == "node[2-3]"
    assert parse_nodelist(HET_RECORD, 2) is None
    assert parse_nodelist(PLAIN_RECORD) == "node[1-3]"
    assert parse_nodelist("") is None


def pool(nnodes: int, nodelist: str | None = None, het_group: int | None = None) -> StepRun:
    return StepRun(StepPlan(role="workers", name="dl-workers1-x", placement="per-node",
                            ntasks=nnodes * 2, nnodes=nnodes, command=("dask", "worker"),
                            nodelist=nodelist, het_group=het_group, expected=nnodes * 2))


@pytest.mark.parametrize("current, step, left", [
    # a het component's pool, its component's nodes all there: full size
    (["node2", "node3"], pool(2, het_group=1), None),
    # ... one of them lost
    (["node3"], pool(2, het_group=1), ["node3"]),
    # a pool over the whole job
    (["node1", "node2", "node3"], pool(3), None),
    (["node1", "node3"], pool(3), ["node1", "node3"]),
    # a pool on some nodes: only its own count
    (["node1", "node2", "node3"], pool(2, "node2,node3"), None),
    (["node1", "node3"], pool(2, "node2,node3"), ["node3"]),
    # nothing known, or nothing left: relaunched as recorded (the step then says why it fails)
    (None, pool(2, het_group=1), None),
    (["node1"], pool(2, "node2,node3"), None),
])
def test_nodes_left(current, step, left):
    assert nodes_left(current, step) == left


def test_a_het_job_lists_its_steps_under_each_component_id():
    """`squeue --steps --jobs=17` leaves out component 1's steps (listed as 18.N): each
    component's id is read from the job record."""
    from dasklaunch.slurm.commands import parse_het_job_ids

    record = HET_RECORD.replace("HetJobOffset=0", "HetJobOffset=0 HetJobIdSet=5-6")
    assert parse_het_job_ids(record) == ["5", "6"]
    assert parse_het_job_ids("JobId=9 HetJobIdSet=9,11-12 NodeList=a") == ["9", "11", "12"]
    assert parse_het_job_ids(PLAIN_RECORD) == []

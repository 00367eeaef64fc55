import os

import pytest

from dasklaunch.domain.allocation import expand_nodelist, local_allocation
from dasklaunch.domain.node_memory import node_memory
from dasklaunch.errors import NoAllocationError, UsageError
from dasklaunch.slurm.environment import expand_counts, from_slurm_env


@pytest.mark.parametrize("nodelist, hosts", [
    ("nid[00012-00015,00020]", ["nid00012", "nid00013", "nid00014", "nid00015", "nid00020"]),
    ("node[1-3]", ["node1", "node2", "node3"]),
    ("node1,login[01-02]", ["node1", "login01", "login02"]),
    ("c[1-2]-ib", ["c1-ib", "c2-ib"]),
    ("single", ["single"]),
    ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
])
def test_expand_nodelist(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["node[1-3", "node[a-b]"])
def test_expand_nodelist_rejects_malformed(bad):
    with pytest.raises(UsageError):
        expand_nodelist(bad)


def test_expand_counts():
    assert expand_counts("2(x3),1") == [2, 2, 2, 1]
    assert expand_counts("4") == [4]
    with pytest.raises(UsageError):
        expand_counts("2(x)")


def test_from_slurm_env_salloc_n16_n128():
    env = {"SLURM_JOB_ID": "77", "SLURM_JOB_NODELIST": "nid[00001-00016]",
           "SLURM_TASKS_PER_NODE": "8(x16)", "SLURM_JOB_CPUS_PER_NODE": "64(x16)",
           "SLURM_MEM_PER_NODE": "128000", "SLURM_SUBMIT_HOST": "login3"}
    alloc = from_slurm_env(env)
    assert alloc.job_id == "77"
    assert alloc.nnodes == 16 and alloc.ntasks == 128
    assert alloc.cpus_per_node == (64,) * 16
    assert alloc.mem_per_node == 128000 * 2**20
    assert alloc.submit_host == "login3"


def test_from_slurm_env_mem_per_cpu_and_ntasks_spread():
    env = {"SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "a,b", "SLURM_NTASKS": "3",
           "SLURM_CPUS_ON_NODE": "4", "SLURM_MEM_PER_CPU": "1000"}
    alloc = from_slurm_env(env)
    assert alloc.tasks_per_node == (2, 1)
    assert alloc.cpus_per_node == (4, 4)
    assert alloc.mem_per_node == 4 * 1000 * 2**20


def test_from_slurm_env_needs_a_job():
    with pytest.raises(NoAllocationError, match="SLURM_JOB_ID"):
        from_slurm_env({})


def test_count_list_must_match_nodes():
    with pytest.raises(UsageError):
        from_slurm_env({"SLURM_JOB_ID": "1", "SLURM_JOB_NODELIST": "a,b",
                        "SLURM_TASKS_PER_NODE": "2(x3)"})


def test_local_allocation_defaults_to_cpu_count():
    alloc = local_allocation()
    assert alloc.nnodes == 1 and alloc.ntasks == len(os.sched_getaffinity(0))
    assert alloc.mem_per_node == node_memory({})[0]
    assert local_allocation(3).ntasks == 3
    with pytest.raises(UsageError):
        local_allocation(-1)


def test_memory_from_the_job_record_when_salloc_exports_none():
    record = "JobId=5 NumCPUs=2 MinCPUsNode=1 MinMemoryNode=2000M MinTmpDiskNode=0"
    env = {"SLURM_JOB_ID": "5", "SLURM_JOB_NODELIST": "a", "SLURM_JOB_CPUS_PER_NODE": "2"}
    asked = []
    alloc = from_slurm_env(env, job_record=lambda job: asked.append(job) or record)
    assert asked == ["5"] and alloc.mem_per_node == 2000 * 2**20
    per_cpu = from_slurm_env(env, job_record=lambda job: "MinMemoryCPU=1G MinMemoryNode=0")
    assert per_cpu.mem_per_node == 2 * 2**30
    assert from_slurm_env(env, job_record=lambda job: "NumCPUs=2").mem_per_node is None

"""Worker pools and GPUs: token parsing, pool specs, layouts and refusals (pure), and what the
node launcher starts on a node."""

from __future__ import annotations

import re

import pytest

from dasklaunch.domain.allocation import Allocation
from dasklaunch.domain.gpus import (
    parse_nvidia_smi,
    parse_rocm_smi,
    parse_tokens,
    slurm_gpus_per_node,
    visible_gpus,
)
from dasklaunch.domain.pool_spec import parse_pool
from dasklaunch.domain.pools import Layout, plan_pools
from dasklaunch.domain.settings import UpOptions
from dasklaunch.errors import UsageError
from dasklaunch.launch.node import gpu_workers, split_cpus
from dasklaunch.slurm.environment import from_slurm_env

GiB = 2**30


# ---------------------------------------------------------------------------------- GPU tokens

@pytest.mark.parametrize("value, tokens", [
    ("0,1", ("0", "1")),
    ("GPU-8c1c4f1e-2a4b-11ee-be56-0242ac120002,GPU-1f2a", ("GPU-8c1c4f1e-2a4b-11ee-be56-"
                                                           "0242ac120002", "GPU-1f2a")),
    ("MIG-4b1a9f0e-1d2c-5e6f-8a9b-0c1d2e3f4a5b", ("MIG-4b1a9f0e-1d2c-5e6f-8a9b-0c1d2e3f4a5b",)),
    (" 2 , 3 ,", ("2", "3")),
    ("", ()), ("NoDevFiles", ()), ("-1", ()),
])
def test_tokens_are_opaque_and_keep_their_order(value, tokens):
    assert parse_tokens(value) == tokens


@pytest.mark.parametrize("env, vendor, variables", [
    ({"CUDA_VISIBLE_DEVICES": "0,1"}, "nvidia",
     {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}),
    ({"ROCR_VISIBLE_DEVICES": "0,1"}, "amd",
     {"ROCR_VISIBLE_DEVICES": "1", "HIP_VISIBLE_DEVICES": "1"}),
    ({"ZE_AFFINITY_MASK": "0,1"}, "intel", {"ZE_AFFINITY_MASK": "1"}),
    ({"SLURM_STEP_GPUS": "0,1"}, "nvidia",
     {"CUDA_VISIBLE_DEVICES": "1", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}),
])
def test_each_vendor_is_pinned_through_its_own_variable(env, vendor, variables):
    gpus = visible_gpus(env)
    assert gpus.vendor == vendor and gpus.tokens == ("0", "1")
    assert gpus.variables(("1",)) == variables


def test_no_gpus_when_none_are_named_or_the_list_is_empty():
    assert visible_gpus({}) is None
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) is None


def test_smi_listings():
    nvidia = ("GPU 0: NVIDIA H200 (UUID: GPU-aaaa)\n"
              "  MIG 1g.18gb Device 0: (UUID: MIG-bbbb)\nGPU 1: NVIDIA H200 (UUID: GPU-cccc)\n")
    assert parse_nvidia_smi(nvidia) == ("0", "1")
    rocm = "GPU[0]\t\t: Device ID: 0x74a1\nGPU[1]\t\t: Device ID: 0x74a1\n"
    assert parse_rocm_smi(rocm) == ("0", "1")


@pytest.mark.parametrize("env, counts", [
    ({"SLURM_GPUS_PER_NODE": "2"}, (2, 2)),
    ({"SLURM_GPUS_PER_NODE": "a100:4"}, (4, 4)),
    ({"SLURM_GPUS_PER_NODE": "gpu:a100:2,gpu:v100:1"}, (3, 3)),
    ({"SLURM_GPUS_ON_NODE": "2"}, (2, 2)),
    ({"SLURM_JOB_GPUS": "0,1,2"}, (3, 3)),
    ({"SLURM_GPUS_PER_TASK": "1", "SLURM_NTASKS_PER_NODE": "4"}, (4, 4)),
    ({}, (0, 0)),
])
def test_gpus_per_node_from_slurm(env, counts):
    assert slurm_gpus_per_node(env, 2) == counts


def test_heterogeneous_job_components():
    env = {"SLURM_JOB_ID": "5", "SLURM_HET_SIZE": "2",
           "SLURM_JOB_NODELIST_HET_GROUP_0": "node1", "SLURM_JOB_NODELIST_HET_GROUP_1": "node[2-3]",
           "SLURM_TASKS_PER_NODE_HET_GROUP_0": "1", "SLURM_TASKS_PER_NODE_HET_GROUP_1": "2(x2)",
           "SLURM_JOB_CPUS_PER_NODE_HET_GROUP_0": "4", "SLURM_JOB_CPUS_PER_NODE_HET_GROUP_1":
           "4(x2)", "SLURM_GPUS_PER_NODE_HET_GROUP_1": "2", "SLURM_MEM_PER_NODE": "2000"}
    alloc = from_slurm_env(env)
    assert alloc.nodes == ("node1", "node2", "node3")
    assert alloc.het_groups == (0, 1, 1) and alloc.gpus_per_node == (0, 2, 2)
    assert alloc.tasks_per_node == (1, 2, 2)
    pools = plan_pools(alloc, UpOptions())
    assert [(p.name, p.het_group, p.node_indices, p.gpus_per_worker) for p in pools] == [
        ("het0", 0, (0,), 0), ("het1", 1, (1, 2), 1)]
    assert pools[1].expected_workers == 4  # one per GPU


# ---------------------------------------------------------------------------------- pool specs

def test_pool_spec():
    spec = parse_pool("big:nodes=node[2-3],nthreads=4,memory-limit=12GiB,resources=BIGMEM:1+SSD:2,"
                      "worker-arg=--lifetime=1h,worker-arg=--lifetime-stagger=5m,share=yes")
    assert spec.name == "big" and spec.nodes == "node[2-3]" and spec.nthreads == 4
    assert spec.resources == (("BIGMEM", "1"), ("SSD", "2")) and spec.share
    assert spec.worker_args == ("--lifetime=1h", "--lifetime-stagger=5m")


@pytest.mark.parametrize("text, message", [
    ("gpu:nodez=2", "unknown key 'nodez' (keys: nodes, het-group, ntasks-per-node, nworkers, "
                    "nthreads, memory-limit, gpus-per-worker, resources, worker-class, "
                    "local-directory, worker-arg, share, gpu-tasks, dask-cuda, rmm-pool-size, "
                    "device-memory-limit, cudf-spill, container; did you mean nodes?)"),
    ("gpu:nodes", "'nodes' is not KEY=VALUE"),
    ("1gpu:nodes=1", "a pool is NAME:KEY=VALUE,..."),
    ("gpu:nthreads=0", "nthreads takes a whole number >= 1, not '0'"),
    ("gpu:resources=BIGMEM", "resources are NAME:AMOUNT"),
    ("gpu:share=maybe", "share takes yes or no"),
])
def test_bad_pool_specs(text, message):
    with pytest.raises(UsageError) as err:
        parse_pool(text)
    assert message in str(err.value)


# ---------------------------------------------------------------------------------- layouts

@pytest.mark.parametrize("text, nodes, worker_args", [
    # a Slurm host list, as `scontrol show hostnames` takes it, names a pool's nodes
    ("gpu:nodes=nid[01,03]", "nid[01,03]", ()),
    ("a:nodes=nid[01,03-05],login1,nthreads=2", "nid[01,03-05]", ()),
    ("a:nodes=2,worker-arg='--resources=A=1,B=2'", "2", ("--resources=A=1,B=2",)),
    ('a:worker-arg="--lifetime=1h",worker-arg=--lifetime-stagger=5m', None,
     ("--lifetime=1h", "--lifetime-stagger=5m")),
])
def test_pool_text_keeps_host_lists_and_quoted_values_whole(text, nodes, worker_args):
    if "login1" in text:
        with pytest.raises(UsageError, match="'login1' is not KEY=VALUE"):
            parse_pool(text)
        return
    spec = parse_pool(text)
    assert (spec.nodes, spec.worker_args) == (nodes, worker_args)


@pytest.mark.parametrize("text, message", [
    ("a:nodes=0", "nodes takes a node count of 1 or more or a Slurm host list (node[1-3]), "
                  "not '0'"),
    ("a:nodes=-1", "not '-1'"),
    ("a:nodes=nid[01", "unbalanced brackets"),
    ("a:worker-arg='--x", "unbalanced quote"),
])
def test_pool_text_refusals(text, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        parse_pool(text)


def test_profile_pools_keep_host_lists_and_commas_whole():
    from dasklaunch.profiles.hints import profile_pools

    (spec,) = profile_pools([{"name": "gpu", "nodes": "nid[01,03]",
                              "worker-arg": ["--resources=A=1,B=2"]}])
    assert spec.nodes == "nid[01,03]" and spec.worker_args == ("--resources=A=1,B=2",)


def test_a_host_list_pool_is_planned_on_those_nodes():
    allocation = Allocation(job_id="9", nodes=("nid01", "nid02", "nid03"),
                            tasks_per_node=(1, 1, 1), cpus_per_node=(4, 4, 4), mem_per_node=8 * GiB)
    sel, rest = plan(allocation, "sel:nodes=nid[01,03]", "rest")
    assert sel.node_indices == (0, 2) and rest.node_indices == (1,)


def alloc(nodes=3, tasks=2, cpus=4, gpus=0, mem=8 * GiB):
    return Allocation(job_id="9", nodes=tuple(f"node{i}" for i in range(1, nodes + 1)),
                      tasks_per_node=(tasks,) * nodes, cpus_per_node=(cpus,) * nodes,
                      mem_per_node=mem, gpus_per_node=(gpus,) * nodes if gpus else ())


def plan(allocation, *specs, **opts):
    return plan_pools(allocation, UpOptions(**opts), tuple(parse_pool(s) for s in specs))


def test_default_is_one_pool_on_every_node():
    (pool,) = plan(alloc())
    assert pool.name == "workers" and pool.node_indices == (0, 1, 2)
    assert pool.expected_workers == 6 and pool.gpus_per_worker == 0


def test_gpu_nodes_get_one_worker_per_gpu_from_one_task_per_node():
    (pool,) = plan(alloc(gpus=2))
    assert pool.gpus_per_worker == 1 and pool.plan.placement == "per-node"
    assert pool.plan.ntasks == 3 and pool.expected_workers == 6
    assert pool.plan.nthreads == 2  # the node's 4 CPUs split between its 2 GPU workers
    assert dict(pool.resources) == {"GPU": "1"}


def test_cpu_and_gpu_pools_split_the_nodes_in_order():
    cpu, gpu = plan(alloc(gpus=2), "cpu:nodes=1", "gpu:nodes=2")
    assert cpu.node_indices == (0,) and cpu.gpus_per_worker == 0 and cpu.expected_workers == 2
    assert gpu.node_indices == (1, 2) and gpu.gpus_per_worker == 1 and gpu.expected_workers == 4
    assert Layout((cpu, gpu)).expected_workers == 6


def test_a_pool_without_nodes_takes_the_rest_and_host_lists_pick_nodes():
    big, rest = plan(alloc(), "big:nodes=node3,resources=BIGMEM:1", "rest:nthreads=1")
    assert big.node_indices == (2,) and dict(big.resources) == {"BIGMEM": "1"}
    assert rest.node_indices == (0, 1)


def test_shared_nodes_share_their_memory():
    a, b = plan(alloc(nodes=1, tasks=1), "a:nodes=1,share=yes", "b:nodes=1,share=yes")
    alone = plan(alloc(nodes=1, tasks=1))[0]
    # two pools on the node: each gets half of what one pool alone gets
    assert abs(int(a.plan.memory_limit) - int(alone.plan.memory_limit) / 2) <= 1
    assert a.plan.memory_limit == b.plan.memory_limit


@pytest.mark.parametrize("pools", [1, 2, 3])
@pytest.mark.parametrize("tasks", [1, 2, 4])
def test_pools_sharing_a_node_subtract_the_scheduler_reserve_once(pools, tasks):
    """The node's workers together get its fraction less one scheduler reserve, however many
    pools share it (each pool took the whole reserve: two pools left 1 GiB unused)."""
    from dasklaunch.domain.plan import DEFAULT_MEMORY_FRACTION, scheduler_reserve

    mem = 8 * GiB
    specs = [f"p{i}:nodes=1,share=yes,ntasks-per-node={tasks}" for i in range(pools)]
    plans = plan(alloc(nodes=1, tasks=tasks, mem=mem), *specs)
    total = sum(int(p.plan.memory_limit) * p.plan.ntasks * p.plan.nworkers for p in plans)
    budget = int(mem * DEFAULT_MEMORY_FRACTION) - scheduler_reserve(mem)
    # within the rounding of each pool's share and of each worker's floor division
    assert budget - pools * tasks * 2 <= total <= budget + pools
    if pools > 1:
        assert f"(its share, {pools} pools on the node)" in plans[0].plan.memory_note


@pytest.mark.parametrize("allocation, specs, message", [
    (alloc(gpus=2), ["gpu:gpus-per-worker=4"], "gpus-per-worker=4, but its nodes have 2 GPUs"),
    # a pool named gpu on nodes without GPUs (salloc without --gpus-per-node), whatever else
    # it says, is refused as gpus-per-worker=1 is; gpus-per-worker=0 asks for CPU workers
    (alloc(), ["gpu:dask-cuda=no"], "a pool named gpu gets 1 GPU per worker, but its nodes "
                                    "have none (ask Slurm for them: --gpus-per-node"),
    (alloc(), ["gpu"], "a pool named gpu gets 1 GPU per worker, but its nodes have none"),
    (alloc(), ["gpu:gpus-per-worker=1"], "gpus-per-worker=1, but its nodes have 0 GPUs"),
    (alloc(), ["big:nodes=5"], "nodes=5, but only 3 nodes of the allocation are free"),
    (alloc(), ["a:nodes=2", "b:nodes=2"], "nodes=2, but only 1 node of the allocation is free"),
    (alloc(), ["a:nodes=node[1-2]", "b:nodes=node2"], "pools a and b both want node2"),
    (alloc(), ["a:nodes=node9"], "node9 not in the allocation"),
    (alloc(), ["a:nthreads=1", "b:nthreads=2"], "all take the remaining nodes"),
    (alloc(), ["a:het-group=1"], "is not a heterogeneous job"),
    (alloc(), ["a:ntasks-per-node=8"], "ntasks-per-node=8 is more than the 4 CPUs"),
    (alloc(), ["a:nodes=1", "a:nodes=1"], "pool names must differ"),
])
def test_refusals_name_what_is_missing(allocation, specs, message):
    with pytest.raises(UsageError) as err:
        plan(allocation, *specs)
    assert message in str(err.value)


# ---------------------------------------------------------------------------------- node launcher

def test_split_cpus():
    assert split_cpus(list(range(8)), 2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert split_cpus(list(range(5)), 2) == [[0, 1, 2], [3, 4]]
    assert split_cpus([0], 2) == [[0], [0]]  # fewer CPUs than workers: they share


def test_gpu_workers_on_a_node():
    gpus = visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b,GPU-c,GPU-d"})
    workers = gpu_workers("gpu", "node2", gpus, 2, ["dask", "worker"], list(range(8)))
    assert [w[0][-1] for w in workers] == ["gpu-node2-gpuGPU-a-GPU-b", "gpu-node2-gpuGPU-c-GPU-d"]
    assert [w[1]["CUDA_VISIBLE_DEVICES"] for w in workers] == ["GPU-a,GPU-b", "GPU-c,GPU-d"]
    assert [w[2] for w in workers] == [[0, 1, 2, 3], [4, 5, 6, 7]]


# --- a CPU pool with several tasks per node: one launcher per node starts the node's workers

def _folded(allocation, *specs, local=False, **opts):
    from dasklaunch.domain.dask_argv import workers_per_task

    options = UpOptions(**opts)
    return [workers_per_task(options, pool, tuple(allocation.tasks_per_node[i]
                                                  for i in pool.node_indices), local=local)
            for pool in plan(allocation, *specs, **opts)]


@pytest.mark.parametrize("allocation, specs, opts, local, per_task", [
    (alloc(tasks=2), (), {}, False, 2),
    (alloc(tasks=4, cpus=8), (), {"nthreads": 1}, False, 4),
    (alloc(tasks=1), (), {}, False, 1),                                   # one per node already
    (alloc(tasks=2), (), {}, True, 1),                                    # local: forked already
    (alloc(tasks=2), (), {"start_method": "spawn"}, False, 1),            # each task imports
    (alloc(tasks=2), (), {"start_method": "forkserver"}, False, 1),
    (alloc(tasks=2), (), {"nanny": False}, False, 1),
    (alloc(tasks=2), (), {"per_node": True}, False, 1),                   # one worker per node
    (alloc(tasks=2, gpus=2), (), {}, False, 1),                           # GPU pools: their own
    (alloc(tasks=1), ("a:ntasks-per-node=3",), {}, False, 3),
    (Allocation(job_id="1", nodes=("n1", "n2"), tasks_per_node=(2, 1), cpus_per_node=(4, 4)),
     (), {}, False, 1),                                                   # uneven: per task
    (alloc(tasks=2), (), {"per_node": False}, False, 1),                  # --per-task given
    (alloc(tasks=2), (), {"memory_limit": "auto"}, False, 1),   # Dask's auto: per import's CPUs
    (alloc(tasks=2), (), {"drain_timeout": 0}, False, 1),       # no shield: two SIGTERMs each
])
def test_which_pools_run_one_launcher_per_node(allocation, specs, opts, local, per_task):
    assert _folded(allocation, *specs, local=local, **opts) == [per_task]


def test_a_node_launcher_names_and_pins_the_workers_of_its_nodes_tasks(monkeypatch):
    from dasklaunch.launch.node import node_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    monkeypatch.setattr("dasklaunch.launch.node.by_core", sorted)
    env = {"SLURMD_NODENAME": "node2", "SLURM_LOCALID": "0"}
    workers = node_workers("a", 0, ["dask", "worker"], env, workers_per_task=3)
    assert [argv[-1] for argv, _, _ in workers] == ["a-node2-0", "a-node2-1", "a-node2-2"]
    assert [cpus for _, _, cpus in workers] == [[0, 1], [2, 3], [4, 5]]
    (single,) = node_workers("a", 0, ["dask", "worker"], env)
    assert single[0][-1] == "a-node2-0" and single[2] is None


def test_a_node_launcher_slices_whole_cores_and_keeps_sockets_apart(tmp_path):
    """Hyperthread siblings numbered k and k + 4, two sockets numbered alternately: the slices
    of a folded task hold whole cores of one socket, as Slurm's task binding would."""
    from dasklaunch.launch.node import by_core

    for cpu in range(8):
        core = cpu % 4
        topology = tmp_path / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{core % 2}\n")
        (topology / "core_id").write_text(f"{core}\n")
    ordered = by_core(set(range(8)), str(tmp_path))
    assert split_cpus(ordered, 2) == [[0, 4, 2, 6], [1, 5, 3, 7]]
    assert by_core({3, 1, 2}, str(tmp_path / "missing")) == [1, 2, 3]

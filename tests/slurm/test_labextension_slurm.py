"""dasklaunch's Cluster behind JupyterLab's Dask sidebar: dask-labextension's own server-side
cluster manager (what "+ NEW", the scale dialog and the close button call) creates, scales,
adapts and closes it on the testbed, through the documented `labextension.factory` setting."""

from __future__ import annotations

import importlib.util
import shutil
import uuid
from pathlib import Path

import pytest
from slurmbed import wait_no_processes

# not imported here: on Python 3.14 dask-labextension 7.0.0 cannot be imported outside a running
# event loop (its module creates a manager, whose tornado Future needs one); the server imports
# it inside its loop, and so does the driver below
if importlib.util.find_spec("dask_labextension") is None:
    pytest.skip("dask-labextension is not installed (the test extra has it)",
                allow_module_level=True)


@pytest.fixture
def shared_dir():
    path = Path.home() / ".dasklaunch-tests" / uuid.uuid4().hex[:12]
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_labextension_manager_creates_scales_adapts_and_closes(slurm, shared_dir, tmp_path):
    # its import copies labextension.yaml into the Dask config dir: a scratch one, not ~/.config
    result = slurm.login(f'''
import asyncio
import dask

FACTORY = {{"module": "dasklaunch", "class": "Cluster", "args": [],
           "kwargs": {{"cores": 1, "memory": "300MB", "interface": "lab0",
                      "walltime": "10:00", "state-dir": {str(shared_dir)!r}}}}}

async def until(manager, cluster_id, check, timeout=120):
    start = time.time()
    while time.time() - start < timeout:
        model = manager.get_cluster(cluster_id)
        if check(model):
            return model
        await asyncio.sleep(1)
    raise SystemExit(f"timed out; the model: {{manager.get_cluster(cluster_id)}}")

async def main():
    from dask_labextension.manager import DaskClusterManager
    config = {{"labextension": {{"factory": FACTORY, "initial": [], "default": {{}}}}}}
    with dask.config.set(config):
        async with DaskClusterManager() as manager:
            start = time.time()
            model = await manager.start_cluster(configuration={{"name": "testbed"}})
            out["start_s"] = round(time.time() - start, 1)
            out["created"] = model
            cluster = manager._clusters[model["id"]]
            out["job_id"] = cluster.job_id
            model = await until(manager, model["id"], lambda m: m["workers"] >= 1)
            out["first"] = model
            await manager.scale_cluster(model["id"], 2)
            out["scaled"] = await until(manager, model["id"], lambda m: m["workers"] == 2)
            out["worker_jobs"] = [j.job_id for j in cluster._read_record().scale_out]
            out["adapted"] = manager.adapt_cluster(model["id"], 1, 3)
            out["adaptive"] = type(cluster._adaptive).__name__
            out["closed"] = await manager.close_cluster(model["id"])
            out["listed"] = manager.list_clusters()

asyncio.run(main())
ids = [out["job_id"], *out["worker_jobs"]]
deadline = time.time() + 60
while time.time() < deadline and sh("squeue", "--noheader", "--jobs=" + ",".join(ids),
                                    "--format=%i").strip():
    time.sleep(1)
out["left"] = sh("squeue", "--noheader", "--jobs=" + ",".join(ids), "--format=%i %T")
''', timeout=300, env={"DASK_CONFIG": str(tmp_path / "dask-config")})
    print(f"\nlabextension manager: start_cluster returned in {result['start_s']} s; "
          f"models {result['first']} -> {result['scaled']}")
    assert result["created"]["name"] == "testbed"
    assert result["created"]["scheduler_address"].startswith("tls://")
    assert result["first"]["workers"] >= 1 and result["scaled"]["workers"] == 2
    assert len(result["worker_jobs"]) == 1            # scale(2): the own worker and one job
    assert result["adapted"]["adapt"] == {"minimum": 1, "maximum": 3}
    assert result["adaptive"] == "JobAdaptive"        # dasklaunch's, job by job
    assert result["closed"]["id"] == result["created"]["id"] and result["listed"] == []
    assert not result["left"].strip()
    assert not wait_no_processes(str(shared_dir))

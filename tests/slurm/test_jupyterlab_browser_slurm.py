"""JupyterLab with dask-labextension in headless Chromium (Debian's), its factory set to
`dasklaunch.Cluster`: "+ NEW" in the Dask sidebar submits the scheduler's job to the testbed
and the cluster's card appears with its worker. The screenshot is kept under test-output/.

It runs with the host's Chromium and JupyterLab, so on the 22.05 testbed (whose clients are
the host's); inside a version's root (24.11, 26.05) it is skipped.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path

import pytest
from jupyterlab_ui import (
    JupyterLabServer,
    chromium_available,
    launch_cluster_in_sidebar,
    write_factory_config,
)
from slurmbed import wait_no_processes

CHECKOUT = Path(__file__).parents[2]
# CI keeps this directory of the checkout as the run's artifacts
OUTPUT = Path(os.environ.get("DASKLAUNCH_TEST_OUTPUT", CHECKOUT / "test-output"))


@pytest.fixture
def browser():
    if Path("/.dasklaunch-root").exists():
        pytest.skip("the browser test runs with the host's Chromium, on the 22.05 testbed")
    missing = chromium_available()
    if missing:
        if os.environ.get("DASKLAUNCH_REQUIRE_SLURM") == "1":
            pytest.fail(f"{missing}; scripts/test installs Chromium and its driver as root")
        pytest.skip(missing)


@pytest.fixture
def shared_dir():
    path = Path.home() / ".dasklaunch-tests" / uuid.uuid4().hex[:12]
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.timeout(300)
def test_new_in_the_dask_sidebar_starts_a_cluster_on_slurm(browser, slurm, tmp_path, shared_dir):
    env = write_factory_config(tmp_path / "dask-config", "dasklaunch", "Cluster", [],
                               {"cores": 1, "memory": "300MB", "interface": "lab0",
                                "walltime": "10:00", "state_dir": str(shared_dir)})
    # the server submits as a user's would: with this testbed's Slurm, running this checkout
    env.update(SLURM_CONF=slurm.env["SLURM_CONF"], PYTHONPATH=str(CHECKOUT))
    OUTPUT.mkdir(parents=True, exist_ok=True)
    screenshot = OUTPUT / "jupyterlab-dask-sidebar-slurm.png"
    server = JupyterLabServer(tmp_path / "lab-root", OUTPUT / "jupyterlab-slurm.log", env=env,
                              state_dir=tmp_path / "jupyter")
    started = time.monotonic()
    server.start()
    try:
        card = launch_cluster_in_sidebar(server, screenshot, min_workers=1, timeout=180,
                                         shutdown=None)
        jobs = slurm.run(["squeue", "--noheader", "--format=%i %j %T"]).stdout
        assert card.name == "Cluster 1" and card.workers == 1, card
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "dasklaunch-cluster RUNNING" in jobs, jobs   # the scheduler's job, on Slurm
        assert server.delete_cluster(card.id)
    finally:
        try:
            server.delete_all_clusters()
        finally:
            server.stop()
    print(f"\n+ NEW to a card with its worker: {card.seconds:.1f} s; all "
          f"{time.monotonic() - started:.1f} s; screenshot {screenshot}")
    assert server.live_members() == []
    job_id = next(line.split()[0] for line in jobs.splitlines() if "dasklaunch-cluster" in line)
    assert slurm.job_gone(job_id, timeout=60)
    assert not wait_no_processes(str(shared_dir))

"""JupyterLab's Dask sidebar starts a cluster with "+ NEW" and shows its workers (headless
Chromium; the factory here is distributed.LocalCluster, set through the server's DASK_CONFIG)."""

from __future__ import annotations

import time

import pytest
from jupyterlab_ui import (
    JupyterLabServer,
    chromium_available,
    launch_cluster_in_sidebar,
    write_factory_config,
)

UNAVAILABLE = chromium_available()

pytestmark = pytest.mark.skipif(UNAVAILABLE is not None, reason=UNAVAILABLE or "")


@pytest.mark.timeout(180)
def test_new_cluster_in_dask_sidebar(tmp_path):
    env = write_factory_config(
        tmp_path / "dask-config",
        "distributed",
        "LocalCluster",
        [],
        {"n_workers": 2, "threads_per_worker": 1, "processes": True},
    )
    server = JupyterLabServer(tmp_path / "lab-root", tmp_path / "jupyterlab.log", env=env)
    screenshot = tmp_path / "dask-sidebar.png"
    started = time.monotonic()
    server.start()
    try:
        up = time.monotonic() - started
        assert server.live_members(), "the server's process group has no live process"
        result = launch_cluster_in_sidebar(
            server, screenshot, min_workers=2, timeout=120, shutdown="ui"
        )
        assert result.workers == 2, result
        assert result.workers_text == "Number of Workers: 2"
        assert result.name == "LocalCluster 1"
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # shutdown="ui" clicked SHUTDOWN; the server must agree the cluster is gone
        assert result.id not in {c["id"] for c in server.list_clusters()}
        assert not server.delete_cluster(result.id)
    finally:
        server.stop()
    print(
        f"server up {up:.1f} s; cluster card with 2 workers {result.seconds:.1f} s after "
        f"+ NEW; all {time.monotonic() - started:.1f} s"
    )
    assert server.proc.returncode is not None
    assert server.live_members() == [], "jupyter lab's process group outlived stop()"

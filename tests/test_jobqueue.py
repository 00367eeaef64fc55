"""dask-jobqueue's jobqueue.slurm settings as defaults for `up`, with their provenance."""

from __future__ import annotations

import os
import subprocess
import sys

from dasklaunch.jobqueue import apply_jobqueue_defaults
from dasklaunch.settings import UpOptions

SECTION = {"interface": "ib0", "cores": 8, "processes": 2, "memory": "16GB",
           "local-directory": "/tmp/x", "worker-extra-args": ["--lifetime", "1h"]}


def test_unset_options_come_from_jobqueue_yaml():
    opts, origin = apply_jobqueue_defaults(UpOptions(), set(), SECTION)
    assert (opts.interface, opts.nworkers, opts.nthreads) == ("ib0", 2, 4)
    assert opts.memory_limit == str(8 * 10**9)
    assert opts.local_directory == "/tmp/x" and opts.worker_args == ("--lifetime", "1h")
    assert origin["interface"] == "jobqueue.yaml (interface)"
    assert origin["memory_limit"] == "jobqueue.yaml (memory / processes)"


def test_the_command_line_wins():
    opts, origin = apply_jobqueue_defaults(UpOptions(interface="lab0", nworkers=1),
                                           {"interface", "nworkers"}, SECTION)
    assert opts.interface == "lab0" and opts.nworkers == 1
    assert origin["interface"] == origin["nworkers"] == "command line"
    assert origin["nthreads"] == "jobqueue.yaml (cores / processes)"


def test_nothing_set_means_defaults():
    opts, origin = apply_jobqueue_defaults(UpOptions(), set(), {})
    assert opts == UpOptions() and set(origin.values()) == {"default"}


def test_dry_run_shows_where_values_came_from(tmp_path):
    config = tmp_path / ".config" / "dask"
    config.mkdir(parents=True)
    (config / "jobqueue.yaml").write_text(
        "jobqueue:\n  slurm:\n    cores: 4\n    processes: 2\n    interface: lo\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "DASK"))}
    env.update(HOME=str(tmp_path), DASKLAUNCH_STATE_DIR=str(tmp_path / "state"))
    out = subprocess.run([sys.executable, "-m", "dasklaunch", "up", "--dry-run",
                          "--local-tasks", "1", "--nthreads", "3"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "# interface: from jobqueue.yaml (interface)" in out.stdout
    assert "# nworkers: from jobqueue.yaml (processes)" in out.stdout
    assert "# nthreads: from command line" in out.stdout
    assert "--nthreads 3 --nworkers 2" in out.stdout and "--interface lo" in out.stdout

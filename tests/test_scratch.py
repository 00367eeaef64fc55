"""Workers' local directory: node-local by default, a warning for a shared one (pure, with a
made-up /proc/mounts)."""

from __future__ import annotations

import io

import pytest

from dasklaunch.domain.pool_spec import parse_pool
from dasklaunch.domain.scratch import dask_default, fs_type, parse_mounts, shared
from dasklaunch.domain.settings import UpOptions
from dasklaunch.ops.local_directory import node_local_directory
from dasklaunch.runtime.report import Reporter

MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw 0 0
10.0.0.5@o2ib:/scratch /lustre lustre rw 0 0
nfs1:/home /home nfs4 rw 0 0
/dev/nvme0n1 /local/scratch xfs rw 0 0
/dev/sdb1 /mnt/my\\040disk ext4 rw 0 0
"""
EVERYTHING = ("/", "/tmp", "/lustre/me/tmp", "/home/me", "/local/scratch", "/mnt/my disk")


def exists(path: str) -> bool:
    return path in EVERYTHING


def test_mounts_are_matched_by_the_longest_mount_point():
    mounts = parse_mounts(MOUNTS)
    assert fs_type("/lustre/me/tmp", mounts) == "lustre"
    assert fs_type("/lustrefs/x", mounts) == "ext4"          # a prefix of the name is not a mount
    assert fs_type("/mnt/my disk/x", mounts) == "ext4"
    assert shared("/home/me/../me", mounts) == "nfs4"
    assert shared("/tmp", mounts) is None
    assert dask_default({"TMPDIR": "/lustre/me/tmp"}, exists) == "/lustre/me/tmp"
    assert dask_default({"TMPDIR": "/gone"}, exists) == "/tmp"


def run(opts: UpOptions, environ: dict, pools: tuple[str, ...] = ()):
    out = io.StringIO()
    specs = tuple(parse_pool(p) for p in pools)
    result = node_local_directory(opts, specs, Reporter(stream=out), environ=environ,
                                  mounts_text=MOUNTS, exists=exists)
    return result.local_directory, out.getvalue()


def test_a_tmpdir_on_a_parallel_file_system_is_replaced_by_node_local_storage():
    chosen, said = run(UpOptions(), {"TMPDIR": "/lustre/me/tmp"})
    assert chosen == "/tmp"
    assert "node-local (/lustre/me/tmp is on lustre)" in said and "warning" not in said


def test_local_defaults_are_left_to_dask():
    assert run(UpOptions(), {}) == (None, "")
    assert run(UpOptions(), {"TMPDIR": "/local/scratch"}) == (None, "")


@pytest.mark.parametrize("opts, environ, pools", [
    (UpOptions(local_directory="/home/me/dask"), {}, ()),
    (UpOptions(worker_args=("--local-directory=/home/me/dask",)), {}, ()),
    (UpOptions(), {}, ("cpu:local-directory=/home/me/dask",)),
    (UpOptions(), {"DASK_TEMPORARY_DIRECTORY": "/home/me/dask"}, ()),
])
def test_a_chosen_shared_directory_is_kept_with_a_warning(opts, environ, pools):
    chosen, said = run(opts, environ, pools)
    assert chosen == opts.local_directory
    assert "/home/me/dask is on a shared file system (nfs4)" in said


def test_no_node_local_storage_at_all_is_a_warning():
    mounts = "nfs1:/ / nfs4 rw 0 0\n"
    out = io.StringIO()
    result = node_local_directory(UpOptions(), (), Reporter(stream=out), environ={},
                                  mounts_text=mounts, exists=lambda p: True)
    assert result.local_directory is None
    assert "none of $TMPDIR, /tmp, /local/scratch is node-local" in out.getvalue()

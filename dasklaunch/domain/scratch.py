"""Pure: where workers keep their files (spilled data, their lock files), and whether a path
lies on a shared (network or parallel) file system, judged from /proc/mounts' text.

Thousands of workers creating and locking files on one Lustre/GPFS/NFS server is slow (420
workers took 7-8 minutes to start so in dask-jobqueue #193), and spilling there loads the
whole machine's file system; node-local storage has neither problem.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

SHARED_TYPES = frozenset({
    "nfs", "nfs4", "lustre", "gpfs", "beegfs", "cephfs", "ceph", "glusterfs", "fuse.glusterfs",
    "panfs", "pvfs2", "orangefs", "wekafs", "cifs", "smbfs", "smb3", "fuse.sshfs", "afs",
    "fuse.weka", "fuse.lustre", "9p", "fuse.beegfs", "fuse.daos", "dvs", "vast",
})
# Where Dask's own default (tempfile.gettempdir()) looks, then the usual node-local scratch.
CANDIDATES = ("$TMPDIR", "/tmp", "/local/scratch")  # noqa: S108 - workers make own dirs there


def parse_mounts(text: str) -> list[tuple[str, str]]:
    """(mount point, file system type) of each line of /proc/mounts, in order."""
    mounts = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3:
            point = (parts[1].replace("\\040", " ").replace("\\011", "\t")
                     .replace("\\134", "\\"))
            mounts.append((point, parts[2]))
    return mounts


def fs_type(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """The type of the file system `path` lies on (the last, longest mount above it)."""
    path = os.path.normpath(path)
    best, kind = -1, None
    for point, fstype in mounts:
        if _under(path, point) and len(point) >= best:
            best, kind = len(point), fstype
    return kind


def shared(path: str, mounts: list[tuple[str, str]]) -> str | None:
    """The shared file system type that `path` is on, or None when it is local."""
    kind = fs_type(path, mounts)
    return kind if kind in SHARED_TYPES else None


def dask_default(environ: Mapping[str, str], exists: Callable[[str], bool]) -> str:
    """Where `dask worker` puts its files when told nothing: Dask's temporary-directory when
    set in the environment, else what tempfile.gettempdir() finds ($TMPDIR, then /tmp)."""
    for name in ("DASK_TEMPORARY_DIRECTORY", "TMPDIR", "TEMP", "TMP"):
        value = environ.get(name)
        if value and exists(value):
            return value
    return "/tmp"  # noqa: S108 - what tempfile.gettempdir() falls back to


def local_choice(environ: Mapping[str, str], mounts: list[tuple[str, str]],
                 exists: Callable[[str], bool]) -> str | None:
    """The first of CANDIDATES that exists and is node-local; None if none is."""
    for candidate in CANDIDATES:
        path = environ.get("TMPDIR", "") if candidate == "$TMPDIR" else candidate
        if path and exists(path) and shared(path, mounts) is None:
            return path
    return None


# Directories that are node-local almost everywhere, whatever file system they are on.
NODE_LOCAL_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run")  # noqa: S108
NODE_LOCAL_TYPES = frozenset({"tmpfs", "ramfs"})


def node_local_path(path: str, mounts: list[tuple[str, str]],
                    environ: Mapping[str, str]) -> str | None:
    """Why `path` is surely node-local (a compute node will not have it), or None: under
    /tmp, /var/tmp, /dev/shm, /run or $TMPDIR, or on a tmpfs. Other local disks are not judged:
    a workstation's home is local and may be what its own jobs use."""
    path = os.path.normpath(path)
    kind = fs_type(path, mounts)
    if kind in NODE_LOCAL_TYPES:
        return f"on {kind}"
    tmpdir = environ.get("TMPDIR")
    for where in (*NODE_LOCAL_DIRS, *([tmpdir] if tmpdir else [])):
        where = os.path.normpath(where)
        if _under(path, where):
            return f"under {where}"
    return None


def _under(path: str, root: str) -> bool:
    """`path` is `root` or lies below it (both normalised)."""
    return path == root or path.startswith(root.rstrip("/") + "/")

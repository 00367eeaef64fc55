"""The per-job state directory: everything a job writes lives here, owner-only, written atomically.

Layout:
    state.json       what runs: backend, job id, options, the scheduler and worker steps
    scheduler.json   Dask's scheduler file (written by the scheduler itself)
    env.sh           `source`-able exports for batch scripts
    logs/            scheduler and worker logs, one file per launch, kept by `down`
    .lock            flock'ed by every command that changes the cluster

A copy of the record also lives outside the state dir, in the user's runtime directory
($XDG_RUNTIME_DIR/dasklaunch, else /tmp/dasklaunch-UID, both owner-only): if the state dir is
deleted while the cluster runs, `down` still finds the process groups and steps to stop.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import stat
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path

from ..errors import BusyError, StateDirError
from .record import ClusterRecord

STATE_FILE = "state.json"
STATE_BACKUP = ".state.json.backup"  # a second copy, so a damaged record never loses the pids
SCHEDULER_FILE = "scheduler.json"
ENV_FILE = "env.sh"
LOCK_FILE = ".lock"
RECORD_VERSION = 1

# the job's own Dask config directory (DASK_CONFIG) inside the state dir, for --profile
JOB_CONFIG_DIR = "dask"


def current_job_id(environ: dict[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("SLURM_JOB_ID") or f"local-{socket.gethostname()}"


def default_state_dir(job_id: str, environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("DASKLAUNCH_STATE_DIR"):
        return Path(env["DASKLAUNCH_STATE_DIR"]).expanduser()
    if env.get("SCRATCH"):
        return Path(env["SCRATCH"]) / "dasklaunch" / job_id
    return Path(env.get("HOME") or Path.home()) / ".dasklaunch" / job_id


def find_state_dir(state_dir: Path | str | None = None, job_id: str | None = None) -> StateDir:
    """--state-dir, else DASKLAUNCH_STATE_DIR, else the default for this job."""
    if state_dir:
        return StateDir(Path(state_dir).expanduser())
    return StateDir(default_state_dir(job_id or current_job_id()))


def atomic_write(target: Path, text: str, mode: int | None = None) -> Path:
    """Replace `target` atomically (temp file beside it + rename), mode 0600 unless `mode`.

    mkstemp creates the temp file with O_EXCL and 0600, and rename replaces a planted
    symlink instead of following it. The temp name ends in .tmp, so a reader globbing for
    *.yaml or *.json (Dask's config loader) never sees a half-written file."""
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise StateDirError(f"cannot write {target}: {err.strerror}") from err
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as err:
        with suppress(OSError):
            os.unlink(tmp)
        raise StateDirError(f"cannot write {target}: {err.strerror}") from err
    return target


def recovery_dir(environ: dict[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return Path(runtime) / "dasklaunch"
    return Path(tempfile.gettempdir()) / f"dasklaunch-{os.getuid()}"


def _own_private_dir(path: Path) -> bool:
    """Create `path` 0700, or accept it when it is ours, a real directory, private."""
    with suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    return (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
            and not info.st_mode & 0o077)


class StateDir:
    def __init__(self, path: Path):
        self.path = Path(path).absolute()

    @property
    def scheduler_file(self) -> Path:
        return self.path / SCHEDULER_FILE

    @property
    def env_file(self) -> Path:
        return self.path / ENV_FILE

    @property
    def record_file(self) -> Path:
        return self.path / STATE_FILE

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def exists(self) -> bool:
        return self.path.is_dir()

    def create(self) -> None:
        """Create (or accept) the directory: ours, a real directory, not writable by others."""
        old_umask = os.umask(0o077)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with suppress(FileExistsError):
                os.mkdir(self.path, 0o700)
            # before writing anything inside: never follow a planted symlink or use a dir
            # that someone else controls
            self.check_safe()
            (self.logs).mkdir(mode=0o700, exist_ok=True)
        except PermissionError as err:
            raise StateDirError(f"cannot create state dir {self.path}: permission denied "
                                f"(set --state-dir or DASKLAUNCH_STATE_DIR)") from err
        except OSError as err:
            raise StateDirError(f"cannot create state dir {self.path}: {err.strerror}") from err
        finally:
            os.umask(old_umask)
        if not os.access(self.path, os.W_OK):
            raise StateDirError(f"state dir {self.path} is not writable")

    def check_safe(self) -> None:
        info = os.lstat(self.path)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise StateDirError(f"state dir {self.path} is not a directory (refusing a symlink)")
        if info.st_uid != os.getuid():
            raise StateDirError(f"state dir {self.path} belongs to uid {info.st_uid}, not you")
        if info.st_mode & 0o022:
            raise StateDirError(f"state dir {self.path} is writable by others "
                                f"(mode {stat.S_IMODE(info.st_mode):o}); refusing")
        if info.st_mode & 0o077:
            os.chmod(self.path, 0o700)

    def make_subdir(self, name: str) -> Path:
        path = self.path / name
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                raise StateDirError(f"{path} is not our directory; refusing") from None
            os.chmod(path, 0o700)
        return path

    def write_text(self, name: str, text: str) -> Path:
        return atomic_write(self.path / name, text)

    def read_record(self, name: str = STATE_FILE) -> ClusterRecord | None:
        """The state record, or None when absent. A damaged record raises StateDirError."""
        path = self.path / name
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StateDirError(f"cannot read {path}: {err.strerror}") from err
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != RECORD_VERSION:
                raise ValueError("unexpected content")
            record = ClusterRecord.from_dict(data)
        except (ValueError, TypeError, KeyError) as err:
            raise StateDirError(f"state record {path} is damaged ({err}); "
                                f"inspect it, or remove it to start over") from err
        return record

    def read_record_or_backup(self) -> tuple[ClusterRecord | None, str | None]:
        """The record, falling back to the backup copy when the main one is damaged.
        Returns (record, warning)."""
        try:
            return self.read_record(), None
        except StateDirError as err:
            try:
                backup = self.read_record(STATE_BACKUP)
            except StateDirError:
                raise err from None
            if backup is None:
                raise
            return backup, f"{err}; using the backup copy {STATE_BACKUP}"

    def write_record(self, record: ClusterRecord) -> None:
        data = {**record.to_dict(), "version": RECORD_VERSION}
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        self.write_text(STATE_BACKUP, text)
        self.write_text(STATE_FILE, text)
        self._write_recovery_copy(data)

    @property
    def recovery_copy(self) -> Path:
        key = hashlib.sha256(str(self.path).encode()).hexdigest()[:20]
        return recovery_dir() / f"{key}.json"

    def _write_recovery_copy(self, record: dict) -> None:
        # Best effort: the copy only matters if the state dir is deleted, and a runtime dir we
        # cannot use (full, or planted by someone else) must not fail the command itself.
        copy = self.recovery_copy
        with suppress(OSError, StateDirError):
            if _own_private_dir(copy.parent):
                atomic_write(copy, json.dumps({**record, "state_dir": str(self.path)}))

    def recovered_record(self) -> ClusterRecord | None:
        """The copy of this state dir's record kept outside it, when it is ours and intact."""
        copy = self.recovery_copy
        try:
            info = os.lstat(copy)
            if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
                return None
            record = json.loads(copy.read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or record.get("state_dir") != str(self.path):
            return None
        try:
            return ClusterRecord.from_dict(record)
        except (TypeError, KeyError, ValueError):
            return None

    def forget_recovery_copy(self) -> None:
        with suppress(OSError):
            os.unlink(self.recovery_copy)

    def remove(self, name: str) -> bool:
        try:
            os.unlink(self.path / name)
            return True
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            # a directory in its place is not ours to remove (unlink gives EPERM on Linux)
            return False

    @contextmanager
    def lock(self, command: str):
        """Hold the job lock for the duration of a command that changes the cluster."""
        path = self.path / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                if err.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another command"
                raise BusyError(f"job is busy: {holder} is running on {self.path}; "
                                f"wait for it or check `dasklaunch status`") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"`dasklaunch {command}` (pid {os.getpid()})".encode(), 0)
            yield
        finally:
            os.close(fd)

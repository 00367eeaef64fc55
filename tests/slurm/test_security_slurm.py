"""Another Unix user on another node cannot use, or even read, a dasklaunch cluster.

The other user (`nobody`) runs only the system Python with its standard library, because the
Dask installation under test may not be readable by other users; the Dask-level attacks
(a client and a fake worker without the job's certificates) run as the owner's uid but without
its TLS material, which is what another user could at best have."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

PROBE = r'''
import json, os, socket, ssl, sys
host, port, state = sys.argv[1], int(sys.argv[2]), sys.argv[3]
out = {"uid": os.getuid(), "hostname": socket.gethostname(), "read": {}}
for name in ("scheduler.json", "env.sh", "state.json", "tls/client-key.pem",
             "tls/cluster-key.pem", "logs"):
    try:
        path = os.path.join(state, name)
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path).read()
        out["read"][name] = "READ"
    except OSError as err:
        out["read"][name] = type(err).__name__
try:
    os.listdir(state)
    out["list_state_dir"] = "LISTED"
except OSError as err:
    out["list_state_dir"] = type(err).__name__
# plain TCP, as a tcp:// Dask client would talk: the TLS server must not answer with data
s = socket.create_connection((host, port), timeout=5)
s.sendall(b"\x00" * 64)
s.settimeout(5)
try:
    data = s.recv(1024)
    out["plain"] = "closed" if not data else ("tls-alert" if data[:1] == b"\x15" else "DATA")
except OSError as err:
    out["plain"] = type(err).__name__
s.close()
# TLS without a certificate from the job's CA
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    with socket.create_connection((host, port), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:
            tls.settimeout(5)
            tls.sendall(b"\x00" * 64)
            data = tls.recv(1024)
            out["tls"] = "closed" if not data else "DATA"
except (OSError, ssl.SSLError) as err:
    out["tls"] = type(err).__name__
print("PROBE " + json.dumps(out))
'''


# One Client without the job's certificates: "no-certs" (none at all) or "foreign-ca" (a CA and
# certificates of its own). Prints the exception's type, or CONNECTED.
DASK_ATTEMPT = """
import sys
from distributed import Client
from distributed.security import Security
attempt, address = sys.argv[1:]
try:
    Client(address, security=None if attempt == "no-certs" else Security.temporary(), timeout=5)
    print("DASK CONNECTED", flush=True)
except Exception as err:
    print("DASK " + type(err).__name__, flush=True)
"""


@pytest.fixture
def public_tmp():
    """A world-traversable parent, so only the state dir's own mode keeps others out."""
    path = Path(tempfile.mkdtemp(prefix="dl-security-", dir="/var/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def require_root(reason: str) -> None:
    """Skip without root, unless DASKLAUNCH_REQUIRE_SLURM=1 asks for the whole slurm suite:
    then fail (the same rule as the `slurm_conf` fixture)."""
    if os.geteuid() == 0:
        return
    if os.environ.get("DASKLAUNCH_REQUIRE_SLURM") == "1":
        pytest.fail(f"{reason}, but DASKLAUNCH_REQUIRE_SLURM=1 asks for the slurm suite")
    pytest.skip(reason)


def test_another_user_on_another_node_is_locked_out(slurm, public_tmp):
    require_root("needs root to run a task as another user")
    probe = public_tmp / "probe.py"
    probe.write_text(PROBE)
    os.chmod(probe, 0o644)
    state = public_tmp / "state"
    result = slurm.salloc(f'''
from urllib.parse import urlsplit
DASK_ATTEMPT = {DASK_ATTEMPT!r}
facts = json.loads(dl("up", "--interface", "lab0", "--json").stdout)
addr = urlsplit(facts["scheduler"]["address"])
out["address"] = facts["scheduler"]["address"]
p = subprocess.run(["srun", "--overlap", "-N1", "-n1", "--nodelist=node2", "runuser", "-u",
                    "nobody", "--", "/usr/bin/python3", "{probe}", addr.hostname,
                    str(addr.port), os.environ["DASKLAUNCH_STATE_DIR"]],
                   capture_output=True, text=True, timeout=60)
out["probe_stderr"] = p.stderr[-2000:]
out["probe"] = [json.loads(l[6:]) for l in p.stdout.splitlines() if l.startswith("PROBE ")]

# Dask-level attacks without the job's certificates, from node3: each attempt in a process
# of its own (two failed Clients in one process can deadlock in distributed itself, see
# test_api_slurm.py), each bounded so that a hang fails within seconds and names the attempt
env = {{k: v for k, v in os.environ.items() if not k.startswith("DASK_")}}
out["dask"] = {{}}
out["dask_stderr"] = {{}}
for attempt in ("no-certs", "foreign-ca"):
    try:
        p = subprocess.run(["srun", "--overlap", "-N1", "-n1", "--nodelist=node3", "timeout",
                            "-s", "KILL", "25", sys.executable, "-c", DASK_ATTEMPT, attempt,
                            facts["scheduler"]["address"]], capture_output=True, text=True,
                           timeout=40, env=env)
    except subprocess.TimeoutExpired:
        out["dask"][attempt] = "HUNG (no answer in 40 s)"
        continue
    lines = [l[5:] for l in p.stdout.splitlines() if l.startswith("DASK ")]
    out["dask"][attempt] = lines[0] if lines else f"HUNG or died (exit {{p.returncode}})"
    out["dask_stderr"][attempt] = p.stderr[-1500:]
# a fake worker with its own (foreign) certificates must never join
sec_env = dict(env)
p = subprocess.run(["srun", "--overlap", "-N1", "-n1", "--nodelist=node3", "timeout", "15",
                    sys.executable, "-c",
                    "import sys\\n"
                    "from distributed.security import Security\\n"
                    "from distributed.cli.dask_worker import main\\n"
                    "s = Security.temporary()\\n"
                    "import dask\\n"
                    "sys.argv = ['dask-worker', sys.argv[1], '--death-timeout', '8', "
                    "'--no-nanny', '--tls-ca-file', s.tls_ca_file, '--tls-cert', "
                    "s.tls_worker_cert, '--tls-key', s.tls_worker_key]\\n"
                    "main()\\n", facts["scheduler"]["address"]],
                   capture_output=True, text=True, timeout=60, env=sec_env)
out["fake_worker_rc"] = p.returncode
out["status"] = json.loads(dl("status", "--json").stdout)
dl("down")
''', "-N3", state_dir=state)
    assert result["address"].startswith("tls://")
    probes = result["probe"]
    assert probes, result["probe_stderr"]
    probe = probes[0]
    assert probe["uid"] != 0 and probe["hostname"] == "node2"
    assert probe["list_state_dir"] == "PermissionError"
    assert set(probe["read"].values()) == {"PermissionError"}, probe["read"]
    assert probe["plain"] != "DATA" and probe["tls"] != "DATA", probe
    for attempt, outcome in result["dask"].items():
        assert outcome != "CONNECTED" and not outcome.startswith("HUNG"), (
            attempt, outcome, result["dask_stderr"].get(attempt))
    assert set(result["dask"]) == {"no-certs", "foreign-ca"}
    assert result["fake_worker_rc"] != 0
    assert result["status"]["workers"]["connected"] == 3  # only the real ones
    assert stat_mode(state) == 0o700


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def test_planted_state_dir_and_symlink_are_refused(slurm, public_tmp):
    require_root("needs root to plant a directory as another user")
    planted = public_tmp / "planted"
    planted.mkdir(mode=0o700)
    os.chown(planted, 65534, 65534)  # nobody
    target = public_tmp / "theirs"
    target.mkdir(mode=0o700)
    link = public_tmp / "link"
    link.symlink_to(target)
    result = slurm.salloc(f'''
out["planted"] = dl("up", "--state-dir", "{planted}", check=False).stderr
out["planted_rc"] = dl("up", "--state-dir", "{planted}", check=False).returncode
out["link"] = dl("up", "--state-dir", "{link}", check=False).stderr
out["steps"] = steps()
''', "-N1")
    assert result["planted_rc"] == 2
    assert "belongs to uid 65534" in result["planted"]
    assert "symlink" in result["link"]
    assert not result["steps"]
    assert json.dumps(sorted(os.listdir(target))) == "[]"

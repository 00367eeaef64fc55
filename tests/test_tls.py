"""Per-job TLS: material, permissions, and who can (not) connect, with real Dask processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from dasklaunch.runtime.state import StateDir
from dasklaunch.runtime.tls import TLSFiles, create


def test_material_is_owner_only_and_the_ca_key_is_never_written(tmp_path):
    state = StateDir(tmp_path / "job")
    state.create()
    files = create(state, "42")
    assert files.exists() and files == TLSFiles.in_state_dir(state)
    assert stat.S_IMODE(os.stat(files.ca.parent).st_mode) == 0o700
    names = sorted(p.name for p in files.ca.parent.iterdir())
    assert names == ["ca.pem", "client-key.pem", "client.pem", "cluster-key.pem", "cluster.pem"]
    for path in files.ca.parent.iterdir():
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "PRIVATE KEY" not in files.ca.read_text()


def test_certificates_chain_to_the_job_ca(tmp_path):
    from cryptography import x509

    state = StateDir(tmp_path / "job")
    state.create()
    files = create(state, "42")
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    for cert_path in (files.cert, files.client_cert):
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        cert.verify_directly_issued_by(ca)
    other = StateDir(tmp_path / "other")
    other.create()
    foreign = x509.load_pem_x509_certificate(create(other, "43").cert.read_bytes())
    with pytest.raises(Exception):
        foreign.verify_directly_issued_by(ca)


def test_server_and_client_env(tmp_path):
    files = TLSFiles.in_state_dir(StateDir(tmp_path))
    assert files.server_env("scheduler") == {
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str(files.ca),
        "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__CERT": str(files.cert),
        "DASK_DISTRIBUTED__COMM__TLS__SCHEDULER__KEY": str(files.key),
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True"}
    assert "DASK_DISTRIBUTED__COMM__TLS__WORKER__KEY" in files.server_env("worker")
    env = files.client_env()
    assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
    assert env["DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"] == str(files.client_key)


CLIENT = """
import json, sys
from distributed import Client
from distributed.security import Security
mode = sys.argv[1]
kwargs = {}
if mode == "foreign-ca":
    kwargs["security"] = Security.temporary()
elif mode == "plain-tcp":
    address = json.load(open(sys.argv[2]))["address"]
    kwargs["address"] = address.replace("tls://", "tcp://")
try:
    if "address" in kwargs:
        c = Client(kwargs.pop("address"), timeout=5, **kwargs)
    else:
        c = Client(scheduler_file=sys.argv[2], timeout=5, **kwargs)
    print("CONNECTED", c.submit(sum, [1, 2]).result())
except Exception as e:
    print("REFUSED", type(e).__name__, str(e)[:200])
"""


@pytest.fixture
def tls_cluster(local_runner):
    local_runner("up", "--local-tasks", "1", "--dashboard-address", ":0", check=True)
    yield local_runner
    local_runner("down", check=True)


def run_client(runner, mode, env=None):
    sfile = str(runner.state_dir / "scheduler.json")
    base = {k: v for k, v in runner.env.items() if not k.startswith("DASK_")}
    out = subprocess.run([sys.executable, "-c", CLIENT, mode, sfile], capture_output=True,
                         text=True, env={**base, **(env or {})}, timeout=60)
    return out.stdout.strip().splitlines()[-1]


def test_only_a_client_with_the_job_certificates_connects(tls_cluster):
    runner = tls_cluster
    status = json.loads(runner("status", "--json", check=True).stdout)
    assert status["scheduler"]["address"].startswith("tls://")
    # Dask's own message without certificates is cryptic; dasklaunch.connect explains instead
    assert run_client(runner, "no-certs").startswith("REFUSED TypeError TLS expects")
    assert run_client(runner, "foreign-ca").startswith("REFUSED")
    assert run_client(runner, "plain-tcp").startswith("REFUSED")
    values = json.loads(runner("env", "--format", "json", check=True).stdout)
    assert run_client(runner, "sourced", env=values) == "CONNECTED 3"


def test_connect_explains_missing_certificates(tls_cluster):
    import dasklaunch
    from dasklaunch.errors import NotUpError

    runner = tls_cluster
    for path in (runner.state_dir / "tls").iterdir():
        if path.name.startswith("client"):
            path.rename(path.with_suffix(".moved"))
    with pytest.raises(NotUpError, match="requires TLS"):
        dasklaunch.connect(runner.state_dir)


def test_no_tls_warns_and_uses_tcp(local_runner):
    up = local_runner("up", "--local-tasks", "1", "--no-tls", "--dashboard-address", ":0",
                      "--json", check=True)
    assert "warning: --no-tls" in up.stderr
    assert json.loads(up.stdout)["scheduler"]["address"].startswith("tcp://")
    assert not (local_runner.state_dir / "tls").exists()
    assert run_client(local_runner, "no-certs") == "CONNECTED 3"
    local_runner("down", check=True)


def test_the_python_context_manager(tmp_path, monkeypatch, no_leftovers):
    import dasklaunch

    for key in list(os.environ):
        if key.startswith(("SLURM_", "DASK_")):
            monkeypatch.delenv(key, raising=False)
    state_dir = tmp_path / "state"
    no_leftovers.append(state_dir)
    with dasklaunch.cluster(state_dir, backend="local", local_tasks=1,
                            dashboard_address=":0") as client:
        assert client.scheduler.address.startswith("tls://")
        assert client.submit(lambda: 40 + 2).result() == 42
    assert not (state_dir / "scheduler.json").exists()

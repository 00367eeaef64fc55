"""Per-job TLS: material, permissions, and who can (not) connect, with real Dask processes."""

from __future__ import annotations

import json
import os
import socket
import ssl
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from procs import outside_any_job

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
    from cryptography.exceptions import InvalidSignature

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
    with pytest.raises(ValueError, match="does not match certificate issuer"):
        foreign.verify_directly_issued_by(ca)
    # the same job id elsewhere: the names match, only the signature tells them apart
    twin = StateDir(tmp_path / "twin")
    twin.create()
    twin_cert = x509.load_pem_x509_certificate(create(twin, "42").cert.read_bytes())
    assert twin_cert.issuer == ca.subject
    with pytest.raises(InvalidSignature):
        twin_cert.verify_directly_issued_by(ca)


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


# Prints CONNECTED, or REFUSED with the error and what caused it; any other error is a
# traceback, which no assertion below accepts as a refusal.
CLIENT = """
import json, sys
from distributed import Client
from distributed.comm.core import CommClosedError
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
except (TypeError, CommClosedError) as e:
    print("REFUSED", type(e).__name__, type(e.__cause__).__name__, str(e)[:200])
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
    lines = out.stdout.strip().splitlines()
    assert out.returncode == 0 and lines, f"client {mode} failed:\n{out.stderr[-3000:]}"
    return lines[-1]


def test_only_a_client_with_the_job_certificates_connects(tls_cluster):
    runner = tls_cluster
    status = json.loads(runner("status", "--json", check=True).stdout)
    assert status["scheduler"]["address"].startswith("tls://")
    # Dask's own message without certificates is cryptic; dasklaunch.connect explains instead
    assert run_client(runner, "no-certs").startswith("REFUSED TypeError NoneType TLS expects")
    # the client does not trust a scheduler whose certificate is not from its own CA
    assert run_client(runner, "foreign-ca").startswith(
        "REFUSED FatalCommClosedError SSLCertVerificationError TLS certificate does not match")
    # the scheduler resets a connection that does not speak TLS
    assert run_client(runner, "plain-tcp").startswith(
        "REFUSED CommClosedError ConnectionResetError")
    values = json.loads(runner("env", "--format", "json", check=True).stdout)
    assert run_client(runner, "sourced", env=values) == "CONNECTED 3"


def test_workers_and_nannies_load_the_tls_guard(tls_cluster):
    from dasklaunch.domain.dask_argv import GUARD_PRELOAD, WORKER_TLS_ARGS

    record = json.loads((tls_cluster.state_dir / "state.json").read_text())
    (pool,) = record["pools"]
    start = pool["command"].index("--protocol")
    assert pool["command"][start:start + len(WORKER_TLS_ARGS)] == WORKER_TLS_ARGS
    log = Path(pool["log"]).read_text()
    # once in the nanny (--preload-nanny), once in the worker it starts (--preload)
    assert log.count(f"Run preload setup: {GUARD_PRELOAD}") == 2, log


def scheduler_tls_socket(runner, client_certificate: bool) -> ssl.SSLSocket:
    """A raw TLS 1.3 connection to the scheduler that trusts the job CA, with or without the
    job's client certificate; returned once the client's side of the handshake is done."""
    tls = runner.state_dir / "tls"
    address = urlsplit(json.loads((runner.state_dir / "scheduler.json").read_text())["address"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the scheduler's certificate
    context.check_hostname = False  # the job's certificates name no host
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.load_verify_locations(tls / "ca.pem")
    if client_certificate:
        context.load_cert_chain(tls / "client.pem", tls / "client-key.pem")
    raw = socket.create_connection((address.hostname, address.port), timeout=30)
    return context.wrap_socket(raw)


def test_the_scheduler_refuses_a_client_with_the_ca_but_no_certificate(tls_cluster):
    # In TLS 1.3 the client's handshake ends before the server has checked the client's
    # certificate; the server's verdict comes as an alert the client reads afterwards. So a
    # completed handshake that trusts the scheduler, then TLSV13_ALERT_CERTIFICATE_REQUIRED
    # (an alert received from the peer), is the scheduler refusing, not the client.
    with scheduler_tls_socket(tls_cluster, client_certificate=False) as conn:
        assert conn.version() == "TLSv1.3"
        subject = dict(pair[0] for pair in conn.getpeercert()["subject"])
        assert subject["commonName"].startswith("dasklaunch cluster")  # issued by the job CA
        with pytest.raises(ssl.SSLError) as refused:
            conn.recv(1)
    assert refused.value.reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED"
    # the same connection with the job's client certificate is let in: the scheduler speaks
    with scheduler_tls_socket(tls_cluster, client_certificate=True) as conn:
        assert conn.recv(1)


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
    record = json.loads((local_runner.state_dir / "state.json").read_text())
    assert "--preload" not in record["pools"][0]["command"]  # no TLS, no tls_guard
    assert run_client(local_runner, "no-certs") == "CONNECTED 3"
    local_runner("down", check=True)


def test_the_python_context_manager(tmp_path, monkeypatch, no_leftovers):
    import dasklaunch

    outside_any_job(monkeypatch)
    state_dir = tmp_path / "state"
    no_leftovers.append(state_dir)
    with dasklaunch.cluster(state_dir, backend="local", local_tasks=1,
                            dashboard_address=":0") as client:
        assert client.scheduler.address.startswith("tls://")
        assert client.submit(lambda: 40 + 2).result() == 42
    assert not (state_dir / "scheduler.json").exists()


def test_the_python_context_manager_takes_pools(tmp_path, monkeypatch, no_leftovers):
    import dasklaunch

    outside_any_job(monkeypatch)
    state_dir = tmp_path / "state"
    no_leftovers.append(state_dir)
    with dasklaunch.cluster(state_dir, backend="local", dashboard_address=":0",
                            pools=["small:nodes=1,share=yes,ntasks-per-node=1",
                                   "big:nodes=1,share=yes,ntasks-per-node=1,"
                                   "resources=BIGMEM:1"]) as client:
        names = sorted(w["name"] for w in client.scheduler_info()["workers"].values())
        assert [n.split("-")[0] for n in names] == ["big", "small"]
        # a task that asks for the big pool's resource runs there
        where = client.submit(lambda: 1, resources={"BIGMEM": 1})
        assert where.result() == 1
        assert str(next(iter(client.who_has(where)[where.key]))) in {
            a for a, w in client.scheduler_info()["workers"].items()
            if w["name"].startswith("big-")}

"""runtime.tls_guard: a stale entry on OpenSSL's per-thread error queue must not fail a read of
another, healthy TLS connection (what dropped workers on Debian 13's Python 3.13 + OpenSSL 3.5).

The stale entry is put there directly, as OpenSSL's ERR_raise would (an EPIPE "system" error,
what a write to a peer that has hung up leaves behind), so the test does not depend on which
Python and OpenSSL leave one behind by themselves."""

from __future__ import annotations

import ctypes
import datetime
import socket
import ssl
import threading
from types import SimpleNamespace

import pytest

from dasklaunch.runtime import tls_guard

ERR_LIB_SYS = 2
EPIPE = 32


def openssl_error_functions():
    clear = tls_guard.err_clear_error()
    if clear is None:
        pytest.skip("libcrypto's ERR_clear_error is not reachable from this Python")
    import _ssl

    crypto = ctypes.CDLL(getattr(_ssl, "__file__", None))
    if not all(hasattr(crypto, name) for name in ("ERR_new", "ERR_set_error", "ERR_peek_error")):
        pytest.skip("OpenSSL < 3.0: no ERR_new/ERR_set_error")
    crypto.ERR_peek_error.restype = ctypes.c_ulong
    return crypto, clear


def put_stale_error(crypto) -> None:
    crypto.ERR_new()
    crypto.ERR_set_error(ERR_LIB_SYS, EPIPE, None)
    assert crypto.ERR_peek_error() != 0


def self_signed(tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tls-guard-test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def tls_pair(tmp_path):
    """(server, client): both ends of a TLS 1.3 connection after the handshake, non-blocking,
    with nothing to read."""
    cert_file, key_file = self_signed(tmp_path)
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert_file, key_file)
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    a, b = socket.socketpair()
    a.settimeout(30)
    b.settimeout(30)
    server = server_context.wrap_socket(a, server_side=True, do_handshake_on_connect=False)
    client = client_context.wrap_socket(b, do_handshake_on_connect=False)
    handshake = threading.Thread(target=client.do_handshake)
    handshake.start()
    server.do_handshake()
    handshake.join(30)
    client.sendall(b"x")  # both ends are past the handshake
    assert server.recv(1) == b"x"
    server.setblocking(False)
    client.setblocking(False)
    yield server, client
    server.close()
    client.close()


def test_a_stale_openssl_error_fails_a_healthy_read_unless_guarded(tls_pair):
    from tornado.iostream import SSLIOStream

    crypto, clear = openssl_error_functions()
    server, _client = tls_pair
    stream = SimpleNamespace(socket=server, _ssl_accepting=False)  # what read_from_fd uses
    read = getattr(SSLIOStream.read_from_fd, "__wrapped__", SSLIOStream.read_from_fd)
    try:
        clear()
        assert read(stream, bytearray(16)) is None  # healthy: nothing to read yet
        put_stale_error(crypto)
        # the error of some other connection, reported for this one (OSError on Python 3.13+,
        # SSLSyscallError before)
        with pytest.raises(OSError) as failed:
            read(stream, bytearray(16))
        assert not isinstance(failed.value, ssl.SSLWantReadError)

        assert tls_guard.clear_before_io()
        assert tls_guard.clear_before_io()  # once per process: not wrapped twice
        assert SSLIOStream.read_from_fd.__wrapped__ is read
        put_stale_error(crypto)
        assert SSLIOStream.read_from_fd(stream, bytearray(16)) is None
        assert crypto.ERR_peek_error() == 0
    finally:
        clear()  # leave this thread's queue empty for whatever runs next


def test_guard_falls_back_to_ignoring_unexpected_eofs(monkeypatch):
    if not tls_guard.IGNORE_UNEXPECTED_EOF:
        pytest.skip("this ssl module has no OP_IGNORE_UNEXPECTED_EOF")
    monkeypatch.setattr(tls_guard, "clear_before_io", lambda: False)
    listening = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    connecting = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    server = SimpleNamespace(
        listeners=[SimpleNamespace(server_args={"ssl_options": listening}),
                   SimpleNamespace(server_args={})],  # a plain TCP listener
        connection_args={"ssl_context": connecting})
    assert tls_guard.contexts(server) == [listening, connecting]
    assert "OP_IGNORE_UNEXPECTED_EOF" in tls_guard.guard(server)
    assert listening.options & ssl.OP_IGNORE_UNEXPECTED_EOF
    assert connecting.options & ssl.OP_IGNORE_UNEXPECTED_EOF
    assert tls_guard.contexts(SimpleNamespace()) == []


def test_the_scheduler_preload_guards_the_scheduler(monkeypatch):
    from dasklaunch.runtime import scheduler_plugin

    guarded = []
    monkeypatch.setattr(scheduler_plugin, "guard", guarded.append)
    scheduler = SimpleNamespace(http_application=None, workers={}, handlers={},
                                add_plugin=lambda plugin: None)
    scheduler_plugin.dask_setup(scheduler)
    assert guarded == [scheduler]

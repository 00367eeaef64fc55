"""Keeps one TLS connection's failure from breaking the others of a Dask process.

Loaded into the scheduler (by its preload, `scheduler_plugin`) and into workers and nannies
(`--preload` / `--preload-nanny dasklaunch.runtime.tls_guard`).

OpenSSL keeps one error queue per thread, and `SSL_get_error()` consults it before anything
else, so the queue must be empty before each TLS read or write. CPython's `ssl` does not empty
it (python/cpython#148594), and where it raises an OpenSSL "system" error as an `OSError`
(python/cpython#127361: EPIPE, ECONNRESET) it does not empty it afterwards either. Dask closes
TLS connections without a TLS goodbye, so a peer that hangs up makes the next read an
"unexpected EOF" (OpenSSL 3, which then fails to send an alert: EPIPE) or a reset, and both
leave entries on the queue; the next read of any other connection in that thread then fails
with the same error although that connection is fine. Seen with Debian 13's Python 3.13.5 and
OpenSSL 3.5 (not seen with Debian 12's Python 3.11 and OpenSSL 3.0): a scheduler, whose
short-lived connections end all the time, dropped a worker's stream right after the worker
registered, and the worker shut down.

`guard()` does what CPython should: it empties the thread's OpenSSL error queue before every
read and write of Tornado's TLS streams (through ctypes, from the libcrypto that `ssl` uses).
Where that library cannot be found it still sets `OP_IGNORE_UNEXPECTED_EOF` on the server's
TLS contexts, so at least a peer's plain hang-up reads as a clean end (Dask's messages carry
their lengths, so a truncated one is still detected) and leaves nothing on the queue.
"""

from __future__ import annotations

import ctypes
import functools
import ssl

IGNORE_UNEXPECTED_EOF = getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
_PATCHED = "_dasklaunch_clears_openssl_errors"


@functools.cache
def err_clear_error():
    """OpenSSL's ERR_clear_error from the libcrypto the `ssl` module is linked with; None
    when it cannot be found (a statically linked `_ssl`, an unusual build)."""
    import _ssl

    # dlsym on the extension's own handle searches it and then the libraries it needs, so
    # this is the libcrypto `ssl` calls even when another one is loaded in the process too
    for library in (getattr(_ssl, "__file__", None), None):
        try:
            function = ctypes.CDLL(library).ERR_clear_error
        except (OSError, AttributeError):
            continue
        function.argtypes, function.restype = [], None
        return function
    return None


def _clearing(method, clear):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        clear()
        return method(self, *args, **kwargs)

    setattr(wrapper, _PATCHED, True)
    return wrapper


def clear_before_io() -> bool:
    """Make Tornado's TLS streams empty the OpenSSL error queue before each read and write
    (once per process); whether they do."""
    from tornado.iostream import SSLIOStream

    if getattr(SSLIOStream.read_from_fd, _PATCHED, False):
        return True
    clear = err_clear_error()
    if clear is None:
        return False
    for name in ("read_from_fd", "write_to_fd"):
        setattr(SSLIOStream, name, _clearing(getattr(SSLIOStream, name), clear))
    return True


def contexts(server) -> list[ssl.SSLContext]:
    """The SSL contexts a Scheduler, Worker or Nanny accepts and connects with."""
    found = [(getattr(listener, "server_args", None) or {}).get("ssl_options")
             for listener in getattr(server, "listeners", ())]
    found.append((getattr(server, "connection_args", None) or {}).get("ssl_context"))
    unique: dict[int, ssl.SSLContext] = {}
    for context in found:
        if isinstance(context, ssl.SSLContext):
            unique.setdefault(id(context), context)
    return list(unique.values())


def guard(server) -> str:
    """Protect `server`'s process; what was done. Run it before the server accepts or opens a
    connection (a preload's dask_setup runs right after the server listens): a connection
    takes its context's options when it starts."""
    if clear_before_io():
        return "clears the OpenSSL error queue before each TLS read and write"
    if not IGNORE_UNEXPECTED_EOF:
        return "nothing (no OP_IGNORE_UNEXPECTED_EOF in this ssl module)"
    for context in contexts(server):
        context.options |= IGNORE_UNEXPECTED_EOF
    return "OP_IGNORE_UNEXPECTED_EOF on its TLS contexts (libcrypto's ERR_clear_error not found)"


def dask_setup(server) -> None:
    guard(server)

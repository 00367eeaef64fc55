"""Run one dasklaunch command while counting its own work; write the counts as JSON at exit.

    python count_hook.py COUNTS.json -- up --interface lab0 ...

Counted in-process (no change to dasklaunch): subprocesses it starts (by program), HTTP
requests (by path, with bytes read), TCP connects (HTTP's included), psutil whole-process-table
walks and single-process lookups, sleeps (poll-loop iterations), and its CPU time.
"""

from __future__ import annotations

import atexit
import http.client
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

COUNTS: dict[str, Counter] = {"subprocess": Counter(), "http": Counter(), "http_bytes": Counter(),
                              "psutil": Counter(), "tcp_connect": Counter(), "sleep": Counter()}
T0 = time.perf_counter()
SLEPT = [0.0]


def install(out: Path) -> None:
    real_popen_init = subprocess.Popen.__init__

    def popen_init(self, args, *a, **kw):
        prog = args[0] if isinstance(args, (list, tuple)) else str(args).split()[0]
        COUNTS["subprocess"][Path(str(prog)).name] += 1
        return real_popen_init(self, args, *a, **kw)

    subprocess.Popen.__init__ = popen_init

    # dasklaunch probes with http.client (urllib would use it too): count at that level
    real_request = http.client.HTTPConnection.request
    real_getresponse = http.client.HTTPConnection.getresponse
    real_read = http.client.HTTPResponse.read

    def request(self, method, url, *a, **kw):
        self._counted_key = urlsplit(url).path
        COUNTS["http"][self._counted_key] += 1
        return real_request(self, method, url, *a, **kw)

    def getresponse(self, *a, **kw):
        response = real_getresponse(self, *a, **kw)
        response._counted_key = getattr(self, "_counted_key", "?")
        return response

    def read(self, *a, **kw):
        data = real_read(self, *a, **kw)
        COUNTS["http_bytes"][getattr(self, "_counted_key", "?")] += len(data)
        return data

    http.client.HTTPConnection.request = request
    http.client.HTTPConnection.getresponse = getresponse
    http.client.HTTPResponse.read = read

    import socket

    real_cc = socket.create_connection

    def create_connection(address, *a, **kw):
        COUNTS["tcp_connect"][f"{address[0]}"] += 1
        return real_cc(address, *a, **kw)

    socket.create_connection = create_connection

    real_sleep = time.sleep

    def sleep(s):
        COUNTS["sleep"][f"{s:g}"] += 1
        SLEPT[0] += s
        return real_sleep(s)

    time.sleep = sleep

    try:
        import psutil

        real_iter = psutil.process_iter

        def process_iter(*a, **kw):
            COUNTS["psutil"]["process_iter (whole table)"] += 1
            return real_iter(*a, **kw)

        psutil.process_iter = process_iter
        real_init = psutil.Process.__init__

        def proc_init(self, *a, **kw):
            COUNTS["psutil"]["Process(pid)"] += 1
            return real_init(self, *a, **kw)

        psutil.Process.__init__ = proc_init
    except ImportError:
        pass

    def dump():
        ru = resource.getrusage(resource.RUSAGE_SELF)
        data = {k: dict(v) for k, v in COUNTS.items()}
        data["cpu_self"] = ru.ru_utime + ru.ru_stime
        data["maxrss_kb"] = ru.ru_maxrss
        data["wall_in_process"] = time.perf_counter() - T0
        data["slept"] = SLEPT[0]
        data["modules"] = len(sys.modules)
        data["imports_distributed"] = "distributed" in sys.modules
        Path(out).write_text(json.dumps(data, indent=1, sort_keys=True))

    atexit.register(dump)


def main() -> None:
    out = Path(sys.argv[1])
    rest = sys.argv[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    install(out)
    from dasklaunch.cli.app import main as dl_main

    sys.argv = ["dasklaunch", *rest]
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    dl_main()


if __name__ == "__main__":
    main()

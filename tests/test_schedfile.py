"""The scheduler file reader and the HTTP probes that `up`, `status` and the supervisor use."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dasklaunch.runtime import schedfile


@pytest.fixture
def fake_scheduler_http():
    """A dashboard port that serves dasklaunch's workers route for scheduler id 'sched-1'."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path != "/dasklaunch/workers.json":
                self.send_error(404)
                return
            body = json.dumps({"id": "sched-1", "workers": {"tcp://10.0.0.1:1": {}}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _info(port: int, scheduler_id: str = "sched-1") -> schedfile.SchedulerInfo:
    return schedfile.SchedulerInfo(address="tls://127.0.0.1:8786", dashboard_port=port,
                                   scheduler_id=scheduler_id)


def test_probes_never_go_through_an_http_proxy(fake_scheduler_http, monkeypatch):
    # clusters often set http_proxy for the internet; a compute node's address must not use it
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    ident = schedfile.identity(_info(fake_scheduler_http))
    assert ident is not None and list(ident["workers"]) == ["tcp://10.0.0.1:1"]
    assert schedfile.answers(_info(fake_scheduler_http))


def test_another_scheduler_on_the_port_or_an_error_status_is_not_ours(fake_scheduler_http):
    assert schedfile.identity(_info(fake_scheduler_http, "sched-2")) is None
    assert schedfile._get(_info(fake_scheduler_http), "missing", 2.0) is None


def test_a_scheduler_of_an_older_dasklaunch_is_counted_from_its_listing(fake_scheduler_http):
    # it has only /dasklaunch/workers.json (no count or summary route): the probes still work
    info = _info(fake_scheduler_http)
    counted = schedfile.count(info, wait_for=5, wait=0.1)
    assert counted["n_workers"] == 1 and counted["count"] == 1 and counted["legacy"]
    assert counted["by_pool"] == {"": 1}
    assert schedfile.summary(info)["n_workers"] == 1
    assert schedfile.count(_info(fake_scheduler_http, "sched-2")) is None


def test_partial_or_addressless_files_read_as_not_yet(tmp_path):
    path = tmp_path / "scheduler.json"
    assert schedfile.read(path) is None
    path.write_text('{"address": "tls://10.0.0.1:8786", "services": {"dash')
    assert schedfile.read(path) is None
    path.write_text('{"id": "x"}')
    assert schedfile.read(path) is None
    path.write_text(json.dumps({"address": "tls://10.0.0.1:8786", "id": "x",
                                "services": {"dashboard": 8787}}))
    info = schedfile.read(path)
    assert info.dashboard_url == "http://10.0.0.1:8787/status" and info.port == 8786

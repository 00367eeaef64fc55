"""The scheduler file and the scheduler's HTTP endpoints: readiness and liveness without
importing distributed (the CLI's fast path).

Dask writes the scheduler file non-atomically and never updates it, so a reader treats
missing/partial JSON as "not yet" and asks the live scheduler (HTTP /health and
/dasklaunch/workers.json, added by dasklaunch.scheduler_plugin) for anything current.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class SchedulerInfo:
    address: str
    dashboard_port: int | None
    scheduler_id: str | None

    @property
    def host(self) -> str:
        return urlsplit(self.address).hostname or ""

    @property
    def port(self) -> int:
        return urlsplit(self.address).port or 8786

    @property
    def dashboard_url(self) -> str | None:
        if self.dashboard_port is None:
            return None
        return f"http://{_url_host(self.host)}:{self.dashboard_port}/status"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def read(path: Path) -> SchedulerInfo | None:
    """Parse the scheduler file; None while it is missing, partial or has no address."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("address"), str):
        return None
    services = data.get("services") if isinstance(data.get("services"), dict) else {}
    port = services.get("dashboard")
    return SchedulerInfo(address=data["address"],
                         dashboard_port=int(port) if isinstance(port, int) else None,
                         scheduler_id=data.get("id"))


def _get(info: SchedulerInfo, path: str, timeout: float) -> bytes | None:
    # http.client, not urllib: urllib would send a compute node's address to $http_proxy,
    # which many clusters set for reaching the internet, and it costs more per poll.
    import http.client

    conn = http.client.HTTPConnection(info.host, info.dashboard_port, timeout=timeout)
    try:
        conn.request("GET", f"/{path}")
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()
    return body if response.status == 200 else None


def answers(info: SchedulerInfo, timeout: float = 1.0) -> bool:
    """True when the scheduler in `info` is alive and is the one that wrote the file."""
    if info.dashboard_port is not None:
        return identity(info, timeout) is not None
    try:
        with socket.create_connection((info.host, info.port), timeout=timeout):
            return True
    except OSError:
        return False


def identity(info: SchedulerInfo, timeout: float = 2.0) -> dict | None:
    """The scheduler's id and live workers (host, threads, memory) from the route that
    `dasklaunch.scheduler_plugin` adds; None if our scheduler does not answer."""
    if info.dashboard_port is None:
        return None
    body = _get(info, "dasklaunch/workers.json", timeout)
    if body is None:
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("id") != info.scheduler_id:
        # another scheduler reused the port: ours is gone
        return None
    return data

"""Loaded into the scheduler with `--preload dasklaunch.scheduler_plugin`.

Adds `/dasklaunch/workers.json` to the scheduler's HTTP server: the scheduler id plus each
worker's host, threads and memory limit, in O(workers). dasklaunch reads it over plain HTTP, so
the CLI never imports distributed. (Dask's own /json/identity.json is not usable for this: it
fails with HTTP 500 once workers have run tasks, because their metrics have tuple keys.)

It also keeps a failed TLS connection of the scheduler from breaking its other connections
(`tls_guard`).
"""

from __future__ import annotations

import json

from tornado.web import RequestHandler

from .tls_guard import guard

ROUTE = r"/dasklaunch/workers\.json"


class WorkersHandler(RequestHandler):
    def initialize(self, dask_server):
        self.dask_server = dask_server

    def get(self):
        scheduler = self.dask_server
        workers = {
            ws.address: {"host": ws.host, "nthreads": ws.nthreads,
                         "memory_limit": ws.memory_limit, "name": str(ws.name),
                         "memory": ws.memory.process, "status": ws.status.name,
                         "resources": dict(ws.resources)}
            for ws in list(scheduler.workers.values())
        }
        self.set_header("Content-Type", "application/json")
        self.write(json.dumps({"id": str(scheduler.id), "address": scheduler.address,
                               "workers": workers}))


def dask_setup(scheduler) -> None:
    guard(scheduler)
    if getattr(scheduler, "http_application", None) is not None:
        scheduler.http_application.add_handlers(
            r".*", [(ROUTE, WorkersHandler, {"dask_server": scheduler})])

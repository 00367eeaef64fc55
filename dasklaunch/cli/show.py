"""What `up` and `status` print: their results, as lines for a person to read."""

from __future__ import annotations

import time

from ..domain.units import format_bytes, plural

HOSTS_SHOWN = 16  # status lists this many hosts; --workers lists all, and every worker


def print_up(result: dict) -> None:
    sched = result["scheduler"]
    print(f"scheduler  {sched['address']}")
    if sched.get("dashboard_proxy"):
        print(f"dashboard  {sched['dashboard_proxy']}  (through this JupyterHub's proxy; "
              f"here: {sched['dashboard']})")
    elif sched.get("dashboard"):
        tunnelled = ": keep it tunnelled" if result.get("tunnel") else ""
        print(f"dashboard  {sched['dashboard']}  (no authentication{tunnelled})")
    if result.get("tunnel"):
        print(f"tunnel     {result['tunnel']}")
    print(f"workers    {result['workers']['expected']}")
    print(f"env file   {result['env_file']}")
    # the two ways a client gets the job's TLS settings; a bare Client(scheduler_file=...) in a
    # Python started before `.` fails with Dask's "TLS expects a ssl_context argument"
    print('connect    before starting Python:  . "$(dasklaunch env --path)"')
    print(f"           in a running Python:     client = {result['connect']}")
    if sched["address"].startswith("tls://"):
        print("           (without either, Client(scheduler_file=...) fails: TLS expects a "
              "ssl_context argument)")


def print_status(result: dict, workers_too: bool) -> None:
    from ..ops.status import drain_line

    sched, workers = result["scheduler"], result["workers"]
    alive = "alive" if sched["alive"] else "GONE"
    if not sched["alive"] and result["status"] == "down":
        stopped = result.get("stopped_at")
        when = (time.strftime(" at %Y-%m-%d %H:%M:%S", time.localtime(stopped))
                if stopped else "")
        alive = f"down (stopped by `dasklaunch down`{when})"
    print(f"job        {result['job_id']} ({result['backend']}), state dir "
          f"{result['state_dir']}")
    print(f"scheduler  {alive}  {sched['address'] or '-'}  {sched['where'] or ''}")
    if sched["dashboard"] and sched["alive"]:
        print(f"dashboard  {sched['dashboard']}")
    memory = ", ".join(_human(m) for m in workers["memory_per_worker"]) or "-"
    print(f"workers    {workers['connected']}/{workers['expected']} connected, "
          f"{plural(workers['threads'], 'thread')}, memory per worker {memory}")
    if workers.get("memory_sizing"):
        print(f"memory     {workers['memory_sizing']}")
    print(f"memory use highest {workers['highest_memory_use']:.0%} of a worker's limit, "
          f"{workers['paused']} paused, {workers['memory_restarts']} restarted for memory")
    if result.get("profile"):
        print(f"profile    {result['profile']}")
    for name, origin in sorted((result.get("sources") or {}).items()):
        print(f"setting    {name.replace('_', '-')} from {origin}")
    hosts = list(result["hosts"].items())
    for host, count in hosts if workers_too else hosts[:HOSTS_SHOWN]:
        print(f"  {host:<24} {plural(count, 'worker')}")
    if len(hosts) > HOSTS_SHOWN and not workers_too:
        print(f"  ... {plural(len(hosts) - HOSTS_SHOWN, 'more host')} (--workers shows all)")
    for row in result["pools"]:
        extra = f", {plural(row['gpus'], 'GPU')}" if row.get("gpus") else ""
        print(f"pool       {row['pool']}: {row['state']}, {row['connected']}/"
              f"{row['expected']} connected{extra} ({row['name']}, {row['where']})")
    print(f"restarts   {result['restarts']}"
          + (f" (last: {result['last_restart']['reason']})" if result["last_restart"]
             else ""))
    drains = drain_line(result.get("drains"))
    if drains:
        print(f"drains     {drains}")
    for job in result["scale_out"]:
        print(f"scale-out  job {job['job_id']} ({job['name']}): {job['state']}")
    sup = result["supervisor"]
    if sup:
        state = "attached" if sup["attached"] else "not running"
        print(f"supervisor {state}, {plural(sup['restarts'], 'restart')}"
              + (f", last reason: {sup['last_reason']}" if sup["last_reason"] else ""))
    for w in result.get("worker_list", []):
        print(f"  {w.get('name', ''):<28} {w['address']:<28} {w.get('status', '')} "
              f"{plural(w.get('nthreads', 0), 'thread')}, "
              f"memory {format_bytes(w.get('memory') or 0)} of "
              f"{_human(w.get('memory_limit') or 0)}")


def _human(n: int) -> str:
    return format_bytes(int(n)) if n else "unlimited"

"""Facts about the testbed and process checks for the slurm suite."""

from __future__ import annotations

import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTBED = ROOT / "scripts" / "slurm-testbed"
NODES = ["node1", "node2", "node3"]
NODE_ADDR = {"node1": "10.250.0.11", "node2": "10.250.0.12", "node3": "10.250.0.13"}
BRIDGE_ADDR = "10.250.0.1"


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains `text` (a unique per-test path)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append((int(entry), cmdline))
    return found


def wait_no_processes(text: str, timeout: float = 20) -> list[tuple[int, str]]:
    deadline = time.time() + timeout
    while True:
        found = processes_mentioning(text)
        if not found or time.time() > deadline:
            return found
        time.sleep(0.5)

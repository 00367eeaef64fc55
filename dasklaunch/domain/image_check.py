"""Pure: the check `up` runs once in each container image before it starts anything, and what
its answer means.

The scheduler and workers run dasklaunch's own modules inside the image (the node launcher,
the scheduler's preload, the TLS guard), and clients here talk to them: so the image must hold
dasklaunch at the version of the `up` that starts it (refused otherwise), dask and distributed
(refused without), and should hold the distributed this `up` runs under (a warning otherwise).
The check is one short Python program, run with the image's python3 by the same runtime and
options as the steps; it prints one marked line of JSON, which is found among whatever else
the image prints (an entrypoint's banner, a runtime's notices). Its Python (sys.executable) is
the one the steps then run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError
from .container import PYTHON

MARKER = "dasklaunch-image-check: "
PACKAGES = ("dasklaunch", "dask", "distributed")
# metadata first (no import: distributed's takes a second); an import where there is none (a
# source tree on PYTHONPATH)
CODE = "\n".join([
    "import json, sys",
    "from importlib import metadata",
    "found = {'python': sys.executable,",
    "         'python_version': '.'.join(map(str, sys.version_info[:3]))}",
    f"for name in {PACKAGES!r}:",
    "    try:",
    "        found[name] = metadata.version(name)",
    "    except Exception:",
    "        try:",
    "            found[name] = str(__import__(name).__version__)",
    "        except Exception:",
    "            found[name] = None",
    f"print({MARKER!r} + json.dumps(found), flush=True)",
])


def check_command(python: str = PYTHON) -> list[str]:
    """What runs inside the image (wrapped by the runtime, as a step's command is)."""
    return [python, "-c", CODE]


@dataclass(frozen=True)
class ImageFacts:
    """What the check found in an image."""

    image: str
    python: str                  # its interpreter, by absolute path: what the steps run
    python_version: str
    dasklaunch: str | None
    dask: str | None
    distributed: str | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def parse_answer(image: str, output: str) -> ImageFacts:
    """The check's marked line among the image's output; UsageError without one."""
    for line in reversed(output.splitlines()):
        if line.startswith(MARKER):
            try:
                found = json.loads(line[len(MARKER):])
                return ImageFacts(image=image, python=str(found["python"]),
                                  python_version=str(found["python_version"]),
                                  **{name: found.get(name) for name in PACKAGES})
            except (ValueError, KeyError, TypeError):
                break
    raise UsageError(f"container image {image}: its Python printed no answer to dasklaunch's "
                     f"check: {_last_line(output) or 'no output'}")


def judge(facts: ImageFacts, *, dasklaunch: str, distributed: str | None) -> list[str]:
    """Refuses (UsageError) an image the cluster cannot run from: without dasklaunch, with
    another version of it than this `up`'s, or without dask or distributed. The warnings:
    a distributed other than the one this `up` (and its clients) run under."""
    where = f"its Python, {facts.python} ({facts.python_version})"
    if facts.dasklaunch is None:
        raise UsageError(f"container image {facts.image} has no dasklaunch ({where}): install "
                         f"dasklaunch {dasklaunch} in the image; the scheduler and workers run "
                         f"its modules there")
    if facts.dasklaunch != dasklaunch:
        raise UsageError(f"container image {facts.image} has dasklaunch {facts.dasklaunch}, "
                         f"this `up` is {dasklaunch}: install dasklaunch {dasklaunch} in the "
                         f"image (or run the image's own dasklaunch)")
    missing = [name for name in ("dask", "distributed") if getattr(facts, name) is None]
    if missing:
        raise UsageError(f"container image {facts.image} has no {' and no '.join(missing)} "
                         f"({where})")
    if distributed is not None and facts.distributed != distributed:
        return [f"container image {facts.image} has distributed {facts.distributed}, this `up` "
                f"runs under {distributed}: clients here and the cluster there may not "
                f"understand each other; use the same version in both"]
    return []


# The line of a failed run that says why: the last one that names an error (not srun's own
# "task 0: Exited with exit code 1"), else the last.
_WHY = re.compile(r"error|fatal|not found|no such|denied|unknown|invalid", re.IGNORECASE)
_ONLY_HOW = re.compile(r"Exited with exit code|exited with exit code")


def failure(image: str, runtime: str, returncode: int, output: str) -> str:
    """One line for a check the runtime could not run (no such image, no python3 in it, a
    registry that refused): the runtime's own words."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    why = next((line for line in reversed(lines)
                if _WHY.search(line) and not _ONLY_HOW.search(line)), _last_line(output))
    return (f"container image {image}: {runtime} could not run {PYTHON} in it (exit "
            f"{returncode}): {why or 'no output'}")


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def summary(facts: Sequence[ImageFacts], runtime: str) -> str:
    """One line for `up`'s report: each image, its Python and dasklaunch."""
    return "; ".join(f"container image {f.image} ({runtime}): Python {f.python_version}, "
                     f"dasklaunch {f.dasklaunch}, distributed {f.distributed}" for f in facts)

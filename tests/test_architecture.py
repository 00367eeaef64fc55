"""The package's structure: no import cycles (module- or function-level), no module over 400
lines, Slurm's commands only under dasklaunch/slurm/, and the CLI's fast paths free of Dask."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dasklaunch"
SLURM_COMMANDS = {"srun", "scancel", "squeue", "sbatch", "scontrol", "salloc", "sacct"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Every dasklaunch module `name` imports, wherever the import statement is."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                candidate = f"{target}.{alias.name}"
                targets.add(candidate if candidate in known else target)
    # importing an enclosing package (for its submodules) is not a dependency on it
    return {t for t in targets if t in known and t != name and not name.startswith(t + ".")}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# The layers, top to bottom (README, Architecture): a module imports only from its own layer or
# the layers below it. slurm and profiles are peers that do not import each other.
LAYERS = [("cli",), ("api",), ("deploy",), ("ops",), ("launch",), ("slurm", "profiles"),
          ("runtime",), ("domain",), ("errors",)]
RANK = {layer: rank for rank, names in enumerate(LAYERS) for layer in names}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "api"   # dasklaunch/__init__.py: the API
    return "cli" if parts[1] == "__main__" else parts[1]


def wrong_imports(graph: dict[str, set[str]]) -> list[str]:
    wrong = []
    for name, targets in sorted(graph.items()):
        layer = layer_of(name)
        for target in sorted(targets):
            other = layer_of(target)
            if other != layer and RANK[other] <= RANK[layer]:
                wrong.append(f"{name} -> {target}")
    return wrong


def test_dependencies_point_one_way():
    """Each module imports only its own layer and those below; domain imports nothing of
    dasklaunch but domain and errors."""
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert set(map(layer_of, known)) <= set(RANK)
    assert wrong_imports(graph) == []


@pytest.mark.parametrize("edge", [
    # the loop that closed through domain.allocation -> slurm.commands
    ("dasklaunch.domain.allocation", "dasklaunch.slurm.commands"),
    ("dasklaunch.runtime.proc", "dasklaunch.slurm.queue"),
    ("dasklaunch.slurm.queue", "dasklaunch.profiles.load"),
    ("dasklaunch.launch.node", "dasklaunch.ops.up"),
])
def test_the_layer_rule_refuses_an_import_upwards(edge):
    assert wrong_imports({edge[0]: {edge[1]}}) == [f"{edge[0]} -> {edge[1]}"]


def test_no_module_over_300_lines():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: n for name, n in sizes.items() if n > 300} == {}


def test_module_names_say_their_role_once():
    """No two modules share a name across packages (`hints` and `hints`, `env` and `env`): a
    name is enough to find a module, in a traceback, a log or a review."""
    seen: dict[str, list[str]] = {}
    for name in modules():
        last = name.rsplit(".", 1)[-1]
        if name.count(".") > 1 and last != "__main__":
            seen.setdefault(last, []).append(name)
    assert {k: v for k, v in seen.items() if len(v) > 1} == {}


def test_slurm_commands_are_named_only_under_slurm():
    found = []
    for name, path in modules().items():
        if name.startswith("dasklaunch.slurm"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in SLURM_COMMANDS:
                found.append(f"{name}:{node.lineno} {node.value!r}")
    assert not found


def test_domain_is_pure():
    impure = {"subprocess", "distributed", "dask", "shutil", "tempfile"}
    found = []
    for name, path in modules().items():
        if not name.startswith("dasklaunch.domain"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            found += [f"{name}: {n}" for n in names if n.split(".")[0] in impure]
    assert not found


@pytest.mark.parametrize("argv", [["--help"], ["env"], ["env", "--format", "json"],
                                  ["status", "--json"], ["profile", "list"]])
def test_fast_commands_import_neither_dask_nor_distributed(tmp_path, argv):
    code = ("import sys, json\n"
            "from dasklaunch.cli.entry import main\n"
            f"sys.argv = ['dasklaunch', *{argv!r}]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(json.dumps(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('dask', 'distributed'))), file=sys.stderr)\n")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "DASKLAUNCH_STATE_DIR": str(tmp_path / "none"),
           "PYTHONPATH": str(PACKAGE.parent)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60)
    imported = json.loads(result.stderr.strip().splitlines()[-1])
    assert imported == []

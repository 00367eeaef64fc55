import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dasklaunch.domain import render

EXPECTED = Path(__file__).parent / "expected"


def sample(extra=None):
    return render.env_file(job_id="123", backend="slurm", state_dir="/scratch/me/dl 123",
                           env_file_path="/scratch/me/dl 123/env.sh",
                           scheduler_file="/scratch/me/dl 123/scheduler.json",
                           scheduler_address="tcp://10.0.0.1:8786", extra=extra)


def test_env_file_matches_expected():
    assert sample() == (EXPECTED / "env.sh").read_text()


def test_env_file_with_extra_exports_matches_expected():
    text = sample({"DASK_CONFIG": "/scratch/me/dl 123/dask", "A_QUOTE": "it's"})
    assert text == (EXPECTED / "env-extra.sh").read_text()


@pytest.mark.parametrize("shell", ["sh", "bash", "zsh", "dash"])
def test_env_file_sources_in_every_shell(tmp_path, shell):
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    path = tmp_path / "env.sh"
    path.write_text(sample({"A_QUOTE": "it's"}))
    script = (f'. "{path}"; printf "%s\\n" "$SCHEDULER_FILE" "$DASK_SCHEDULER_FILE" '
              f'"$DASK_SCHEDULER_ADDRESS" "$DASKLAUNCH_STATE_DIR" "$A_QUOTE"')
    out = subprocess.run([shell, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == [
        "/scratch/me/dl 123/scheduler.json", "/scratch/me/dl 123/scheduler.json",
        "tcp://10.0.0.1:8786", "/scratch/me/dl 123", "it's"]


def test_env_json():
    data = render.env_json(scheduler_file="/f", scheduler_address="tcp://h:1", state_dir="/s")
    assert json.loads(json.dumps(data)) == {
        "DASK_SCHEDULER_FILE": "/f", "SCHEDULER_FILE": "/f", "DASK_SCHEDULER_ADDRESS": "tcp://h:1",
        "DASKLAUNCH_STATE_DIR": "/s"}


ROOT = Path(__file__).parents[1]
# what a user reads: the README and the docs site's pages (not the references the build makes)
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def readme_shell_lines() -> list[str]:
    """The lines of the ```bash/```sh blocks of README and the docs pages."""
    lines, fence = [], None
    for page in PAGES:
        for line in page.read_text().splitlines():
            if line.startswith("```"):
                fence = line[3:].strip() if fence is None else None
            elif fence in ("bash", "sh", "shell", "console"):
                lines.append(line)
    return lines


def test_readme_shell_examples_use_no_bash_only_source():
    lines = readme_shell_lines()
    assert not [line for line in lines if line.split()[:1] == ["source"]]
    loading = [line for line in lines if "dasklaunch env" in line and "--format" not in line]
    assert len(loading) >= 3, loading  # interactive, batch script, `dasklaunch env`


@pytest.mark.parametrize("shell", ["sh", "dash", "bash", "zsh"])
def test_readme_env_lines_work_in_every_shell(tmp_path, shell):
    """README's own lines that load the env file, run as written by each shell, against a
    stand-in `dasklaunch env [--path]` that answers with a real env file."""
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    env_file = tmp_path / "dl 123" / "env.sh"
    env_file.parent.mkdir()
    env_file.write_text(sample({"A_QUOTE": "it's"}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_in = bin_dir / "dasklaunch"
    stand_in.write_text(f'#!/bin/sh\n[ "$1" = env ] || exit 2\n'
                        f'if [ "$2" = --path ]; then printf "%s\\n" "{env_file}"; '
                        f'else cat "{env_file}"; fi\n')
    stand_in.chmod(0o755)
    loading = [line for line in readme_shell_lines()
               if "dasklaunch env" in line and "--format" not in line]
    for line in loading:
        script = f'{line}\nprintf "%s\\n" "$SCHEDULER_FILE" "$DASK_SCHEDULER_ADDRESS" "$A_QUOTE"\n'
        out = subprocess.run([shell, "-c", script], capture_output=True, text=True, timeout=30,
                             env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}"
                                  f"{os.environ['PATH']}"})
        assert out.returncode == 0 and not out.stderr, (line, out.stderr)
        assert out.stdout.splitlines() == ["/scratch/me/dl 123/scheduler.json",
                                           "tcp://10.0.0.1:8786", "it's"], line


def _parse_only(argv: list[str]) -> None:
    """Parse `dasklaunch ARGV` as the CLI would, down to the last subcommand, running nothing."""
    import typer

    from dasklaunch.cli.app import app

    command, name, rest = typer.main.get_command(app), "dasklaunch", list(argv)
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        name, rest = rest[0], rest[1:]
        sub = command.get_command(None, name)
        assert sub is not None, f"no command {name!r}"
        command = sub
    command.make_context(name, rest)


def example_commands() -> list[str]:
    """The `dasklaunch ...` lines of README's and the docs pages' shell blocks, comments off."""
    import shlex

    found = []
    for line in readme_shell_lines():
        if not line.startswith("dasklaunch ") or "$(" in line or line.rstrip().endswith("\\"):
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split, lexer.commenters = True, "#"
        words = []
        for word in lexer:   # the command itself: up to a pipe, `&`, `;` or a redirection
            if word and set(word) <= set("|&;<>"):
                break
            words.append(word)
        found.append(shlex.join(words))
    return found


@pytest.mark.parametrize("example", example_commands())
def test_every_documented_command_line_parses(example):
    """Each `dasklaunch ...` example of README and the docs names commands and options the CLI
    has, with values of the right type (parsed, not run)."""
    import shlex

    words = shlex.split(example)[1:]
    if "--" in words:   # batch/join: what follows is the user's command
        words = words[:words.index("--") + 1] + ["true"]
    try:
        _parse_only(words)
    except Exception as err:  # noqa: BLE001 - click's usage errors, by shape (typer vendors click)
        if type(err).__name__ == "Exit":
            return
        pytest.fail(f"{example}: {err}")


def python_blocks() -> list[str]:
    """The ```python blocks of README and the docs pages."""
    blocks, fence, current = [], None, []
    for page in PAGES:
        for line in page.read_text().splitlines():
            if line.startswith("```"):
                if fence is None:
                    fence, current = line[3:].strip(), []
                else:
                    if fence == "python":
                        blocks.append("\n".join(current))
                    fence = None
            elif fence is not None:
                current.append(line)
    return blocks


@pytest.mark.parametrize("block", python_blocks())
def test_every_documented_python_example_is_valid_and_uses_up_options(block):
    """Each Python example parses, and its `dasklaunch.cluster(...)` keywords are options that
    `up` takes, with values of the documented kind (resolved as the API resolves them)."""
    import ast

    from dasklaunch.domain.settings import options_from
    from dasklaunch.ops.resolve import check_options

    for node in ast.walk(ast.parse(block)):
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "dasklaunch.cluster":
            keywords = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            check_options(options_from(keywords)[0])


def shell_blocks(page: Path) -> list[list[str]]:
    blocks, fence = [], None
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
            if fence in ("bash", "sh"):
                blocks.append([])
        elif fence in ("bash", "sh"):
            blocks[-1].append(line)
    return blocks


ANALYSIS = '''\
import os
from distributed import Client
client = Client(scheduler_file=os.environ["SCHEDULER_FILE"])
print("RESULT", client.submit(sum, range(10)).result(timeout=60), flush=True)
client.close()
'''


@pytest.mark.lifecycle
def test_the_readme_tour_runs_on_the_local_backend(local_runner, tmp_path):
    """README's tour inside an allocation, run as written on the local backend: without the
    `salloc` line and the site's `--interface`, with `analysis.py` being README's own client
    (`Client(scheduler_file=os.environ["SCHEDULER_FILE"])` after the env file is loaded)."""
    import shlex

    (tour,) = [b for b in shell_blocks(PAGES[0]) if b and b[0].startswith("salloc ")]
    lines = []
    for line in tour[1:]:
        words = shlex.split(line, comments=True)
        for flag in ("--interface", "-i"):
            while flag in words:
                del words[words.index(flag):words.index(flag) + 2]
        lines.append(line.split("#", 1)[0] if "$(" in line else shlex.join(words))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, argv in (("dasklaunch", f"{sys.executable} -m dasklaunch"),
                       ("python", sys.executable)):
        (bin_dir / name).write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
        (bin_dir / name).chmod(0o755)
    (tmp_path / "analysis.py").write_text(ANALYSIS)
    env = dict(local_runner.env, PATH=f"{bin_dir}{os.pathsep}{local_runner.env['PATH']}")
    script = "set -e\n" + "\n".join(lines) + "\n"
    try:
        out = subprocess.run(["sh", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=400)
    finally:
        local_runner.seen.note()
        local_runner("down")
    assert out.returncode == 0, (script, out.stdout[-3000:], out.stderr[-3000:])
    assert "RESULT 45" in out.stdout

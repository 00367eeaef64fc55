import json
import shutil
import subprocess
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

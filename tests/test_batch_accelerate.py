"""``sv4d batch`` under ``accelerate launch`` with 2 processes on the CPU (issue 24): each process runs its share (every
2nd video), each video is done exactly once, the report holds every row, both processes exit with the batch's code.
A real launch: about a minute on 2 CPU cores."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from test_batch import write_clip

from sv4d_models.tiny_checkpoint import write_tiny_checkpoint

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_two_accelerate_processes_split_the_videos(tmp_path):
    pytest.importorskip("accelerate")
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if accelerate is None:
        pytest.skip("the accelerate command is not installed")
    ckpt = write_tiny_checkpoint(tmp_path / "sv4d2_8views.safetensors", "sv4d2_8views")
    for i in range(4):
        write_clip(tmp_path / "clips" / f"v{i}.gif", 10 + i)
    (tmp_path / "clips" / "v4.gif").write_bytes(b"GIF89a broken")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision",
           "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port()), "-m", "sv4d_models", "batch",
           str(tmp_path / "clips"), "--out", str(out), "--sv4d", str(ckpt), "--image-size", "32", "--steps", "2",
           "--skip-nerf", "--quiet"]
    run = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    # the launcher (torchrun) turns a process's exit code 3 into its own 1 and names it
    assert run.returncode == 1 and "rank      : 0 (local_rank: 0)\n  exitcode  : 3" in run.stderr, run.stderr[-3000:]
    report = json.loads((out / "batch.json").read_text())
    rows = {r["name"]: r for r in report["rows"]}
    assert report["counts"] == {"done": 4, "failed": 1, "interrupted": 0, "pending": 0}
    assert {n: r["rank"] for n, r in rows.items()} == {"v0": 0, "v1": 1, "v2": 0, "v3": 1, "v4": 0}  # by index
    assert all(r["attempts"] == 1 and r["device"] == "cpu" for r in rows.values())  # each video run once
    assert rows["v4"]["kind"] == "input"
    assert run.stdout.count("sv4d batch: 5 videos: 4 done") == 1  # one summary, from the main process
    for r in (0, 1):
        assert json.loads((out / ".batch" / "processes" / f"rank{r}.json").read_text())["ran"] == (3 if r == 0 else 2)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

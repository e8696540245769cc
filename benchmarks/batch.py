"""``sv4d batch`` throughput: videos per hour with 1 and 2 processes, and what loading the models once saves against
one ``sv4d run`` per video.

    python benchmarks/batch.py [--videos tests/data/samples] [--work /tmp/sv4d_batch_bench] [--model-args ...]

Default job: the bundled demo model with ``--fast`` on the bundled sample clips (CPU). Three timed rows, each from a
clean folder, one after another: ``run`` (one ``python -m sv4d_models run`` process per video), ``batch-1``
(``python -m sv4d_models batch``, one process), ``batch-2`` (``accelerate launch --multi_gpu --num_processes 2``: on a
machine without GPUs its two processes run on the CPU, each with half the cores). Per row: wall seconds, videos per
hour, the seconds the jobs spent loading models (``timings_s.models`` of the manifests) and the rest of each job.
Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SV4D = [sys.executable, "-m", "sv4d_models"]


def _videos(folder: Path) -> list[Path]:
    from sv4d_models.batch_inputs import read_inputs

    return [Path(i.video) for i in read_inputs([str(folder)])]


def _manifest_models(out: Path) -> list[float]:
    return [json.loads(m.read_text())["timings_s"].get("models", 0.0) for m in sorted(out.glob("*/manifest.json"))]


def _timed(cmds: list[list[str]], env: dict) -> float:
    started = time.perf_counter()
    for cmd in cmds:
        subprocess.run(cmd, cwd=REPO, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def measure(videos: list[Path], work: Path, job: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    accelerate = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or "accelerate"
    rows = {}
    plans = {
        "run": [[*SV4D, "run", str(v), "--out", str(work / "run" / v.stem), *job] for v in videos],
        "batch-1": [[*SV4D, "batch", *map(str, videos), "--out", str(work / "batch-1"), *job]],
        "batch-2": [[accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                     "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "sv4d_models", "batch",
                     *map(str, videos), "--out", str(work / "batch-2"), *job]],
    }
    for name, cmds in plans.items():
        shutil.rmtree(work / name, ignore_errors=True)
        seconds = _timed(cmds, env)
        loads = _manifest_models(work / name)
        done = len(loads)
        rows[name] = {"videos_done": done, "wall_s": round(seconds, 1),
                      "videos_per_hour": round(3600 * done / seconds, 1) if done else 0.0,
                      "model_load_s": round(sum(loads), 2), "model_load_s_per_video": [round(x, 2) for x in loads]}
    rows["model_load_saved_s"] = round(rows["run"]["model_load_s"] - rows["batch-1"]["model_load_s"], 2)
    rows["wall_saved_s"] = round(rows["run"]["wall_s"] - rows["batch-1"]["wall_s"], 1)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", default=str(REPO / "tests" / "data" / "samples"), help="a folder of videos")
    p.add_argument("--work", default="/tmp/sv4d_batch_bench", help="scratch folder (its rows are replaced)")
    p.add_argument("--model-args", default="--model demo --fast --quiet",
                   help="the job options of every row (quote them)")
    a = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    videos = _videos(Path(a.videos))
    result = {"videos": [str(v) for v in videos], "job": a.model_args, "cpus": os.cpu_count(),
              **measure(videos, Path(a.work), a.model_args.split())}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

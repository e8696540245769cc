"""Trainer on CPU: samples/s and peak RSS of the tiny config for 1 and 2 processes (same global batch), and the
validation loss at fixed noise levels over a short run on synthetic data.

    OMP_NUM_THREADS=1 python benchmarks/train.py [--steps 200] [--speed-steps 20] [--work DIR]

Builds its inputs in --work (tiny SV3D_p / SVD-xt files from the checkpoint factory, a synthetic dataset of 8
objects + 2 held out, 9 views x 9 frames at 32 px), then:
  1. speed: --speed-steps steps of train/configs/tiny_cpu.yaml with global batch 2, as 1 process (batch 2) and as 2
     processes (accelerate launch --multi_gpu --num_processes 2: torchrun, gloo on CPU; batch 1 each); samples/s
     from the median step time (train/step_s, first step excluded), peak RSS of the largest process;
  2. learning: --steps steps (1 process), validation loss at sigma 0.1 / 1 / 10 on the held-out objects before
     training and at the end; the fall in percent (goal: >= 30 %).
One table per part, one summary line.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "train" / "configs" / "tiny_cpu.yaml"


def prepare(work: Path) -> dict:
    ck, data = work / "ckpt", work / "data"
    files = {"sv3d": ck / "sv3d_p.safetensors", "svd": ck / "svd_xt.safetensors", "data": data}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for kind, path in (("sv3d_p", files["sv3d"]), ("svd_xt", files["svd"])):
        if not path.exists():
            subprocess.run([sys.executable, "-m", "sv4d_models.tiny_checkpoint", str(path), "--model", kind],
                           check=True, env=env, capture_output=True)
    if not (data / "manifest.json").exists():
        subprocess.run([sys.executable, "-m", "train.prepare_data", "--out", str(data), "--encoders",
                        str(files["sv3d"]), "--objects", "8", "--val-objects", "2", "--views", "9", "--frames", "9",
                        "--size", "32", "--quiet"], check=True, env=env)
    return files


def overrides(files: dict, out: Path, steps: int, *extra: str) -> list[str]:
    return [f"model.init_sv3d={files['sv3d']}", f"model.init_svd={files['svd']}", f"data.path={files['data']}",
            f"run.output_dir={out}", f"run.max_steps={steps}", "run.checkpoint_every=100000", "run.log_every=1",
            "run.val_sample_steps=0", "run.export_on_end=false", *extra]


_WRAP = ("import json, resource, subprocess, sys, time\n"
         "t = time.perf_counter(); r = subprocess.run(sys.argv[1:])\n"
         "print(json.dumps([r.returncode, time.perf_counter() - t, "
         "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]))")


def launch(cmd: list[str]) -> tuple[float, float]:
    """Run ``cmd`` under a fresh wrapper process; (wall seconds, peak RSS in MB of its largest descendant)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", _WRAP, *cmd], env=env, capture_output=True, text=True)
    code, wall, rss = json.loads(r.stdout.strip().splitlines()[-1])
    if code:
        raise RuntimeError(r.stderr[-3000:])
    return wall, rss


def metric(out: Path, name: str) -> dict[int, float]:
    with open(out / "logs" / "metrics.csv", encoding="utf-8") as f:
        return {int(r["step"]): float(r["value"]) for r in csv.DictReader(f) if r["metric"] == name}


def speed(files: dict, work: Path, steps: int) -> list[dict]:
    script = [str(REPO / "train" / "train.py"), "--config", str(CONFIG)]
    rows = []
    for procs in (1, 2):
        out = work / f"speed_{procs}"
        args = overrides(files, out, steps, f"run.batch_size={2 // procs}", "run.validate_every=0", "run.val_samples=1",
                         "run.resume=none")
        prefix = [sys.executable] if procs == 1 else [sys.executable, "-m", "accelerate.commands.launch",
                                                      "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                                                      "--mixed_precision", "no", "--dynamo_backend", "no",
                                                      "--main_process_port", "29577"]
        wall, rss = launch(prefix + script + args)
        step_s = sorted(metric(out, "train/step_s").values())[1:]  # the first step includes warm-up
        median = step_s[len(step_s) // 2]
        rows.append({"processes": procs, "global_batch": 2, "steps": steps, "wall_s": wall, "step_s": median,
                     "samples_per_s": 2 / median, "peak_rss_mb": rss})
    return rows


def learning(files: dict, work: Path, steps: int) -> dict:
    out = work / "learn"
    script = [sys.executable, str(REPO / "train" / "train.py"), "--config", str(CONFIG)]
    launch(script + overrides(files, out, steps, "run.batch_size=2", "run.validate_at_start=true",
                              f"run.validate_every={steps}", "run.val_samples=8", "run.resume=none"))
    sig = {}
    for s in ("0.1", "1", "10"):
        v = metric(out, f"val/loss_sigma_{s}")
        sig[s] = (v[0], v[steps])
    before, after = sum(a for a, _ in sig.values()), sum(b for _, b in sig.values())
    return {"per_sigma": sig, "before": before, "after": after, "fall_pct": 100 * (1 - after / before)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--speed-steps", type=int, default=20)
    p.add_argument("--work", default=str(REPO / "benchmarks" / "out" / "train"))
    a = p.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    files = prepare(work)
    rows = speed(files, work, a.speed_steps)
    print("| processes | global batch | steps | whole run (s) | median step (s) | samples/s | peak RSS (MB) |\n"
          "|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {r['global_batch']} | {r['steps']} | {r['wall_s']:.1f} | {r['step_s']:.3f} "
              f"| {r['samples_per_s']:.2f} | {r['peak_rss_mb']:.0f} |")
    learn = learning(files, work, a.steps)
    print("\n| sigma | val loss before | after |\n|---|---|---|")
    for s, (b, f) in learn["per_sigma"].items():
        print(f"| {s} | {b:.4f} | {f:.4f} |")
    print(f"\nsummary: {rows[0]['samples_per_s']:.2f} samples/s (1 process), {rows[1]['samples_per_s']:.2f} (2 processes); "
          f"validation loss {learn['before']:.4f} -> {learn['after']:.4f} after {a.steps} steps "
          f"({learn['fall_pct']:.0f}% lower; goal >= 30%)")
    (work / "result.json").write_text(json.dumps({"speed": rows, "learning": learn}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

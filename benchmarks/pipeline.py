"""Peak RSS and wall time of SV4DPipeline.run for 21 / 42 / 84 frames (tiny sv4d checkpoint, CPU).

    OMP_NUM_THREADS=1 python benchmarks/pipeline.py [--frames 21 42 84] [--image-size 64] [--steps 2]

(One thread per process: on a shared 2-core machine, 2 OpenMP threads next to another busy process run
several times slower and make the timings meaningless.)

Each (store, length) runs in its own subprocess; peak RSS is that process's ``VmHWM`` (``sv4d_models.memory``:
models, run and reading every view back as uint8 frames, as a video writer would). ``workdir`` = per-pass files
in a work dir (memory-mapped reads, the bounded-memory path); ``cpu`` = every pass kept in RAM (``offload="cpu"``,
no work dir).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(args) -> None:
    import torch

    from sv4d_models.memory import peak_rss_bytes
    from sv4d_models.pipeline import SV4DPipeline

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    config = dict(image_size=args.image_size, num_steps=args.steps, device="cpu", offload=args.store,
                  encode_per_view=args.per_view)
    pipe = SV4DPipeline.from_checkpoints(args.ckpt, args.sv3d, config=config)
    g = torch.Generator().manual_seed(0)
    frames = torch.rand(args.n, args.image_size, args.image_size, 3, generator=g)
    base = peak_rss_bytes() / 2**20
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work" if args.store == "workdir" else None
        result = pipe.run(frames, work_dir=work)
        t_run = time.perf_counter() - t0
        for v in range(result.n_views):  # stream the result out view by view
            result.view_uint8(v)
        t_all = time.perf_counter() - t0
        print(json.dumps({"passes": len(result.plan.passes), "run_s": t_run, "total_s": t_all,
                          "base_mb": base, "peak_mb": peak_rss_bytes() / 2**20}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, nargs="+", default=[21, 42, 84])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--stores", nargs="+", default=["workdir", "cpu"], choices=["workdir", "cpu"])
    ap.add_argument("--per-view", action="store_true",
                    help="encode each frame V times for concat (official); default once per frame at every length")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--ckpt", help=argparse.SUPPRESS)
    ap.add_argument("--sv3d", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return 0
    from sv4d_models.tiny_checkpoint import write_tiny_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = write_tiny_checkpoint(Path(tmp) / "sv4d.safetensors", "sv4d", seed=0)
        sv3d = write_tiny_checkpoint(Path(tmp) / "sv3d_u.safetensors", "sv3d_u", seed=1)
        print(f"tiny sv4d + sv3d_u, {args.image_size}px, {args.steps} steps, concat encoded "
              f"{'per view' if args.per_view else 'once per frame'}, CPU, "
              f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
        print(f"{'store':8} {'frames':>6} {'passes':>6} {'run s':>7} {'run+read s':>10} {'base MB':>8} "
              f"{'peak MB':>8} {'peak-base':>9} {'peak vs 21':>10}")
        for store in args.stores:
            first = None
            for n in args.frames:
                cmd = [sys.executable, __file__, "--child", "--n", str(n), "--store", store, "--ckpt", str(ckpt),
                       "--sv3d", str(sv3d), "--image-size", str(args.image_size), "--steps", str(args.steps)]
                cmd += ["--per-view"] if args.per_view else []
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                first = first or r["peak_mb"]
                print(f"{store:8} {n:6d} {r['passes']:6d} {r['run_s']:7.1f} {r['total_s']:10.1f} {r['base_mb']:8.0f} "
                      f"{r['peak_mb']:8.0f} {r['peak_mb'] - r['base_mb']:9.0f} {100 * (r['peak_mb'] / first - 1):+9.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

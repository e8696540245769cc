"""Timings of the synthetic ground truth and the export layer, measured side by side in one run.

    OMP_NUM_THREADS=1 python benchmarks/export_bench.py [--frames 5] [--threads 1]

Prints one table: synthetic renders (9-view SV4D matrix column set) at several sizes, marching cubes +
colours per frame at several grid resolutions, GLB / PLY / mp4 writing (size on disk included).
The sphere tracer is a loop of many small torch ops: on a shared, loaded 2-core machine ``--threads 2`` ran
20-40x slower than ``--threads 1`` (OpenMP synchronisation), so 1 thread is the default here.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sv4d_models.camera import Cameras, default_matrix_azimuths_deg  # noqa: E402
from sv4d_models.export.glb import write_glb  # noqa: E402
from sv4d_models.export.mesh import MeshConfig, extract_mesh_sequence  # noqa: E402
from sv4d_models.export.sequence import write_mesh_sequence  # noqa: E402
from sv4d_models.export.video import render_turntable, write_mp4  # noqa: E402
from sv4d_models.synthetic import SyntheticScene  # noqa: E402


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scene = SyntheticScene.make("nonrigid", seed=0)
    cams = Cameras.orbit(default_matrix_azimuths_deg("sv4d"), 10.0)
    rows = []
    for size in (32, 64, 128):
        sec, _ = timed(lambda: scene.render(cams, 0.3, size), repeat=2)
        rows.append((f"synthetic render 9 views @ {size}px", sec, f"{9 * size * size / sec / 1e3:.0f} k rays/s"))
    times = np.linspace(0.0, 1.0, args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for res in (64, 128):
            cfg = MeshConfig(resolution=res, threshold=scene.iso_density, aabb_half_size=0.62)
            sec, seq = timed(lambda: extract_mesh_sequence(scene.density_fn, scene.color_fn, times, cfg))
            faces = int(np.mean([len(f) for f in seq.faces]))
            rows.append((f"marching cubes + colours {res}^3 / frame", sec / args.frames, f"{faces} faces/frame"))
        sec, path = timed(lambda: write_glb(seq, tmp / "a.glb", overwrite=True))
        rows.append((f"write switch GLB ({args.frames} fr, {res}^3)", sec, f"{path.stat().st_size / 1e6:.2f} MB"))
        sec, paths = timed(lambda: write_mesh_sequence(seq, tmp / "ply", fmt="ply", overwrite=True))
        rows.append((f"write PLY sequence ({args.frames} fr)", sec, f"{sum(p.stat().st_size for p in paths) / 1e6:.2f} MB"))
        sec, (frames, _) = timed(lambda: render_turntable(scene.render_fn, n_frames=24, height=128))
        rows.append(("turntable 24 fr @ 128px (render)", sec, f"{sec / 24 * 1e3:.0f} ms/frame"))
        sec, mp4 = timed(lambda: write_mp4(frames, tmp / "t.mp4", overwrite=True))
        rows.append(("write mp4 24 fr @ 128px", sec, f"{mp4.stat().st_size / 1e3:.0f} kB"))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"| {'step':44s} | {'seconds':>8s} | {'note':24s} |")
    print(f"|{'-' * 46}|{'-' * 10}|{'-' * 26}|")
    for name, sec, note in rows:
        print(f"| {name:44s} | {sec:8.3f} | {note:24s} |")


if __name__ == "__main__":
    main()

"""Expected time of the ``gpu`` fit preset at 576 px on one GPU, computed from CPU measurements (an estimate until a
GPU run confirms it; ``benchmarks/gpu_run.sh`` times the real thing when a GPU is lent).

1. Run the gpu preset's field (same sizes, same samples per ray) on CPU for ``--steps`` steps of a synthetic scene's
   576 px matrix, with few rays per step (the per-sample cost does not depend on the ray count).
2. Measure per evaluated sample: CPU seconds and FLOPs (``torch.utils.flop_counter``: matrix products, forward and
   backward; the planes' bilinear reads are memory-bound and not counted), and the share of samples the occupancy
   grid lets through once it is warm.
3. Scale to the preset's real step (frames x views per step, ``max_render_size``^2 rays each, ``n_samples``) and its
   step count: total samples, total FLOPs, CPU time, and GPU time at ``--gpu-tflops`` sustained (default 10 TFLOP/s:
   about 15 % of an H100 / H200's fp32 peak, what small-MLP training in eager PyTorch typically sustains).

Usage:  python benchmarks/nerf_gpu_estimate.py [--steps 80] [--gpu-tflops 10]
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sv4d_models.nerf.fit import check_fit_inputs  # noqa: E402
from sv4d_models.nerf.fit_steps import build_state, train_step  # noqa: E402
from sv4d_models.presets import get_preset  # noqa: E402
from sv4d_models.synthetic import SyntheticScene  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=80, help="measured steps (after a warm-up of the occupancy grid)")
    ap.add_argument("--gpu-tflops", type=float, default=10.0, help="assumed sustained GPU throughput")
    ap.add_argument("--size", type=int, default=576)
    a = ap.parse_args(argv)
    real = get_preset("gpu").fit_config()
    cfg = dataclasses.replace(real, dynamic_frames_per_step=1, dynamic_views_per_step=1, static_views_per_step=1,
                              max_render_size=24, static_steps=0, dynamic_steps=10_000)
    gt = SyntheticScene.make(kind="nonrigid", seed=0).render_matrix(model_kind="sv4d", n_frames=5, size=a.size)
    t, c2w, fov = check_fit_inputs(gt["images"], gt["masks"], gt["cameras"], gt["times"])
    state = build_state(cfg, gt["images"], gt["masks"], c2w, fov, t)
    for _ in range(cfg.occupancy.warmup_steps + cfg.occupancy.update_every):
        train_step(state)
    samples = rays = 0
    t0 = time.perf_counter()
    for _ in range(a.steps):
        info = train_step(state)
        samples, rays = samples + info["n_evaluated"], rays + info["n_rays"]
    seconds = time.perf_counter() - t0
    with FlopCounterMode(display=False) as counter:
        info = train_step(state)
    flops_per_sample = counter.get_total_flops() / max(1, info["n_evaluated"])
    share = samples / (rays * cfg.n_samples)
    per_step = real.dynamic_frames_per_step * real.dynamic_views_per_step * real.max_render_size ** 2 * real.n_samples
    total = share * (per_step * real.dynamic_steps + per_step // (real.dynamic_frames_per_step
                     * real.dynamic_views_per_step) * (real.static_views_per_step or 9) * real.static_steps)
    cpu_s = seconds / samples * total
    gpu_s = total * flops_per_sample / (a.gpu_tflops * 1e12)
    print(f"gpu preset: {real.static_steps} + {real.dynamic_steps} steps, {real.n_samples} samples per ray, "
          f"{real.max_render_size}^2 rays per image, {real.dynamic_frames_per_step} x {real.dynamic_views_per_step} "
          f"images per dynamic step; field {real.field.encoding}/{real.field.motion}")
    print(f"measured on {torch.get_num_threads()} CPU threads over {a.steps} steps: {share:.3f} of the samples pass "
          f"the occupancy grid, {seconds / samples * 1e6:.2f} us and {flops_per_sample / 1e3:.1f} kFLOP per sample "
          "(forward + backward)")
    print(f"the whole fit: {total / 1e9:.2f} G samples, {total * flops_per_sample / 1e15:.2f} PFLOP; CPU (this "
          f"machine) {cpu_s / 3600:.1f} h; one GPU at {a.gpu_tflops:g} TFLOP/s sustained: {gpu_s / 60:.1f} min (estimate)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

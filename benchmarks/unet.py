"""UNet forward on CPU: shipped SDPA attention vs the reference's explicit softmax(QK^T)V, float32 and bfloat16.

    python benchmarks/unet.py [--repeats 3] [--threads 2] [--rounds 2]

Mid-size SV4D structure (model_channels 64, channel_mult [1,2,4], 8 views x 5 frames = 40 latents, 32x32
latents, attention at every level). Each variant runs in a fresh subprocess so peak RSS is its own; the table
prints median wall time, the speed-up of the shipped path over the naive one and peak RSS above the process
baseline (weights + inputs loaded, before the first forward).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONFIG = {
    "target": "sgm.modules.diffusionmodules.video_model.SpatialUNetModelWithTime",
    "params": dict(
        adm_in_channels=1280, attention_resolutions=[4, 2, 1], channel_mult=[1, 2, 4], context_dim=1024,
        motion_context_dim=4, extra_ff_mix_layer=True, in_channels=8, legacy=False, model_channels=64,
        num_classes="sequential", num_head_channels=32, num_res_blocks=1, out_channels=4,
        time_block_merge_factor=0.0, time_block_merge_strategy="learned_with_images", time_kernel_size=[3, 1, 1],
        time_mix_legacy=False, transformer_depth=1, use_linear_in_transformer=True, use_spatial_context=True,
        use_spatial_transformer=True, use_motion_attention=True,
    ),
}
T, V, LATENT = 5, 8, 32


def worker(backend: str, dtype_name: str, repeats: int) -> dict:
    import torch

    from sv4d_models import build_unet, set_attention_backend

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype_name]
    g = torch.Generator().manual_seed(0)
    model = build_unet(CONFIG, dtype=dtype).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * p.shape[-1] ** -0.5 if p.dim() > 1 else p)
    set_attention_backend(model, backend)
    from sv4d_models.attention import Attention

    attn_time = [0.0]
    inner_forward = Attention.forward

    def timed_forward(self, *a, **k):  # accumulate the time spent inside attention layers
        t0 = time.perf_counter()
        out = inner_forward(self, *a, **k)
        attn_time[0] += time.perf_counter() - t0
        return out

    Attention.forward = timed_forward
    n = T * V
    args = dict(
        x=torch.randn(n, 8, LATENT, LATENT, generator=g).to(dtype), timesteps=torch.full((n,), 0.3).to(dtype),
        context=torch.randn(1, T, 1024, generator=g).to(dtype), y=torch.randn(n, 1280, generator=g).to(dtype),
        cond_view=torch.randn(V, 4, LATENT, LATENT, generator=g).to(dtype), num_video_frames=n,
        image_only_indicator=torch.zeros(1, n),
    )
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, attn = [], []
    with torch.no_grad():
        for _ in range(repeats + 1):  # first call is warm-up
            attn_time[0] = 0.0
            t0 = time.perf_counter()
            out = model(**args)
            times.append(time.perf_counter() - t0)
            attn.append(attn_time[0])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"time_s": statistics.median(times[1:]), "attn_s": statistics.median(attn[1:]), "peak_mib": (peak - base) / 1024, "finite": bool(out.float().isfinite().all())}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--worker", nargs=2, metavar=("BACKEND", "DTYPE"))
    a = ap.parse_args()
    if a.worker:
        import torch

        torch.set_num_threads(a.threads)
        print(json.dumps(worker(a.worker[0], a.worker[1], a.repeats)))
        return
    rows: dict = {}
    for _ in range(a.rounds):  # variants interleaved, best of rounds: a shared machine's load hits both alike
        for dtype in ("float32", "bfloat16"):
            for backend in ("naive", "sdpa"):
                cmd = [sys.executable, __file__, "--worker", backend, dtype, "--repeats", str(a.repeats), "--threads", str(a.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(a.threads)))
                r = json.loads(out.stdout.strip().splitlines()[-1])
                old = rows.get((dtype, backend))
                rows[(dtype, backend)] = r if old is None or r["time_s"] < old["time_s"] else old
    print(f"SV4D-structure UNet forward, {T}x{V} latents of {LATENT}x{LATENT}, model_channels 64, CPU, {a.threads} threads, "
          f"best of {a.rounds} interleaved rounds x median of {a.repeats}")
    print(f"{'dtype':9} {'attention':22} {'forward (s)':>11} {'speed-up':>9} {'in attention (s)':>17} {'speed-up':>9} "
          f"{'peak RSS over baseline (MiB)':>29}")
    for dtype in ("float32", "bfloat16"):
        naive = rows[(dtype, "naive")]
        for backend, label in (("naive", "naive softmax(QK^T)V"), ("sdpa", "shipped (SDPA)")):
            r = rows[(dtype, backend)]
            print(f"{dtype:9} {label:22} {r['time_s']:11.3f} {naive['time_s'] / r['time_s']:8.2f}x {r['attn_s']:17.3f} "
                  f"{naive['attn_s'] / r['attn_s']:8.2f}x {r['peak_mib']:29.0f}")


if __name__ == "__main__":
    main()

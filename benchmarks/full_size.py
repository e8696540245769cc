"""Full-size SV4D speed and memory on one accelerator (or the same code at a reduced size on a CPU).

    python benchmarks/full_size.py --device cuda --dtype float16 [--kind sv4d] [--compile] [--channels-last]
    python benchmarks/full_size.py --device cpu --reduced                 # the CI-sized run of the same code

Builds the networks of ``--kind`` with random weights (scaled so activations stay O(1); no checkpoint needed) and
the SV3D_p orbit model for sv4d, then runs the whole ``SV4DPipeline`` on a random 21-frame video at 576 x 576
(reference orbit + anchors + dense passes + VAE decode) and reports: seconds per denoising step of a pass (CFG
included; median over the passes' steps after the first), the 21-frame total, peak accelerator memory
(``torch.cuda.max_memory_allocated``; CPU: peak RSS), the UNet's FLOPs per step (``torch.utils.flop_counter``) and
achieved TFLOP/s against the device's dense peak, whether every output is finite; one summary line at the end.
Switches: ``--dtype`` (UNet weights; CLIP / VAE stay float32 under autocast), ``--sdpa`` (force a
scaled_dot_product_attention kernel), ``--compile`` (``torch.compile`` of the UNet; the first step, which compiles,
is reported separately), ``--channels-last``, ``--decoding-t`` (latents per VAE decode call).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sv4d_models.config import OFFICIAL_NETWORK_CONFIGS, UNetConfig  # noqa: E402
from sv4d_models.encoders.clip import ClipImageEncoder, ClipVisionConfig  # noqa: E402
from sv4d_models.encoders.tiny import TINY_VAE_CONFIG  # noqa: E402
from sv4d_models.encoders.vae import VAEConfig, VAEDecoder, VAEEncoder  # noqa: E402
from sv4d_models.kinds import KINDS  # noqa: E402
from sv4d_models.memory import peak_rss_bytes  # noqa: E402
from sv4d_models.pipeline import EngineModels, Placement, SV4DPipeline  # noqa: E402
from sv4d_models.unet import build_unet  # noqa: E402

PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "GH200": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
               "A10": 125.0, "4090": 165.0, "3090": 71.0, "V100": 125.0}  # dense fp16/bf16 tensor-core peaks


def reduced_network(kind: str) -> dict:
    """The official structure of ``kind`` at model_channels 64 with 32-wide heads and a 64-d context (CPU runs)."""
    net = json.loads(json.dumps(OFFICIAL_NETWORK_CONFIGS[kind]))
    p = net["params"]
    p.update(model_channels=64, num_head_channels=32, context_dim=64, use_checkpoint=False)
    if p.get("use_camera_emb"):  # SV4D 2.0 feeds the 4*C time embedding to an MLP sized by adm_in_channels (spec 2.5)
        p["adm_in_channels"] = 4 * 64
    return net


def vector_dims(kind: str, reduced: bool) -> tuple[int, ...]:
    return (64, 96, 96) if reduced and OFFICIAL_NETWORK_CONFIGS[kind]["params"].get("use_camera_emb") \
        else KINDS[kind].vector_dims


@torch.no_grad()
def randomise(module: torch.nn.Module, device: torch.device, dtype: torch.dtype, seed: int) -> torch.nn.Module:
    """Materialise a meta-built module on ``device`` with the tiny-checkpoint rule: N(0, fan_in^-1/2) weights,
    1 + 0.1 N norm scales, 0.02 N biases (activations stay O(1) through 32 layers)."""
    module = module.to_empty(device=device)
    g = torch.Generator(device=device).manual_seed(seed)
    for name, p in list(module.named_parameters()) + list(module.named_buffers()):
        if not p.is_floating_point():
            continue
        leaf = name.rsplit(".", 1)[-1]
        noise = torch.randn(p.shape, generator=g, device=device, dtype=torch.float32)
        if p.ndim == 0:
            value = torch.full_like(noise, math.log(1 / 0.07))
        elif leaf.endswith("bias"):
            value = 0.02 * noise
        elif p.ndim == 1:
            value = 1.0 + 0.1 * noise
        else:
            value = noise * (p.shape[0] if leaf in ("proj", "text_projection") else math.prod(p.shape[1:])) ** -0.5
        p.copy_(value.to(p.dtype))
    return module.to(dtype).eval().requires_grad_(False)


def build(kind: str, reduced: bool, placement: Placement, unet_dtype: torch.dtype, seed: int) -> EngineModels:
    net = reduced_network(kind) if reduced else OFFICIAL_NETWORK_CONFIGS[kind]
    cfg = UNetConfig.from_network_config(net)
    dev = placement.device
    unet = randomise(build_unet(cfg, device="meta"), dev, unet_dtype, seed)
    clip_cfg = ClipVisionConfig(width=160, layers=2, heads=2, output_dim=cfg.context_dim) if reduced else ClipVisionConfig()
    vae_cfg = TINY_VAE_CONFIG if reduced else VAEConfig()
    with torch.device("meta"):
        clip, enc, dec = ClipImageEncoder(clip_cfg), VAEEncoder(vae_cfg), VAEDecoder(vae_cfg)
    clip = randomise(clip, dev, torch.float32, seed + 1)
    enc, dec = randomise(enc, dev, torch.float32, seed + 2), randomise(dec, dev, torch.float32, seed + 3)
    vae = {role: enc for role in KINDS[kind].vae_copies}  # one copy serves every role (same cost as three)
    dims = vector_dims(kind, reduced)
    return EngineModels(kind, unet, clip, vae, dec, dims, f"random:{kind}", placement)


def flops_per_forward(models: EngineModels, n_latents: int, latent: int) -> float:
    """FLOPs of one CFG UNet call (batch 2 x n_latents) counted by ``torch.utils.flop_counter``."""
    from torch.utils.flop_counter import FlopCounterMode

    cfg, dev = models.unet.config, models.device
    b, t = 2, KINDS[models.kind].frames_per_pass if KINDS[models.kind].is_4d else n_latents
    x = torch.randn(b * n_latents, cfg.in_channels, latent, latent, device=dev)
    kw = dict(context=torch.randn(b, t, cfg.context_dim, device=dev) if KINDS[models.kind].is_4d else
              torch.randn(b * n_latents, 1, cfg.context_dim, device=dev),
              y=torch.randn(b * n_latents, cfg.adm_in_channels, device=dev), num_video_frames=n_latents,
              image_only_indicator=torch.zeros(b, n_latents, device=dev))
    if KINDS[models.kind].is_4d:
        v = KINDS[models.kind].views_per_pass
        kw.update(cond_view=torch.randn(b * v, 4, latent, latent, device=dev),
                  cond_motion=torch.randn(b * t, 4, latent, latent, device=dev))
    counter = FlopCounterMode(display=False)
    with counter, models.autocast(), torch.no_grad():
        models.unet(x, torch.randn(b * n_latents, device=dev), **kw)
    return float(counter.get_total_flops())


def peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return peak_rss_bytes() / 2**30


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sdpa_context(name: str):
    if name == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel({"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                        "cudnn": SDPBackend.CUDNN_ATTENTION, "math": SDPBackend.MATH}[name])


def run(a: argparse.Namespace) -> dict:
    dev = torch.device(a.device)
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[a.dtype]
    size = a.size or (128 if a.reduced else 576)
    placement = Placement(dev, dtype, a.encoding_t, a.decoding_t)
    models = build(a.kind, a.reduced, placement, dtype, a.seed)
    if a.channels_last:
        models.unet.to(memory_format=torch.channels_last)
    if a.compile:
        models = EngineModels(models.kind, torch.compile(models.unet), models.clip, models.vae, models.decoder,
                              models.vector_dims, models.source, placement)
    orbit = build("sv3d_p", a.reduced, placement, dtype, a.seed + 10) if KINDS[a.kind].needs_reference_orbit else None
    config = {"image_size": size, "device": a.device, "dtype": a.dtype, "encoding_t": a.encoding_t,
              "decoding_t": a.decoding_t, **({"num_steps": a.steps} if a.steps else {})}
    pipe = SV4DPipeline(models, config, orbit, "sv3d_p" if orbit else None, "random")
    spec = KINDS[a.kind]
    flops = flops_per_forward(models, spec.n_latents, size // 8)
    video = torch.rand(a.frames, size, size, 3, generator=torch.Generator().manual_seed(a.seed))
    stamps: list[tuple[int, str, int, float]] = []

    def callback(info: dict) -> None:
        sync(dev)
        stamps.append((info["pass_index"], info["pass_kind"], info["step"], time.perf_counter()))

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    sync(dev)
    start = time.perf_counter()
    with sdpa_context(a.sdpa):
        result = pipe.run(video, callback=callback)
        images = result.images
    sync(dev)
    total = time.perf_counter() - start
    return summarise(a, stamps, total, images, flops, peak_memory_gb(dev), dev, result)


def summarise(a, stamps, total, images, flops, peak_gb, dev, result) -> dict:
    per_pass: dict[int, list[float]] = {}
    for (i0, k0, s0, t0), (i1, k1, s1, t1) in zip(stamps, stamps[1:]):
        if i0 == i1:
            per_pass.setdefault(i1, []).append(t1 - t0)
    four_d = [d for i, ds in per_pass.items() if i >= 0 for d in ds[1:]] or [d for ds in per_pass.values() for d in ds]
    first = per_pass[min(i for i in per_pass if i >= 0)][0] if per_pass else float("nan")
    step_s = statistics.median(four_d) if four_d else total / max(1, len(stamps))  # 1-step passes: no intervals
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in name), None)
    achieved = flops / step_s / 1e12 if step_s == step_s and step_s > 0 else float("nan")
    return {"device": name, "kind": a.kind, "dtype": a.dtype, "image_size": a.size or (128 if a.reduced else 576),
            "frames": a.frames, "passes": len(result.plan.passes), "steps": result.plan.num_steps,
            "step_s": step_s, "first_step_s": first, "total_s": total, "peak_gb": peak_gb,
            "tflop_per_step": flops / 1e12, "achieved_tflops": achieved,
            "peak_tflops": peak, "utilisation": achieved / peak if peak else None,
            "finite": bool(torch.isfinite(images).all()), "compile": a.compile, "channels_last": a.channels_last,
            "sdpa": a.sdpa}


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kind", default="sv4d", choices=("sv4d", "sv4d2", "sv4d2_8views"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None, choices=("float32", "float16", "bfloat16"),
                   help="UNet dtype (default: float16 on CUDA, float32 on CPU)")
    p.add_argument("--reduced", action="store_true", help="model_channels 64, tiny CLIP / VAE, 128 px (CPU / CI)")
    p.add_argument("--size", type=int, default=None, help="image size (default 576, reduced 128)")
    p.add_argument("--frames", type=int, default=21)
    p.add_argument("--steps", type=int, default=None, help="sampler steps per pass (default: the kind's)")
    p.add_argument("--encoding-t", type=int, default=8)
    p.add_argument("--decoding-t", type=int, default=4)
    p.add_argument("--sdpa", default="auto", choices=("auto", "flash", "efficient", "cudnn", "math"))
    p.add_argument("--compile", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the result here")
    a = p.parse_args(argv)
    a.dtype = a.dtype or ("float16" if a.device.startswith("cuda") else "float32")
    return a


def main(argv=None) -> dict:
    a = parse(argv)
    r = run(a)
    for k, v in r.items():
        print(f"{k:>16}: {v}")
    util = f", {100 * r['utilisation']:.0f}% of {r['peak_tflops']:.0f}" if r["utilisation"] else ""
    print(f"summary: {r['kind']} {r['frames']} frames at {r['image_size']} px on {r['device']} ({r['dtype']}): "
          f"{r['step_s']:.3f} s/step, {r['total_s']:.1f} s total, peak {r['peak_gb']:.2f} GB, "
          f"{r['achieved_tflops']:.1f} TFLOP/s{util}, finite={r['finite']}")
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1))
    return r


if __name__ == "__main__":
    main()

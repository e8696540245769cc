"""Side-by-side numerical parity of ``sv4d_models.encoders`` with the reference implementations, in one run.

* resize: ours vs the installed ``kornia.geometry.transform.resize`` (and vs kornia 0.6.9 if ``--kornia069 DIR`` points
  at a ``pip install --no-deps --target DIR kornia==0.6.9``);
* VAE: ours vs the official ``sgm.modules.diffusionmodules.model.{Encoder,Decoder}`` loaded from a local
  Stability-AI/generative-models checkout (``--sgm DIR``; needs ``einops``), same random tiny weights.

Usage: python benchmarks/encoders_parity.py [--sgm DIR] [--kornia069 DIR]
Prints one table row per comparison: max |ours - reference|.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import types
from pathlib import Path

import torch

from sv4d_models.encoders import VAEConfig, load_vae_decoder, load_vae_encoder, resize, tiny_vae_state_dict

SIZES = [(576, 576), (300, 500), (1024, 768), (100, 640), (231, 1000)]
ENC_PREFIX, DEC_PREFIX = "conditioner.embedders.1.encoder.", "first_stage_model.decoder."


def _kornia_rows(kornia, label: str) -> list[tuple[str, float]]:
    g = torch.Generator().manual_seed(0)
    rows = []
    for h, w in SIZES:
        x = torch.rand(2, 3, h, w, generator=g) * 2 - 1
        ref = kornia.geometry.transform.resize(x, (224, 224), interpolation="bicubic", align_corners=True,
                                               antialias=True)
        rows.append((f"resize {h}x{w}->224 vs kornia {label}", (resize(x, (224, 224)) - ref).abs().max().item()))
    return rows


def _load_sgm_model(sgm_dir: Path) -> types.ModuleType:
    """``sgm.modules.diffusionmodules.model`` imported from the checkout, its attention import answered by stubs (the
    VAE parts compared here use neither class), without importing the rest of sgm."""
    for name in ("sgm", "sgm.modules", "sgm.modules.diffusionmodules"):
        package = types.ModuleType(name)
        package.__path__ = []
        sys.modules.setdefault(name, package)
    attention = types.ModuleType("sgm.modules.attention")
    attention.LinearAttention = type("LinearAttention", (torch.nn.Module,), {})
    attention.MemoryEfficientCrossAttention = type("MemoryEfficientCrossAttention", (torch.nn.Module,), {})
    sys.modules["sgm.modules.attention"] = attention
    spec = importlib.util.spec_from_file_location("sgm.modules.diffusionmodules.model",
                                                  sgm_dir / "sgm/modules/diffusionmodules/model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _vae_rows(sgm) -> list[tuple[str, float]]:
    rows = []
    for cfg in (VAEConfig(ch=32, ch_mult=(1, 2, 3, 3)), VAEConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1)):
        dd = dict(attn_type="vanilla", double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3,
                  ch=cfg.ch, ch_mult=list(cfg.ch_mult), num_res_blocks=cfg.num_res_blocks, attn_resolutions=[],
                  dropout=0.0)
        sd = tiny_vae_state_dict(torch.Generator().manual_seed(1), config=cfg)
        enc_ref, dec_ref = sgm.Encoder(**dd).eval(), sgm.Decoder(**dd).eval()
        enc_ref.load_state_dict({k[len(ENC_PREFIX) + 8:]: v for k, v in sd.items()
                                 if k.startswith(ENC_PREFIX + "encoder.")})
        dec_ref.load_state_dict({k[len(DEC_PREFIX):]: v for k, v in sd.items() if k.startswith(DEC_PREFIX)})
        qw, qb = sd[ENC_PREFIX + "quant_conv.weight"], sd[ENC_PREFIX + "quant_conv.bias"]
        g = torch.Generator().manual_seed(2)
        x = torch.rand(3, 3, 48, 64, generator=g) * 2 - 1
        z = torch.randn(3, 4, 6, 8, generator=g)
        with torch.no_grad():
            mean_ref = torch.nn.functional.conv2d(enc_ref(x), qw, qb)[:, :4]
            img_ref = dec_ref(1.0 / 0.18215 * z)
        mean = load_vae_encoder(sd).encode(x)
        img = load_vae_decoder(sd).decode(z)
        tag = f"ch {cfg.ch} mult {list(cfg.ch_mult)} res {cfg.num_res_blocks}"
        rows.append((f"VAE encoder mean vs sgm ({tag})", (mean - mean_ref).abs().max().item()))
        rows.append((f"VAE decode(z) vs sgm Decoder(z/0.18215) ({tag})", (img - img_ref).abs().max().item()))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sgm", type=Path, help="local Stability-AI/generative-models checkout")
    parser.add_argument("--kornia069", type=Path, help="directory with kornia 0.6.9 installed (--target)")
    args = parser.parse_args()
    rows: list[tuple[str, float]] = []
    try:
        import kornia

        rows += _kornia_rows(kornia, kornia.__version__)
    except ImportError:
        print("kornia not installed: skipping the installed-kornia rows")
    if args.kornia069:
        for name in [m for m in sys.modules if m == "kornia" or m.startswith("kornia.")]:
            del sys.modules[name]
        sys.path.insert(0, str(args.kornia069))
        rows += _kornia_rows(importlib.import_module("kornia"), "0.6.9")
    if args.sgm:
        rows += _vae_rows(_load_sgm_model(args.sgm))
    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'comparison':<{width}}  max-abs diff")
    for name, diff in rows:
        print(f"{name:<{width}}  {diff:.3e}")


if __name__ == "__main__":
    main()

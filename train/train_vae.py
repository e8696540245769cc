"""Train the demo model's small VAE (the library's ``AutoencoderKL`` classes) on synthetic renders, then rescale its
latents so the diffusion target ``0.18215 * posterior mean`` has unit standard deviation.

    python -m train.train_vae --renders runs/demo/renders --out runs/demo/vae.safetensors --steps 400

Objective: L1 + L2 reconstruction of ``Decoder(z)``, ``z = mean + std * noise`` (the posterior sample), plus a small
KL term (no LPIPS / GAN: no pretrained network exists offline). The decoder is trained exactly as the library runs it:
``VAEDecoder.decode(0.18215 * z) = Decoder(z)``, without ``post_quant_conv`` (kept as an identity for the key layout).
Most steps use random 32 px crops (4x cheaper; the network is convolutional), the last ``full_steps`` whole images.

Rescaling (``rescale_latents``): with ``k = 1 / (0.18215 * std(mean))`` the mean half of ``quant_conv`` is multiplied
by ``k`` (the log-variance bias gets ``+ 2 ln k``) and the decoder's ``conv_in`` weight divided by ``k``, so encode
-> decode is unchanged (checked) and the UNet sees unit-variance latents like SD's.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from sv4d_models.encoders.vae import LATENT_SCALE, AutoencoderKL, VAEConfig
from sv4d_models.images import mse_to_psnr
from sv4d_models.cli import OneLineParser  # noqa: E402 - one-line argparse errors, as sv4d's

DEMO_VAE_CONFIG = VAEConfig(ch=32, ch_mult=(1, 1, 2, 2), num_res_blocks=1)  # /8, widths 32/32/64/64, ~1.0M params


def load_renders(folder: str | Path, split: str = "train", orbit: str = "static") -> torch.Tensor:
    """Every PNG of ``folder/obj_*/{orbit}/`` whose object has ``curation.json`` split ``split`` -> ``[N, S, S, 3]``
    uint8 (``train.demo_renders`` layout), in sorted order."""
    import numpy as np
    from PIL import Image

    images = []
    for obj in sorted(Path(folder).glob("obj_*")):
        info = json.loads((obj / "curation.json").read_text()) if (obj / "curation.json").is_file() else {}
        if info.get("split") != split:
            continue
        images += [np.asarray(Image.open(p).convert("RGB")) for p in sorted((obj / orbit).glob("*.png"))]
    if not images:
        raise FileNotFoundError(f"{folder} holds no {split!r} renders in obj_*/{orbit}/; render them first with "
                                "python -m train.demo_renders")
    return torch.from_numpy(np.stack(images))


def to_model(images: torch.Tensor) -> torch.Tensor:
    """``[B, S, S, 3]`` uint8 -> ``[B, 3, S, S]`` float32 in [-1, 1]."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def posterior(ae: AutoencoderKL, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``[B, 3, S, S]`` -> posterior mean and log-variance ``[B, 4, S/8, S/8]`` (unscaled)."""
    moments = ae.quant_conv(ae.encoder(x))
    mean, logvar = moments.chunk(2, dim=1)
    return mean, logvar.clamp(-30.0, 20.0)


def batch_of(images: torch.Tensor, g: torch.Generator, batch: int, crop: int) -> torch.Tensor:
    """A random batch, random ``crop`` px crops at multiples of 8 (``crop`` = image size: whole images)."""
    idx = torch.randint(len(images), (batch,), generator=g)
    x = to_model(images[idx])
    size = x.shape[-1]
    if crop >= size:
        return x
    offsets = torch.randint((size - crop) // 8 + 1, (batch, 2), generator=g) * 8
    return torch.stack([x[i, :, oy:oy + crop, ox:ox + crop] for i, (oy, ox) in enumerate(offsets.tolist())])


def vae_loss(ae: AutoencoderKL, x: torch.Tensor, g: torch.Generator, kl_weight: float) -> tuple[torch.Tensor, float]:
    """L1 + L2 of ``Decoder(posterior sample)`` against ``x`` + ``kl_weight`` * KL; returns (loss, L2)."""
    mean, logvar = posterior(ae, x)
    z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g)
    rec = ae.decoder(z)
    mse = F.mse_loss(rec, x)
    kl = 0.5 * (mean**2 + logvar.exp() - 1.0 - logvar).sum(dim=(1, 2, 3)).mean()
    return F.l1_loss(rec, x) + mse + kl_weight * kl, float(mse.detach())


def train_vae(images: torch.Tensor, cfg: VAEConfig = DEMO_VAE_CONFIG, steps: int = 400, full_steps: int = 60,
              batch: int = 32, crop: int = 32, lr: float = 1e-3, kl_weight: float = 1e-6, seed: int = 0,
              log_every: int = 50, init_logvar: float = -6.0, init: dict | None = None,
              decoder_only: bool = False) -> AutoencoderKL:
    """Train an ``AutoencoderKL`` on ``images [N, S, S, 3]`` uint8 (``steps`` on crops, then ``full_steps`` whole),
    from random weights or from the state dict ``init`` (a later stage); ``decoder_only`` keeps the encoder and
    ``quant_conv`` (the latent space a dataset was encoded in) fixed."""
    torch.manual_seed(seed)
    ae = AutoencoderKL(cfg)
    if init is not None:
        ae.load_state_dict(init)
    with torch.no_grad():  # post_quant_conv is never used by the library: make it an identity
        ae.post_quant_conv.weight.copy_(torch.eye(cfg.z_channels, cfg.embed_dim)[:, :, None, None])
        ae.post_quant_conv.bias.zero_()
        if init is None:
            ae.quant_conv.bias[cfg.embed_dim:].fill_(init_logvar)  # start near-deterministic (posterior std 0.05)
    trained = ("decoder.",) if decoder_only else ("encoder.", "decoder.", "quant_conv.")
    params = [p for n, p in ae.named_parameters() if n.startswith(trained)]
    ae.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    total = steps + full_steps
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, total) / total))))
    g = torch.Generator().manual_seed(seed)
    started, size = time.perf_counter(), images.shape[1]
    for step in range(total):
        full = step >= steps
        x = batch_of(images, g, batch // 2 if full else batch, size if full else crop)
        loss, mse = vae_loss(ae, x, g, kl_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if (step + 1) % log_every == 0 or step + 1 == total:
            psnr = mse_to_psnr(mse, peak=2.0)  # images in [-1, 1]
            print(f"vae step {step + 1}/{total} loss {float(loss.detach()):.4f} psnr {psnr:.2f} dB "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    return ae.eval()


@torch.no_grad()
def latent_std(ae: AutoencoderKL, images: torch.Tensor, chunk: int = 64) -> float:
    """Standard deviation of the posterior means over ``images [N, S, S, 3]`` uint8."""
    means = torch.cat([posterior(ae, to_model(images[i:i + chunk]))[0] for i in range(0, len(images), chunk)])
    return float(means.std())


@torch.no_grad()
def rescale_latents(ae: AutoencoderKL, k: float) -> AutoencoderKL:
    """Scale the posterior by ``k`` and undo it in the decoder's ``conv_in`` (encode -> decode unchanged)."""
    e = ae.config.embed_dim
    ae.quant_conv.weight[:e] *= k
    ae.quant_conv.bias[:e] *= k
    ae.quant_conv.bias[e:] += 2.0 * math.log(k)
    ae.decoder.conv_in.weight /= k
    return ae


@torch.no_grad()
def reconstruction_psnr(ae: AutoencoderKL, images: torch.Tensor, chunk: int = 64) -> float:
    """PSNR (dB, [0, 1] images) of the library's path: ``decode(0.18215 * mean) = Decoder(mean)``, clamped."""
    se, n = 0.0, 0
    for i in range(0, len(images), chunk):
        x = to_model(images[i:i + chunk])
        rec = ae.decoder(posterior(ae, x)[0]).clamp(-1, 1)
        se += float(((rec - x) / 2.0).pow(2).sum())
        n += x.numel()
    return mse_to_psnr(se / n)


def save_vae(ae: AutoencoderKL, path: str | Path, meta: dict) -> Path:
    """``AutoencoderKL`` keys (``encoder.*``, ``decoder.*``, ``quant_conv.*``, ``post_quant_conv.*``) + metadata."""
    from safetensors.torch import save_file

    from sv4d_models.files import atomic_path

    state = {k: v.detach().float().contiguous() for k, v in ae.state_dict().items()}
    with atomic_path(path, overwrite=True) as tmp:
        save_file(state, str(tmp), metadata={k: json.dumps(v) for k, v in meta.items()})
    return Path(path)


def finish_decoder_only(ae: AutoencoderKL, init: dict | None, images: torch.Tensor, held_out: torch.Tensor,
                        out: str, started: float) -> int:
    """Check the encoder is untouched, measure, save (a decoder-only stage keeps the latent scale of ``init``)."""
    if init is None:
        raise ValueError("--decoder-only needs --init (the VAE whose latent space is kept)")
    state = ae.state_dict()
    changed = [k for k in init if not k.startswith("decoder.") and not torch.equal(init[k], state[k])]
    if changed:
        raise RuntimeError(f"decoder-only training changed {changed[:3]}; the dataset latents would not match")
    psnr = reconstruction_psnr(ae, held_out)
    info = {"config": vars(DEMO_VAE_CONFIG), "train_images": len(images), "heldout_images": len(held_out),
            "heldout_psnr_db": round(psnr, 3), "decoder_only": True, "seconds": round(time.perf_counter() - started, 1)}
    save_vae(ae, out, info)
    print(f"vae (decoder only): held-out reconstruction {psnr:.2f} dB, {info['seconds']:.0f} s -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m train.train_vae", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--renders", required=True, help="train.demo_renders folder")
    p.add_argument("--out", required=True, help="output .safetensors (AutoencoderKL keys)")
    p.add_argument("--steps", type=int, default=800, help="steps on 32 px crops")
    p.add_argument("--full-steps", type=int, default=60, help="final steps on whole images (half batch)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--kl-weight", type=float, default=1e-6)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--std-stride", type=int, default=8, help="latent std over every N-th training image")
    p.add_argument("--init", default=None, help="continue from this VAE file (a second stage) instead of random")
    p.add_argument("--decoder-only", action="store_true", help="with --init: train the decoder only (the latent "
                                                                 "space stays that of --init; no rescaling)")
    args = p.parse_args(argv)
    started = time.perf_counter()
    images, held_out = load_renders(args.renders, "train"), load_renders(args.renders, "val")
    init = None
    if args.init:
        from safetensors.torch import load_file

        init = load_file(args.init)
    ae = train_vae(images, DEMO_VAE_CONFIG, args.steps, args.full_steps, args.batch, lr=args.lr,
                   kl_weight=args.kl_weight, seed=args.seed, init=init, decoder_only=args.decoder_only)
    if args.decoder_only:
        return finish_decoder_only(ae, init, images, held_out, args.out, started)
    before = reconstruction_psnr(ae, held_out)
    std = latent_std(ae, images[::args.std_stride])
    rescale_latents(ae, 1.0 / (LATENT_SCALE * std))
    after = reconstruction_psnr(ae, held_out)
    if abs(after - before) > 0.05:
        raise RuntimeError(f"rescaling changed the held-out reconstruction ({before:.3f} -> {after:.3f} dB)")
    scaled = LATENT_SCALE * latent_std(ae, images[::args.std_stride])
    info = {"config": vars(DEMO_VAE_CONFIG), "train_images": len(images), "heldout_images": len(held_out),
            "heldout_psnr_db": round(after, 3), "raw_latent_std": std, "scaled_latent_std": round(scaled, 4),
            "seconds": round(time.perf_counter() - started, 1)}
    save_vae(ae, args.out, info)
    print(f"vae: held-out reconstruction {after:.2f} dB, 0.18215 * mean std {scaled:.3f}, "
          f"{info['seconds']:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

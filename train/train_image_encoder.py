"""Train the demo model's small CLIP-style image tower (the library's ``ClipImageEncoder``, open_clip's
``VisionTransformer``) with a self-supervised objective, so its embedding describes the object's appearance.

    python -m train.train_image_encoder --renders runs/demo/renders --out runs/demo/clip.safetensors --steps 300

Objective: InfoNCE (symmetric, temperature ``tau``) where two renders of the same synthetic object (another view and
another time) are positives and the other objects of the batch are negatives: the embedding must keep what stays the
same across views and motion (colours, textures, layout) and may drop the camera and the time. Afterwards ``proj`` is
scaled so the embeddings have unit RMS per dimension (the UNet's cross-attention input scale).
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

from sv4d_models.encoders.clip import ClipImageEncoder, ClipVisionConfig
from sv4d_models.cli import OneLineParser  # noqa: E402 - one-line argparse errors, as sv4d's

from .train_vae import to_model

# 64 px input (no upsampling to 224), 8 px patches -> 64 tokens; width 80 = one ViT-H-14-width head (the loader
# infers heads = width / 80); output_dim = the tiny UNet's context_dim.
DEMO_CLIP_CONFIG = ClipVisionConfig(image_size=64, patch_size=8, width=80, layers=2, heads=1, mlp_ratio=4.0,
                                    output_dim=64)


def load_objects(folder: str | Path, split: str = "train", orbit: str = "static") -> torch.Tensor:
    """``[n_objects, n_images, S, S, 3]`` uint8: every render of each object (``train.demo_renders`` layout)."""
    import numpy as np
    from PIL import Image

    objects = []
    for obj in sorted(Path(folder).glob("obj_*")):
        info = json.loads((obj / "curation.json").read_text()) if (obj / "curation.json").is_file() else {}
        if info.get("split") == split:
            objects.append(np.stack([np.asarray(Image.open(p).convert("RGB"))
                                     for p in sorted((obj / orbit).glob("*.png"))]))
    if len(objects) < 2:
        raise FileNotFoundError(f"{folder} holds {len(objects)} {split!r} objects; InfoNCE needs at least 2 "
                                "(render them with python -m train.demo_renders)")
    return torch.from_numpy(np.stack(objects))


def embed(model: ClipImageEncoder, x: torch.Tensor) -> torch.Tensor:
    """Differentiable embedding (``ClipImageEncoder.forward`` runs under no_grad): ``[B, 3, S, S]`` -> ``[B, D]``."""
    return model.visual(model.preprocess(x))


def pair_batch(objects: torch.Tensor, g: torch.Generator, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two different renders of ``batch`` distinct objects: ``[B, 3, S, S]`` each, in [-1, 1]."""
    n_obj, n_img = objects.shape[:2]
    obj = torch.randperm(n_obj, generator=g)[:batch]
    a = torch.randint(n_img, (len(obj),), generator=g)
    b = (a + torch.randint(1, n_img, (len(obj),), generator=g)) % n_img
    return to_model(objects[obj, a]), to_model(objects[obj, b])


def info_nce(za: torch.Tensor, zb: torch.Tensor, tau: float) -> tuple[torch.Tensor, float]:
    """Symmetric InfoNCE of paired embeddings ``[B, D]``; returns (loss, top-1 retrieval accuracy)."""
    za, zb = F.normalize(za, dim=-1), F.normalize(zb, dim=-1)
    logits = za @ zb.T / tau
    target = torch.arange(len(za))
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    return loss, float((logits.argmax(1) == target).float().mean())


def train_image_encoder(objects: torch.Tensor, cfg: ClipVisionConfig = DEMO_CLIP_CONFIG, steps: int = 300,
                        batch: int = 32, lr: float = 1e-3, tau: float = 0.1, seed: int = 0,
                        log_every: int = 50) -> ClipImageEncoder:
    """InfoNCE training of a ``ClipImageEncoder`` on ``objects [n_obj, n_img, S, S, 3]`` uint8."""
    torch.manual_seed(seed)
    model = ClipImageEncoder(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    g, started = torch.Generator().manual_seed(seed), time.perf_counter()
    for step in range(steps):
        xa, xb = pair_batch(objects, g, batch)
        loss, acc = info_nce(embed(model, xa), embed(model, xb), tau)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if (step + 1) % log_every == 0 or step + 1 == steps:
            print(f"image encoder step {step + 1}/{steps} loss {float(loss.detach()):.3f} top-1 {acc:.2f} "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    return model.eval()


@torch.no_grad()
def retrieval_accuracy(model: ClipImageEncoder, objects: torch.Tensor, trials: int = 8, seed: int = 1) -> float:
    """Top-1 accuracy of finding another render of the same object among ``objects`` (all objects per trial)."""
    g, hits, total = torch.Generator().manual_seed(seed), 0, 0
    for _ in range(trials):
        xa, xb = pair_batch(objects, g, len(objects))
        _, acc = info_nce(embed(model, xa), embed(model, xb), 1.0)
        hits, total = hits + acc * len(xa), total + len(xa)
    return hits / total


@torch.no_grad()
def normalise_scale(model: ClipImageEncoder, objects: torch.Tensor) -> float:
    """Scale ``visual.proj`` so embeddings have unit RMS per dimension over ``objects``; returns the factor."""
    x = to_model(objects[:, :: max(1, objects.shape[1] // 8)].flatten(0, 1))
    rms = float(embed(model, x).pow(2).mean().sqrt())
    model.visual.proj.mul_(1.0 / rms)
    return 1.0 / rms


def save_image_encoder(model: ClipImageEncoder, path: str | Path, meta: dict) -> Path:
    """``visual.*`` keys (the official ``conditioner.embedders.0.open_clip.model.`` layout without its prefix)."""
    from safetensors.torch import save_file

    from sv4d_models.files import atomic_path

    state = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path, overwrite=True) as tmp:
        save_file(state, str(tmp), metadata={k: json.dumps(v) for k, v in meta.items()})
    return Path(path)


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m train.train_image_encoder", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--renders", required=True, help="train.demo_renders folder")
    p.add_argument("--out", required=True, help="output .safetensors (visual.* keys)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--tau", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    started = time.perf_counter()
    objects = load_objects(args.renders, "train")
    torch.manual_seed(args.seed)
    random_acc = retrieval_accuracy(ClipImageEncoder(DEMO_CLIP_CONFIG).eval(), objects)
    model = train_image_encoder(objects, DEMO_CLIP_CONFIG, args.steps, args.batch, args.lr, args.tau, args.seed)
    acc = retrieval_accuracy(model, objects)
    scale = normalise_scale(model, objects)
    info = {"config": vars(DEMO_CLIP_CONFIG), "objects": len(objects), "retrieval_top1_random_init": random_acc,
            "retrieval_top1": acc, "proj_scale": scale, "seconds": round(time.perf_counter() - started, 1)}
    save_image_encoder(model, args.out, info)
    print(f"image encoder: same-object retrieval top-1 {acc:.3f} over {len(objects)} objects (random tower "
          f"{random_acc:.3f}), {info['seconds']:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

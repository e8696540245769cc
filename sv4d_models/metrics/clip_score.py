"""CLIP-S: cosine similarity of the CLIP image embeddings of a generated image and its ground truth (per image, then
averaged; 1 = same embedding), as SV4D reports it next to LPIPS.

Default tower: the OpenCLIP ViT-H-14 image encoder the pipeline already loads (``encoders.load_clip_image_encoder``),
read from an SV4D / SV3D checkpoint (``conditioner.embedders.0.open_clip.model.visual.*``) or from open_clip's own
``open_clip_model.safetensors`` (``visual.*``), with the official SV4D preprocessing (antialiased bicubic resize to
224, CLIP mean / std). Any other open_clip model: ``model_name`` + a local ``pretrained`` file, embedded with
``encode_image`` after open_clip's own normalisation. Nothing is downloaded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

Embedder = Callable[[torch.Tensor], torch.Tensor]  # images [N, H, W, 3] in [0, 1] -> embeddings [N, D]
CLIP_FILE_HINT = ("sv4d.safetensors / sv4d2.safetensors / sv3d_u.safetensors (their CLIP tower) or open_clip's "
                  "ViT-H-14 open_clip_model.safetensors")


def _visual_prefix(path: Path) -> str:
    from safetensors import safe_open

    from ..encoders.clip import CLIP_PREFIX

    with safe_open(str(path), "pt") as f:
        keys = set(f.keys())
    for prefix in (CLIP_PREFIX, ""):
        if prefix + "visual.conv1.weight" in keys:
            return prefix
    raise ValueError(f"{path} holds no CLIP image tower (no '{CLIP_PREFIX}visual.conv1.weight' or "
                     f"'visual.conv1.weight'); give {CLIP_FILE_HINT}")


def _sv4d_tower(path: Path, device) -> Embedder:
    from ..encoders import load_clip_image_encoder

    encoder = load_clip_image_encoder(str(path), prefix=_visual_prefix(path), device=device, dtype=torch.float32)

    def embed(images: torch.Tensor) -> torch.Tensor:
        return encoder(images.permute(0, 3, 1, 2).to(device).float() * 2 - 1)

    return embed


def _open_clip_model(name: str, path: Path, device) -> Embedder:
    import open_clip

    model = open_clip.create_model(name, pretrained=str(path), device=device).eval()
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN if not hasattr(model.visual, "image_mean") or
                        model.visual.image_mean is None else model.visual.image_mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD if not hasattr(model.visual, "image_std") or
                       model.visual.image_std is None else model.visual.image_std, device=device).view(1, 3, 1, 1)

    @torch.no_grad()
    def embed(images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images.permute(0, 3, 1, 2).to(device).float(), size=(size, size), mode="bicubic",
                          align_corners=False, antialias=True).clamp(0, 1)
        return model.encode_image((x - mean) / std)

    return embed


def load_clip_embedder(path: str | os.PathLike, model_name: str | None = None,
                       device: str | torch.device = "cpu") -> Embedder:
    """An image embedder from a local file; FileNotFoundError naming the file and what to put there."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weights {path} do not exist (nothing is downloaded): give {CLIP_FILE_HINT} "
                                "with --clip, or an open_clip checkpoint with --clip and --clip-model NAME")
    if model_name:
        return _open_clip_model(model_name, path, device)
    if path.suffix not in (".safetensors", ".sft"):
        raise ValueError(f"{path}: the default CLIP tower is read from a .safetensors file ({CLIP_FILE_HINT}); "
                         "for another open_clip checkpoint also give --clip-model NAME (e.g. ViT-H-14)")
    return _sv4d_tower(path, device)


@torch.no_grad()
def clip_score(embed: Embedder, pred: torch.Tensor, gt: torch.Tensor, chunk: int = 16) -> torch.Tensor:
    """Cosine similarity of the CLIP embeddings of ``pred`` and ``gt`` images ``[N, H, W, 3]`` in [0, 1] -> ``[N]``."""
    if pred.shape != gt.shape:
        raise ValueError(f"CLIP-S needs images of equal shape, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    out = []
    for a, b in zip(pred.split(chunk), gt.split(chunk)):
        ea, eb = embed(a).double(), embed(b).double()
        out.append(F.cosine_similarity(ea, eb, dim=-1).cpu())
    return torch.cat(out)


__all__ = ["Embedder", "load_clip_embedder", "clip_score", "CLIP_FILE_HINT"]

"""The networks of one pipeline stage (4D model or SV3D) and their chunked, autocast encode / decode calls."""
from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import META_KIND, _unet_shapes, infer_model_kind, load_unet
from .state_source import CheckpointSource
from .sampling.conditioning import VECTOR_DIMS

META_VECTOR_SPLIT = "sv4d_vector_split"  # written by tiny_checkpoint (non-standard vector widths)
VAE_COPIES = {"concat": 1, "view": 4, "motion": 5}  # official conditioner embedder of each VAE condition


@dataclass
class StageModels:
    """Networks of one stage. ``vae``: ``concat`` / ``view`` / ``motion`` encoders (SV3D: ``concat`` only).

    ``vector_dims``: widths of the [sigma | polar | azimuth] parts of the UNet's vector input.
    ``source``: file name and size of the checkpoint (recorded in a work dir's manifest).
    """

    kind: str
    unet: torch.nn.Module
    clip: torch.nn.Module
    vae: dict[str, torch.nn.Module]
    decoder: torch.nn.Module
    vector_dims: tuple[int, ...]
    source: str = "<modules>"

    @property
    def levels(self) -> int:
        return len(self.unet.config.channel_mult)


def peek_checkpoint(path: str | os.PathLike, hint: str | None = None) -> tuple[str, tuple[int, ...], str]:
    """``(model_kind, vector_dims, source id)`` from a checkpoint's header only (no tensors are read)."""
    src = CheckpointSource(path)
    _, shapes = _unet_shapes(src)
    kind = infer_model_kind(shapes, src.keys(), hint=hint or src.metadata.get(META_KIND))
    if META_VECTOR_SPLIT in src.metadata:
        dims = tuple(int(d) for d in json.loads(src.metadata[META_VECTOR_SPLIT]))
    else:
        dims = VECTOR_DIMS[:1] if kind == "sv3d_u" else VECTOR_DIMS
    p = Path(path)
    return kind, dims, f"{p.name}:{p.stat().st_size}"


def load_stage_models(path: str | os.PathLike, kind: str | None = None, device: str | torch.device = "cpu",
                      unet_dtype: torch.dtype = torch.float32) -> StageModels:
    """Load UNet (``unet_dtype``), CLIP, the conditioning VAE copies and the decoder (float32) of a checkpoint."""
    from .encoders import load_clip_image_encoder, load_vae_decoder, load_vae_encoder

    kind, dims, source = peek_checkpoint(path, kind)
    unet = load_unet(path, model_kind=kind, device=device, dtype=unet_dtype)
    copies = {"concat": 1} if kind.startswith("sv3d") else VAE_COPIES
    vae = {name: load_vae_encoder(str(path), prefix=f"conditioner.embedders.{i}.encoder.", device=device,
                                  dtype=torch.float32).eval() for name, i in copies.items()}
    clip = load_clip_image_encoder(str(path), device=device, dtype=torch.float32).eval()
    decoder = load_vae_decoder(str(path), device=device, dtype=torch.float32).eval()
    return StageModels(kind, unet, clip, vae, decoder, dims, source)


class Runner:
    """Device placement, autocast and chunking for encoder / decoder / CLIP calls.

    Inputs and outputs are CPU float32 unless stated; each chunk is moved to ``device`` for the call.
    """

    def __init__(self, device: str | torch.device, dtype: torch.dtype, encoding_t: int, decoding_t: int):
        self.device, self.dtype = torch.device(device), dtype
        self.encoding_t, self.decoding_t = int(encoding_t), int(decoding_t)

    def autocast(self):
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _chunked(self, fn, x: torch.Tensor, chunk: int, to_cpu: bool) -> torch.Tensor:
        """``fn`` over ``chunk``-sized parts of ``x``, each moved to the device, under autocast; float32 out."""
        out = []
        with torch.no_grad():
            for part in x.split(chunk):
                with self.autocast():
                    y = fn(part.to(self.device)).float()
                out.append(y.cpu() if to_cpu else y)
        return torch.cat(out)

    def encode(self, vae: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, S, S]`` in [-1, 1] -> latent means ``[B, 4, S/8, S/8]`` float32 on ``device``."""
        return self._chunked(vae.encode, images, self.encoding_t, to_cpu=False)

    def clip(self, clip: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, S, S]`` -> embeddings ``[B, D]`` float32 on the CPU."""
        return self._chunked(clip, images, self.encoding_t, to_cpu=True)

    def decode(self, decoder: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, 4, h, w]`` -> images ``[B, 3, 8h, 8w]`` float32 on the CPU (not clamped)."""
        return self._chunked(decoder.decode, latents, self.decoding_t, to_cpu=True)

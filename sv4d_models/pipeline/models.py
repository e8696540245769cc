"""The networks of one engine checkpoint (``EngineModels``) and how they are run (``Placement``).

``EngineModels`` is what the stage functions (``stages.py``) need: the UNet, the CLIP image encoder, the VAE
encoder copies of the conditioner (``concat`` / ``view`` / ``motion``; SV3D has ``concat`` only) and the VAE
decoder, plus calls that run them chunked on the right device under autocast. ComfyUI nodes can pass any object
with the same attributes and methods (see ``stages.SamplingModels``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..checkpoint import CheckpointSource, load_unet, resolve_kind, warn_if_unsure
from ..kinds import KINDS
from ..validate import check_device


ENCODE_CHUNK, DECODE_CHUNK = 8, 4  # images per VAE / CLIP encode call, latents per VAE decode call (defaults)


@dataclass(frozen=True)
class Placement:
    """Where the networks run and in what pieces: device, autocast dtype, frames per encode / decode call.

    Inputs and outputs of the calls are CPU float32 unless stated; each chunk is moved to ``device``.
    """

    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    encoding_t: int = ENCODE_CHUNK
    decoding_t: int = DECODE_CHUNK

    def autocast(self):
        """Autocast to ``dtype`` on ``device`` (a no-op context for float32)."""
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def chunked(self, fn, x: torch.Tensor, chunk: int, to_cpu: bool) -> torch.Tensor:
        """``fn`` over ``chunk``-sized parts of ``x``, each moved to the device, under autocast; float32 out."""
        out = []
        with torch.no_grad():
            for part in x.split(chunk):
                with self.autocast():
                    y = fn(part.to(self.device)).float()
                out.append(y.cpu() if to_cpu else y)
        return torch.cat(out)


@dataclass(frozen=True)
class EngineModels:
    """Networks of one engine checkpoint and their placement.

    Attributes:
        kind: model kind (``KINDS``); unet: callable with the official UNet signature.
        clip: CLIP image encoder; vae: ``{role: VAE encoder}``; decoder: VAE decoder.
        vector_dims: widths of the [sigma | polar | azimuth] parts of the UNet's vector input.
        source: file name and size of the checkpoint (recorded in a work dir's manifest).
        placement: device, autocast dtype and chunk sizes of every call.
    """

    kind: str
    unet: torch.nn.Module
    clip: torch.nn.Module
    vae: dict[str, torch.nn.Module]
    decoder: torch.nn.Module
    vector_dims: tuple[int, ...]
    source: str = "<modules>"
    placement: Placement = Placement()

    @property
    def levels(self) -> int:
        """Resolution levels of the UNet (the image side must be a multiple of 8 * 2^(levels - 1))."""
        return len(self.unet.config.channel_mult)

    @property
    def device(self) -> torch.device:
        return self.placement.device

    def placed(self, placement: Placement) -> "EngineModels":
        """The same networks with another placement (no copy)."""
        return dataclasses.replace(self, placement=placement)

    def autocast(self):
        return self.placement.autocast()

    def encode(self, role: str, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, S, S]`` in [-1, 1] -> latent means ``[B, 4, S/8, S/8]`` float32 on the device, with
        the VAE copy of conditioning ``role`` (``concat`` / ``view`` / ``motion``)."""
        return self.placement.chunked(self.vae[role].encode, images, self.placement.encoding_t, to_cpu=False)

    def clip_embed(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, S, S]`` -> CLIP embeddings ``[B, D]`` float32 on the CPU."""
        return self.placement.chunked(self.clip, images, self.placement.encoding_t, to_cpu=True)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``[B, 4, h, w]`` -> images ``[B, 3, 8h, 8w]`` float32 on the CPU (not clamped)."""
        return self.placement.chunked(self.decoder.decode, latents, self.placement.decoding_t, to_cpu=True)


def _load_encoders(src: CheckpointSource, roles: dict[str, int], device: torch.device):
    """CLIP, ``{role: VAE encoder}`` and the decoder (float32) of an engine file; a role whose embedder copy is
    absent (SV3D files hold embedder 1 only) uses embedder 1's encoder."""
    from ..encoders import load_clip_image_encoder, load_vae_decoder, load_vae_encoder

    keys, loaded = src.keys(), {}
    vae = {}
    for role, i in roles.items():
        i = i if any(k.startswith(f"conditioner.embedders.{i}.encoder.") for k in keys) else 1
        if i not in loaded:
            loaded[i] = load_vae_encoder(src, prefix=f"conditioner.embedders.{i}.encoder.", device=device,
                                         dtype=torch.float32)
        vae[role] = loaded[i]
    clip = load_clip_image_encoder(src, device=device, dtype=torch.float32)
    return clip, vae, load_vae_decoder(src, device=device, dtype=torch.float32)


def load_engine_models(path: str | os.PathLike, kind: str | None = None, placement: Placement = Placement(),
                       unet_dtype: torch.dtype | None = None) -> EngineModels:
    """Load UNet (``unet_dtype``, default the placement's dtype), CLIP, the conditioning VAE copies and the decoder
    (float32) of a checkpoint onto ``placement.device``."""
    check_device(str(placement.device))
    info = resolve_kind(path, kind)
    warn_if_unsure(info)
    kind, dims, source = info.kind, info.vector_dims, info.source
    with CheckpointSource(path) as src:
        unet = load_unet(src, model_kind=kind, device=placement.device, dtype=unet_dtype or placement.dtype)
        clip, vae, decoder = _load_encoders(src, dict(KINDS[kind].vae_copies), placement.device)
    return EngineModels(kind, unet, clip, vae, decoder, dims, source, placement)


def load_encoder_models(path: str | os.PathLike, kind: str, unet: torch.nn.Module | None = None,
                        vector_dims: tuple[int, ...] | None = None, placement: Placement = Placement()) -> EngineModels:
    """The encoders and decoder of an engine file (SV3D or SV4D) for a ``kind`` model whose UNet comes from
    elsewhere (training, validation); the file's UNet is never read. ``unet`` may be None for encoding only."""
    with CheckpointSource(path) as src:
        clip, vae, decoder = _load_encoders(src, dict(KINDS["sv4d"].vae_copies), placement.device)
        p = Path(path)
        source = f"{p.name}:{p.stat().st_size}"
    return EngineModels(kind, unet, clip, vae, decoder, vector_dims or KINDS[kind].vector_dims, source, placement)


__all__ = ["EngineModels", "Placement", "load_engine_models", "load_encoder_models"]

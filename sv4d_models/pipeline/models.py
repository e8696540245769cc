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

import torch

from ..checkpoint import CheckpointSource, load_unet, peek_checkpoint
from ..kinds import KINDS


@dataclass(frozen=True)
class Placement:
    """Where the networks run and in what pieces: device, autocast dtype, frames per encode / decode call.

    Inputs and outputs of the calls are CPU float32 unless stated; each chunk is moved to ``device``.
    """

    device: torch.device = torch.device("cpu")
    dtype: torch.dtype = torch.float32
    encoding_t: int = 8
    decoding_t: int = 4

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


def load_engine_models(path: str | os.PathLike, kind: str | None = None, placement: Placement = Placement(),
                       unet_dtype: torch.dtype | None = None) -> EngineModels:
    """Load UNet (``unet_dtype``, default the placement's dtype), CLIP, the conditioning VAE copies and the decoder
    (float32) of a checkpoint onto ``placement.device``."""
    from ..encoders import load_clip_image_encoder, load_vae_decoder, load_vae_encoder

    kind, dims, source = peek_checkpoint(path, kind)
    device = placement.device
    with CheckpointSource(path) as src:
        unet = load_unet(src, model_kind=kind, device=device, dtype=unet_dtype or placement.dtype)
        vae = {role: load_vae_encoder(src, prefix=f"conditioner.embedders.{i}.encoder.", device=device,
                                      dtype=torch.float32) for role, i in KINDS[kind].vae_copies.items()}
        clip = load_clip_image_encoder(src, device=device, dtype=torch.float32)
        decoder = load_vae_decoder(src, device=device, dtype=torch.float32)
    return EngineModels(kind, unet, clip, vae, decoder, dims, source, placement)


__all__ = ["EngineModels", "Placement", "load_engine_models"]

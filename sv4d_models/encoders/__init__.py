"""Conditioning encoders of SV3D / SV4D: OpenCLIP ViT-H-14 image tower and the SD 2.x VAE (spec section 4.2).

Names are imported lazily (open_clip is only imported when a CLIP model is built).
"""
from __future__ import annotations

from ..lazy import lazy_getattr

_EXPORTS: dict[str, str] = {
    # resizing.py
    "resize": ".resizing",
    "gaussian_blur2d": ".resizing",
    "antialias_params": ".resizing",
    # checkpoint reading (re-exported for convenience)
    "StateDictSource": "..checkpoint",
    "describe_checkpoint": "..checkpoint",
    # clip.py
    "CLIP_MEAN": ".clip",
    "CLIP_STD": ".clip",
    "CLIP_PREFIX": ".clip",
    "TEXT_LEFTOVER_KEYS": ".clip",
    "ClipVisionConfig": ".clip",
    "ClipImageEncoder": ".clip",
    "clip_pixels": ".clip",
    "build_clip_visual": ".clip",
    "infer_clip_config": ".clip",
    "load_clip_image_encoder": ".clip",
    # vae.py
    "LATENT_SCALE": ".vae",
    "VAEConfig": ".vae",
    "AutoencoderKL": ".vae",
    "Encoder": ".vae",
    "Decoder": ".vae",
    "VAEEncoder": ".vae",
    "VAEDecoder": ".vae",
    "infer_encoder_config": ".vae",
    "infer_decoder_config": ".vae",
    "load_vae_encoder": ".vae",
    "load_vae_decoder": ".vae",
    # tiny.py
    "TINY_VAE_CONFIG": ".tiny",
    "tiny_clip_state_dict": ".tiny",
    "tiny_vae_state_dict": ".tiny",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_getattr(__name__, _EXPORTS)

"""Deterministic tiny random weights with the official SV3D/SV4D key names (for tests and tiny checkpoints).

Shapes come from the same modules the loaders build (constructed on the meta device), so a tiny state dict loads
through ``load_clip_image_encoder`` / ``load_vae_encoder`` / ``load_vae_decoder`` exactly like an official one.
Values: Gaussian with std fan_in^-0.5 for weights (keeps activations O(1)), 1 + 0.1 N for norm scales,
0.02 N for biases; every tensor is drawn from the given ``torch.Generator`` in key order.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .clip import CLIP_HEAD_WIDTH, CLIP_PREFIX, ClipImageEncoder, ClipVisionConfig, open_clip_transformer
from .vae import AutoencoderKL, VAEConfig, VAEDecoder

__all__ = ["tiny_clip_state_dict", "tiny_vae_state_dict", "TINY_VAE_CONFIG", "random_weight"]

# Same key names as the official VAE (4 levels -> /8, 2 res blocks, nin_shortcut where the width changes, like
# [1, 2, 4, 4]); widths 32/64/96/96 are multiples of 32 for GroupNorm(32).
TINY_VAE_CONFIG = VAEConfig(ch=32, ch_mult=(1, 2, 3, 3), num_res_blocks=2)
VAE_PREFIX = "conditioner.embedders.1.encoder."
DECODER_PREFIX = "first_stage_model.decoder."


def random_weight(name: str, shape: Sequence[int], generator: torch.Generator) -> torch.Tensor:
    """One float32 tensor for parameter ``name`` (the rule is in the module docstring)."""
    shape = tuple(int(s) for s in shape)
    leaf = name.rsplit(".", 1)[-1]
    if shape == ():
        return torch.tensor(math.log(1 / 0.07))  # open_clip logit_scale init
    noise = torch.randn(shape, generator=generator)
    if leaf.endswith("bias"):
        return 0.02 * noise
    if len(shape) == 1 and leaf == "weight":  # LayerNorm / GroupNorm scale
        return 1.0 + 0.1 * noise
    if leaf in ("proj", "text_projection"):  # used as x @ proj: fan_in is dim 0
        return noise * shape[0] ** -0.5
    if leaf in ("class_embedding", "positional_embedding"):
        return noise * shape[-1] ** -0.5
    if "token_embedding" in name:
        return 0.02 * noise
    return noise * math.prod(shape[1:]) ** -0.5


def _fill(shapes: dict[str, tuple[int, ...]], prefix: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    return {prefix + k: random_weight(k, s, generator) for k, s in shapes.items()}


def tiny_clip_state_dict(
    generator: torch.Generator,
    prefix: str = CLIP_PREFIX,
    width: int = 160,
    layers: int = 2,
    output_dim: int = 64,
    patch_size: int = 14,
    image_size: int = 224,
) -> dict[str, torch.Tensor]:
    """Random CLIP image tower (``prefix + "visual.*"``) plus the text leftovers, official key names.

    ``width`` must be a multiple of 80 (heads = width / 80, as the loader infers for ViT-H-14); ``output_dim`` is the
    embedding size, i.e. the UNet ``context_dim`` of a matching tiny model. The input resolution stays 224 by default
    (the official preprocessing target) so the pipeline's resize path is exercised.
    """
    if width % CLIP_HEAD_WIDTH:
        raise ValueError(f"tiny CLIP width must be a multiple of {CLIP_HEAD_WIDTH} (heads = width / 80), got {width}")
    cfg = ClipVisionConfig(image_size=image_size, patch_size=patch_size, width=width, layers=layers,
                           heads=width // CLIP_HEAD_WIDTH, output_dim=output_dim)
    open_clip_transformer()  # import before the meta-device build
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in ClipImageEncoder(cfg).state_dict().items()}
    text_width = output_dim
    shapes.update({
        "positional_embedding": (77, text_width),
        "text_projection": (text_width, output_dim),
        "logit_scale": (),
        "token_embedding.weight": (64, text_width),
        "ln_final.weight": (text_width,),
        "ln_final.bias": (text_width,),
    })
    return _fill(shapes, prefix, generator)


def tiny_vae_state_dict(
    generator: torch.Generator,
    prefix: str | Sequence[str] = VAE_PREFIX,
    decoder_prefix: str | None = DECODER_PREFIX,
    config: VAEConfig = TINY_VAE_CONFIG,
) -> dict[str, torch.Tensor]:
    """Random AutoencoderKL copies (encoder, decoder, quant_conv, post_quant_conv) under each prefix in ``prefix``
    (SV4D: ``conditioner.embedders.{1,4,5}.encoder.``; SV3D: embedder 1 only; each copy drawn independently), plus a
    ``first_stage_model.decoder.*`` decoder under ``decoder_prefix`` (None: no decoder)."""
    prefixes = [prefix] if isinstance(prefix, str) else list(prefix)
    with torch.device("meta"):
        ae_shapes = {k: tuple(v.shape) for k, v in AutoencoderKL(config).state_dict().items()}
        dec_shapes = {k: tuple(v.shape) for k, v in VAEDecoder(config).state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for p in prefixes:
        out.update(_fill(ae_shapes, p, generator))
    if decoder_prefix is not None:
        out.update(_fill(dec_shapes, decoder_prefix, generator))
    return out

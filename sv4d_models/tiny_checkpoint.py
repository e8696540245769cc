"""Tiny random engine checkpoints with the official key layout, for tests, examples and smoke tests.

    python -m sv4d_models.tiny_checkpoint OUT.safetensors --model {sv4d,sv4d2,sv4d2_8views,sv3d_u,sv3d_p} [--seed N]

The file holds ``model.diffusion_model.*`` (UNet), ``conditioner.embedders.0.open_clip.model.*`` (CLIP image tower
and the text leftovers), the VAE copies ``conditioner.embedders.{1,4,5}.encoder.*`` (SV3D: embedder 1) and
``first_stage_model.decoder.*`` — the same names as Stability's releases, tiny widths. Hyper-parameters that
cannot be read from shapes (attention head width, the vector split) are stored in the safetensors metadata:
``sv4d_model_kind``, ``sv4d_network_config`` (official yaml form), ``sv4d_vector_split``.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from .checkpoint import META_KIND, META_NETWORK
from .config import MODEL_KINDS, OFFICIAL_NETWORK_CONFIGS

META_VECTOR_SPLIT = "sv4d_vector_split"
TINY_CONTEXT_DIM = 64  # CLIP embedding width of tiny checkpoints
TINY_VECTOR_SPLIT = {"sv4d": (32, 48, 48), "sv4d2": (32, 48, 48), "sv4d2_8views": (32, 48, 48),
                     "sv3d_p": (32, 48, 48), "sv3d_u": (32,)}  # sigma | polar | azimuth embedding widths
VAE_COPIES = {"sv4d": (1, 4, 5), "sv4d2": (1, 4, 5), "sv4d2_8views": (1, 4, 5), "sv3d_u": (1,), "sv3d_p": (1,)}


def tiny_network_config(model_kind: str) -> dict:
    """Official-form ``network_config`` of the tiny model of a kind (same structure, tiny widths)."""
    if model_kind not in OFFICIAL_NETWORK_CONFIGS:
        raise ValueError(f"--model {model_kind!r} is not supported; use one of {list(MODEL_KINDS)}")
    official = OFFICIAL_NETWORK_CONFIGS[model_kind]
    params = dict(official["params"])
    params.update(model_channels=32, channel_mult=[1, 2], num_res_blocks=1, attention_resolutions=[1],
                  num_head_channels=16, context_dim=TINY_CONTEXT_DIM, adm_in_channels=sum(TINY_VECTOR_SPLIT[model_kind]),
                  spatial_transformer_attn_type="softmax", use_checkpoint=False)
    return {"target": official["target"], "params": params}


def tiny_unet_state_dict(model_kind: str, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random UNet weights (``model.diffusion_model.*``) including the normally zero-initialised layers."""
    from .encoders.tiny import random_weight
    from .unet import build_unet

    model = build_unet(tiny_network_config(model_kind), device="meta")
    return {"model.diffusion_model." + k: random_weight(k, tuple(v.shape), generator) for k, v in model.state_dict().items()}


def tiny_engine_state_dict(model_kind: str, seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(state dict, safetensors metadata) of a tiny engine checkpoint."""
    from .encoders.tiny import tiny_clip_state_dict, tiny_vae_state_dict

    g = torch.Generator().manual_seed(seed)
    sd = tiny_unet_state_dict(model_kind, g)
    sd.update(tiny_clip_state_dict(g, prefix="conditioner.embedders.0.open_clip.model.", output_dim=TINY_CONTEXT_DIM))
    sd.update(tiny_vae_state_dict(g, prefix=[f"conditioner.embedders.{i}.encoder." for i in VAE_COPIES[model_kind]],
                                  decoder_prefix="first_stage_model.decoder."))
    meta = {META_KIND: model_kind, META_NETWORK: json.dumps(tiny_network_config(model_kind)),
            META_VECTOR_SPLIT: json.dumps(list(TINY_VECTOR_SPLIT[model_kind])), "sv4d_tiny_seed": str(seed)}
    return {k: v.contiguous() for k, v in sd.items()}, meta


def write_tiny_checkpoint(path: str | os.PathLike, model_kind: str, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a tiny checkpoint atomically (temp file + rename); refuses to overwrite unless asked."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) or choose another name")
    sd, meta = tiny_engine_state_dict(model_kind, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(sd, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sv4d_models.tiny_checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output .safetensors path")
    parser.add_argument("--model", required=True, choices=MODEL_KINDS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    path = write_tiny_checkpoint(args.out, args.model, args.seed, args.overwrite)
    print(f"wrote {path} ({path.stat().st_size:,} bytes, model {args.model}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

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

from .checkpoint.source import META_KIND, META_NETWORK, META_TINY_SEED, META_VECTOR_SPLIT
from .config import OFFICIAL_NETWORK_CONFIGS
from .files import atomic_path, check_writable
from .kinds import KINDS, MODEL_KINDS, get_kind

TINY_CONTEXT_DIM = 64  # CLIP embedding width of tiny checkpoints


def tiny_vector_split(model_kind: str) -> tuple[int, ...]:
    """Widths of the tiny UNet's vector parts: the kind's parts (sigma | polar | azimuth) scaled 256 -> 32, 512 -> 48."""
    return tuple(32 if d == 256 else 48 for d in KINDS[model_kind].vector_dims)


def tiny_network_config(model_kind: str) -> dict:
    """Official-form ``network_config`` of the tiny model of a kind (same structure, tiny widths)."""
    get_kind(model_kind, what="--model")
    official = OFFICIAL_NETWORK_CONFIGS[model_kind]
    params = dict(official["params"])
    params.update(model_channels=32, channel_mult=[1, 2], num_res_blocks=1, attention_resolutions=[1],
                  num_head_channels=16, context_dim=TINY_CONTEXT_DIM, adm_in_channels=sum(tiny_vector_split(model_kind)),
                  spatial_transformer_attn_type="softmax", use_checkpoint=False)
    return {"target": official["target"], "params": params}


def tiny_svd_xt_state_dict(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """UNet of a tiny SVD-xt (``VideoUNet`` with SVD's 768-d vector: fps | motion bucket | cond aug, 3 x 32 here),
    official key names, the widths of the tiny SV3D/SV4D models: what the trainer initialises frame attention from."""
    from .encoders.tiny import random_weight
    from .unet import build_unet

    net = tiny_network_config("sv3d_p")
    net["params"]["adm_in_channels"] = 3 * 32
    model = build_unet(net, device="meta")
    g = torch.Generator().manual_seed(seed)
    sd = {"model.diffusion_model." + k: random_weight(k, tuple(v.shape), g) for k, v in model.state_dict().items()}
    return sd, {META_KIND: "svd_xt", META_NETWORK: json.dumps(net), META_TINY_SEED: str(seed)}


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
    copies = sorted(KINDS[model_kind].vae_copies.values())
    sd.update(tiny_vae_state_dict(g, prefix=[f"conditioner.embedders.{i}.encoder." for i in copies],
                                  decoder_prefix="first_stage_model.decoder."))
    meta = {META_KIND: model_kind, META_NETWORK: json.dumps(tiny_network_config(model_kind)),
            META_VECTOR_SPLIT: json.dumps(list(tiny_vector_split(model_kind))), META_TINY_SEED: str(seed)}
    return {k: v.contiguous() for k, v in sd.items()}, meta


def write_tiny_checkpoint(path: str | os.PathLike, model_kind: str, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a tiny checkpoint atomically (temp file + rename); refuses to overwrite unless asked."""
    from safetensors.torch import save_file

    path = Path(path)
    try:
        check_writable(path, overwrite)
    except FileExistsError:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) or choose another name") from None
    sd, meta = tiny_svd_xt_state_dict(seed) if model_kind == "svd_xt" else tiny_engine_state_dict(model_kind, seed)
    with atomic_path(path, overwrite) as tmp:
        save_file(sd, str(tmp), metadata=meta)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sv4d_models.tiny_checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output .safetensors path")
    parser.add_argument("--model", required=True, choices=MODEL_KINDS + ("svd_xt",),
                        help="model kind (svd_xt: UNet only, for the trainer's initialisation tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    path = write_tiny_checkpoint(args.out, args.model, args.seed, args.overwrite)
    print(f"wrote {path} ({path.stat().st_size:,} bytes, model {args.model}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

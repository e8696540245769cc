"""Export a trained UNet as an engine checkpoint in the official layout, which ``load_unet``, ``SV4DPipeline`` and
the ComfyUI loader read like Stability's files.

Keys: ``model.diffusion_model.*`` (the trained UNet), ``conditioner.embedders.0.open_clip.model.*`` (CLIP image
tower and text leftovers), ``conditioner.embedders.{1,4,5}.encoder.*`` (the VAE copies; from an SV3D encoders file,
which has embedder 1 only, the copy is written three times, as Stability's SV4D initialised them) and
``first_stage_model.decoder.*``, copied from the encoders file. Metadata (``sv4d_models.checkpoint``):
``sv4d_model_kind`` always (sv4d2 and sv4d2_8views share keys), ``sv4d_network_config`` and ``sv4d_vector_split``
when the network is not the official size.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from sv4d_models.checkpoint import META_KIND, META_NETWORK, META_VECTOR_SPLIT, UNET_PREFIX, CheckpointSource
from sv4d_models.config import OFFICIAL_NETWORK_CONFIGS
from sv4d_models.files import atomic_path
from sv4d_models.kinds import KINDS

_CLIP = "conditioner.embedders.0."
_DECODER = "first_stage_model.decoder."


def _encoder_keys(src: CheckpointSource, kind: str) -> dict[str, torch.Tensor]:
    keys, out = src.keys(), {}
    out.update({k: src.tensor(k) for k in keys if k.startswith(_CLIP) or k.startswith(_DECODER)})
    for i in sorted(set(KINDS[kind].vae_copies.values())):
        prefix = f"conditioner.embedders.{i}.encoder."
        own = [k for k in keys if k.startswith(prefix)]
        source = prefix if own else "conditioner.embedders.1.encoder."
        out.update({prefix + k[len(source):]: src.tensor(k).clone() for k in keys if k.startswith(source)})
    if not any(k.startswith(_CLIP) for k in out) or not any(k.startswith(_DECODER) for k in out):
        raise ValueError(f"{src.name()} lacks the CLIP tower or the VAE decoder; pass an SV3D_p / SV4D engine file as "
                         "model.encoders")
    return out


def export_engine(unet_state: dict[str, torch.Tensor], kind: str, network: dict, vector_dims, encoders_path: str,
                  out_path: str | Path, overwrite: bool = True) -> Path:
    """Write ``out_path`` (safetensors, atomic). ``network``: official-form ``network_config`` of the UNet."""
    from safetensors.torch import save_file

    state = {UNET_PREFIX + k: v.detach().float().contiguous() for k, v in unet_state.items()}
    with CheckpointSource(encoders_path) as src:
        state.update({k: v.contiguous() for k, v in _encoder_keys(src, kind).items()})
    meta = {META_KIND: kind}
    if network != OFFICIAL_NETWORK_CONFIGS[kind]:
        meta[META_NETWORK] = json.dumps(network)
    if tuple(vector_dims) != tuple(KINDS[kind].vector_dims):
        meta[META_VECTOR_SPLIT] = json.dumps(list(vector_dims))
    with atomic_path(out_path, overwrite) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return Path(out_path)

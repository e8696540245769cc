"""Initialising an SV4D UNet from released checkpoints (paper section 3.1): SV3D_p for everything except the frame
attention, whose temporal layers come from SVD-xt.

Key map (SV4D key <- source key; both ``model.diffusion_model.``-relative):

    SV3D_p  (VideoUNet, 21-view orbit: its "time" axis is the views)
        <same name>                          <- <same name>            spatial ResBlocks, spatial transformers,
                                                                         time_embed, label_emb, out, mix factors
        *.0.time_mix_blocks.*                <- *.0.time_stack.*       temporal ResBlock (over the (t, v) axis)
        *.1.time_mix_blocks.0.*              <- *.1.time_stack.0.*     view attention <- SV3D's orbit attention
        *.1.time_mix_time_embed.*            <- *.1.time_pos_embed.*   its position MLP (sv4d only: see below)
    SVD-xt  (VideoUNet, 25 video frames)
        *.1.motion_blocks.0.*                <- *.1.time_stack.0.*     frame attention <- SVD's temporal attention
        *.1.time_mix_motion_embed.*          <- *.1.time_pos_embed.*   its frame-position MLP
        *.1.time_mixer_motion.mix_factor     <- *.1.time_mixer.mix_factor   (sv4d2*: own frame-attention blend)
    fresh (documented; PyTorch default init of the layer, seeded):
        *.1.motion_blocks.0.attn2.to_k/to_v  their context is the 4-channel reference-view latent (SVD: 1024-d CLIP)
        *.1.time_mix_time_embed.0.weight     sv4d2* (use_camera_emb): the first layer takes the 1280-d timestep +
                                             camera embedding, not a view-index sinusoid; at the deepest levels
                                             (C = 1280) SV3D's [4C, C] weight has the same shape by coincidence
                                             and is still not used
    Any source key whose shape differs from the SV4D parameter is not used (the parameter is fresh), never reshaped.
"""
from __future__ import annotations

import re

import torch

from sv4d_models.checkpoint import CheckpointSource, unet_shapes

SV3D, SVD, FRESH = "sv3d_p", "svd_xt", "fresh"


def source_of(key: str) -> tuple[str, str]:
    """``(source, source key)`` of an SV4D UNet parameter under the key map above (before the shape check)."""
    if ".motion_blocks." in key:
        return SVD, key.replace(".motion_blocks.", ".time_stack.")
    if ".time_mix_motion_embed." in key:
        return SVD, key.replace(".time_mix_motion_embed.", ".time_pos_embed.")
    if ".time_mixer_motion." in key:
        return SVD, key.replace(".time_mixer_motion.", ".time_mixer.")
    if ".time_mix_time_embed." in key:
        return SV3D, key.replace(".time_mix_time_embed.", ".time_pos_embed.")
    if ".time_mix_blocks." in key:
        return SV3D, re.sub(r"\.time_mix_blocks\.", ".time_stack.", key)
    return SV3D, key


def init_plan(target: dict[str, tuple[int, ...]], sources: dict[str, dict[str, tuple[int, ...]]],
              camera_emb: bool = False) -> dict[str, tuple[str, str]]:
    """Per SV4D parameter: ``(source, source key)``, or ``(FRESH, reason)`` when the source lacks it or its shape
    differs. ``sources`` maps ``"sv3d_p"`` / ``"svd_xt"`` to ``{key: shape}`` (a missing source: every key fresh);
    ``camera_emb``: the UNet's ``use_camera_emb`` (SV4D 2.0)."""
    out = {}
    for key, shape in target.items():
        src, skey = source_of(key)
        found = sources.get(src)
        if camera_emb and key.endswith(".time_mix_time_embed.0.weight"):
            out[key] = (FRESH, "SV4D 2.0 camera embedding: input is the 1280-d embedding, not a sinusoid")
        elif found is None:
            out[key] = (FRESH, f"no {src} file given")
        elif skey not in found:
            out[key] = (FRESH, f"{src} has no {skey}")
        elif tuple(found[skey]) != tuple(shape):
            out[key] = (FRESH, f"{src} {skey} is {tuple(found[skey])}, the SV4D parameter is {tuple(shape)}")
        else:
            out[key] = (src, skey)
    return out


def initialise(unet: torch.nn.Module, sv3d_path: str = "", svd_path: str = "") -> dict[str, tuple[str, str]]:
    """Fill ``unet`` (an SV4D-family UNet with initialised parameters) from the given engine files by the key map;
    parameters without a source keep their current (fresh) values. Returns the plan that was applied."""
    files = {name: CheckpointSource(path) for name, path in ((SV3D, sv3d_path), (SVD, svd_path)) if path}
    try:
        prefixes, shapes = {}, {}
        for name, src in files.items():
            prefixes[name], shapes[name] = unet_shapes(src)
            if not shapes[name]:
                raise ValueError(f"{src.name()} holds no UNet (model.diffusion_model.*) weights; pass the "
                                 f"{'SV3D_p' if name == SV3D else 'SVD-xt'} engine checkpoint")
        target = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
        plan = init_plan(target, shapes, camera_emb=bool(unet.config.use_camera_emb))
        state = unet.state_dict()
        with torch.no_grad():
            for key, (src, skey) in plan.items():
                if src != FRESH:
                    state[key].copy_(files[src].tensor(prefixes[src] + skey).to(state[key].dtype))
    finally:
        for src in files.values():
            src.close()
    return plan


def summarise(plan: dict[str, tuple[str, str]]) -> dict[str, int]:
    """How many parameters came from each source (and how many are fresh)."""
    out: dict[str, int] = {}
    for src, _ in plan.values():
        out[src] = out.get(src, 0) + 1
    return out

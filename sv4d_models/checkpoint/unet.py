"""Load official SV4D / SV4D 2.0 / SV3D checkpoints (full ``DiffusionEngine`` state dicts) into our UNet.

The UNet is built on the meta device and filled tensor by tensor from the safetensors file (read through
``safe_open``, converted to the target dtype/device one tensor at a time, then ``load_state_dict(assign=True)``),
so the weights are never held twice. Model kind and network hyper-parameters are inferred from key names and
shapes; foreign or damaged files raise ``ValueError`` saying what the file looks like and what is wrong.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Iterable

import torch

from ..config import OFFICIAL_NETWORK_CONFIGS, UNetConfig
from ..kinds import KINDS, MODEL_KINDS
from ..unet import SV4DUNet, build_unet
from .source import CHECKPOINT_FILES, META_KIND, META_NETWORK, META_VECTOR_SPLIT, CheckpointSource, as_source, \
    describe_checkpoint
from .strict import load_submodule

log = logging.getLogger("sv4d")

UNET_PREFIX = "model.diffusion_model."


def unet_shapes(src: CheckpointSource) -> tuple[str, dict[str, tuple[int, ...]]]:
    """(prefix, {stripped key: shape}) of the UNet part; prefix "" for bare UNet-only files."""
    pref = {k[len(UNET_PREFIX):]: s for k, s in src.shapes.items() if k.startswith(UNET_PREFIX)}
    if pref:
        return UNET_PREFIX, pref
    if "input_blocks.0.0.weight" in src.shapes:
        return "", dict(src.shapes)
    return UNET_PREFIX, {}


def infer_model_kind(shapes: dict[str, tuple[int, ...]], all_keys: Iterable[str] = (), hint: str | None = None,
                     stored: str | None = None) -> str:
    """Model kind from UNet key names/shapes.

    ``hint``: the kind the caller asks for (must agree with the weights; it also picks between kinds with identical
    keys, sv4d2 / sv4d2_8views). ``stored``: the kind recorded in the file's metadata (our tiny / trained files),
    trusted where shapes alone cannot tell (non-standard widths).
    """
    for name, value in (("model_kind", hint), ("stored model kind", stored)):
        if value is not None and value not in MODEL_KINDS:
            raise ValueError(f"{name}={value!r} is not supported; use one of {list(MODEL_KINDS)}")
    has = lambda frag: any(frag in k for k in shapes)  # noqa: E731
    pick = hint or stored
    if has(".motion_blocks."):
        kind = "sv4d2" if has(".time_mixer_motion.") else "sv4d"
        if kind == "sv4d2" and pick == "sv4d2_8views":
            kind = "sv4d2_8views"
        elif kind == "sv4d2" and pick is None:
            log.info("SV4D 2.0 weights: sv4d2 and sv4d2_8views have identical keys; assuming the 4-view 'sv4d2' "
                     "(pass model_kind='sv4d2_8views' for the 8-view model)")
    elif has(".time_stack.") and shapes.get("label_emb.0.0.weight", (0, 0))[1] in (256, 1280):
        kind = "sv3d_u" if shapes["label_emb.0.0.weight"][1] == 256 else "sv3d_p"
    elif has(".time_stack.") and stored in ("sv3d_u", "sv3d_p"):
        kind = stored  # non-standard width: the file says which
    elif has(".time_stack.") and describe_checkpoint(all_keys, shapes).startswith("an SV3D"):
        if hint not in ("sv3d_u", "sv3d_p"):
            raise ValueError(f"model_kind={hint!r} was requested but the weights are an SV3D checkpoint"
                             if hint else "an SV3D checkpoint of non-standard width: pass model_kind='sv3d_u' or 'sv3d_p'")
        kind = hint
    else:
        raise ValueError(f"this file does not look like an SV4D / SV4D 2.0 / SV3D checkpoint: it looks like "
                         f"{describe_checkpoint(all_keys, shapes)}. Supported files: {', '.join(CHECKPOINT_FILES.values())}")
    if hint is not None and hint != kind:
        raise ValueError(f"model_kind={hint!r} was requested but the weights are a {kind!r} checkpoint")
    return kind


def infer_network_config(kind: str, shapes: dict[str, tuple[int, ...]], metadata: dict[str, str]) -> UNetConfig:
    """Official config when the shapes are full size, else the stored metadata, else shape inference."""
    official = UNetConfig.from_network_config(OFFICIAL_NETWORK_CONFIGS[kind])
    if shapes.get("input_blocks.0.0.weight") == (320, 8, 3, 3) and len(shapes) > 1000:
        return official
    if META_NETWORK in metadata:
        return UNetConfig.from_network_config(json.loads(metadata[META_NETWORK]))
    return _config_from_shapes(official, shapes)


def _config_from_shapes(official: UNetConfig, shapes: dict[str, tuple[int, ...]]) -> UNetConfig:
    mc, in_ch = shapes["input_blocks.0.0.weight"][:2]
    n_in = 1 + max(int(k.split(".")[1]) for k in shapes if k.startswith("input_blocks."))
    mults, attn, ds, idx, res_per_level = [], [], 1, 1, 0
    while idx < n_in:  # one level per iteration: ResBlocks (+attention), then a Downsample ("0.op") or the end
        start = idx
        while idx < n_in and f"input_blocks.{idx}.0.op.weight" not in shapes:
            if f"input_blocks.{idx}.1.proj_in.weight" in shapes and ds not in attn:
                attn.append(ds)
            idx += 1
        mults.append(shapes[f"input_blocks.{start}.0.out_layers.3.weight"][0] // mc)
        res_per_level = idx - start
        idx, ds = idx + 1, ds * 2
    attn_keys = [k for k in shapes if k.endswith("transformer_blocks.0.attn2.to_k.weight")]
    depth = 1 + max((int(k.split("transformer_blocks.")[1].split(".")[0]) for k in shapes if "transformer_blocks." in k), default=0)
    heads_ch = 64 if all(shapes[k][0] % 64 == 0 for k in attn_keys) else None
    if heads_ch is None:
        raise ValueError("cannot infer num_head_channels from a non-standard-width checkpoint without metadata; "
                         "pass network_config= (the yaml network_config section) to load_unet")
    log.warning("network config inferred from shapes (num_head_channels assumed %d)", heads_ch)
    kernel = shapes.get("input_blocks.1.0.time_mix_blocks.in_layers.2.weight", shapes.get("input_blocks.1.0.time_stack.in_layers.2.weight"))
    changes: dict[str, Any] = dict(
        in_channels=in_ch, model_channels=mc, out_channels=shapes["out.2.weight"][0], channel_mult=tuple(mults),
        num_res_blocks=res_per_level, attention_resolutions=tuple(attn), num_head_channels=heads_ch,
        transformer_depth=(depth,), context_dim=shapes[attn_keys[0]][1], adm_in_channels=shapes["label_emb.0.0.weight"][1],
        extra_ff_mix_layer=any(".ff_in." in k for k in shapes), time_kernel_size=tuple(kernel[2:]),
    )
    motion = [k for k in shapes if k.endswith("motion_blocks.0.attn2.to_k.weight")]
    if motion:
        changes["motion_context_dim"] = shapes[motion[0]][1]
    return official.replace(**changes)


def load_unet(path_or_state_dict, network_config: dict | UNetConfig | None = None, model_kind: str | None = None,
              device: str | torch.device = "cpu", dtype: torch.dtype | None = None, operations=None) -> SV4DUNet:
    """Load the UNet of an official (or tiny test) engine checkpoint, strictly.

    Args:
        path_or_state_dict: ``.safetensors`` path, ``CheckpointSource`` or a state dict, with or without the
            ``model.diffusion_model.`` prefix.
        network_config: official yaml ``network_config`` (or ``UNetConfig``); inferred when None.
        model_kind: one of sv4d, sv4d2, sv4d2_8views, sv3d_u, sv3d_p; inferred when None (sv4d2 by default
            for SV4D 2.0 weights, which share keys with sv4d2_8views).
        device, dtype: where and in which dtype the weights end up (default: CPU, as stored).
        operations: layer classes for construction (ComfyUI's casting ops); default ``torch.nn``.
    Returns:
        ``SV4DUNet`` in eval mode with attributes ``model_kind`` and ``config``.
    """
    src, owned = as_source(path_or_state_dict)
    try:
        prefix, shapes = unet_shapes(src)
        kind = infer_model_kind(shapes, src.keys(), hint=model_kind, stored=src.metadata.get(META_KIND))
        if network_config is None:
            cfg = infer_network_config(kind, shapes, src.metadata)
            if kind in ("sv4d2", "sv4d2_8views"):  # same keys: the kind decides the view-attention grouping
                cfg = cfg.replace(use_3d_attention=(kind == "sv4d2"))
        else:
            cfg = network_config if isinstance(network_config, UNetConfig) else UNetConfig.from_network_config(network_config)
        model = load_submodule(
            src, prefix, lambda _shapes: build_unet(cfg, operations=operations, device="meta", dtype=dtype),
            model_name="UNet", anchor="input_blocks.0.0.weight", device=device or "cpu", dtype=dtype,
            title=f"{src.name()} looks like a {kind!r} checkpoint but does not match its UNet",
            hint="The file is damaged, a different model, or needs network_config= for a non-official size.")
    finally:
        if owned:
            src.close()
    model.model_kind = kind
    return model


def vector_dims(kind: str, metadata: dict[str, str]) -> tuple[int, ...]:
    """Widths of the UNet ``vector`` input's parts: stored in the metadata of non-standard files, else the kind's."""
    if META_VECTOR_SPLIT in metadata:
        return tuple(int(d) for d in json.loads(metadata[META_VECTOR_SPLIT]))
    return KINDS[kind].vector_dims


def peek_checkpoint(path: str | os.PathLike, hint: str | None = None) -> tuple[str, tuple[int, ...], str]:
    """``(model_kind, vector_dims, source id)`` from a checkpoint's header only (no tensors are read).

    The source id (``name:size``) is what work-dir manifests record.
    """
    with CheckpointSource(path) as src:
        _, shapes = unet_shapes(src)
        kind = infer_model_kind(shapes, src.keys(), hint=hint, stored=src.metadata.get(META_KIND))
        dims = vector_dims(kind, src.metadata)
    p = Path(path)
    return kind, dims, f"{p.name}:{p.stat().st_size}"

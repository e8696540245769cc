"""Load official SV4D / SV4D 2.0 / SV3D checkpoints (full ``DiffusionEngine`` state dicts) into our UNet.

``plan_unet`` decides what a file holds, from its header only: the kind (``kind.resolve_kind``), the network config
(official for full-size files, else the stored metadata, else inferred from shapes) and the exact key list and shapes
the UNet needs, checked against the file (a foreign or damaged file raises ``ValueError`` saying what it looks like
and what is wrong). The expected list comes from the architecture built with plain ``torch.nn`` on the meta device,
never from a module built with someone else's layers (ComfyUI's DynamicVRAM layers hold no weights until loaded).

``unet_tensors`` then reads the weights tensor by tensor, each from the file straight into a new tensor of the stored
dtype, then converted, so a loader that assigns them (``load_unet``, the ComfyUI node) never holds the weights twice;
``check_loaded`` verifies afterwards that a module holds every expected weight, whatever layers it was built with.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..config import OFFICIAL_NETWORK_CONFIGS, UNetConfig
from ..kinds import KINDS
from ..unet import SV4DUNet, build_unet
from .kind import UNET_PREFIX, CheckpointKind, resolve_kind, unet_shapes, vector_dims, warn_if_unsure
from .source import META_NETWORK, CheckpointSource, as_source
from .strict import key_mismatch
from ..validate import check_device

log = logging.getLogger("sv4d")

DAMAGED = "The file is damaged, a different model, or needs network_config= for a non-official size."


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


@dataclass(frozen=True)
class UNetPlan:
    """What a checkpoint's UNet is and the weights it must hold (from the header only).

    Attributes:
        info: the resolved kind (``kind``, ``reason``, ``warning``, ``vector_dims``, ``source``).
        config: the network config to build.
        prefix: the UNet keys' prefix in the file (``model.diffusion_model.`` or "" for bare UNet files).
        shapes: every key the UNet needs (relative to ``prefix``) with its shape; the file holds exactly these.
        file: the checkpoint's name (for messages).
    """

    info: CheckpointKind
    config: UNetConfig
    prefix: str
    shapes: dict[str, tuple[int, ...]]
    file: str

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def n_params(self) -> int:
        return sum(int(torch.Size(s).numel()) for s in self.shapes.values())

    def mismatch(self, found: dict[str, tuple[int, ...]], what: str = "does not match") -> ValueError | None:
        return key_mismatch(f"{self.file} looks like a {self.kind!r} checkpoint but {what} its UNet", self.shapes,
                            found, self.prefix, hint=DAMAGED)


def expected_unet_shapes(config: UNetConfig) -> dict[str, tuple[int, ...]]:
    """Every state-dict key of the UNet of ``config`` with its shape (built with ``torch.nn`` on meta: no memory)."""
    return {k: tuple(v.shape) for k, v in build_unet(config, device="meta").state_dict().items()}


def plan_unet(source, model_kind: str | None = None, network_config: dict | UNetConfig | None = None) -> UNetPlan:
    """The ``UNetPlan`` of a checkpoint (path, ``CheckpointSource`` or state dict); raises if the file's UNet keys or
    shapes differ from what its kind and config need."""
    src, owned = as_source(source)
    try:
        prefix, shapes = unet_shapes(src)
        info = resolve_kind(src, model_kind)
        if network_config is None:
            cfg = infer_network_config(info.kind, shapes, src.metadata)
            if KINDS[info.kind].is_4d:  # sv4d2 / sv4d2_8views files have the same keys: the kind decides
                cfg = cfg.replace(use_3d_attention=KINDS[info.kind].view_grouping_3d)
        else:
            cfg = network_config if isinstance(network_config, UNetConfig) else UNetConfig.from_network_config(network_config)
        plan = UNetPlan(info, cfg, prefix, expected_unet_shapes(cfg), src.name())
        error = plan.mismatch(shapes)
        if error is not None:
            raise error
        wrong = [k for k in plan.shapes if not src.is_floating(prefix + k)]
        if wrong:  # shapes right, element type not: integer / bool tensors would load and give garbage
            raise ValueError(f"{plan.file}: {len(wrong)} UNet weights are not floating point (e.g. {wrong[0]} is "
                             f"{src.dtype_name(prefix + wrong[0])}); the file is damaged or not a model checkpoint: "
                             "download it again")
    finally:
        if owned:
            src.close()
    return plan


def unet_tensors(source, plan: UNetPlan, dtype: torch.dtype | Callable[[str], torch.dtype | None] | None = None,
                 device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
    """The UNet's weights (relative key -> tensor on ``device``), each read from the file on its own, directly in the
    stored dtype, then converted: at no time is more than one tensor held twice.

    ``dtype``: one dtype for floating tensors, a function ``key -> dtype`` (None keeps the stored one), or None.
    Loaded with ``load_state_dict(..., assign=True)`` these tensors become the weights (no second copy); they come as
    one state dict because layers may rely on seeing all their keys in one call (ComfyUI's DynamicVRAM layers fill
    every weight missing from a call with zeros).
    """
    src, owned = as_source(source)
    pick = dtype if callable(dtype) else (lambda _key: dtype)
    try:
        return {key: src.get(plan.prefix + key, device, pick(key)) for key in plan.shapes}
    finally:
        if owned:
            src.close()


def check_loaded(module: torch.nn.Module, plan: UNetPlan) -> None:
    """Raise unless ``module`` now holds every weight of ``plan`` (real tensors, right shapes, nothing else)."""
    held = {k: tuple(v.shape) for k, v in module.state_dict().items() if v is not None and not v.is_meta}
    error = plan.mismatch(held, "was not filled with")
    if error is not None:
        raise error


def load_unet(path_or_state_dict, network_config: dict | UNetConfig | None = None, model_kind: str | None = None,
              device: str | torch.device = "cpu", dtype: torch.dtype | None = None, operations=None) -> SV4DUNet:
    """Load the UNet of an official (or tiny test) engine checkpoint, strictly.

    Args:
        path_or_state_dict: ``.safetensors`` path, ``CheckpointSource`` or a state dict, with or without the
            ``model.diffusion_model.`` prefix.
        network_config: official yaml ``network_config`` (or ``UNetConfig``); inferred when None.
        model_kind: one of sv4d, sv4d2, sv4d2_8views, sv3d_u, sv3d_p; resolved when None (``kind.resolve_kind``:
            metadata, then the file name, then the weights; a guess between sv4d2 / sv4d2_8views warns).
        device, dtype: where and in which dtype the weights end up (default: CPU, as stored).
        operations: layer classes for construction (ComfyUI's casting ops); default ``torch.nn``.
    Returns:
        ``SV4DUNet`` in eval mode with attributes ``model_kind``, ``config`` and ``checkpoint_kind``.
    """
    if isinstance(device, str):
        check_device(device)  # "gpu", or "cuda" on a machine without CUDA: a clear error before any reading
    src, owned = as_source(path_or_state_dict)
    try:
        plan = plan_unet(src, model_kind, network_config)
        warn_if_unsure(plan.info)
        model = build_unet(plan.config, operations=operations, device="meta", dtype=dtype)
        model.load_state_dict(unet_tensors(src, plan, dtype, device or "cpu"), strict=False, assign=True)
    finally:
        if owned:
            src.close()
    check_loaded(model, plan)
    model.model_kind, model.checkpoint_kind = plan.kind, plan.info
    return model.eval().requires_grad_(False)


__all__ = ["UNET_PREFIX", "UNetPlan", "check_loaded", "expected_unet_shapes", "infer_network_config", "load_unet",
           "plan_unet", "unet_shapes", "unet_tensors", "vector_dims"]

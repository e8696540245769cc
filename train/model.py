"""The network being trained: the library's UNet for a kind at official or tiny size, initialised from the
released checkpoints (``init_weights``), with optional gradient checkpointing; and the models validation needs."""
from __future__ import annotations

import functools
import logging

import torch
from torch.utils.checkpoint import checkpoint

from sv4d_models.config import OFFICIAL_NETWORK_CONFIGS, UNetConfig
from sv4d_models.kinds import KINDS
from sv4d_models.pipeline import EngineModels, Placement, load_encoder_models
from sv4d_models.tiny_checkpoint import tiny_network_config, tiny_vector_split
from sv4d_models.unet import build_unet

from .config import TrainConfig
from .init_weights import initialise, summarise

log = logging.getLogger("sv4d.train")


def network_config(kind: str, size: str) -> dict:
    """Official-form ``network_config`` of the trained UNet (``tiny``: the tiny checkpoint factory's widths)."""
    return tiny_network_config(kind) if size == "tiny" else OFFICIAL_NETWORK_CONFIGS[kind]


def vector_dims(kind: str, size: str) -> tuple[int, ...]:
    return tiny_vector_split(kind) if size == "tiny" else KINDS[kind].vector_dims


def build_model(cfg: TrainConfig) -> tuple[torch.nn.Module, dict, dict]:
    """UNet (float32, trainable), its ``network_config`` and the initialisation plan (parameter -> source)."""
    net = network_config(cfg.model.kind, cfg.model.size)
    unet = build_unet(UNetConfig.from_network_config(net))
    plan = initialise(unet, cfg.model.init_sv3d, cfg.model.init_svd) if (cfg.model.init_sv3d or cfg.model.init_svd) \
        else {}
    if plan:
        log.info("initialised from %s", summarise(plan))
    unet.model_kind = cfg.model.kind
    if cfg.model.gradient_checkpointing:
        enable_gradient_checkpointing(unet)
    return unet.train().requires_grad_(True), net, plan


def _checkpointed(forward, h, emb, ctx):
    if torch.is_grad_enabled():
        return checkpoint(forward, h, emb, ctx, use_reentrant=False)
    return forward(h, emb, ctx)


def enable_gradient_checkpointing(unet: torch.nn.Module) -> torch.nn.Module:
    """Recompute every UNet block (input, middle, output) in the backward pass instead of keeping activations."""
    blocks = list(unet.input_blocks) + [unet.middle_block] + list(unet.output_blocks)
    for block in blocks:
        block.forward = functools.partial(_checkpointed, block.forward)
    return unet


def validation_models(cfg: TrainConfig, unet: torch.nn.Module, device: torch.device) -> EngineModels | None:
    """The frozen encoders / decoder of ``model.encoders`` (or ``model.init_sv3d``) around the training UNet."""
    path = cfg.model.encoders or cfg.model.init_sv3d
    if not path:
        return None
    return load_encoder_models(path, cfg.model.kind, unet, vector_dims(cfg.model.kind, cfg.model.size),
                               Placement(device))

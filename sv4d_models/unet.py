"""SV4D ``SpatialUNetModelWithTime`` (incl. SV4D 2.0 options) and SV3D ``VideoUNet``, written from the spec.

Parameter names equal the official checkpoint keys after stripping ``model.diffusion_model.``; the forward
takes the official call ``unet(x, timesteps, context, y, cond_view=None, cond_motion=None,
num_video_frames=N, image_only_indicator=None)`` with the official tensor layouts (spec section 2.3).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .attention import MotionTransformer, VideoTransformer
from .config import UNetConfig
from .fast_ops import eager_inference, norm_silu_
from .layers import Downsample, GroupNorm32, IndexedSequential, ResBlock, TemporalResBlock, Upsample, mlp_embed, timestep_embedding


class _Block(nn.ModuleList):
    """``TimestepEmbedSequential``: children numbered 0.. (ResBlock / attention / resampler)."""

    def forward(self, h: torch.Tensor | list[torch.Tensor], emb, ctx):
        """``h``: the input, or (inference only) a list ``[h, skip]`` standing for their channel concatenation. The
        list is emptied by the first ResBlock, so the parts are freed as soon as it has used them, and the whole
        concatenation is never built."""
        if isinstance(h, list) and (not eager_inference() or not isinstance(self[0], ResBlock)):
            parts, h = h, torch.cat(h, dim=1)
            parts.clear()
        for layer in self:
            if isinstance(layer, TemporalResBlock):
                h = layer(h, emb, ctx["num_frames"], ctx["image_only_indicator"])
            elif isinstance(layer, MotionTransformer):
                h = layer(h, emb, ctx["context"], ctx["cond_view"])
            elif isinstance(layer, VideoTransformer):
                h = layer(h, ctx["context"], ctx["num_frames"], ctx["image_only_indicator"])
            else:
                h = layer(h)
        return h


class SV4DUNet(nn.Module):
    """Both official video UNets; ``config.architecture`` selects SV4D's or SV3D's temporal layers."""

    def __init__(self, config: UNetConfig, ops=nn, device=None, dtype=None):
        super().__init__()
        self.config = cfg = config
        self.is_sv4d = cfg.architecture == "spatial_unet_with_time"
        self._ops = ops
        mc, ted = cfg.model_channels, cfg.time_embed_dim
        with _on_device(device):
            self.time_embed = mlp_embed(mc, ted, ted, ops)
            self.label_emb = IndexedSequential({0: mlp_embed(cfg.adm_in_channels, ted, ted, ops)})
            self.input_blocks = nn.ModuleList([_Block([ops.Conv2d(cfg.in_channels, mc, 3, padding=1)])])
            chans, ch, ds = [mc], mc, 1
            for level, mult in enumerate(cfg.channel_mult):
                for _ in range(cfg.num_res_blocks):
                    layers = [self._resblock(ch, mult * mc)]
                    ch = mult * mc
                    if ds in cfg.attention_resolutions:
                        layers.append(self._attention(ch, cfg.depth_at(level)))
                    self.input_blocks.append(_Block(layers))
                    chans.append(ch)
                if level != len(cfg.channel_mult) - 1:
                    self.input_blocks.append(_Block([Downsample(ch, ops)]))
                    chans.append(ch)
                    ds *= 2
            middle_depth = cfg.transformer_depth_middle or cfg.depth_at(len(cfg.channel_mult) - 1)
            self.middle_block = _Block([self._resblock(ch, ch), self._attention(ch, middle_depth), self._resblock(ch, ch)])
            self.output_blocks = nn.ModuleList()
            for level, mult in list(enumerate(cfg.channel_mult))[::-1]:
                for i in range(cfg.num_res_blocks + 1):
                    layers = [self._resblock(ch + chans.pop(), mc * mult)]
                    ch = mc * mult
                    if ds in cfg.attention_resolutions:
                        layers.append(self._attention(ch, cfg.depth_at(level)))
                    if level and i == cfg.num_res_blocks:
                        layers.append(Upsample(ch, ops))
                        ds //= 2
                    self.output_blocks.append(_Block(layers))
            self.out = IndexedSequential({0: GroupNorm32(ch, ops), 1: nn.SiLU(), 2: ops.Conv2d(mc, cfg.out_channels, 3, padding=1)})
        if dtype is not None:
            self.to(dtype)

    def _resblock(self, ch: int, out_ch: int) -> TemporalResBlock:
        cfg = self.config
        name = "time_mix_blocks" if self.is_sv4d else "time_stack"
        return TemporalResBlock(ch, cfg.time_embed_dim, out_ch, cfg.time_kernel_size, name, cfg.merge_strategy,
                                cfg.merge_factor, honour_indicator=not self.is_sv4d, ops=self._ops)

    def _attention(self, ch: int, depth: int) -> nn.Module:
        heads, dim_head = self.config.heads_at(ch)
        cls = MotionTransformer if self.is_sv4d else VideoTransformer
        return cls(ch, heads, dim_head, depth, self.config, self._ops)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None,
                y: torch.Tensor | None = None, cond_view: torch.Tensor | None = None,
                cond_motion: torch.Tensor | None = None, num_video_frames: int | None = None,
                image_only_indicator: torch.Tensor | None = None, **unused: Any) -> torch.Tensor:
        """Official UNet call.

        Args:
            x: ``[N, in_ch, h, w]`` = cat(c_in*x_noisy, concat latents); N = B*T*V (SV4D, v fastest) or B*F (SV3D).
            timesteps: ``[N]`` c_noise = 0.25 ln(sigma).
            context: SV4D ``[B, T, ctx]`` CLIP tokens per frame; SV3D ``[N, 1, ctx]``.
            y: ``[N, adm_in_channels]`` vector conditioning.
            cond_view: SV4D ``[B*V, 4, h', w']`` reference-view latents (resized per level).
            cond_motion: SV4D ``[B*T, 4, h', w']`` (accepted, unused by the released network).
            num_video_frames: T*V (SV4D) or F (SV3D).
            image_only_indicator: ``[B, num_video_frames]``; only SV3D honours its values.
        Returns:
            ``[N, out_ch, h, w]`` network output (v-prediction).
        """
        self._check_call(x, timesteps, context, y, cond_view, num_video_frames)
        emb = self.time_embed(timestep_embedding(timesteps, self.config.model_channels).to(x.dtype))
        emb = emb + self.label_emb(y.to(emb.dtype))
        ctx = {"context": context, "cond_view": cond_view, "num_frames": int(num_video_frames),
               "image_only_indicator": image_only_indicator}
        inference = eager_inference()
        # Inference runs channels-last: [n, c, h, w] is then [n, hw, c] in memory (the attention token layout), and
        # the convolutions and the temporal Conv3d (on a [b, C, F, H, W] view) need no layout copies.
        hs, h = [], x.contiguous(memory_format=torch.channels_last) if inference else x
        for block in self.input_blocks:
            h = block(h, emb, ctx)
            hs.append(h)
        h = self.middle_block(h, emb, ctx)
        for block in self.output_blocks:
            # Inference hands the skip concatenation over as parts (freed inside the block once used). With autograd
            # it is one tensor: a checkpointed block (train.model) must be able to run its forward twice.
            parts, h = ([h, hs.pop()] if inference else torch.cat([h, hs.pop()], dim=1)), None
            h = block(parts, emb, ctx)
        if inference:
            return self.out[2](norm_silu_(self.out[0], h.type(x.dtype))).contiguous()
        return self.out(h.type(x.dtype))

    def _check_call(self, x, timesteps, context, y, cond_view, num_video_frames) -> None:
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected [N, {cfg.in_channels}, h, w]")
        down = 2 ** (len(cfg.channel_mult) - 1)
        if x.shape[-1] % down or x.shape[-2] % down:
            raise ValueError(f"latent size {tuple(x.shape[-2:])} must be divisible by {down} (image size by {8 * down})")
        if num_video_frames is None or x.shape[0] % int(num_video_frames):
            raise ValueError(f"num_video_frames={num_video_frames} must divide the batch of {x.shape[0]} latents")
        if timesteps.shape[0] != x.shape[0] or y is None or y.shape != (x.shape[0], cfg.adm_in_channels):
            raise ValueError(f"timesteps {tuple(timesteps.shape)} / y {None if y is None else tuple(y.shape)} must have "
                             f"one row per latent ({x.shape[0]}) and y width {cfg.adm_in_channels}")
        if context is None or context.dim() != 3 or context.shape[-1] != cfg.context_dim:
            raise ValueError(f"context must be [B, T, {cfg.context_dim}], got {None if context is None else tuple(context.shape)}")
        if self.is_sv4d:
            b, t = context.shape[:2]
            if cond_view is None or cond_view.shape[0] % b or x.shape[0] != b * t * (cond_view.shape[0] // b):
                raise ValueError(f"SV4D needs cond_view [B*V, 4, h, w] with B*T*V = {x.shape[0]} latents; got context "
                                 f"{tuple(context.shape)} and cond_view {None if cond_view is None else tuple(cond_view.shape)}")


class _on_device:
    """Construct parameters directly on ``device`` (``"meta"`` builds without allocating memory)."""

    def __init__(self, device):
        self._ctx = torch.device(device) if device is not None else None

    def __enter__(self):
        if self._ctx is not None:
            self._ctx.__enter__()

    def __exit__(self, *exc):
        if self._ctx is not None:
            self._ctx.__exit__(*exc)


def build_unet(network_config: dict | UNetConfig, operations=None, device=None, dtype=None) -> SV4DUNet:
    """Build a UNet from the official yaml ``network_config`` (with or without ``target``/``params``).

    Args:
        network_config: dict as in ``tiny_config.yaml``'s ``network_config`` section, or a ``UNetConfig``.
        operations: layer classes (``Linear``, ``Conv2d``, ``Conv3d``, ``GroupNorm``, ``LayerNorm``); default ``torch.nn``.
        device: where parameters are created (``"meta"`` builds without memory).
        dtype: parameter dtype (default float32).
    """
    cfg = network_config if isinstance(network_config, UNetConfig) else UNetConfig.from_network_config(network_config)
    return SV4DUNet(cfg, ops=operations or nn, device=device, dtype=dtype)


def compile_unet(model: SV4DUNet, **compile_kwargs: Any) -> SV4DUNet:
    """Compile ``model``'s forward in place with ``torch.compile`` (inductor; on CPU it needs a C++ compiler).

    Optional and off by default. Inside the compiled graph the layers use their whole-tensor reference formulation
    (the eager inference path's Python chunk loops would unroll into a very large graph); inductor fuses the
    element-wise work and plans its own buffers. The first call with new input shapes compiles (minutes on a small
    CPU, reported separately by ``benchmarks/unet.py --compile``); later calls reuse the compiled code.

    Args:
        model: a UNet from ``build_unet``; returned, now compiled.
        compile_kwargs: passed to ``torch.compile`` (e.g. ``mode="max-autotune"``, ``dynamic=False``).
    """
    model.compile(**compile_kwargs)
    return model

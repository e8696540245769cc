"""Building blocks of the SV3D / SV4D UNets (attribute names follow the official checkpoint keys).

Every layer with weights is created through ``ops`` (an object with ``Linear``, ``Conv2d``, ``Conv3d``,
``GroupNorm``, ``LayerNorm``): ``torch.nn`` standalone, ComfyUI's casting ``comfy.ops`` inside ComfyUI.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import fast_ops
from .fast_ops import blend_, eager_inference, map_samples, norm_silu_


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding ``[N, dim]`` laid out ``[cos(t f_k), sin(t f_k)]``, f_k = exp(-ln(P) k / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


_GROUPNORM32_CLASSES: dict[type, type] = {}


def GroupNorm32(channels: int, ops=nn, eps: float = 1e-5, groups: int = 32) -> nn.Module:
    """GroupNorm evaluated in float32 (the official ``GroupNorm32``), built on ``ops.GroupNorm``."""
    base = ops.GroupNorm
    cls = _GROUPNORM32_CLASSES.get(base)
    if cls is None:
        if base is nn.GroupNorm:  # plain torch: weights may be bf16/fp16, compute in float32 anyway
            def forward(self, x):
                w = None if self.weight is None else self.weight.float()
                b = None if self.bias is None else self.bias.float()
                return F.group_norm(x.float(), self.num_groups, w, b, self.eps).type(x.dtype)
        else:  # casting layers (ComfyUI ops) cast their weights to the input dtype themselves
            def forward(self, x):
                return base.forward(self, x.float()).type(x.dtype)

        cls = type("GroupNorm32", (base,), {"forward": forward})
        _GROUPNORM32_CLASSES[base] = cls
    return cls(groups, channels, eps=eps)


class IndexedSequential(nn.Sequential):
    """nn.Sequential whose children are numbered like the official ``nn.Sequential`` (gaps allowed)."""

    def __init__(self, layers: dict[int, nn.Module]):
        super().__init__()
        for i, layer in sorted(layers.items()):
            self.add_module(str(i), layer)


class ResBlock(nn.Module):
    """Official ``ResBlock`` (no up/down, no scale-shift): in_layers 0/2, emb_layers 1, out_layers 0/3.

    ``dims=3`` is the temporal variant: Conv3d with ``kernel`` (3,1,1) over ``[b, C, F, H, W]`` and the
    embedding ``[b, F, E]`` broadcast as ``[b, C, F, 1, 1]`` (``exchange_temb_dims``).
    """

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None = None, dims: int = 2,
                 kernel=(3, 3), ops=nn):
        super().__init__()
        out_channels = out_channels or channels
        conv = ops.Conv2d if dims == 2 else ops.Conv3d
        kernel = tuple(kernel)
        padding = tuple(k // 2 for k in kernel)
        self.dims = dims
        self.in_layers = IndexedSequential({0: GroupNorm32(channels, ops), 1: nn.SiLU(), 2: conv(channels, out_channels, kernel, padding=padding)})
        self.emb_layers = IndexedSequential({0: nn.SiLU(), 1: ops.Linear(emb_channels, out_channels)})
        self.out_layers = IndexedSequential({
            0: GroupNorm32(out_channels, ops), 1: nn.SiLU(), 2: nn.Dropout(0.0),
            3: conv(out_channels, out_channels, kernel, padding=padding),
        })
        self.skip_connection = nn.Identity() if out_channels == channels else ops.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        emb_out = self.emb_layers(emb)
        if self.dims == 3:  # emb [b, F, C] -> [b, C, F, 1, 1]
            emb_out = emb_out.permute(0, 2, 1)[..., None, None]
        else:
            emb_out = emb_out[..., None, None]
        if not eager_inference():
            h = self.in_layers(x)
            h = self.out_layers(h + emb_out.type(h.dtype))
            return self.skip_connection(x) + h
        return self._forward_inference(x, emb_out)

    def _forward_inference(self, x: torch.Tensor | list[torch.Tensor], emb_out: torch.Tensor) -> torch.Tensor:
        """The same operations a few samples at a time; SiLU and the adds overwrite tensors made here.

        ``x`` may be channel-concatenation parts ``[h, skip]`` (decoder input); the list is emptied once they are used.
        """
        identity = isinstance(self.skip_connection, nn.Identity)
        if identity and isinstance(x, list):
            parts, x = x, torch.cat(x, dim=1)
            parts.clear()

        def first(xi):
            h = self.in_layers[2](norm_silu_(self.in_layers[0], xi))
            return h if identity else (h, self.skip_connection(xi))

        h, skip = (map_samples(first, x), x) if identity else map_samples(first, x)
        if isinstance(x, list):
            x.clear()
        h = h.add_(emb_out.type(h.dtype))
        h = map_samples(lambda t: self.out_layers[3](self.out_layers[2](norm_silu_(self.out_layers[0], t))), h)
        return h.add_(skip)


class AlphaBlender(nn.Module):
    """Learned merge weight: ``alpha * x_spatial + (1 - alpha) * x_temporal`` (official ``AlphaBlender``)."""

    def __init__(self, merge_strategy: str = "learned_with_images", alpha: float = 0.0):
        super().__init__()
        self.merge_strategy = merge_strategy
        if merge_strategy == "fixed":
            self.register_buffer("mix_factor", torch.tensor([alpha], dtype=torch.float32))
        else:
            self.mix_factor = nn.Parameter(torch.tensor([alpha], dtype=torch.float32))

    def alpha(self, image_only_indicator: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar alpha, or ``[b, F]`` when an image-only indicator selects pure-spatial frames.

        The factor is taken to the indicator's device: a model manager may leave this one-element parameter on the
        CPU while the network runs elsewhere (ComfyUI's partial loading moves only the layers that fit).
        """
        if self.merge_strategy == "fixed":
            return self.mix_factor
        a = torch.sigmoid(self.mix_factor.float())
        if self.merge_strategy == "learned_with_images" and image_only_indicator is not None:
            a = a.to(image_only_indicator.device)
            return torch.where(image_only_indicator.bool(), torch.ones_like(a), a)
        return a

    def forward(self, x_spatial: torch.Tensor, x_temporal: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        alpha = alpha.to(device=x_spatial.device, dtype=x_spatial.dtype)
        return alpha * x_spatial + (1.0 - alpha) * x_temporal


class TemporalResBlock(ResBlock):
    """A spatial ResBlock followed by a temporal (Conv3d) ResBlock over the flattened frame axis, blended.

    SV4D: ``PostHocResBlockWithTime`` (temporal block ``time_mix_blocks``; the image-only indicator is
    forced to zero by the official code). SV3D: ``VideoResBlock`` (``time_stack``; indicator honoured).
    """

    def __init__(self, channels: int, emb_channels: int, out_channels: int | None, kernel, temporal_name: str,
                 merge_strategy: str, merge_factor: float, honour_indicator: bool, ops=nn):
        out_channels = out_channels or channels
        super().__init__(channels, emb_channels, out_channels, dims=2, ops=ops)
        self.temporal_name = temporal_name
        self.add_module(temporal_name, ResBlock(out_channels, emb_channels, out_channels, dims=3, kernel=kernel, ops=ops))
        self.time_mixer = AlphaBlender(merge_strategy, merge_factor)
        self.honour_indicator = honour_indicator

    def forward(self, x, emb: torch.Tensor, num_frames: int, image_only_indicator=None) -> torch.Tensor:
        """``x`` ``[(b F), C, H, W]`` (inference: or ``[h, skip]`` parts, see ``ResBlock``). Inference blends into the
        spatial half's own output: channels-last, its ``[b, C, F, H, W]`` view is channels-last-3d (no layout copy)."""
        x = super().forward(x, emb)
        n, c, h, w = x.shape
        x_spatial = x.view(n // num_frames, num_frames, c, h, w).permute(0, 2, 1, 3, 4)  # [b, C, F, H, W]
        x_temporal = getattr(self, self.temporal_name)(x_spatial, emb.view(n // num_frames, num_frames, -1))
        alpha = self.time_mixer.alpha(image_only_indicator if self.honour_indicator else None)
        if alpha.dim() == 2:  # [b, F] -> [b, 1, F, 1, 1]
            alpha = alpha[:, None, :, None, None]
        if eager_inference():
            blend_(x_spatial, x_temporal, alpha)  # x_spatial is a view of x: the result is x itself
            return x
        x = self.time_mixer(x_spatial, x_temporal, alpha)
        return x.permute(0, 2, 1, 3, 4).reshape(n, c, h, w)


class Downsample(nn.Module):
    """Conv2d 3x3 stride 2 (key ``op``)."""

    def __init__(self, channels: int, ops=nn):
        super().__init__()
        self.op = ops.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest x2 then Conv2d 3x3 (key ``conv``)."""

    def __init__(self, channels: int, ops=nn):
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if not eager_inference():
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
        # Inference: the 4x larger upsampled input exists only a few samples at a time (budget: elements before x2).
        return map_samples(lambda t: self.conv(F.interpolate(t, scale_factor=2, mode="nearest")), x,
                           fast_ops.CONV_CHUNK_ELEMENTS // 4)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, ops=nn):
        super().__init__()
        self.proj = ops.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        if not eager_inference():
            return value * F.gelu(gate)
        return value.mul_(torch.ops.aten.gelu_(gate))  # [.., inner] view of the projection, no new tensor


class FeedForward(nn.Module):
    """GEGLU feed-forward, inner width 4*dim (keys ``net.0.proj``, ``net.2``)."""

    def __init__(self, dim: int, dim_out: int | None = None, ops=nn):
        super().__init__()
        inner = 4 * dim
        self.net = IndexedSequential({0: GEGLU(dim, inner, ops), 1: nn.Dropout(0.0), 2: ops.Linear(inner, dim_out or dim)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def mlp_embed(in_dim: int, hidden: int, out_dim: int, ops=nn) -> nn.Sequential:
    """Linear-SiLU-Linear (keys ``0`` and ``2``)."""
    return IndexedSequential({0: ops.Linear(in_dim, hidden), 1: nn.SiLU(), 2: ops.Linear(hidden, out_dim)})

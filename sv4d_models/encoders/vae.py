"""SD 2.x ``AutoencoderKL`` (LDM ``Encoder``/``Decoder``) in pure PyTorch with the official key names.

Key names are exactly those of ``sgm.modules.diffusionmodules.model.{Encoder,Decoder}`` (e.g.
``encoder.down.1.block.0.nin_shortcut.weight``, ``mid.attn_1.q.weight``), so official SV3D/SV4D weights load
strictly without a key map. Official use in SV3D/SV4D (spec section 4.2):

* conditioning encoder (``conditioner.embedders.{1,4,5}.encoder``, ``AutoencoderKLModeOnly``):
  ``encoder -> quant_conv -> posterior mean`` (first ``embed_dim`` channels), **no** 0.18215 scaling;
* image decoder (``first_stage_model.decoder``): ``Decoder(z * (1 / 0.18215))``, **no** ``post_quant_conv``.

Hyper-parameters are inferred from tensor shapes (see ``infer_encoder_config`` / ``infer_decoder_config``), so
checkpoints with tiny widths load too. GroupNorm always uses 32 groups (the LDM ``Normalize``): tiny widths must be
multiples of 32; ``VAEConfig.norm_groups`` exists for completeness but the loaders always use 32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint.source import StateDictSource
from ..checkpoint.strict import ShapeReader, load_submodule
from ..config import check_known_keys

__all__ = [
    "LATENT_SCALE",
    "VAEConfig",
    "AutoencoderKL",
    "Encoder",
    "Decoder",
    "VAEEncoder",
    "VAEDecoder",
    "infer_encoder_config",
    "infer_decoder_config",
    "load_vae_encoder",
    "load_vae_decoder",
]

LATENT_SCALE = 0.18215  # SD 2.x latent scale factor (first_stage_model decode uses z / 0.18215)


@dataclass(frozen=True)
class VAEConfig:
    """LDM autoencoder hyper-parameters (defaults: SD 2.x / SV3D / SV4D ``ddconfig``)."""

    ch: int = 128  # base width
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)  # width multiplier per resolution level (len-1 = number of /2 steps)
    num_res_blocks: int = 2  # ResnetBlocks per encoder level (decoder: +1)
    in_channels: int = 3  # image channels into the encoder
    out_ch: int = 3  # image channels out of the decoder
    z_channels: int = 4  # latent channels (encoder emits 2*z_channels: mean and logvar, double_z)
    embed_dim: int = 4  # quant_conv: 2*z -> 2*embed_dim; post_quant_conv: embed_dim -> z
    norm_groups: int = 32  # GroupNorm groups (LDM Normalize)

    @classmethod
    def from_dict(cls, d: dict) -> "VAEConfig":
        check_known_keys(cls, d)
        d = dict(d)
        if "ch_mult" in d:
            d["ch_mult"] = tuple(int(m) for m in d["ch_mult"])
        return cls(**d)


def _swish(x: torch.Tensor) -> torch.Tensor:
    """``x * sigmoid(x)`` written as in LDM (``F.silu`` differs in the last float bits)."""
    return x * torch.sigmoid(x)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    if channels % groups:
        raise ValueError(f"GroupNorm needs channels ({channels}) divisible by {groups}; use multiples of {groups}")
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """LDM ResnetBlock without time embedding: norm-swish-conv twice, 1x1 ``nin_shortcut`` if widths differ."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, Cin, H, W] -> [B, Cout, H, W]
        h = self.conv1(_swish(self.norm1(x)))
        h = self.conv2(_swish(self.norm2(h)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions with 1x1-conv q/k/v/proj_out (LDM ``AttnBlock``)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.norm = _norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, H, W]
        b, c, h, w = x.shape
        hn = self.norm(x)
        q, k, v = (m(hn).reshape(b, 1, c, h * w).transpose(-1, -2).contiguous() for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # [B, 1, HW, C], scale C^-0.5
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Pad (0, 1, 0, 1) with zeros, then 3x3 conv stride 2 without padding (LDM ``Downsample``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv (LDM ``Upsample``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Mid(nn.Module):
    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, groups)
        self.attn_1 = AttnBlock(channels, groups)
        self.block_2 = ResnetBlock(channels, channels, groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """LDM Encoder (double_z): image [B, in, H, W] -> moments [B, 2*z, H/2^(L-1), W/2^(L-1)]."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        g, mults = cfg.norm_groups, cfg.ch_mult
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = cfg.ch
        for level, mult in enumerate(mults):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, cfg.ch * mult, g))
                block_in = cfg.ch * mult
            stage.attn = nn.ModuleList()  # attn_resolutions = [] in SD 2.x: empty, no keys
            if level != len(mults) - 1:
                stage.downsample = Downsample(block_in)
            self.down.append(stage)
        self.mid = _Mid(block_in, g)
        self.norm_out = _norm(block_in, g)
        self.conv_out = nn.Conv2d(block_in, 2 * cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(_swish(self.norm_out(h)))


class Decoder(nn.Module):
    """LDM Decoder: latent [B, z, h, w] -> image [B, out_ch, h*2^(L-1), w*2^(L-1)] (no tanh, no post_quant_conv)."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        g, mults = cfg.norm_groups, cfg.ch_mult
        block_in = cfg.ch * mults[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in, g)
        up = []
        for level in reversed(range(len(mults))):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, cfg.ch * mults[level], g))
                block_in = cfg.ch * mults[level]
            stage.attn = nn.ModuleList()
            if level != 0:
                stage.upsample = Upsample(block_in)
            up.insert(0, stage)
        self.up = nn.ModuleList(up)
        self.norm_out = _norm(block_in, g)
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(_swish(self.norm_out(h)))


def _chunked(fn, x: torch.Tensor, chunk: int | None) -> torch.Tensor:
    if chunk is None or chunk >= x.shape[0]:
        return fn(x)
    if chunk < 1:
        raise ValueError(f"chunk must be a positive number of samples (or None for all at once), got {chunk}")
    return torch.cat([fn(part) for part in x.split(chunk, dim=0)], dim=0)


class VAEEncoder(nn.Module):
    """Conditioning encoder of SV3D/SV4D (``AutoencoderKLModeOnly``): image -> posterior mean, unscaled."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.embed_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        moments = self.quant_conv(self.encoder(x))
        return moments[:, : self.config.embed_dim]  # DiagonalGaussian mode = mean

    @torch.no_grad()
    def encode(self, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Images [B, 3, H, W] in [-1, 1] -> latent means [B, embed_dim, H/8, W/8], ``chunk`` samples at a time."""
        return _chunked(self, x, chunk)


class VAEDecoder(Decoder):
    """Image decoder of SV3D/SV4D (``first_stage_model``): ``Decoder(z / 0.18215)``, no post_quant_conv."""

    scale_factor: float = LATENT_SCALE

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__(cfg)
        self.config = cfg

    @torch.no_grad()
    def decode(self, z: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Scaled latents [B, z, h, w] -> images [B, 3, 8h, 8w] (about [-1, 1]), ``chunk`` samples at a time."""
        # Official DiffusionEngine.decode_first_stage: ``z = 1.0 / scale_factor * z`` (same float rounding).
        return _chunked(lambda part: self(1.0 / self.scale_factor * part), z, chunk)


class AutoencoderKL(nn.Module):
    """Full LDM autoencoder key layout (encoder, decoder, quant_conv, post_quant_conv) of one embedder copy."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)


def _no_attn(shapes: ShapeReader, rel_prefix: str) -> None:
    attn = sorted(k for k in shapes.shapes if k.startswith(rel_prefix) and ".attn." in k)
    if attn:
        raise ValueError(
            f"per-level attention ({attn[0]}) is not part of the SD 2.x VAE (attn_resolutions=[]); "
            "this VAE layout is not supported"
        )


def infer_encoder_config(shapes: ShapeReader) -> VAEConfig:
    """VAEConfig from encoder-side shapes (keys ``encoder.*``, ``quant_conv.*`` relative to the prefix)."""
    ch, in_channels = shapes("encoder.conv_in.weight")[:2]
    levels = shapes.indices("encoder.down.")
    n_blocks = len(shapes.indices("encoder.down.0.block."))
    if not levels or n_blocks == 0:
        raise ValueError("no encoder.down.N.block.M keys: not an LDM encoder")
    mults = []
    for level in levels:
        width = shapes(f"encoder.down.{level}.block.0.conv1.weight")[0]
        if width % ch:
            raise ValueError(f"encoder level {level} width {width} is not a multiple of conv_in width {ch}")
        mults.append(width // ch)
    _no_attn(shapes, "encoder.down.")
    z2 = shapes("encoder.conv_out.weight")[0]
    e2 = shapes("quant_conv.weight")[0]
    return VAEConfig(ch=ch, ch_mult=tuple(mults), num_res_blocks=n_blocks, in_channels=in_channels,
                     z_channels=z2 // 2, embed_dim=e2 // 2)


def infer_decoder_config(shapes: ShapeReader) -> VAEConfig:
    """VAEConfig from decoder shapes (keys ``conv_in.*``, ``up.N.*`` relative to the decoder prefix).

    Only ``ch * ch_mult[i]`` is observable in a decoder, so ``ch`` is taken as the level-0 width (``ch_mult[0] = 1``);
    the built network is identical either way.
    """
    z_channels = shapes("conv_in.weight")[1]
    levels = shapes.indices("up.")
    n_blocks = len(shapes.indices("up.0.block."))
    if not levels or n_blocks == 0:
        raise ValueError("no up.N.block.M keys: not an LDM decoder")
    widths = [shapes(f"up.{level}.block.0.conv1.weight")[0] for level in levels]
    ch = widths[0]
    if any(w % ch for w in widths):
        raise ValueError(f"decoder level widths {widths} are not multiples of the level-0 width {ch}")
    _no_attn(shapes, "up.")
    return VAEConfig(ch=ch, ch_mult=tuple(w // ch for w in widths), num_res_blocks=n_blocks - 1,
                     out_ch=shapes("conv_out.weight")[0], z_channels=z_channels, embed_dim=z_channels)


def load_vae_encoder(
    source: StateDictSource,
    prefix: str = "conditioner.embedders.1.encoder.",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> VAEEncoder:
    """Load the conditioning VAE encoder (``prefix + encoder.*``, ``prefix + quant_conv.*``) strictly.

    The copy's ``decoder.*`` / ``post_quant_conv.*`` keys under ``prefix`` are recognised and not read. Works for a
    state dict or a .safetensors path (only the needed tensors are read). ``dtype`` None keeps the stored dtype.
    """
    return load_submodule(
        source,
        prefix,
        lambda shapes: VAEEncoder(infer_encoder_config(shapes)),
        model_name="VAE encoder",
        anchor="encoder.conv_in.weight",
        ignore=lambda rel: rel.startswith(("decoder.", "post_quant_conv.")),
        device=device,
        dtype=dtype,
    )


def load_vae_decoder(
    source: StateDictSource,
    prefix: str = "first_stage_model.decoder.",
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> VAEDecoder:
    """Load the image decoder (``prefix + conv_in.*, mid.*, up.*, norm_out.*, conv_out.*``) strictly.

    ``decode(z)`` computes ``Decoder(z / 0.18215)`` like the official ``first_stage_model`` (no post_quant_conv).
    """
    return load_submodule(
        source,
        prefix,
        lambda shapes: VAEDecoder(infer_decoder_config(shapes)),
        model_name="VAE decoder",
        anchor="up.0.block.0.conv1.weight",
        device=device,
        dtype=dtype,
    )

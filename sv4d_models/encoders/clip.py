"""OpenCLIP ViT-H-14 image encoder as used by SV3D/SV4D (``FrozenOpenCLIPImageEmbedder``), spec section 4.2.

``image [-1, 1] -> kornia-0.6.9 antialiased bicubic resize to 224 (align_corners=True) -> (x + 1) / 2 ->
CLIP mean/std -> open_clip VisionTransformer -> pooled embedding [B, 1024]`` (class token after ``ln_post``,
times ``proj``; no tokens). The tower is open_clip's own ``VisionTransformer`` built with hyper-parameters read off
the checkpoint shapes (never a pretrained download). The text-tower leftovers that the official embedder keeps
(``positional_embedding``, ``text_projection``, ``logit_scale``, ``token_embedding``, ``ln_final``) are recognised and
not loaded.

Note: the official embedder's ``forward`` is wrapped in CUDA autocast, so on GPU the official numbers come from
fp16 matmuls; here the tower runs in the dtype it was loaded in (float32 unless ``dtype`` is given).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..checkpoint.source import StateDictSource
from ..checkpoint.strict import ShapeReader, load_submodule
from ..config import check_known_keys
from .resizing import resize

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "CLIP_HEAD_WIDTH",
    "CLIP_PREFIX",
    "TEXT_LEFTOVER_KEYS",
    "ClipVisionConfig",
    "ClipImageEncoder",
    "clip_pixels",
    "build_clip_visual",
    "infer_clip_config",
    "load_clip_image_encoder",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_HEAD_WIDTH = 80  # open_clip model_configs/ViT-H-14.json: vision_cfg.head_width = 80 -> 1280 / 80 = 16 heads
CLIP_PREFIX = "conditioner.embedders.0.open_clip.model."
# Text-tower tensors left in the official checkpoint after ``del model.transformer`` (relative to CLIP_PREFIX).
TEXT_LEFTOVER_KEYS = (
    "positional_embedding",
    "text_projection",
    "logit_scale",
    "token_embedding.weight",
    "ln_final.weight",
    "ln_final.bias",
)


@dataclass(frozen=True)
class ClipVisionConfig:
    """open_clip ``VisionTransformer`` hyper-parameters (defaults: ViT-H-14)."""

    image_size: int = 224  # input resolution; also the preprocessing resize target
    patch_size: int = 14  # conv1 kernel = stride
    width: int = 1280  # transformer width
    layers: int = 32  # residual attention blocks
    heads: int = 16  # attention heads (width / 80 for ViT-H-14)
    mlp_ratio: float = 4.0  # c_fc width / width
    output_dim: int = 1024  # proj output (pooled embedding size)

    @classmethod
    def from_dict(cls, d: dict) -> "ClipVisionConfig":
        check_known_keys(cls, d)
        return cls(**d)


def open_clip_transformer():
    """Import ``open_clip.transformer`` (lazily; call it outside any ``torch.device("meta")`` block so that
    module-level tensors of open_clip / timm are not created on the meta device)."""
    try:
        import open_clip.transformer as oct
    except ImportError as err:
        raise ImportError("the CLIP image encoder needs open_clip: pip install open_clip_torch") from err
    return oct


def build_clip_visual(cfg: ClipVisionConfig) -> nn.Module:
    """open_clip ``VisionTransformer`` configured like ``create_model("ViT-H-14")`` at fp32 (GELU, LayerNorm)."""
    oct = open_clip_transformer()
    VisionTransformer, LayerNorm = oct.VisionTransformer, oct.LayerNorm

    if cfg.width % cfg.heads:
        raise ValueError(f"width {cfg.width} is not divisible by heads {cfg.heads}")
    return VisionTransformer(
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
        width=cfg.width,
        layers=cfg.layers,
        heads=cfg.heads,
        mlp_ratio=cfg.mlp_ratio,
        output_dim=cfg.output_dim,
        act_layer=nn.GELU,
        norm_layer=LayerNorm,
    )


def clip_pixels(x: torch.Tensor, size: int = 224, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """The official preprocessing: [B, 3, H, W] in [-1, 1] -> kornia-0.6.9 antialiased bicubic resize to ``size``
    (align_corners) -> (x + 1) / 2 -> (x - mean) / std: CLIP-normalised [B, 3, size, size] float32.

    Also what the ComfyUI nodes feed ComfyUI's CLIP vision tower (whose own ``clip_preprocess`` resizes differently
    and rounds pixels to 1/255 steps)."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected images [B, 3, H, W] in [-1, 1], got shape {tuple(x.shape)}")
    x = resize(x.float(), (size, size), interpolation="bicubic", align_corners=True, antialias=True)
    x = (x + 1.0) / 2.0
    mean = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class ClipImageEncoder(nn.Module):
    """SV3D/SV4D CLIP image embedder: images [B, 3, H, W] in [-1, 1] -> pooled embeddings [B, output_dim]."""

    def __init__(self, cfg: ClipVisionConfig) -> None:
        super().__init__()
        self.config = cfg
        self.visual = build_clip_visual(cfg)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> CLIP-normalised [B, 3, S, S] float32 (S = image_size)."""
        return clip_pixels(x, self.config.image_size)

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.visual.conv1.weight
        pixels = self.preprocess(x).to(device=weight.device, dtype=weight.dtype)
        return self.visual(pixels).to(x.dtype)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Embed images [B, 3, H, W] in [-1, 1], ``chunk`` images at a time -> [B, output_dim] in ``x.dtype``."""
        if chunk is None or chunk >= x.shape[0]:
            return self._embed(x)
        if chunk < 1:
            raise ValueError(f"chunk must be a positive number of images (or None), got {chunk}")
        return torch.cat([self._embed(part) for part in x.split(chunk, dim=0)], dim=0)


def infer_clip_config(shapes: ShapeReader, heads: int | None = None) -> ClipVisionConfig:
    """ClipVisionConfig from ``visual.*`` shapes; heads = width / 80 (ViT-H-14 head width) unless given."""
    width, _, patch_h, patch_w = shapes("visual.conv1.weight")
    if patch_h != patch_w:
        raise ValueError(f"non-square patches {patch_h}x{patch_w} are not supported")
    n_tokens = shapes("visual.positional_embedding")[0]
    grid = int(round((n_tokens - 1) ** 0.5))
    if grid * grid != n_tokens - 1:
        raise ValueError(f"visual.positional_embedding has {n_tokens} rows, not 1 + a square grid")
    layers = len(shapes.indices("visual.transformer.resblocks."))
    mlp_width = shapes("visual.transformer.resblocks.0.mlp.c_fc.weight")[0]
    if heads is None:
        if width % CLIP_HEAD_WIDTH:
            raise ValueError(
                f"CLIP width {width} is not a multiple of the ViT-H-14 head width {CLIP_HEAD_WIDTH}; "
                "pass heads=... explicitly"
            )
        heads = width // CLIP_HEAD_WIDTH
    ratio = mlp_width / width
    if int(width * ratio) != mlp_width:
        raise ValueError(f"MLP width {mlp_width} cannot be expressed as width {width} * mlp_ratio")
    return ClipVisionConfig(image_size=grid * patch_h, patch_size=patch_h, width=width, layers=layers,
                            heads=heads, mlp_ratio=ratio, output_dim=shapes("visual.proj")[1])


def load_clip_image_encoder(
    source: StateDictSource,
    prefix: str = CLIP_PREFIX,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    heads: int | None = None,
) -> ClipImageEncoder:
    """Load the CLIP image tower strictly from ``prefix + "visual.*"`` of a state dict or .safetensors path.

    Text-tower leftovers under ``prefix`` are ignored; any other key under ``prefix`` is an error. ``dtype`` None
    keeps the stored dtype. Raises ValueError naming missing / unexpected / wrong-shape keys.
    """
    open_clip_transformer()  # import before the meta-device build
    return load_submodule(
        source,
        prefix,
        lambda shapes: ClipImageEncoder(infer_clip_config(shapes, heads)),
        model_name="CLIP image encoder",
        anchor="visual.conv1.weight",
        ignore=lambda rel: rel in TEXT_LEFTOVER_KEYS,
        device=device,
        dtype=dtype,
    )

"""Reconstruction losses of the SV3D/SV4D recipe (threestudio ``zero123.py`` definitions, nerf4d.md section 1.2).

All maps are image shaped: images ``[B, 3, H, W]``, scalar maps ``[B, 1, H, W]``, masks ``[B, H, W]`` in [0, 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import check_known_keys
from ..validate import check_fields
from .kplanes import PLANE_REGULARISERS
import torch.nn.functional as F


REGULARISERS = ("distortion", "opacity_entropy", "floater", *PLANE_REGULARISERS)


@dataclass(frozen=True)
class LossConfig:
    rgb: float = 1000.0  # pixel MSE (SV3D fork weight)
    mask: float = 750.0  # MSE(opacity, mask)
    lpips: float = 150.0  # ramped 0 -> value over lpips_ramp_steps of each stage; dropped if weights missing
    lpips_ramp_steps: int = 300
    lpips_net: str = "vgg"  # "vgg" (GPU) | "alex" (cheap)
    lpips_backbone_path: str = ""  # torchvision backbone .pth; "" -> $TORCH_HOME/hub/checkpoints
    lpips_heads_path: str = ""  # lpips v0.1 heads .pth; "" -> installed lpips package files
    depth_smooth: float = 0.0  # squared finite differences of the depth map inside the mask
    bilateral_depth: float = 100.0  # image-gated pseudo-Huber smoothness of depth
    bilateral_normal: float = 100.0  # image-gated smoothness of rendered normals (needs normals)
    normal_prior: float = 0.0  # 1 - cos to a supplied mono-normal map inside the mask (needs normals)
    # sparse-view regularisers (0 = off)
    distortion: float = 0.0  # mip-NeRF 360 distortion of the weights along each ray: one compact surface per ray
    opacity_entropy: float = 0.0  # binary entropy of the rendered opacity: a pixel is object or background
    floater: float = 0.0  # L1 opacity on mask-background pixels (MSE barely sees faint floaters)
    plane_tv: float = 0.0  # K-Planes: total variation of the planes in space
    time_smooth: float = 0.0  # K-Planes: second difference of the space-time planes along t
    time_l1: float = 0.0  # K-Planes: |1 - space-time planes| (static unless the images say otherwise)

    def __post_init__(self) -> None:
        weight = (0.0, 1e6, "loss weight; 0 turns the term off")
        check_fields(self, {**{k: weight for k in ("rgb", "mask", "lpips", "depth_smooth", "bilateral_depth",
                                                   "bilateral_normal", "normal_prior") + REGULARISERS},
                            "lpips_ramp_steps": (0, 10_000_000, "steps; 0 = full weight at once")}, "loss")
        if self.lpips_net not in ("vgg", "alex"):
            raise ValueError(f"loss.lpips_net={self.lpips_net!r}; use 'vgg' or 'alex'")

    @classmethod
    def from_dict(cls, d: dict) -> "LossConfig":
        check_known_keys(cls, d)
        return cls(**d)

    @property
    def needs_normals(self) -> bool:
        return self.bilateral_normal > 0 or self.normal_prior > 0


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (pred - target).pow(2).mean()


def mask_loss(opacity: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MSE between rendered opacity and the foreground mask (same shapes)."""
    return (opacity - mask.to(opacity)).pow(2).mean()


def sobel(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel gradients (x, y) of ``[B, C, H, W]`` with replicate padding; same shape outputs."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=img.dtype, device=img.device) / 8
    c = img.shape[1]
    kern = torch.stack([kx, kx.T])[:, None].repeat(c, 1, 1, 1)  # [2C, 1, 3, 3]
    g = F.conv2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), kern, groups=c)
    return g[:, 0::2], g[:, 1::2]


def bilateral_smoothness(value: torch.Tensor, image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Edge-aware smoothness ``mean_mask[ sum_dir exp(-3 |grad I|) * (sqrt(1 + |grad v|) - 1) ]``.

    value ``[B, C, H, W]`` (depth or normals), image ``[B, 3, H, W]`` (ground truth), mask ``[B, H, W]``.
    """
    ix, iy = sobel(image)
    vx, vy = sobel(value)
    term = (torch.exp(-3 * ix.abs().mean(1)) * (torch.sqrt(1 + vx.abs().sum(1)) - 1)
            + torch.exp(-3 * iy.abs().mean(1)) * (torch.sqrt(1 + vy.abs().sum(1)) - 1))  # [B, H, W]
    if mask is None:
        return term.mean()
    m = mask.to(term)
    return (term * m).sum() / m.sum().clamp_min(1.0)


def smooth_depth(depth: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Squared finite differences of ``depth [B, 1, H, W]`` (both axes), averaged inside ``mask [B, H, W]``."""
    dx = (depth[..., :, 1:] - depth[..., :, :-1]).pow(2)[:, 0]
    dy = (depth[..., 1:, :] - depth[..., :-1, :]).pow(2)[:, 0]
    if mask is None:
        return dx.mean() + dy.mean()
    m = mask.to(depth)
    mx, my = m[..., :, 1:] * m[..., :, :-1], m[..., 1:, :] * m[..., :-1, :]
    return (dx * mx).sum() / mx.sum().clamp_min(1.0) + (dy * my).sum() / my.sum().clamp_min(1.0)


def normal_prior_loss(normal: torch.Tensor, prior: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - cos(n_render, n_prior)`` averaged inside the mask; normals ``[B, 3, H, W]`` (any length)."""
    cos = F.cosine_similarity(normal, prior.to(normal), dim=1, eps=1e-8)  # [B, H, W]
    m = mask.to(cos)
    return ((1 - cos) * m).sum() / m.sum().clamp_min(1.0)


def ramp(step: int, target: float, ramp_steps: int) -> float:
    """Linear 0 -> target over ``ramp_steps`` (threestudio ``[0, 0, target, ramp_steps]`` schedule)."""
    return target if ramp_steps <= 0 else target * min(1.0, step / ramp_steps)


def distortion(weights: torch.Tensor, t: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """mip-NeRF 360 distortion ``sum_ij w_i w_j |t_i - t_j| + 1/3 sum_i w_i^2 delta_i`` per ray (``[R, S]`` inputs,
    samples sorted along the ray), in O(S) with exclusive cumulative sums; mean over rays."""
    wt = weights * t
    w_before = torch.cumsum(weights, dim=-1) - weights
    wt_before = torch.cumsum(wt, dim=-1) - wt
    pairs = 2 * (weights * (t * w_before - wt_before)).sum(-1)
    return (pairs + (weights.pow(2) * delta).sum(-1) / 3).mean()


def opacity_entropy(opacity: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Mean binary entropy of the opacity: 0 for fully opaque or empty pixels, log 2 at 0.5."""
    a = opacity.clamp(eps, 1 - eps)
    return -(a * torch.log(a) + (1 - a) * torch.log(1 - a)).mean()


def floater_loss(opacity: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean opacity over the background pixels of ``mask`` (< 0.5); same shapes; 0 when there are none."""
    bg = (mask < 0.5).to(opacity)
    return (opacity * bg).sum() / bg.sum().clamp_min(1.0)

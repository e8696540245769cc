"""Per-image metrics against ground truth: PSNR (the project's one implementation, ``sv4d_models.images``) and SSIM
(Wang et al. 2004) with the standard settings (11-tap Gaussian window, sigma 1.5, K1 0.01, K2 0.03, population
covariances), which equal ``skimage.metrics.structural_similarity(a, b, channel_axis=-1, data_range=1,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``: scikit-image filters the whole image and then
averages only the pixels at least 5 from the border, which are exactly the ones a window without padding reaches.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..images import mse_to_psnr, psnr

SSIM_SIGMA, SSIM_RADIUS = 1.5, 5  # scikit-image: truncate 3.5 -> radius int(3.5 * 1.5 + 0.5) = 5, 11 taps
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _gauss_window(sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS) -> torch.Tensor:
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable valid (unpadded) Gaussian filter of ``[N, 1, H, W]``."""
    x = F.conv2d(x, g.view(1, 1, -1, 1))
    return F.conv2d(x, g.view(1, 1, 1, -1))


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM of images ``[..., H, W, C]`` (channels last, values spanning ``data_range``) -> ``[...]`` (mean over
    the valid window positions and the channels), computed in float64. Images need H, W >= 11."""
    if a.shape != b.shape:
        raise ValueError(f"SSIM needs images of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    *lead, h, w, c = a.shape
    if min(h, w) < 2 * SSIM_RADIUS + 1:
        raise ValueError(f"SSIM needs images of at least {2 * SSIM_RADIUS + 1} x {2 * SSIM_RADIUS + 1} pixels, "
                         f"got {h} x {w}")
    to = lambda t: t.detach().to(torch.float64).reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    x, y, g = to(a), to(b), _gauss_window().to(a.device)
    mx, my = _blur(x, g), _blur(y, g)
    vx, vy, cxy = _blur(x * x, g) - mx * mx, _blur(y * y, g) - my * my, _blur(x * y, g) - mx * my
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).view(-1, c).mean(dim=1).view(lead).float()


def psnr_per_image(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> torch.Tensor:
    """PSNR in dB of each image ``[..., H, W, C]`` -> ``[...]`` (identical images give 100, as ``images.psnr``)."""
    if a.shape != b.shape:
        raise ValueError(f"PSNR needs images of equal shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = ((a.double() - b.double()) ** 2).flatten(-3).mean(-1)
    out = [mse_to_psnr(float(m), peak) for m in mse.flatten()]
    return torch.tensor(out, dtype=torch.float64).view(mse.shape)


def mean_psnr(values: torch.Tensor) -> float:
    """Mean of per-image PSNRs (the usual way papers report it: per image, then averaged)."""
    v = values.flatten()
    return float(v.mean()) if v.numel() else math.nan


__all__ = ["psnr", "ssim", "psnr_per_image", "mean_psnr"]

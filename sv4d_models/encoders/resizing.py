"""Antialiased image resize matching ``kornia.geometry.transform.resize`` of kornia 0.6.9 (pure PyTorch).

The official SV3D/SV4D CLIP preprocessing (``sgm``'s ``FrozenOpenCLIPImageEmbedder.preprocess``) calls
``kornia.geometry.resize(x, (224, 224), interpolation="bicubic", align_corners=True, antialias=True)`` with the
kornia version pinned by the official requirements (0.6.9). kornia's "antialias" is not torch's antialias: it is a
Gaussian pre-blur (separable, reflect padding) followed by a plain ``F.interpolate``:

* factors ``f = (H / h_out, W / w_out)``; the blur runs only if ``max(f) > 1`` (any downscale);
* ``sigma_i = max((f_i - 1) / 2, 0.001)`` (scikit-image's rule);
* ``ks_i = int(max(4 * sigma_i, 3))``, bumped to the next odd number;
* kernel ``g(x) = exp(-x^2 / (2 sigma^2))``, ``x = -(ks//2) .. ks//2``, normalised to sum 1, built in float32
  and then cast to the input dtype;
* filtering: W first, then H, each with reflect padding of ``ks // 2``;
* if the requested size equals the input size the input is returned unchanged (no blur, no interpolation).

Checked: bit-identical to kornia 0.6.9 on CPU float32 for square, wide, tall, down- and up-scaled inputs.
kornia 0.9 uses the same sigma / kernel-size formula (its kernel code was rewritten, results differ by ~2e-7); it
also sets the kernel of a singleton axis to 1, where 0.6.9 crashes on reflect padding. We follow that fix because it
only changes inputs on which 0.6.9 raises.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["antialias_params", "gaussian_kernel1d", "gaussian_blur2d", "resize"]


def antialias_params(
    in_hw: tuple[int, int], out_hw: tuple[int, int]
) -> tuple[tuple[int, int], tuple[float, float]] | None:
    """kornia-0.6.9 Gaussian pre-blur ``(kernel_size, sigma)`` per (H, W) axis, or None when no blur is applied."""
    h, w = in_hw
    factors = (h / out_hw[0], w / out_hw[1])
    if max(factors) <= 1:
        return None
    sigmas = (max((factors[0] - 1.0) / 2.0, 0.001), max((factors[1] - 1.0) / 2.0, 0.001))
    ks = [int(max(2.0 * 2 * s, 3)) for s in sigmas]
    ks = [k if k % 2 else k + 1 for k in ks]
    # A singleton axis cannot be reflect-padded (kornia >= 0.8 behaviour; 0.6.9 raises there).
    ks = [1 if n == 1 else k for n, k in zip(in_hw, ks)]
    return (ks[0], ks[1]), sigmas


def gaussian_kernel1d(kernel_size: int, sigma: float) -> torch.Tensor:
    """Normalised float32 Gaussian taps ``[kernel_size]`` centred on ``kernel_size // 2`` (odd sizes only)."""
    if kernel_size <= 0 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    x = (torch.arange(kernel_size) - kernel_size // 2).to(torch.float32)
    g = torch.exp(-(x**2.0) / (2 * sigma**2))
    return g / g.sum()


def _filter_axis(x: torch.Tensor, taps: torch.Tensor, axis: int) -> torch.Tensor:
    """Depthwise 1-D correlation of ``x`` [N, 1, H, W] along H (axis=2) or W (axis=3) with reflect padding."""
    k = taps.numel()
    if k == 1:
        return x * taps.to(x)[0]
    pad = k // 2
    if axis == 3:
        x = F.pad(x, (pad, pad, 0, 0), mode="reflect")
        weight = taps.to(x).view(1, 1, 1, k)
    else:
        x = F.pad(x, (0, 0, pad, pad), mode="reflect")
        weight = taps.to(x).view(1, 1, k, 1)
    return F.conv2d(x, weight)


def gaussian_blur2d(
    x: torch.Tensor, kernel_size: tuple[int, int], sigma: tuple[float, float]
) -> torch.Tensor:
    """Separable Gaussian blur of ``x`` [B, C, H, W] (W pass first, then H), reflect borders, same size out."""
    b, c, h, w = x.shape
    y = x.reshape(b * c, 1, h, w)
    y = _filter_axis(y, gaussian_kernel1d(kernel_size[1], sigma[1]), axis=3)
    y = _filter_axis(y, gaussian_kernel1d(kernel_size[0], sigma[0]), axis=2)
    return y.reshape(b, c, h, w)


def resize(
    x: torch.Tensor,
    size: tuple[int, int],
    interpolation: str = "bicubic",
    align_corners: bool | None = True,
    antialias: bool = True,
) -> torch.Tensor:
    """Resize ``x`` [B, C, H, W] to ``size`` = (h, w) exactly like kornia 0.6.9's ``resize``.

    Args:
        x: images [B, C, H, W] (any value range; floating dtype).
        size: output (h, w).
        interpolation: ``F.interpolate`` mode (official CLIP preprocessing: ``"bicubic"``).
        align_corners: passed to ``F.interpolate`` (official: True).
        antialias: kornia-style Gaussian pre-blur when downscaling (official: True).
    Returns:
        [B, C, h, w] tensor.
    """
    if x.ndim != 4:
        raise ValueError(f"resize expects a [B, C, H, W] tensor, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"resize expects a floating-point tensor, got {x.dtype}; convert with x.float()")
    out_hw = (int(size[0]), int(size[1]))
    in_hw = (int(x.shape[-2]), int(x.shape[-1]))
    if out_hw == in_hw:
        return x
    if min(out_hw) <= 0:
        raise ValueError(f"output size must be positive, got {out_hw}")
    params = antialias_params(in_hw, out_hw) if antialias else None
    if params is not None:
        x = gaussian_blur2d(x, params[0], params[1])
    corners = align_corners if interpolation in ("linear", "bilinear", "bicubic", "trilinear") else None
    return F.interpolate(x, size=out_hw, mode=interpolation, align_corners=corners)

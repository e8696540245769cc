"""Small image helpers every stage shares: float -> uint8, PNG bytes, the frame x view grid, PSNR, the foreground rule.

Conventions: images are float in [0, 1], channels last (``[..., H, W, 3]``); uint8 values are the nearest 1/255 step
(``x * 255 + 0.5`` truncated, after clamping to [0, 1]).
"""
from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used: the CLI reads FOREGROUND_THRESHOLD without loading torch
    import torch

FOREGROUND_THRESHOLD = 0.97  # a pixel with any channel below this is foreground (white backgrounds, SV3D's rule)


def to_uint8(images):
    """Float images in [0, 1] (tensor or array, any shape) -> uint8 of the same kind, the nearest 1/255 step."""
    if isinstance(images, np.ndarray):
        return (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    import torch

    return (images.detach().clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)


def png_bytes(rgb: torch.Tensor, mask: torch.Tensor | None = None) -> bytes:
    """``rgb [H, W, 3]`` in [0, 1] (+ optional ``mask [H, W]`` as alpha) -> PNG bytes."""
    import torch
    from PIL import Image

    arr = rgb.detach().float().cpu()
    if mask is not None:
        arr = torch.cat([arr.clamp(0, 1), mask.detach().float().cpu().clamp(0, 1)[..., None]], dim=-1)
    buf = io.BytesIO()
    Image.fromarray(to_uint8(arr).numpy()).save(buf, format="PNG")
    return buf.getvalue()


def grid_rows(matrix: torch.Tensor) -> torch.Tensor:
    """Image matrix ``[F, V, S, S, 3]`` -> one image ``[F * S, V * S, 3]``: rows = frames, columns = views."""
    f, v, h, w, c = matrix.shape
    return matrix.permute(0, 2, 1, 3, 4).reshape(f * h, v * w, c)


def mse_to_psnr(mse: float, peak: float = 1.0) -> float:
    """PSNR in dB of a mean squared error for values spanning ``peak`` (1 for [0, 1], 2 for [-1, 1]); 0 -> 100."""
    return 100.0 if mse <= 0.0 else float(10.0 * np.log10(peak * peak / mse))


def psnr(a: torch.Tensor, b: torch.Tensor, peak: float = 1.0) -> float:
    """PSNR in dB of two images (any equal shapes); identical images give 100."""
    return mse_to_psnr(float(((a.float() - b.float()) ** 2).mean()), peak)


def foreground_masks(images: torch.Tensor, threshold: float = FOREGROUND_THRESHOLD) -> torch.Tensor:
    """``[..., 3]`` in [0, 1] on a white background -> float masks ``[...]``: 1 where any channel is below
    ``threshold``."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"foreground threshold {threshold} must be in (0, 1]; 0.97 keeps near-white as background")
    return (images < threshold).any(-1).float()


__all__ = ["FOREGROUND_THRESHOLD", "to_uint8", "png_bytes", "grid_rows", "mse_to_psnr", "psnr", "foreground_masks"]

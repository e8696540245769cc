"""Classifier-free guidance as callables ``guider(denoised_pair [2N, ...], sigma) -> [N, ...]``.

``denoised_pair`` is ``cat(D_uncond, D_cond)``; the result is ``D_u + s (D_c - D_u)`` with a per-latent scale
``s`` over the flattened (t, v) index **in model order** (sgm ``guiders.py``). The tables are built with the
same float32 operations as sgm so they match ``sampler_tables.json`` exactly.
"""
from __future__ import annotations

import torch

from ..kinds import get_kind
from .denoiser import append_dims


def triangle_wave(values: torch.Tensor, period: float = 1.0) -> torch.Tensor:
    """``2 |u/p - floor(u/p + 1/2)|``: 0 at both ends of [0, 1], 1 in the middle."""
    return 2 * (values / period - torch.floor(values / period + 0.5)).abs()


class VanillaCFG:
    """One scale for every latent."""

    def __init__(self, scale: float):
        self.scale = float(scale)

    def __call__(self, pair: torch.Tensor, sigma=None) -> torch.Tensor:
        x_u, x_c = pair.chunk(2)
        return x_u + self.scale * (x_c - x_u)


class _TableGuider:
    """Per-latent scale table ``self.scale [num_frames]`` (float32), repeated over batch elements."""

    scale: torch.Tensor

    def _scale_on(self, device: torch.device, dtype: torch.dtype, n_rows: int) -> torch.Tensor:
        """The per-row scale ``[n_rows, 1, ...]`` on ``device`` (cached: no host-device copy per sampler step)."""
        key = (device, dtype, n_rows)
        cache = self.__dict__.setdefault("_placed", {})
        if key not in cache:
            cache[key] = self.scale.to(device).repeat(n_rows // self.scale.numel()).to(dtype)
        return cache[key]

    def __call__(self, pair: torch.Tensor, sigma=None) -> torch.Tensor:
        x_u, x_c = pair.chunk(2)
        n = self.scale.numel()
        if x_u.shape[0] % n:
            raise ValueError(f"{x_u.shape[0]} latents is not a multiple of the guider's num_frames={n}")
        s = append_dims(self._scale_on(x_u.device, x_u.dtype, x_u.shape[0]), x_u.ndim)
        return x_u + s * (x_c - x_u)

    def table(self) -> torch.Tensor:
        """The ``[num_frames]`` scale in model order."""
        return self.scale.clone()


class LinearPredictionGuider(_TableGuider):
    """``s = linspace(min_scale, max_scale, num_frames)`` over the flattened (t, v) index (SV4D 2.0 4-view)."""

    def __init__(self, max_scale: float, num_frames: int, min_scale: float = 1.0):
        self.scale = torch.linspace(min_scale, max_scale, num_frames)


class TrianglePredictionGuider(_TableGuider):
    """``s = min + (max - min) tri(linspace(0, 1, F))`` (SV3D: 1 at both ends, ``max_scale`` mid-orbit)."""

    def __init__(self, max_scale: float, num_frames: int, min_scale: float = 1.0, period: float = 1.0):
        tri = triangle_wave(torch.linspace(0, 1, num_frames), period)
        self.scale = tri * (max_scale - min_scale) + min_scale


class SpatiotemporalPredictionGuider(_TableGuider):
    """``s[t, v] = min + (max - min)(0.5 t/(T-1) + 0.5 tri(v/(V-1)))`` (SV4D, SV4D 2.0 8-view)."""

    def __init__(self, max_scale: float, num_frames: int, num_views: int = 1, min_scale: float = 1.0):
        if num_frames % num_views:
            raise ValueError(f"num_frames={num_frames} must be T*V, a multiple of num_views={num_views}")
        n_t = num_frames // num_views
        scale = torch.zeros(num_frames).view(n_t, num_views)
        scale += torch.linspace(0, 1, n_t)[:, None] * 0.5
        scale += triangle_wave(torch.linspace(0, 1, num_views))[None, :] * 0.5
        self.scale = scale.flatten() * (max_scale - min_scale) + min_scale


def default_guider(model_kind: str, cfg: float | None = None, min_cfg: float | None = None):
    """The guider the official scripts actually use (``cfg`` / ``min_cfg`` override max / min scale).

    sv4d: Spatiotemporal 2.0 -> 1.0 over 5x8; sv4d2: Linear 1.0 -> 2.0 over 48; sv4d2_8views:
    Spatiotemporal 2.5 -> 1.5 over 5x8; sv3d_u / sv3d_p: Triangle 2.5 over 21 orbit frames (``KINDS``).
    """
    spec = get_kind(model_kind)
    max_scale = spec.cfg if cfg is None else float(cfg)
    min_scale = spec.min_cfg if min_cfg is None else float(min_cfg)
    if spec.guider == "spatiotemporal":
        return SpatiotemporalPredictionGuider(max_scale, spec.n_latents, spec.views_per_pass, min_scale)
    if spec.guider == "linear":
        return LinearPredictionGuider(max_scale, spec.n_latents, min_scale)
    return TrianglePredictionGuider(max_scale, spec.n_latents, min_scale)

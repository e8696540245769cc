"""K-Planes-style factorised space-time features (Fridovich-Keil et al., CVPR 2023; HexPlane, Cao & Johnson 2023).

A point ``x_hat`` in [0, 1]^3 at time ``t`` in [0, 1] reads six feature planes per scale: three spatial planes
(x, y), (x, z), (y, z) and three space-time planes (x, t), (y, t), (z, t). Each plane is sampled bilinearly
(``grid_sample``, ``align_corners=True``: cell corners at the box faces and at t = 0 and t = 1), the six feature
vectors are multiplied element-wise (the Hadamard product that lets a plane "switch off" a region), and the scales
are concatenated: ``[N, features * n_scales]``, the same kind of output as the hash grid, read by the same density
and colour MLPs.

Space-time planes start at 1 (the product then equals the static field) and are skipped while ``use_time`` is False,
so the static stage fits frame 0 exactly as a static field and the dynamic stage starts from it. Regularisers over
the parameters (no rays needed): total variation of the planes in space, smoothness (second difference) of the
space-time planes along t, and an L1 pull of the space-time planes towards 1 (static unless the images say
otherwise).

Scales: ``resolution / 2^(n_scales - 1) ... resolution`` cells per axis; time has ``time_resolution`` rows at all
scales (rows at t = k / (time_resolution - 1)).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check_known_keys
from ..validate import check_fields

SPACE_PAIRS = ((0, 1), (0, 2), (1, 2))  # (x, y), (x, z), (y, z); then (x, t), (y, t), (z, t)
PLANE_REGULARISERS = ("plane_tv", "time_smooth", "time_l1")  # the parameter regularisers (= LossConfig weights)


@dataclass(frozen=True)
class KPlanesConfig:
    resolution: int = 64  # spatial cells per axis at the finest scale
    n_scales: int = 3  # finest / 2^k for k < n_scales
    time_resolution: int = 0  # rows along t; 0 = one per frame of the fitted matrix
    features: int = 16  # channels per plane (output: features * n_scales)
    init_low: float = 0.1  # spatial planes start uniform in [init_low, init_high]
    init_high: float = 0.5

    def __post_init__(self) -> None:
        check_fields(self, {"resolution": (2, 2048, "cells per axis; memory grows with its square"),
                            "n_scales": (1, 8, "scales; the coarsest is resolution / 2^(n_scales - 1)"),
                            "time_resolution": (0, 1024, "rows along t; 0 = one per frame"),
                            "features": (1, 256, "channels per plane"),
                            "init_low": (-10.0, 10.0, "initial plane value"),
                            "init_high": (-10.0, 10.0, "initial plane value")}, "field.kplanes")
        if self.resolution >> (self.n_scales - 1) < 2:
            raise ValueError(f"field.kplanes: resolution={self.resolution} with n_scales={self.n_scales} leaves a "
                             "coarsest scale under 2 cells; lower n_scales or raise resolution")
        if self.time_resolution == 1:
            raise ValueError("field.kplanes: time_resolution=1 cannot move; use 0 (one row per frame) or >= 2")
        if self.init_high < self.init_low:
            raise ValueError(f"field.kplanes: init_low={self.init_low} > init_high={self.init_high}; swap them")

    @classmethod
    def from_dict(cls, d: dict) -> "KPlanesConfig":
        check_known_keys(cls, d)
        return cls(**d)

    def for_frames(self, n_frames: int | None) -> "KPlanesConfig":
        """This config with ``time_resolution`` 0 resolved to one row per frame (at least 2)."""
        if self.time_resolution:
            return self
        if n_frames is None:
            raise ValueError("field.kplanes.time_resolution=0 (one row per frame) needs the number of frames")
        return dataclasses.replace(self, time_resolution=max(2, int(n_frames)))

    def scale_resolutions(self) -> list[int]:
        return [self.resolution >> (self.n_scales - 1 - k) for k in range(self.n_scales)]


def _sample(planes: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """planes ``[3, C, H, W]``, grid ``[3, N, 2]`` in [-1, 1] (x -> W, y -> H) -> product over planes ``[N, C]``."""
    f = F.grid_sample(planes, grid[:, :, None, :], mode="bilinear", padding_mode="border", align_corners=True)
    return f[..., 0].prod(dim=0).T


class KPlanes(nn.Module):
    """``forward(x_hat [N, 3] in [0, 1], t [N] or None) -> [N, features * n_scales]``; ``t=None`` = static."""

    def __init__(self, cfg: KPlanesConfig = KPlanesConfig(), dynamic: bool = True,
                 generator: torch.Generator | None = None):
        super().__init__()
        if dynamic and not cfg.time_resolution:
            raise ValueError("KPlanes: time_resolution=0 must be resolved with KPlanesConfig.for_frames(n_frames)")
        self.cfg = cfg
        lo, hi = cfg.init_low, cfg.init_high
        c = cfg.features
        self.space = nn.ParameterList(
            nn.Parameter(torch.rand(3, c, r, r, generator=generator) * (hi - lo) + lo) for r in cfg.scale_resolutions())
        self.time = nn.ParameterList(nn.Parameter(torch.ones(3, c, cfg.time_resolution, r))
                                     for r in cfg.scale_resolutions()) if dynamic else None
        self.n_output_dims = c * cfg.n_scales

    def forward(self, x_hat: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        g = x_hat * 2 - 1
        grid_s = torch.stack([g[:, list(p)] for p in SPACE_PAIRS])  # [3, N, 2]
        grid_t = None
        if t is not None and self.time is not None:
            tt = (t.to(g) * 2 - 1).reshape(-1).expand(g.shape[0])
            grid_t = torch.stack([torch.stack([g[:, i], tt], dim=-1) for i in range(3)])  # [3, N, 2]
        feats = []
        for k, space in enumerate(self.space):
            f = _sample(space, grid_s)
            if grid_t is not None:
                f = f * _sample(self.time[k], grid_t)
            feats.append(f)
        return torch.cat(feats, dim=-1)

    def space_tv(self) -> torch.Tensor:
        """Mean squared difference of neighbouring cells of every plane, along its spatial axes (K-Planes' TV)."""
        total = 0.0
        for space in self.space:
            total = total + (space[..., 1:, :] - space[..., :-1, :]).pow(2).mean() \
                + (space[..., :, 1:] - space[..., :, :-1]).pow(2).mean()
        for time in self.time or ():
            total = total + (time[..., :, 1:] - time[..., :, :-1]).pow(2).mean()
        return total / len(self.space)

    def time_smoothness(self) -> torch.Tensor:
        """Mean squared second difference of the space-time planes along t (motion without jerks)."""
        if self.time is None or self.cfg.time_resolution < 3:
            return self.space[0].new_zeros(())
        total = 0.0
        for time in self.time:
            total = total + (time[..., 2:, :] - 2 * time[..., 1:-1, :] + time[..., :-2, :]).pow(2).mean()
        return total / len(self.time)

    def time_l1(self) -> torch.Tensor:
        """Mean ``|1 - plane|`` of the space-time planes: what moves must be paid for."""
        if self.time is None:
            return self.space[0].new_zeros(())
        return sum((1 - time).abs().mean() for time in self.time) / len(self.time)

    def regularisers(self, names=PLANE_REGULARISERS) -> dict:
        """``{name: value}`` of the regularisers in ``names`` (of ``PLANE_REGULARISERS``); only those are computed."""
        terms = {"plane_tv": self.space_tv, "time_smooth": self.time_smoothness, "time_l1": self.time_l1}
        return {n: terms[n]() for n in names}


__all__ = ["KPlanesConfig", "KPlanes", "PLANE_REGULARISERS"]

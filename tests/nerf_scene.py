"""Private analytic test scene for the NeRF tests: two shaded spheres rendered in closed form (no NeRF code).

Sphere A (static, reddish) near the origin; sphere B (bluish, separate from A) rises along +z by 0.15 as t goes
0 -> 1 when ``moving``.
Shading is view independent (fixed world light), white background, exact masks.
"""
from __future__ import annotations

import torch

from sv4d_models.camera import Cameras
from sv4d_models.images import psnr  # noqa: F401  (the scene's tests and benchmarks/nerf.py use it from here)


def spheres(t: float, moving: bool):
    b_center = torch.tensor([0.05, 0.42, 0.1 + (0.15 * t if moving else 0.0)], dtype=torch.float64)
    return [(torch.tensor([0.0, 0.0, -0.05], dtype=torch.float64), 0.28, torch.tensor([0.9, 0.35, 0.2])),
            (b_center, 0.15, torch.tensor([0.2, 0.45, 0.95]))]


def render_scene(cameras: Cameras, size: int, t: float, moving: bool = False):
    """Returns rgb ``[N, H, W, 3]`` float32 in [0, 1] on white and mask ``[N, H, W]``."""
    o, d = cameras.rays(size, size, dtype=torch.float64)
    best = torch.full(o.shape[:-1], float("inf"), dtype=torch.float64)
    rgb = torch.ones(*o.shape[:-1], 3, dtype=torch.float64)
    light = torch.nn.functional.normalize(torch.tensor([0.6, 0.3, 0.75], dtype=torch.float64), dim=0)
    for center, radius, color in spheres(t, moving):
        oc = o - center
        b = (oc * d).sum(-1)
        c = (oc * oc).sum(-1) - radius**2
        disc = b * b - c
        hit = disc > 0
        tt = -b - disc.clamp_min(0).sqrt()
        closer = hit & (tt > 0) & (tt < best)
        p = o + d * tt[..., None]
        n = (p - center) / radius
        shade = 0.45 + 0.55 * (n @ light).clamp_min(0)
        col = color.double() * shade[..., None]
        rgb = torch.where(closer[..., None], col, rgb)
        best = torch.where(closer, tt, best)
    return rgb.float(), torch.isfinite(best).float()


def scene_matrix(azimuths, n_frames: int, size: int, moving: bool, elevation: float = 10.0):
    """images ``[F, V, H, W, 3]``, masks ``[F, V, H, W]``, Cameras (V), times ``[F]`` for an orbit layout."""
    cams = Cameras.orbit(torch.tensor(azimuths, dtype=torch.float64), elevation)
    times = torch.linspace(0, 1, n_frames) if n_frames > 1 else torch.zeros(1)
    ims, mks = zip(*[render_scene(cams, size, float(t), moving) for t in times])
    return torch.stack(ims), torch.stack(mks), cams, times

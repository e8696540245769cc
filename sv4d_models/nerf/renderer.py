"""Volume renderer without nerfacc: slab ray-AABB intersection, stratified samples, occupancy-grid culling,
dense ``[R, S]`` compositing (nerf4d.md sections 2.3 and 3.5).

Compositing: ``alpha_i = 1 - exp(-sigma_i * delta_i)``, ``T_i = prod_{j<i} (1 - alpha_j)``, ``w_i = T_i alpha_i``;
opacity ``acc = sum w``, depth ``sum w t``, rgb ``sum w c + (1 - acc) * background`` (white by default), normal
``sum w n``. Only samples inside the box *and* inside occupied cells go through the network; the rest get zero
density (scatter back into the dense tensor).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..camera import Cameras, pixel_rays
from ..config import check_known_keys
from ..validate import check_fields, check_number


def ray_aabb(origins: torch.Tensor, dirs: torch.Tensor, half_size: float):
    """Slab test against ``[-h, h]^3``. origins/dirs ``[R, 3]`` -> near ``[R]``, far ``[R]``, hit ``[R]`` (bool)."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t0 = (-half_size - origins) * inv
    t1 = (half_size - origins) * inv
    near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(0.0)
    far = torch.maximum(t0, t1).amin(dim=-1)
    hit = far > near
    return near, torch.where(hit, far, near), hit


def stratified_samples(near: torch.Tensor, far: torch.Tensor, n_samples: int,
                       generator: torch.Generator | None = None, perturb: bool = True):
    """``S`` samples per ray in ``[near, far]``: midpoints ``t [R, S]`` and interval lengths ``delta [R, S]``.

    ``perturb=True`` jitters each sample inside its bin with ``generator`` (deterministic for a seeded generator).
    """
    r = near.shape[0]
    u = torch.arange(n_samples, dtype=near.dtype, device=near.device).expand(r, n_samples)
    if perturb:
        u = u + torch.rand(r, n_samples, generator=generator, dtype=near.dtype, device="cpu").to(near.device)
    else:
        u = u + 0.5
    step = (far - near)[:, None] / n_samples
    return near[:, None] + step * u, step.expand(r, n_samples)


def weights_from_density(sigma: torch.Tensor, delta: torch.Tensor):
    """nerfacc ``render_weight_from_density``: sigma, delta ``[R, S]`` -> (weights, transmittance, alpha)."""
    sd = sigma * delta
    alpha = 1.0 - torch.exp(-sd)
    trans = torch.exp(-(torch.cumsum(sd, dim=-1) - sd))  # exclusive sum
    return trans * alpha, trans, alpha


def weights_from_alpha(alpha: torch.Tensor):
    """nerfacc ``render_weight_from_alpha``: alpha ``[R, S]`` -> (weights, transmittance)."""
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1]], dim=-1), dim=-1)
    return trans * alpha, trans


@dataclass(frozen=True)
class OccupancyConfig:
    resolution: int = 64  # cells per axis over the AABB
    ema_decay: float = 0.95
    threshold: float = 0.01  # on sigma * render_step (the Taylor approximation of alpha)
    update_every: int = 16  # steps
    warmup_steps: int = 64  # no culling before this many steps (the field is still random)
    n_times: int = 2  # random batch times per update once the field is dynamic
    enabled: bool = True

    def __post_init__(self) -> None:
        check_fields(self, {"resolution": (1, 512, "cells per axis; memory grows with the cube"),
                            "ema_decay": (0.0, 1.0, "a decay rate"), "threshold": (0.0, 1e6, "an opacity level"),
                            "update_every": (1, 10_000_000, "steps"), "warmup_steps": (0, 10_000_000, "steps"),
                            "n_times": (1, 64, "times per update; time grows with it")}, "occupancy")

    @classmethod
    def from_dict(cls, d: dict) -> "OccupancyConfig":
        check_known_keys(cls, d)
        return cls(**d)


class OccupancyGrid(nn.Module):
    """Binary occupancy over the AABB shared by all times (nerfacc ``OccGridEstimator``-like, levels=1)."""

    def __init__(self, half_size: float, resolution: int = 64, ema_decay: float = 0.95, threshold: float = 0.01):
        super().__init__()
        self.half_size, self.resolution = half_size, resolution
        self.ema_decay, self.threshold = ema_decay, threshold
        self.register_buffer("occs", torch.zeros(resolution**3))
        self.register_buffer("binary", torch.ones(resolution**3, dtype=torch.bool))
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long))

    def cell_centers(self, jitter: torch.Tensor | None = None) -> torch.Tensor:
        r = self.resolution
        ar = torch.arange(r, dtype=torch.float32, device=self.occs.device)
        z, y, x = torch.meshgrid(ar, ar, ar, indexing="ij")
        ijk = torch.stack([x, y, z], -1).reshape(-1, 3) + (0.5 if jitter is None else jitter)
        return (ijk / r * 2 - 1) * self.half_size

    @torch.no_grad()
    def update(self, density_fn, step_size: float, times=(0.0,), generator: torch.Generator | None = None,
               chunk: int = 65536) -> None:
        """EMA update ``occ = max(occ * decay, sigma * step)`` at jittered cell centres, max over ``times``."""
        jitter = torch.rand(self.resolution**3, 3, generator=generator).to(self.occs.device)
        pts = self.cell_centers(jitter)
        new = torch.zeros_like(self.occs)
        for t in times:
            vals = torch.cat([density_fn(p, float(t)) for p in pts.split(chunk)])
            new = torch.maximum(new, vals.to(new) * step_size)
        self.occs.copy_(torch.maximum(self.occs * self.ema_decay, new))
        thre = min(self.threshold, float(self.occs.mean()))
        self.binary.copy_(self.occs > thre)
        self.n_updates += 1

    def occupied(self, x: torch.Tensor) -> torch.Tensor:
        """``x [..., 3]`` world -> bool ``[...]`` (False outside the box)."""
        r = self.resolution
        u = (x / self.half_size + 1) * 0.5
        inside = ((u >= 0) & (u < 1)).all(-1)
        ijk = (u.clamp(0, 1 - 1e-6) * r).long()
        idx = ijk[..., 0] + ijk[..., 1] * r + ijk[..., 2] * r * r
        return self.binary[idx] & inside


def render_rays(model, origins: torch.Tensor, dirs: torch.Tensor, times: torch.Tensor, n_samples: int,
                occupancy: OccupancyGrid | None = None, generator: torch.Generator | None = None,
                perturb: bool = True, normals: str | None = None, create_graph: bool = False,
                background: float = 1.0) -> dict:
    """Render rays ``origins/dirs [R, 3]`` at ``times [R]`` through ``model.query``.

    Returns dict with ``rgb [R, 3]`` (composited on ``background``), ``opacity [R]``, ``depth [R]`` (sum w t, 0 for
    empty rays), ``normal [R, 3]`` (sum w n, only when ``normals`` is set) and ``n_evaluated`` (int).
    """
    half = model.cfg.aabb_half_size
    near, far, hit = ray_aabb(origins, dirs, half)
    t_mid, delta = stratified_samples(near, far, n_samples, generator, perturb)  # [R, S]
    pts = origins[:, None] + dirs[:, None] * t_mid[..., None]  # [R, S, 3]
    keep = hit[:, None].expand_as(t_mid)
    if occupancy is not None:
        keep = keep & occupancy.occupied(pts)
    flat = keep.reshape(-1).nonzero().squeeze(1)
    r, s = t_mid.shape
    ts = times.to(pts.dtype).reshape(-1, 1).expand(r, s).reshape(-1)[flat]
    out = model.query(pts.reshape(-1, 3)[flat], ts, normals=normals, create_graph=create_graph)
    sigma = pts.new_zeros(r * s).index_put((flat,), out["sigma"]).view(r, s)
    rgb_s = pts.new_zeros(r * s, 3).index_put((flat,), out["rgb"]).view(r, s, 3)
    weights, _, _ = weights_from_density(sigma, delta)
    acc = weights.sum(-1)
    res = {"rgb": (weights[..., None] * rgb_s).sum(1) + (1.0 - acc)[:, None] * background,
           "opacity": acc, "depth": (weights * t_mid).sum(-1), "weights": weights, "t": t_mid, "delta": delta,
           "n_evaluated": int(flat.numel())}
    if normals is not None:
        n_s = pts.new_zeros(r * s, 3).index_put((flat,), out["normal"]).view(r, s, 3)
        res["normal"] = (weights[..., None] * n_s).sum(1)
    return res


@torch.no_grad()
def _render_rays_chunked(model, origins, dirs, times, n_samples, occupancy, chunk, normals):
    outs = []
    for o, d, t in zip(origins.split(chunk), dirs.split(chunk), times.split(chunk)):
        r = render_rays(model, o, d, t, n_samples, occupancy, perturb=False, normals=normals)
        outs.append({k: v for k, v in r.items() if k in ("rgb", "opacity", "depth", "normal")})
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def render(model, cameras: Cameras, times, height: int, width: int | None = None, chunk: int = 65536,
           n_samples: int = 128, occupancy: OccupancyGrid | None = None,
           normals: str | None = "finite_difference") -> dict:
    """Render N cameras at ``times`` (float or ``[N]``) -> rgb ``[N, H, W, 3]`` (on white), opacity ``[N, H, W]``,
    depth ``[N, H, W]`` (sum of w*t; divide by opacity for the surface distance), normal ``[N, H, W, 3]``
    (world frame, weight-accumulated; omitted when ``normals=None``). Deterministic (midpoint samples)."""
    width = height if width is None else width
    p = next(model.parameters())
    n = len(cameras)
    t = torch.as_tensor(times, dtype=p.dtype, device=p.device).reshape(-1)
    if t.numel() not in (1, n):
        raise ValueError(f"times has {t.numel()} entries; pass one time or one per camera ({n})")
    if not bool(((t >= 0) & (t <= 1)).all()):  # NaN fails both comparisons
        raise ValueError(f"times must lie in [0, 1] (0 = the first frame, 1 = the last), got {t[:8].tolist()}; the "
                         "deformation was fitted on that range only")
    check_number(height, "height", 1, 16384, "pixels", integer=True)
    check_number(width, "width", 1, 16384, "pixels", integer=True)
    rows = torch.arange(height).expand(n, height)
    cols = torch.arange(width).expand(n, width)
    o, d = pixel_rays(cameras.c2w, cameras.fov_deg, height, width, rows, cols, p.dtype)
    t_rays = t.expand(n).reshape(n, 1).expand(n, height * width).reshape(-1)
    was_training = model.training
    model.eval()
    out = _render_rays_chunked(model, o.reshape(-1, 3).to(p.device), d.reshape(-1, 3).to(p.device), t_rays,
                               n_samples, occupancy, chunk, normals)
    model.train(was_training)
    return {k: v.reshape(n, height, width, *v.shape[1:]) for k, v in out.items()}

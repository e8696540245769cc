"""Procedural animated ground-truth scenes: exact RGBA, masks and depth for any camera and time, no weights.

A scene is a union of signed-distance primitives (sphere, rounded box, torus, capsule), each with a procedural
albedo (solid, checker or azimuthal stripes in object coordinates, so textures move with the object), a rigid
motion (oscillating translation and rotation about a local axis) and optional non-rigid motion (uniform pulsing
scale, a bend of the local z axis). All motions are ``sin(2*pi*(t + phase))`` so ``t=0`` and ``t=1`` coincide
and looping exports loop seamlessly. Colours are Lambert-style shading from a light fixed in the world, i.e. view
independent, which is what the pack's view-independent NeRF colour head can represent.

Rendering sphere-traces the union SDF (pure torch, vectorised, the active ray set shrinks every step) and colours
each hit with :meth:`SyntheticScene.color_fn`, so images, :meth:`SyntheticScene.density_fn` and
:meth:`SyntheticScene.color_fn` describe the same object. Conventions follow :mod:`sv4d_models.camera` (z-up,
OpenGL cameras, white background). ``depth`` is the distance along the unit ray (0 on background pixels).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .camera import CAMERA_DISTANCE, Cameras, default_matrix_azimuths_deg

SHAPES = ("sphere", "round_box", "torus", "capsule")
TEXTURES = ("solid", "checker", "stripes")
KINDS = ("static", "rigid", "nonrigid")
_LIGHT = (0.45, 0.3, 0.84)  # world light direction (normalised at use); shade = 0.6 + 0.4 * dot(n, light)
_PALETTE = (  # saturated albedos (and color2 has blue 0.8): no surface reads as the white background (> 0.97)
    (0.85, 0.2, 0.15), (0.15, 0.45, 0.85), (0.2, 0.7, 0.3), (0.9, 0.65, 0.1),
    (0.6, 0.25, 0.75), (0.1, 0.65, 0.7), (0.95, 0.45, 0.6), (0.3, 0.3, 0.3),
)


@dataclass(frozen=True)
class Primitive:
    """One animated SDF primitive. Lengths are world units (the camera orbit radius is 2.0).

    ``size``: sphere ``(r,)``; round_box ``(hx, hy, hz, rounding)`` outer half extents; torus ``(R, r)`` around the
    local z axis; capsule ``(half_length, r)`` along the local z axis.
    """

    shape: str
    size: tuple[float, ...]
    center: tuple[float, float, float] = (0.0, 0.0, 0.0)
    color: tuple[float, float, float] = (0.85, 0.2, 0.15)
    texture: str = "solid"  # solid | checker | stripes (azimuthal, around local z)
    color2: tuple[float, float, float] = (0.95, 0.9, 0.8)  # second texture colour
    texture_freq: float = 8.0  # checker cells per unit length, or number of stripe pairs around the axis
    base_rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)  # fixed x, y, z Euler angles (R = Rz Ry Rx)
    phase: float = 0.0  # motion phase in periods
    translate_amp: tuple[float, float, float] = (0.0, 0.0, 0.0)  # world offset amplitude
    rotate_amp_deg: float = 0.0  # oscillating rotation about the local rotate_axis
    rotate_axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    pulse_amp: float = 0.0  # non-rigid: uniform scale 1 + pulse_amp * sin(...)
    bend_amp: float = 0.0  # non-rigid: bend curvature (rad per unit length along local z) amplitude

    def __post_init__(self) -> None:
        n_size = {"sphere": 1, "round_box": 4, "torus": 2, "capsule": 2}
        if self.shape not in n_size:
            raise ValueError(f"shape={self.shape!r} is not supported; use one of {SHAPES}")
        if len(self.size) != n_size[self.shape] or min(self.size) < 0:
            raise ValueError(f"{self.shape} needs {n_size[self.shape]} non-negative sizes, got size={self.size}")
        if self.texture not in TEXTURES:
            raise ValueError(f"texture={self.texture!r} is not supported; use one of {TEXTURES}")
        if not 0.0 <= self.pulse_amp < 1.0:
            raise ValueError(f"pulse_amp={self.pulse_amp} must be in [0, 1) so the scale stays positive")

    def bound_radius(self) -> float:
        """Radius of a sphere around ``center`` holding the primitive at any time (bending preserves |p|)."""
        s = self.size
        if self.shape == "round_box":
            r = math.sqrt(s[0] ** 2 + s[1] ** 2 + s[2] ** 2)
        else:
            r = s[0] if self.shape == "sphere" else s[0] + s[1]
        return r * (1.0 + self.pulse_amp)

    def pose(self, t: float) -> tuple[torch.Tensor, torch.Tensor, float, float]:
        """Centre ``[3]``, rotation ``[3, 3]`` (local -> world), scale and bend curvature at time ``t``."""
        return _pose(self, float(t))

    def local(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """World points ``[N, 3]`` -> unscaled, unbent object coordinates ``[N, 3]`` (texture space)."""
        center, rot, scale, bend = self.pose(t)
        p = (x - center.to(x)) @ rot.to(x) / scale  # row-vector form of rot^T (x - c)
        if bend != 0.0:
            ang = bend * p[:, 2]
            c, s = torch.cos(ang), torch.sin(ang)
            p = torch.stack([c * p[:, 0] - s * p[:, 2], p[:, 1], s * p[:, 0] + c * p[:, 2]], dim=-1)
        return p

    def sdf(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Signed distance ``[N]`` (exact for rigid motion and pulsing; a bound-ish estimate when bent)."""
        p = self.local(x, t)
        s = self.size
        if self.shape == "sphere":
            d = p.norm(dim=-1) - s[0]
        elif self.shape == "round_box":
            q = p.abs() - p.new_tensor(s[:3]) + s[3]
            d = q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0) - s[3]
        elif self.shape == "torus":
            q = torch.stack([p[:, :2].norm(dim=-1) - s[0], p[:, 2]], dim=-1)
            d = q.norm(dim=-1) - s[1]
        else:
            axis = torch.zeros_like(p)
            axis[:, 2] = p[:, 2].clamp(-s[0], s[0])
            d = (p - axis).norm(dim=-1) - s[1]
        return d * self.pose(t)[2]

    def albedo(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Procedural albedo ``[N, 3]`` in object coordinates."""
        c1 = x.new_tensor(self.color).expand(x.shape[0], 3)
        if self.texture == "solid":
            return c1
        p = self.local(x, t)
        if self.texture == "checker":
            odd = torch.floor(p * self.texture_freq).sum(dim=-1).remainder(2) > 0.5
        else:
            azimuth = torch.atan2(p[:, 1], p[:, 0]) / (2 * math.pi) + 0.5
            odd = torch.floor(azimuth * 2 * self.texture_freq).remainder(2) > 0.5
        return torch.where(odd[:, None], x.new_tensor(self.color2), c1)


@functools.lru_cache(maxsize=256)
def _pose(prim: Primitive, t: float) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    wave = math.sin(2.0 * math.pi * (t + prim.phase))
    center = torch.tensor(prim.center, dtype=torch.float32) + wave * torch.tensor(prim.translate_amp)
    rot = _euler(prim.base_rotation_deg) @ _axis_angle(prim.rotate_axis, prim.rotate_amp_deg * wave)
    return center, rot, 1.0 + prim.pulse_amp * wave, prim.bend_amp * wave


def _euler(deg: tuple[float, float, float]) -> torch.Tensor:
    rx, ry, rz = (_axis_angle(ax, a) for ax, a in zip(((1, 0, 0), (0, 1, 0), (0, 0, 1)), deg))
    return rz @ ry @ rx


def _axis_angle(axis, angle_deg: float) -> torch.Tensor:
    """Rotation matrix ``[3, 3]`` (Rodrigues) about a (not necessarily unit) axis."""
    k = torch.tensor(axis, dtype=torch.float32)
    k = k / k.norm()
    a = math.radians(angle_deg)
    kx = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return torch.eye(3) + math.sin(a) * kx + (1.0 - math.cos(a)) * (kx @ kx)


@dataclass(frozen=True)
class SyntheticScene:
    """A union of animated primitives inside the cube ``[-aabb_half_size, aabb_half_size]^3`` at all times."""

    primitives: tuple[Primitive, ...]
    aabb_half_size: float = 0.6  # every primitive stays inside this cube for all t (checked)
    density_scale: float = 100.0  # density_fn = density_scale * sigmoid(-sdf / softness)
    softness: float = 0.01  # world units; density_scale / 2 is exactly the surface
    max_steps: int = 160  # sphere-tracing iterations
    step_scale: float = 0.8  # < 1 because bending makes the SDF only approximately 1-Lipschitz
    hit_eps: float = 2e-4  # converged when sdf < hit_eps
    name: str = field(default="custom")

    def __post_init__(self) -> None:
        if not self.primitives:
            raise ValueError("a SyntheticScene needs at least one Primitive")
        for i, prim in enumerate(self.primitives):
            r = prim.bound_radius()
            for axis in range(3):
                extent = abs(prim.center[axis]) + abs(prim.translate_amp[axis]) + r
                if extent > self.aabb_half_size + 1e-9:
                    raise ValueError(
                        f"primitive {i} ({prim.shape}) reaches {extent:.3f} on axis {axis}, outside "
                        f"aabb_half_size={self.aabb_half_size}; shrink or move it, or raise aabb_half_size"
                    )

    @property
    def iso_density(self) -> float:
        """Density value of the exact surface (use it as the marching-cubes threshold)."""
        return 0.5 * self.density_scale

    @classmethod
    def make(cls, kind: str = "nonrigid", seed: int = 0, **overrides) -> "SyntheticScene":
        """The standard four-object scene; ``kind`` selects static, rigid-only or rigid + non-rigid motion."""
        if kind not in KINDS:
            raise ValueError(f"kind={kind!r} is not supported; use one of {KINDS}")
        g = torch.Generator().manual_seed(int(seed))
        u = lambda lo, hi: float(lo + (hi - lo) * torch.rand((), generator=g))  # noqa: E731
        colors = [_PALETTE[i] for i in torch.randperm(len(_PALETTE), generator=g)[:4].tolist()]
        prims = [
            Primitive("round_box", (0.22, 0.22, 0.08, 0.03), (u(-0.02, 0.02), u(-0.02, 0.02), -0.26), colors[0],
                      "checker", texture_freq=12.0, base_rotation_deg=(0.0, 0.0, u(0, 90)), phase=u(0, 1),
                      rotate_amp_deg=35.0),
            Primitive("sphere", (0.13,), (0.26, u(-0.03, 0.03), 0.12), colors[1], "stripes", texture_freq=3.0,
                      base_rotation_deg=(u(0, 90), 0.0, 0.0), phase=u(0, 1), translate_amp=(0.0, 0.12, 0.06),
                      rotate_amp_deg=60.0, pulse_amp=0.22),
            Primitive("torus", (0.15, 0.045), (-0.22, 0.12, u(0.12, 0.18)), colors[2], "stripes",
                      texture_freq=4.0, base_rotation_deg=(60.0, 0.0, u(0, 180)), phase=u(0, 1),
                      translate_amp=(0.0, 0.0, 0.08), rotate_amp_deg=90.0),
            Primitive("capsule", (0.16, 0.055), (0.02, -0.26, 0.12), colors[3], phase=u(0, 1),
                      translate_amp=(0.05, 0.0, 0.0), bend_amp=2.5),
        ]
        if kind == "static":
            prims = [replace(p, translate_amp=(0.0, 0.0, 0.0), rotate_amp_deg=0.0, pulse_amp=0.0, bend_amp=0.0)
                     for p in prims]
        elif kind == "rigid":
            prims = [replace(p, pulse_amp=0.0, bend_amp=0.0) for p in prims]
        return cls(tuple(prims), name=f"{kind}_seed{seed}", **overrides)

    # ----------------------------------------------------------------------------- fields
    def sdf(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Union signed distance ``[N]`` at world points ``x [N, 3]``."""
        return torch.stack([p.sdf(x, t) for p in self.primitives]).min(dim=0).values

    def density_fn(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """Volume density ``[N]``: ``density_scale * sigmoid(-sdf / softness)`` (surface at ``iso_density``)."""
        x = x.to(torch.float32)
        return self.density_scale * torch.sigmoid(-self.sdf(x, t) / self.softness)

    def normal_fn(self, x: torch.Tensor, t: float, h: float = 1e-3) -> torch.Tensor:
        """Unit outward normals ``[N, 3]`` from central differences of the SDF."""
        offsets = torch.eye(3, dtype=x.dtype, device=x.device) * h
        grads = [self.sdf(x + o, t) - self.sdf(x - o, t) for o in offsets]
        return torch.nn.functional.normalize(torch.stack(grads, dim=-1), dim=-1)

    def color_fn(self, x: torch.Tensor, t: float) -> torch.Tensor:
        """View-independent shaded colour ``[N, 3]`` in [0, 1] of the nearest primitive at ``x [N, 3]``."""
        x = x.to(torch.float32)
        if x.shape[0] == 0:
            return x.new_zeros(0, 3)
        dists = torch.stack([p.sdf(x, t) for p in self.primitives])  # [P, N]
        owner = dists.argmin(dim=0)
        albedo = torch.zeros_like(x)
        for i, prim in enumerate(self.primitives):
            sel = owner == i
            if sel.any():
                albedo[sel] = prim.albedo(x[sel], t)
        light = torch.nn.functional.normalize(x.new_tensor(_LIGHT), dim=0)
        shade = 0.6 + 0.4 * (self.normal_fn(x, t) @ light)
        return (albedo * shade[:, None]).clamp(0.0, 1.0)

    # ----------------------------------------------------------------------------- rendering
    def trace(self, origins: torch.Tensor, dirs: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Sphere-trace rays ``[R, 3]`` (unit dirs). Returns hit mask ``[R]`` and ray distance ``[R]``."""
        bound = self.aabb_half_size * math.sqrt(3.0) + 1e-3
        b = (origins * dirs).sum(-1)
        disc = b * b - ((origins * origins).sum(-1) - bound * bound)
        root = disc.clamp(min=0).sqrt()
        far = -b + root
        s = (-b - root).clamp(min=0)
        hit = torch.zeros_like(b, dtype=torch.bool)
        idx = torch.nonzero(disc > 0).squeeze(-1)
        for _ in range(self.max_steps):
            if idx.numel() == 0:
                break
            d = self.sdf(origins[idx] + s[idx, None] * dirs[idx], t)
            done = d < self.hit_eps
            hit[idx[done]] = True
            s[idx[done]] += d[done]  # one full step onto the surface (exact for a true SDF)
            s[idx[~done]] += self.step_scale * d[~done]
            idx = idx[~done & (s[idx] < far[idx])]
        return hit, torch.where(hit, s, torch.zeros_like(s))

    def render(self, cameras: Cameras, t: float, height: int, width: int | None = None,
               supersample: int = 1) -> dict:
        """Render every camera at time ``t``.

        Returns dict: ``rgb [N, H, W, 3]`` float32 on white, ``mask [N, H, W]`` float32 (= alpha: {0, 1}, or
        pixel coverage with ``supersample`` s > 1, which averages s x s sub-pixel rays), ``depth [N, H, W]`` ray
        distance (0 on background; mean over covered sub-pixels), ``rgba [N, H, W, 4]``.
        """
        if not 0.0 <= float(t) <= 1.0:
            raise ValueError(f"t={t} must be in [0, 1] (frame f of F has t = f / (F - 1))")
        if supersample < 1:
            raise ValueError(f"supersample={supersample} must be >= 1 sub-pixel rays per pixel side")
        width = height if width is None else width
        ss = int(supersample)
        origins, dirs = cameras.rays(height * ss, width * ss)
        shape = origins.shape[:-1]
        origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        hit, depth = self.trace(origins, dirs, float(t))
        rgb = torch.ones_like(origins)
        rgb[hit] = self.color_fn(origins[hit] + depth[hit, None] * dirs[hit], float(t))
        mask = hit.to(torch.float32)
        rgb, mask, depth = rgb.reshape(*shape, 3), mask.reshape(shape), depth.reshape(shape)
        if ss > 1:
            pool = lambda a: a.reshape(len(cameras), height, ss, width, ss, *a.shape[3:]).mean(dim=(2, 4))  # noqa: E731
            rgb, coverage = pool(rgb), pool(mask)
            depth = pool(depth) / coverage.clamp(min=1e-12)
            mask = coverage
        return {"rgb": rgb, "mask": mask, "depth": depth, "rgba": torch.cat([rgb, mask[..., None]], dim=-1)}

    def midway(self, t0: float, t1: float) -> tuple["SyntheticScene", float]:
        """The scene whose every motion parameter (offset, rotation angle, pulse scale, bend) at time ``tm = (t0 +
        t1) / 2`` is the mean of this scene's values at ``t0`` and ``t1``, and ``tm``: each part moved halfway along
        its parameters, what a field that interpolates each part's motion linearly between two frames shows.

        All motions are ``amp * sin(2 pi (t + phase))`` and ``(sin a + sin b) / 2 = sin((a + b) / 2) cos((a - b) /
        2)``, so the midway scene is this one with every amplitude times ``cos(pi (t1 - t0))`` (the same for every
        phase), rendered at ``tm``."""
        for name, t in (("t0", t0), ("t1", t1)):
            if not 0.0 <= float(t) <= 1.0:
                raise ValueError(f"{name}={t} must be in [0, 1]")
        k = math.cos(math.pi * (float(t1) - float(t0)))
        prims = tuple(replace(p, translate_amp=tuple(a * k for a in p.translate_amp),
                              rotate_amp_deg=p.rotate_amp_deg * k, pulse_amp=p.pulse_amp * k, bend_amp=p.bend_amp * k)
                      for p in self.primitives)
        return replace(self, primitives=prims, name=f"{self.name}_midway"), (float(t0) + float(t1)) / 2

    def render_fn(self, cameras: Cameras, t: float, height: int, width: int | None = None) -> torch.Tensor:
        """``render_fn`` callable for :mod:`sv4d_models.export.video`: rgb ``[N, H, W, 3]``."""
        return self.render(cameras, t, height, width)["rgb"]

    def render_matrix(
        self,
        model_kind: str = "sv4d",
        n_frames: int = 5,
        size: int = 32,
        elevation_deg: float = 10.0,
        azimuths_deg=None,
        radius: float = CAMERA_DISTANCE,
        supersample: int = 1,
    ) -> dict:
        """Ground truth in the sampling stage's matrix layout (columns = views, rows = frames).

        Azimuths default to ``camera.default_matrix_azimuths_deg(model_kind)`` (input view first), frame ``f``
        is at ``t = f / (F - 1)``; ``supersample`` as in ``render`` (1: one ray per pixel, aliased edges and
        textures; s > 1: anti-aliased, fractional masks). Returns dict: ``images [F, V, H, W, 3]``,
        ``masks [F, V, H, W]``, ``depth [F, V, H, W]``, ``cameras`` (``Cameras`` with V entries), ``times [F]``,
        ``azimuths_deg [V]``.
        """
        if n_frames < 1 or size < 1:
            raise ValueError(f"n_frames={n_frames} and size={size} must both be >= 1")
        az = default_matrix_azimuths_deg(model_kind) if azimuths_deg is None else np.asarray(azimuths_deg, float)
        cameras = Cameras.orbit(az, elevation_deg, radius=radius)
        times = torch.linspace(0.0, 1.0, n_frames) if n_frames > 1 else torch.zeros(1)
        outs = [self.render(cameras, float(t), size, supersample=supersample) for t in times]
        return {
            "images": torch.stack([o["rgb"] for o in outs]),
            "masks": torch.stack([o["mask"] for o in outs]),
            "depth": torch.stack([o["depth"] for o in outs]),
            "cameras": cameras,
            "times": times,
            "azimuths_deg": torch.as_tensor(az, dtype=torch.float64),
        }

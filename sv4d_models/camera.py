"""Camera conventions shared by every stage (sampling, reconstruction, export). Written down once, here.

World frame: right-handed, **z up**. A camera at azimuth ``a`` and elevation ``e`` (degrees) sits at
``radius * (cos e cos a, cos e sin a, sin e)`` and looks at the origin. Azimuth 0 is the input view (+x),
azimuth grows from +x towards +y. Camera frame is OpenGL: the camera looks along its -z axis, +y is up in
the image, +x is right; ``c2w`` columns are ``[right, up, -forward, position]``.
Intrinsics: square images, vertical field of view ``FOV_DEG`` (33.9 deg, SV3D), principal point at the
image centre, ``focal = 0.5 * H / tan(fov / 2)``. Pixel (u, v) (column, row; row 0 at the top) has the
camera-frame ray direction ``((u + 0.5 - W/2) / f, -(v + 0.5 - H/2) / f, -1)``.

These are the conventions of the SV3D authors' reconstruction code (distance 2.0, FoV 33.9, z up); see
``../shared/docs/nerf4d.md`` section 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .kinds import FOUR_D_KINDS, KINDS, SV3D_N_VIEWS, SV4D_ORBIT_VIEWS, get_kind
from .validate import check_angle, check_number

FOV_DEG = 33.9  # vertical field of view of SV3D / SV4D renders
CAMERA_DISTANCE = 2.0  # orbit radius used by the SV3D authors' reconstruction code


def sv3d_orbit_azimuths_deg(n_views: int = SV3D_N_VIEWS) -> np.ndarray:
    """Official SV3D orbit in raw model order: ``linspace(0, 360, n+1)[1:] % 360`` (input view last, 0 deg)."""
    return np.linspace(0.0, 360.0, n_views + 1)[1:] % 360.0


def default_matrix_azimuths_deg(model_kind: str) -> np.ndarray:
    """Azimuth (deg, relative to the input view) of each column of the final V+1 image matrix."""
    return np.array(get_kind(model_kind).azimuths_deg)


def orbit_position(azimuth_deg, elevation_deg, radius: float = CAMERA_DISTANCE) -> torch.Tensor:
    """Camera centres ``[N, 3]`` (float64) on the z-up orbit."""
    a = torch.deg2rad(torch.as_tensor(azimuth_deg, dtype=torch.float64).reshape(-1))
    e = torch.deg2rad(torch.as_tensor(elevation_deg, dtype=torch.float64).reshape(-1))
    a, e = torch.broadcast_tensors(a, e)
    return radius * torch.stack([e.cos() * a.cos(), e.cos() * a.sin(), e.sin()], dim=-1)


def look_at_c2w(position: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """OpenGL camera-to-world ``[N, 4, 4]`` looking from ``position [N, 3]`` at ``target`` (origin), z up."""
    position = position.to(torch.float64)
    target = torch.zeros_like(position) if target is None else target.to(position).expand_as(position)
    forward = torch.nn.functional.normalize(target - position, dim=-1)
    world_up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand_as(forward)
    right = torch.linalg.cross(forward, world_up, dim=-1)
    # Straight above/below the target the z-up frame is degenerate: pick +y as "right" there.
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-9
    right = torch.where(degenerate, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), right)
    right = torch.nn.functional.normalize(right, dim=-1)
    up = torch.linalg.cross(right, forward, dim=-1)
    c2w = torch.eye(4, dtype=torch.float64).repeat(position.shape[0], 1, 1)
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, up, -forward, position
    return c2w


FOV_RANGE = (1.0, 160.0)  # a pinhole camera: 180 deg has focal length 0 (every ray parallel to the image plane)


def _check_lens(fov_deg, radius) -> None:
    check_number(fov_deg, "fov_deg", *FOV_RANGE, why=f"vertical field of view in degrees; SV3D's is {FOV_DEG:.1f}")
    check_number(radius, "radius", ("open", 0.0), 1000.0, why=f"orbit distance; SV3D's is {CAMERA_DISTANCE}")


def focal_from_fov(fov_deg: float, size: int) -> float:
    """Focal length in pixels for a vertical field of view over ``size`` pixels."""
    return 0.5 * size / math.tan(math.radians(fov_deg) / 2.0)


def pixel_rays(c2w: torch.Tensor, fov_deg: float, height: int, width: int, rows: torch.Tensor, cols: torch.Tensor,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Rays through the pixel centres ``rows [B, h]`` x ``cols [B, w]`` of cameras ``c2w [B, 4, 4]`` (convention
    of the module docstring; computed in float64). Returns origins and unit directions ``[B, h, w, 3]``."""
    f = focal_from_fov(fov_deg, height)
    v = rows.to(torch.float64)[:, :, None].expand(-1, -1, cols.shape[1])
    u = cols.to(torch.float64)[:, None, :].expand(-1, rows.shape[1], -1)
    d_cam = torch.stack([(u + 0.5 - width / 2) / f, -(v + 0.5 - height / 2) / f, -torch.ones_like(u)], -1)
    c2w = c2w.to(torch.float64)
    dirs = torch.nn.functional.normalize(torch.einsum("bij,bhwj->bhwi", c2w[:, :3, :3], d_cam), dim=-1)
    origins = c2w[:, None, None, :3, 3].expand_as(dirs)
    return origins.to(dtype), dirs.to(dtype)


@dataclass(frozen=True)
class Cameras:
    """A set of pinhole cameras in the pack's convention (see module docstring).

    Attributes:
        c2w: ``[N, 4, 4]`` float64 OpenGL camera-to-world matrices.
        azimuth_deg, elevation_deg: ``[N]`` float64 orbit angles (azimuth relative to the input view).
        fov_deg: vertical field of view; radius: orbit distance.
    """

    c2w: torch.Tensor
    azimuth_deg: torch.Tensor
    elevation_deg: torch.Tensor
    fov_deg: float = FOV_DEG
    radius: float = CAMERA_DISTANCE

    @classmethod
    def orbit(cls, azimuth_deg, elevation_deg, radius: float = CAMERA_DISTANCE, fov_deg: float = FOV_DEG) -> "Cameras":
        az = torch.as_tensor(azimuth_deg, dtype=torch.float64).reshape(-1)
        el = torch.as_tensor(elevation_deg, dtype=torch.float64).reshape(-1)
        az, el = torch.broadcast_tensors(az, el)
        _check_lens(fov_deg, radius)
        if not bool(torch.isfinite(az).all() and torch.isfinite(el).all()):
            raise ValueError(f"camera angles must be finite numbers; got azimuths {az.tolist()}, elevations "
                             f"{el.tolist()}")
        c2w = look_at_c2w(orbit_position(az, el, radius))
        return cls(c2w=c2w, azimuth_deg=az.clone(), elevation_deg=el.clone(), fov_deg=fov_deg, radius=radius)

    def __post_init__(self) -> None:
        _check_lens(self.fov_deg, self.radius)
        if not (torch.is_tensor(self.c2w) and self.c2w.ndim == 3 and self.c2w.shape[1:] == (4, 4)):
            raise ValueError(f"c2w must be a [N, 4, 4] tensor of camera-to-world matrices, got "
                             f"{tuple(self.c2w.shape) if torch.is_tensor(self.c2w) else type(self.c2w).__name__}")
        if not bool(torch.isfinite(self.c2w).all()):
            raise ValueError("camera matrices (c2w) hold NaN or infinite values; check the angles they were made "
                             "from")

    def __len__(self) -> int:
        return self.c2w.shape[0]

    def __getitem__(self, index) -> "Cameras":
        idx = torch.as_tensor(index).reshape(-1)
        return Cameras(self.c2w[idx], self.azimuth_deg[idx], self.elevation_deg[idx], self.fov_deg, self.radius)

    def focal(self, size: int) -> float:
        return focal_from_fov(self.fov_deg, size)

    def rays(self, height: int, width: int | None = None, dtype: torch.dtype = torch.float32):
        """Ray origins and unit directions ``[N, H, W, 3]`` for every pixel centre."""
        width = height if width is None else width
        n = len(self)
        return pixel_rays(self.c2w, self.fov_deg, height, width, torch.arange(height).expand(n, height),
                          torch.arange(width).expand(n, width), dtype)

    def to_transforms_json(self, width: int, height: int | None = None, file_paths=None, times=None) -> dict:
        """nerfstudio / instant-ngp ``transforms.json`` dict (OpenGL c2w, pixel intrinsics, optional times)."""
        height = width if height is None else height
        f = self.focal(height)
        frames = []
        for i in range(len(self)):
            frame = {"transform_matrix": self.c2w[i].tolist()}
            frame["file_path"] = file_paths[i] if file_paths is not None else f"images/{i:05d}.png"
            if times is not None:
                frame["time"] = float(times[i])
            frame["azimuth_deg"] = float(self.azimuth_deg[i])
            frame["elevation_deg"] = float(self.elevation_deg[i])
            frames.append(frame)
        return {
            "camera_model": "OPENCV",
            "fl_x": f, "fl_y": f, "cx": width / 2.0, "cy": height / 2.0, "w": int(width), "h": int(height),
            "camera_angle_y": math.radians(self.fov_deg),
            "convention": "OpenGL camera (looks along -z, +y up), world z-up, orbit radius "
                          f"{self.radius}, azimuth relative to the input view",
            "frames": frames,
        }


# ---------------------------------------------------------------------------------------------------
# Conditioning angles (what the diffusion models are fed; radians, float64 numpy, per view).
# The official scripts compute these in float64 numpy; the arithmetic below follows their order of
# operations so that the float32 cast inside the embedding gives identical values.

def _as_list(values, n: int, name: str, what: str) -> list[float]:
    """Scalar -> n copies; sequence -> list of floats, checked to have length n."""
    if isinstance(values, (int, float, np.floating, np.integer)):
        return [check_angle(float(values), name)] * n
    try:
        out = [float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1)]
    except (TypeError, ValueError):
        raise ValueError(f"{name}={values!r} must be a number or a list of numbers (degrees)") from None
    out = [check_angle(v, f"{name}[{i}]") for i, v in enumerate(out)]
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} values; give 1 value or {n} values ({what})")
    return out


def sv3d_conditioning_angles(elevations_deg=KINDS["sv3d_p"].default_elevation_deg, azimuths_deg=None,
                             n_views: int = SV3D_N_VIEWS):
    """SV3D orbit conditioning in raw model order (input view last), as ``simple_video_sample_4d.py``.

    Args:
        elevations_deg: scalar or ``n_views`` elevations (deg) of the raw orbit.
        azimuths_deg: ``n_views`` azimuths (deg) of the raw orbit; default ``linspace(0, 360, n+1)[1:] % 360``.
    Returns:
        ``(polars_rad [n], azimuths_rad [n])`` float64: polar = deg2rad(90 - elev) (absolute),
        azimuth = deg2rad((a - a[-1]) % 360) (relative to the last, input, view).
    """
    elevs = _as_list(elevations_deg, n_views, "elevations_deg", "raw SV3D orbit order, input view last")
    if azimuths_deg is None:
        azimuths_deg = sv3d_orbit_azimuths_deg(n_views)
    azims = _as_list(azimuths_deg, n_views, "azimuths_deg", "raw SV3D orbit order, input view last")
    polars_rad = np.array([np.deg2rad(90 - e) for e in elevs])
    azimuths_rad = np.array([np.deg2rad((a - azims[-1]) % 360) for a in azims])
    return polars_rad, azimuths_rad


def sv4d_conditioning_angles(elevations_deg=KINDS["sv4d"].default_elevation_deg, azimuths_deg=None,
                             official: bool = True):
    """Per-view (8 views) SV4D camera conditioning from the SV3D orbit arguments.

    ``elevations_deg`` / ``azimuths_deg`` are the official CLI arguments (scalar or 21 values in raw SV3D
    orbit order). SV4D uses the absolute polar ``90 - elev`` and azimuths relative to the input view.
    ``official=True`` reproduces the script literally: both angles are read at raw orbit index
    ``SV4D_ORBIT_VIEWS[j]`` although the reference image of view j is raw frame ``sub[j] - 1``; the
    azimuth subtraction compensates for a uniform orbit, the polar does not (off by one orbit step for
    per-view elevation lists with sv3d_p). ``official=False`` reads both at the image's own index.

    Returns:
        ``(polars_rad [8], azimuths_rad [8])`` float64 numpy.
    """
    polars_rad, azimuths_rad = sv3d_conditioning_angles(elevations_deg, azimuths_deg)
    sub = np.array(SV4D_ORBIT_VIEWS[1:])
    if official:
        polars = polars_rad[sub]
        azims = (azimuths_rad[sub] - azimuths_rad[0]) % (math.pi * 2)
    else:
        polars = polars_rad[sub - 1]
        azims = (azimuths_rad[sub - 1] - azimuths_rad[-1]) % (math.pi * 2)
    return polars, azims


def sv4d2_conditioning_angles(model_kind: str = "sv4d2", elevations_deg=None, azimuths_deg=None):
    """Per-view SV4D 2.0 conditioning as ``simple_video_sample_4d2.py`` (relative polar and azimuth).

    Args:
        elevations_deg: scalar or V+1 elevations (deg), index 0 = input view; default the kind's (0: the input's).
        azimuths_deg: V+1 azimuths (deg), index 0 = input view; default ``KINDS[model_kind].azimuths_deg``.
    Returns:
        ``(polars_rad [V], azimuths_rad [V])`` float64: polar ``(p_v - p_0 + pi/2) mod 2pi``,
        azimuth ``(a_v - a_0) mod 2pi`` (computed as the script does).
    """
    spec = get_kind(model_kind, ("sv4d2", "sv4d2_8views"))
    default, n_views = spec.azimuths_deg, len(spec.azimuths_deg)
    elev = spec.default_elevation_deg if elevations_deg is None else elevations_deg
    elevs = _as_list(elev, n_views, "elevations_deg", "input view first")
    azims = _as_list(default if azimuths_deg is None else azimuths_deg, n_views, "azimuths_deg", "input view first")
    polars_rad = np.array([np.deg2rad(90 - e) for e in elevs])
    azimuths_rad = np.array([np.deg2rad((a - azims[-1]) % 360) for a in azims])
    polars = (polars_rad[1:] - polars_rad[0] + math.pi / 2) % (math.pi * 2)
    azims_out = (azimuths_rad[1:] - azimuths_rad[0]) % (math.pi * 2)
    return polars, azims_out


def conditioning_angles(model_kind: str, elevations_deg=None, azimuths_deg=None, official: bool = True):
    """Per-view ``(polars_rad [V], azimuths_rad [V])`` for a 4D model with the official defaults.

    ``elevations_deg=None`` means the script default (10 deg absolute for sv4d, 0 deg relative for sv4d2*).
    """
    spec = get_kind(model_kind, FOUR_D_KINDS)
    elev = spec.default_elevation_deg if elevations_deg is None else elevations_deg
    if spec.needs_reference_orbit:  # sv4d: the arguments describe the SV3D orbit
        return sv4d_conditioning_angles(elev, azimuths_deg, official=official)
    return sv4d2_conditioning_angles(model_kind, elev, azimuths_deg)


def tile_views(per_view, n_frames: int) -> np.ndarray:
    """Repeat per-view values for ``n_frames`` frames in the (t, v) latent order (v fastest): ``[T*V]``."""
    if n_frames < 1:
        raise ValueError(f"n_frames={n_frames} must be >= 1")
    return np.asarray(per_view)[None].repeat(n_frames, 0).flatten()


def matrix_cameras(model_kind: str, elevations_deg=None, azimuths_deg=None) -> Cameras:
    """Cameras of the V + 1 image-matrix columns (column 0 = input view, azimuths relative to it).

    sv4d: ``elevations_deg`` / ``azimuths_deg`` are the official SV3D-orbit arguments (1 or 21 values, raw
    orbit order, input view last); column j is raw orbit frame ``SV4D_ORBIT_VIEWS[j] - 1`` (input = frame 20).
    sv4d2*: V + 1 values, input view first (elevations relative to the input, default 0).
    """
    spec = get_kind(model_kind, FOUR_D_KINDS)
    elev_in = spec.default_elevation_deg if elevations_deg is None else elevations_deg
    if spec.needs_reference_orbit:
        what = "raw SV3D orbit order, input view last"
        elev = _as_list(elev_in, SV3D_N_VIEWS, "elevations_deg", what)
        az = _as_list(sv3d_orbit_azimuths_deg() if azimuths_deg is None else azimuths_deg, SV3D_N_VIEWS,
                      "azimuths_deg", what)
        raw = [(k - 1) % SV3D_N_VIEWS for k in SV4D_ORBIT_VIEWS]
        return Cameras.orbit([(az[i] - az[-1]) % 360.0 for i in raw], [elev[i] for i in raw])
    n = len(spec.azimuths_deg)
    elev = _as_list(elev_in, n, "elevations_deg", "input view first")
    az = _as_list(spec.azimuths_deg if azimuths_deg is None else azimuths_deg, n, "azimuths_deg", "input view first")
    return Cameras.orbit([(a - az[0]) % 360.0 for a in az], elev)


def frame_times(n_frames: int) -> torch.Tensor:
    """``t = f / (F - 1)`` per frame (0 for a single frame), float64 ``[F]``."""
    return torch.arange(n_frames, dtype=torch.float64) / max(n_frames - 1, 1)

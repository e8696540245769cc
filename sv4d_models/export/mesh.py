"""Per-frame meshes from any density field: marching cubes on a grid over the AABB, vertex colours from a colour field.

The field is reached only through two callables, so this works for the dynamic NeRF, the analytic
:class:`~sv4d_models.synthetic.SyntheticScene` or anything else:

* ``density_fn(x [N, 3], t) -> [N]`` (world z-up coordinates, high inside the object),
* ``color_fn(x [N, 3], t) -> [N, 3]`` in [0, 1].

Marching cubes uses PyMCubes (``import mcubes``) and falls back to scikit-image; both give outward-facing
triangles here. The grid is padded with one layer of "outside" so meshes cut by the AABB are closed, and vertices
are clamped back into the box. Optional decimation (off by default) uses ``fast_simplification`` and recolours the
new vertices with ``color_fn``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from ..config import check_known_keys
from ..images import to_uint8
from ..validate import RANGES, check_fields

DensityFn = Callable[[torch.Tensor, float], torch.Tensor]
ColorFn = Callable[[torch.Tensor, float], torch.Tensor]
WarpFn = Callable[[torch.Tensor, float], torch.Tensor]  # backward warp: world point at t -> canonical point
BACKENDS = ("auto", "mcubes", "skimage")


@dataclass(frozen=True)
class MeshConfig:
    """Settings of :func:`extract_mesh` / :func:`extract_mesh_sequence`."""

    resolution: int = 128  # grid points per axis (GPU 256, CPU previews 64-128)
    threshold: float = 25.0  # iso-density; SV3D's reconstruction exported at 25-50 (use scene.iso_density for GT)
    aabb_half_size: float = 0.7  # grid covers [-h, h]^3 in world units (camera radius 2.0)
    chunk: int = 2 ** 18  # points per density_fn / color_fn call
    backend: str = "auto"  # auto (mcubes, then scikit-image) | mcubes | skimage
    decimate_faces: int = 0  # target face count per frame; 0 = no decimation (default)
    close_boundary: bool = True  # pad the grid with "outside" so meshes cut by the AABB stay closed

    def __post_init__(self) -> None:
        check_fields(self, MESH_BOUNDS, "mesh")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r} is not supported; use one of {BACKENDS}")

    @classmethod
    def from_dict(cls, d: dict) -> "MeshConfig":
        check_known_keys(cls, d)
        return cls(**d)


MESH_BOUNDS = {"resolution": (2, RANGES["mesh_resolution"][1], RANGES["mesh_resolution"][2]),
               "threshold": (None, None),  # any finite density (fields may use negative levels)
               "aabb_half_size": (("open", 0.0), 100.0, "half the box side in world units (default 0.7; camera at 2)"),
               "chunk": (1, 2**26, "points per density call; memory grows with it"),
               "decimate_faces": (0, 100_000_000, "faces per frame; 0 = no decimation")}


@dataclass
class MeshSequence:
    """One triangle mesh per frame, world z-up coordinates.

    Attributes:
        vertices: per frame ``[V_f, 3]`` float32; faces: per frame ``[F_f, 3]`` int32 (counter-clockwise = outward);
        colors: per frame ``[V_f, 3]`` uint8 sRGB or None; times: ``[F]`` frame times in [0, 1].
    """

    vertices: list[np.ndarray]
    faces: list[np.ndarray]
    colors: list[np.ndarray] | None
    times: np.ndarray

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.float64).reshape(-1)
        if not np.isfinite(self.times).all():
            raise ValueError(f"times {self.times.tolist()} must be finite (frame times in [0, 1])")
        n = len(self.vertices)
        if n == 0 or len(self.faces) != n or len(self.times) != n or (self.colors is not None and len(self.colors) != n):
            raise ValueError(
                f"MeshSequence needs >= 1 frame and equal lengths: vertices {n}, faces {len(self.faces)}, "
                f"times {len(self.times)}, colors {None if self.colors is None else len(self.colors)}"
            )
        for i in range(n):
            v, f = self.vertices[i], self.faces[i]
            if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
                raise ValueError(f"frame {i}: vertices {v.shape} must be [V, 3] and faces {f.shape} [F, 3]")
            if not np.isfinite(v).all():
                raise ValueError(f"frame {i}: {int((~np.isfinite(v)).sum())} vertex coordinates are NaN or infinite; "
                                 "a mesh file cannot hold them (nothing was written)")
            if f.size and (f.min() < 0 or f.max() >= len(v)):
                raise ValueError(f"frame {i}: face indices must lie in [0, {len(v)}), got [{f.min()}, {f.max()}]")
            if self.colors is not None and self.colors[i].shape != (len(v), 3):
                raise ValueError(f"frame {i}: colors {self.colors[i].shape} must be [{len(v)}, 3] uint8")

    @property
    def n_frames(self) -> int:
        return len(self.vertices)

    def same_topology(self) -> bool:
        """True when every frame has the same vertex count and identical faces (morph targets possible)."""
        return all(len(v) == len(self.vertices[0]) for v in self.vertices) and all(
            np.array_equal(f, self.faces[0]) for f in self.faces
        )


def _chunked(fn, x: torch.Tensor, t: float, chunk: int) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(x[i:i + chunk], t).detach().float().cpu() for i in range(0, len(x), chunk)])


def density_grid(density_fn: DensityFn, t: float, cfg: MeshConfig, device: torch.device | str = "cpu") -> np.ndarray:
    """Density sampled on the ``resolution^3`` grid over the AABB: ``[R, R, R]`` float32, index ``[i, j, k]`` =
    point ``(x_i, y_j, z_k)``."""
    lin = torch.linspace(-cfg.aabb_half_size, cfg.aabb_half_size, cfg.resolution, device=device)
    pts = torch.stack(torch.meshgrid(lin, lin, lin, indexing="ij"), dim=-1).reshape(-1, 3)
    dens = _chunked(density_fn, pts, t, cfg.chunk).reshape(-1)
    if dens.numel() != pts.shape[0]:
        raise ValueError(f"density_fn returned {dens.numel()} values for {pts.shape[0]} points; it must return [N]")
    return dens.reshape(cfg.resolution, cfg.resolution, cfg.resolution).numpy()


def marching_cubes(grid: np.ndarray, threshold: float, backend: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Iso-surface of ``grid`` (high inside) in index coordinates: vertices ``[V, 3]``, outward faces ``[F, 3]``."""
    if not grid.min() <= threshold <= grid.max():
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.int32)
    if backend in ("auto", "mcubes"):
        try:
            import mcubes
        except ImportError:
            if backend == "mcubes":
                raise ImportError("backend='mcubes' needs PyMCubes: pip install PyMCubes") from None
        else:
            verts, faces = mcubes.marching_cubes(grid.astype(np.float64), float(threshold))
            return verts.astype(np.float32), faces.astype(np.int32)
    try:
        from skimage import measure
    except ImportError:
        raise ImportError("marching cubes needs PyMCubes or scikit-image: pip install PyMCubes") from None
    verts, faces, _, _ = measure.marching_cubes(grid, level=float(threshold))
    return verts.astype(np.float32), np.ascontiguousarray(faces[:, ::-1]).astype(np.int32)  # outward winding


def vertex_colors(color_fn: ColorFn, vertices: np.ndarray, t: float, chunk: int = 2 ** 18,
                  device: torch.device | str = "cpu") -> np.ndarray:
    """``color_fn`` at the vertices, as ``[V, 3]`` uint8."""
    if len(vertices) == 0:
        return np.zeros((0, 3), np.uint8)
    col = _chunked(color_fn, torch.from_numpy(vertices).to(device), t, chunk)
    return to_uint8(col.numpy())


def decimate(vertices: np.ndarray, faces: np.ndarray, target_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric decimation to about ``target_faces`` faces (needs ``pip install fast-simplification``)."""
    if len(faces) <= target_faces:
        return vertices, faces
    try:
        import fast_simplification
    except ImportError:
        raise ImportError("decimate_faces > 0 needs fast-simplification: pip install fast-simplification") from None
    verts, new_faces = fast_simplification.simplify(vertices, faces, target_reduction=1.0 - target_faces / len(faces))
    return verts.astype(np.float32), new_faces.astype(np.int32)


def extract_mesh(density_fn: DensityFn, t: float, color_fn: ColorFn | None = None, cfg: MeshConfig = MeshConfig(),
                 device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Mesh of the ``cfg.threshold`` iso-surface at time ``t``: vertices ``[V, 3]`` float32 (world),
    faces ``[F, 3]`` int32, colours ``[V, 3]`` uint8 (None without ``color_fn``)."""
    grid = density_grid(density_fn, t, cfg, device)
    if cfg.close_boundary:
        low = min(float(grid.min()), cfg.threshold) - 1.0
        grid = np.pad(grid, 1, constant_values=low)
    verts, faces = marching_cubes(grid, cfg.threshold, cfg.backend)
    if cfg.close_boundary:
        verts -= 1.0
    h = cfg.aabb_half_size
    verts = np.clip(verts * (2.0 * h / (cfg.resolution - 1)) - h, -h, h).astype(np.float32)
    if cfg.decimate_faces:
        verts, faces = decimate(verts, faces, cfg.decimate_faces)
    colors = None if color_fn is None else vertex_colors(color_fn, verts, t, cfg.chunk, device)
    return verts, faces, colors


def extract_mesh_sequence(density_fn: DensityFn, color_fn: ColorFn | None, times: Sequence[float],
                          cfg: MeshConfig = MeshConfig(), device: torch.device | str = "cpu",
                          callback: Callable[[int, int], None] | None = None) -> MeshSequence:
    """One mesh per time in ``times`` (frame f of F normally at ``t = f / (F - 1)``).

    ``callback(done, total)`` is called after each frame (progress bars / cancellation by raising).
    """
    times = [float(t) for t in times]
    if not times:
        raise ValueError("times is empty; pass at least one frame time, e.g. [0.0]")
    verts, faces, colors = [], [], []
    for i, t in enumerate(times):
        v, f, c = extract_mesh(density_fn, t, color_fn, cfg, device)
        verts.append(v)
        faces.append(f)
        colors.append(c)
        if callback is not None:
            callback(i + 1, len(times))
    return MeshSequence(verts, faces, None if color_fn is None else colors, np.asarray(times))


def invert_backward_warp(warp_fn: WarpFn, canonical: torch.Tensor, t: float, iters: int = 10,
                         chunk: int = 2 ** 18) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions at time ``t`` of canonical points ``[N, 3]`` under a backward warp ``warp_fn(x, t) -> x_c``.

    Fixed-point iteration ``x <- x - (warp(x, t) - v)`` from ``x = v`` (nerf4d.md section 5.2); it converges
    when the deformation is a contraction-like small offset field. Returns ``(x [N, 3], residual [N])`` with
    ``residual = |warp(x, t) - v|`` so callers can flag vertices that did not converge.
    """
    outs, res = [], []
    with torch.no_grad():
        for i in range(0, len(canonical), chunk):
            v = canonical[i:i + chunk]
            x = v.clone()
            for _ in range(iters):
                x = x - (warp_fn(x, t) - v)
            outs.append(x)
            res.append((warp_fn(x, t) - v).norm(dim=-1))
    return torch.cat(outs), torch.cat(res)


def morph_sequence(warp_fn: WarpFn, times: Sequence[float], vertices: np.ndarray, faces: np.ndarray,
                   colors: np.ndarray | None = None, iters: int = 10,
                   device: torch.device | str = "cpu") -> tuple[MeshSequence, np.ndarray]:
    """Fixed-topology sequence (for ``write_glb(mode="morph")``) by moving one canonical mesh
    (``vertices [V, 3]`` at the canonical time, ``faces``, ``colors``) to every time through ``warp_fn``.

    Returns the sequence and the per-frame maximum inversion residual ``[F]`` (world units). Topology changes and
    colour changes over time cannot be represented; use per-frame marching cubes + ``mode="switch"`` for those.
    """
    canonical = torch.from_numpy(np.asarray(vertices, dtype=np.float32)).to(device)
    verts, worst = [], []
    for t in times:
        x, residual = invert_backward_warp(warp_fn, canonical, float(t), iters)
        verts.append(x.float().cpu().numpy())
        worst.append(float(residual.max()) if len(residual) else 0.0)
    n = len(verts)
    seq = MeshSequence(verts, [faces] * n, None if colors is None else [colors] * n, np.asarray(times, float))
    return seq, np.asarray(worst)

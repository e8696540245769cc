"""Dynamic radiance field: density / colour MLPs over one of two space-time encodings.

* ``encoding="hash"``: canonical hash grid + time-conditioned deformation MLP (D-NeRF style backward warp);
* ``encoding="kplanes"``: factorised space-time planes (``kplanes.py``), no warp: time is read by the planes.

Public queries (world coordinates, z-up, AABB ``[-h, h]^3``; used by the renderer and by mesh export):

* ``model.density(x [N, 3], t) -> sigma [N]`` (0 outside the AABB),
* ``model.color(x [N, 3], t) -> rgb [N, 3]`` in [0, 1] (view independent),
* ``model.query(x, t, normals=None|"analytic"|"finite_difference", create_graph=False) -> dict``,
* ``model.warp(x, t) -> x_canonical [N, 3]``.

``t`` is a float or a tensor ``[N]`` in [0, 1] (t = 0 is the canonical frame 0). Density: softplus (threestudio /
SV3D fork) or trunc_exp (Instant-NGP) of ``mlp(enc) + blob`` with the Magic3D blob ``scale * (1 - |x| / std)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..config import check_all, known_fields
from ..validate import check_fields
import torch.nn.functional as F
from torch import nn

from .deformation import Deformation, DeformationConfig, init_linear
from .hashgrid import HashGrid, HashGridConfig
from .kplanes import PLANE_REGULARISERS, KPlanes, KPlanesConfig

ENCODINGS = ("hash", "kplanes")


@dataclass(frozen=True)
class FieldConfig:
    encoding: str = "hash"  # "hash" (hash grid + deformation MLP) | "kplanes" (space-time planes)
    grid: HashGridConfig = field(default_factory=HashGridConfig)  # canonical hash grid (tcnn layout)
    kplanes: KPlanesConfig = field(default_factory=KPlanesConfig)  # used when encoding == "kplanes"
    deformation: DeformationConfig = field(default_factory=DeformationConfig)
    hidden: int = 64  # width of the density and colour MLPs (1 hidden layer each, bias-free like threestudio)
    aabb_half_size: float = 0.7  # scene box [-h, h]^3 in world units (camera distance 2.0)
    density_activation: str = "softplus"  # "softplus" | "trunc_exp"
    density_blob: str = "magic3d"  # "magic3d" (scale*(1-|x|/std)) | "none"
    blob_scale: float = 10.0
    blob_std: float = 0.5
    dynamic: bool = True  # False: no deformation network / space-time planes (static NeRF)
    motion: str = "warp"  # "warp" (deformation network, any encoding) | "planes" (kplanes' space-time planes)
    backend: str = "auto"  # hash grid backend: "auto" | "torch" | "tcnn"

    def __post_init__(self) -> None:
        check_fields(self, {"hidden": (1, 4096, "MLP width; memory grows with it"),
                            "aabb_half_size": (("open", 0.0), 100.0, "half the scene box side (camera at 2.0)"),
                            "blob_scale": (0.0, 1e4, "initial density bump"),
                            "blob_std": (("open", 0.0), 100.0, "width of the initial density bump")}, "field")
        check_all([(self.encoding in ENCODINGS, f"field.encoding={self.encoding!r}; use 'hash' or 'kplanes'"),
                   (self.motion in ("warp", "planes"), f"field.motion={self.motion!r}; use 'warp' or 'planes'"),
                   (self.motion == "warp" or self.encoding == "kplanes",
                    f"field.motion='planes' needs field.encoding='kplanes' (got {self.encoding!r}); use motion='warp'"),
                   (isinstance(self.kplanes, KPlanesConfig),
                    f"field.kplanes must be a KPlanesConfig, not {self.kplanes!r}"),
                   (isinstance(self.grid, HashGridConfig), f"field.grid must be a HashGridConfig, not {self.grid!r}"),
                   (isinstance(self.deformation, DeformationConfig),
                    f"field.deformation must be a DeformationConfig, not {self.deformation!r}"),
                   (self.density_activation in ("softplus", "trunc_exp"),
                    f"density_activation={self.density_activation!r}; use 'softplus' or 'trunc_exp'"),
                   (self.density_blob in ("magic3d", "none"),
                    f"density_blob={self.density_blob!r}; use 'magic3d' or 'none'"),
                   (self.backend in ("auto", "torch", "tcnn"), f"backend={self.backend!r}; use auto, torch or tcnn")])

    @classmethod
    def from_dict(cls, d: dict) -> "FieldConfig":
        return cls(**known_fields(cls, d, {"grid": HashGridConfig, "kplanes": KPlanesConfig,
                                           "deformation": DeformationConfig}))


class _TruncExp(torch.autograd.Function):
    """exp(x) with the gradient clamped at x = 15 (torch-ngp / threestudio ``trunc_exp``)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(torch.clamp(x, max=15.0))


class DynamicNeRF(nn.Module):
    """Hash grid + deformation, or K-Planes. See the module docstring for the query API."""

    def __init__(self, cfg: FieldConfig = FieldConfig(), generator: torch.Generator | None = None,
                 n_frames: int | None = None):
        """``n_frames``: frames of the fitted matrix (sets the space-time planes' rows when their
        ``time_resolution`` is 0)."""
        super().__init__()
        self.cfg = cfg
        time_planes = cfg.dynamic and cfg.motion == "planes"
        planes = cfg.kplanes.for_frames(n_frames) if time_planes else cfg.kplanes
        self.encoding = KPlanes(planes, time_planes, generator) if cfg.encoding == "kplanes" else \
            HashGrid(cfg.grid, backend=cfg.backend, generator=generator)
        n_enc = self.encoding.n_output_dims
        self.density_mlp = nn.Sequential(nn.Linear(n_enc, cfg.hidden, bias=False), nn.ReLU(),
                                         nn.Linear(cfg.hidden, 1, bias=False))
        self.color_mlp = nn.Sequential(nn.Linear(n_enc, cfg.hidden, bias=False), nn.ReLU(),
                                       nn.Linear(cfg.hidden, 3, bias=False))
        init_linear([self.density_mlp[0], self.density_mlp[2], self.color_mlp[0], self.color_mlp[2]], generator)
        self.deformation = Deformation(cfg.deformation, generator, n_frames) if cfg.dynamic and not time_planes \
            else None
        self.use_deformation = True  # the trainer switches it off (deformation / time planes) in the static stage

    def dynamic_parameters(self) -> list:
        """What moves the field in time (the deformation MLP or the space-time planes): its own Adam group."""
        if self.deformation is not None:
            return list(self.deformation.parameters())
        return list(self.encoding.time.parameters()) if isinstance(self.encoding, KPlanes) and \
            self.encoding.time is not None else []

    def regularisers(self, names=PLANE_REGULARISERS) -> dict:
        """Parameter-space regularisers of every K-Planes module (the encoding, the deformation's planes), summed
        over modules; only those in ``names`` are computed (the fit asks for the ones with a weight); {} without
        planes."""
        per_module = [m.regularisers(names) for m in self.modules() if isinstance(m, KPlanes)]
        return {n: sum(r[n] for r in per_module) for n in names} if per_module else {}

    # ------------------------------------------------------------------ coordinates
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        h = self.cfg.aabb_half_size
        return (x + h) / (2 * h)

    def _t(self, t, n: int, ref: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=ref.dtype, device=ref.device).reshape(-1)
        return t.expand(n) if t.numel() == 1 else t

    def warp(self, x: torch.Tensor, t) -> torch.Tensor:
        """Observation-space ``x [N, 3]`` at time ``t`` -> canonical position ``[N, 3]`` (world units)."""
        if self.deformation is None or not self.use_deformation:
            return x
        t = self._t(t, x.shape[0], x)
        if self.deformation.cfg.zero_at_t0 and not bool((t != 0).any()):
            return x  # canonical frame: skip the network (static stage, frame-0 queries)
        dx = self.deformation(self.normalize(x), t)
        return x + dx * (2 * self.cfg.aabb_half_size)

    # ------------------------------------------------------------------ field
    def _features(self, x: torch.Tensor, t, create_graph: bool = False):
        """Returns (encoding [N, L*F], canonical x [N, 3], inside-box mask [N])."""
        xc = self.warp(x, t)
        xh = self.normalize(xc)
        inside = ((xh >= 0) & (xh <= 1)).all(dim=-1)
        if isinstance(self.encoding, KPlanes):
            tt = self._t(t, x.shape[0], x) if self.use_deformation and self.encoding.time is not None else None
            return self.encoding(xh.clamp(0.0, 1.0), tt), xc, inside
        enc = self.encoding(xh.clamp(0.0, 1.0), create_graph=create_graph)
        return enc, xc, inside

    def _sigma(self, enc: torch.Tensor, xc: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        raw = self.density_mlp(enc)[:, 0]
        if self.cfg.density_blob == "magic3d":
            raw = raw + self.cfg.blob_scale * (1 - xc.norm(dim=-1) / self.cfg.blob_std)
        sigma = F.softplus(raw) if self.cfg.density_activation == "softplus" else _TruncExp.apply(raw)
        return sigma * inside.to(sigma.dtype)

    def density(self, x: torch.Tensor, t=0.0) -> torch.Tensor:
        """Volume density ``sigma [N]`` at world points ``x [N, 3]`` and time ``t`` (float or ``[N]``)."""
        enc, xc, inside = self._features(x, t)
        return self._sigma(enc, xc, inside)

    def color(self, x: torch.Tensor, t=0.0) -> torch.Tensor:
        """View-independent colour ``rgb [N, 3]`` in [0, 1]."""
        enc, _, _ = self._features(x, t)
        return torch.sigmoid(self.color_mlp(enc))

    def query(self, x: torch.Tensor, t=0.0, normals: str | None = None, create_graph: bool = False,
              fd_eps: float = 0.01) -> dict:
        """Density, colour and optionally normals ``-grad sigma / |grad sigma|`` (world frame) at ``x [N, 3]``.

        ``create_graph=True`` keeps the analytic normals differentiable (needed when a loss uses them).
        """
        if normals not in (None, "analytic", "finite_difference"):
            raise ValueError(f"normals={normals!r}; use None, 'analytic' or 'finite_difference'")
        if normals == "analytic":
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True) if not x.requires_grad else x
                enc, xc, inside = self._features(xg, t, create_graph=create_graph)
                sigma = self._sigma(enc, xc, inside)
                grad = torch.autograd.grad(sigma.sum(), xg, create_graph=create_graph)[0]
        else:
            enc, xc, inside = self._features(x, t)
            sigma = self._sigma(enc, xc, inside)
        out = {"sigma": sigma, "rgb": torch.sigmoid(self.color_mlp(enc))}
        if normals == "finite_difference":
            t_full = self._t(t, x.shape[0], x)
            offs = torch.eye(3, dtype=x.dtype, device=x.device) * fd_eps
            xs = (x[None] + offs[:, None]).reshape(-1, 3)
            sig_d = self.density(xs, t_full.repeat(3)).view(3, -1).T  # [N, 3]
            grad = (sig_d - sigma[:, None]) / fd_eps
        if normals is not None:
            out["normal"] = -F.normalize(grad, dim=-1, eps=1e-8)
        return out

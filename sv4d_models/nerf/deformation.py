"""Time-conditioned deformation field (D-NeRF style backward warp) with progressive time frequencies.

``x_canonical = x + dx(PE(x_hat), PE_window(t))`` where ``x_hat`` is the AABB-normalised position in [0, 1] and the
time encoding uses the Nerfies / threestudio cosine window ``w_j = (1 - cos(pi * clamp(alpha - j, 0, 1))) / 2``
(``alpha`` grows from ~1 to ``n_freq_t`` during the dynamic stage). The last layer is zero-initialised so the
dynamic stage starts from the static result; ``zero_at_t0`` additionally forces ``dx = 0`` at ``t = 0`` so frame 0
is exactly the canonical frame (nerf4d.md section 2.5).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..config import known_fields
from ..validate import check_fields
from torch import nn

from .kplanes import KPlanes, KPlanesConfig


def _deformation_planes() -> KPlanesConfig:
    return KPlanesConfig(resolution=32, n_scales=2, time_resolution=0, features=8)


@dataclass(frozen=True)
class DeformationConfig:
    # input of the MLP: "frequency" (sin/cos of x and windowed t, D-NeRF) | "planes" (K-Planes features of (x, t),
    # the HexPlane deformation of 4D Gaussian Splatting: sharp in space, piecewise linear in t)
    encoding: str = "frequency"
    planes: KPlanesConfig = dataclasses.field(default_factory=_deformation_planes)
    n_freq_x: int = 6  # sin/cos frequency bands of the position encoding
    n_freq_t: int = 6  # frequency bands of the (windowed) time encoding
    hidden: int = 128  # width of the deformation MLP (CPU preset: 64)
    n_hidden_layers: int = 4  # hidden layers; input skip at the middle layer when >= 4
    zero_at_t0: bool = True  # hard dx = 0 at t = 0 (canonical = frame 0)
    # dx = output_scale * last_layer(h); 0 = 1 / hidden. The last layer is zero-initialised, so Adam's first steps
    # move each of its weights by ~lr whatever the gradient: without the 1/hidden readout every step displaced the
    # points by ~lr * sum(h) (0.3 world units at lr 0.005, hidden 64: the dynamic stage diverged, issue 8).
    output_scale: float = 0.0

    def __post_init__(self) -> None:
        check_fields(self, {"n_freq_x": (0, 16, "frequency bands; float32 loses the higher ones"),
                            "n_freq_t": (0, 16, "frequency bands; float32 loses the higher ones"),
                            "hidden": (1, 4096, "MLP width; memory grows with it"),
                            "n_hidden_layers": (1, 32, "MLP depth"),
                            "output_scale": (0.0, 100.0, "readout scale; 0 = 1 / hidden")}, "field.deformation")
        if self.encoding not in ("frequency", "planes"):
            raise ValueError(f"field.deformation.encoding={self.encoding!r}; use 'frequency' or 'planes'")
        if not isinstance(self.planes, KPlanesConfig):
            raise ValueError(f"field.deformation.planes must be a KPlanesConfig, not {self.planes!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "DeformationConfig":
        return cls(**known_fields(cls, d, {"planes": KPlanesConfig}))


def positional_encoding(x: torch.Tensor, n_freq: int, window: torch.Tensor | None = None) -> torch.Tensor:
    """``[..., D] -> [..., D * (1 + 2 * n_freq)]``: identity, then sin/cos(2^k * pi * x) per band k (optionally
    multiplied by ``window [n_freq]``)."""
    if n_freq == 0:
        return x
    freqs = (2.0 ** torch.arange(n_freq, dtype=x.dtype, device=x.device)) * math.pi  # [K]
    ang = x[..., None, :] * freqs[:, None]  # [..., K, D]
    sin, cos = torch.sin(ang), torch.cos(ang)
    if window is not None:
        sin, cos = sin * window[:, None], cos * window[:, None]
    return torch.cat([x, sin.flatten(-2), cos.flatten(-2)], dim=-1)


def max_time_bands(n_frames: int) -> int:
    """Time bands below the Nyquist limit of ``n_frames`` evenly spaced frames: band k (``sin(2^k pi (2t - 1))``) is
    kept while ``2^(k+1) < n_frames - 1``. Higher bands alias (9 frames: bands 2, 3 are 0 or +-1 at every frame) and
    make held-out times arbitrary."""
    k = 0
    while 2 ** (k + 1) < n_frames - 1:
        k += 1
    return k


def cosine_window(alpha: float, n_freq: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """Nerfies coarse-to-fine window ``[n_freq]``; alpha = number of fully enabled bands (may be fractional)."""
    j = torch.arange(n_freq, device=device, dtype=dtype)
    return 0.5 * (1.0 - torch.cos(math.pi * torch.clamp(alpha - j, 0.0, 1.0)))


class Deformation(nn.Module):
    """``forward(x_hat [N, 3] in [0,1], t [N]) -> dx [N, 3]`` (offsets in normalised [0, 1] units)."""

    def __init__(self, cfg: DeformationConfig = DeformationConfig(), generator: torch.Generator | None = None,
                 n_frames: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.planes = KPlanes(cfg.planes.for_frames(n_frames), True, generator) if cfg.encoding == "planes" else None
        in_dim = self.planes.n_output_dims if self.planes is not None else \
            3 * (1 + 2 * cfg.n_freq_x) + (1 + 2 * cfg.n_freq_t)
        self.skip_at = cfg.n_hidden_layers // 2 if cfg.n_hidden_layers >= 4 else -1
        layers, dim = [], in_dim
        for i in range(cfg.n_hidden_layers):
            if i == self.skip_at:
                dim += in_dim
            layers.append(nn.Linear(dim, cfg.hidden))
            dim = cfg.hidden
        self.layers = nn.ModuleList(layers)
        self.out = nn.Linear(dim, 3)
        init_linear(self.layers, generator)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # Number of enabled time bands (cosine window); saved with the model. Start with the lowest band on.
        self.register_buffer("time_alpha", torch.tensor(float(cfg.n_freq_t)))

    def set_time_alpha(self, alpha: float) -> None:
        self.time_alpha.fill_(float(min(max(alpha, 0.0), self.cfg.n_freq_t)))

    def forward(self, x_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = t.to(x_hat).reshape(-1, 1).expand(x_hat.shape[0], 1)
        if self.planes is not None:
            inp = self.planes(x_hat.clamp(0.0, 1.0), t[:, 0])
        else:
            win = cosine_window(float(self.time_alpha), self.cfg.n_freq_t, x_hat.device, x_hat.dtype)
            inp = torch.cat([positional_encoding(x_hat * 2 - 1, self.cfg.n_freq_x),
                             positional_encoding(t * 2 - 1, self.cfg.n_freq_t, win)], dim=-1)
        h = inp
        for i, layer in enumerate(self.layers):
            if i == self.skip_at:
                h = torch.cat([h, inp], dim=-1)
            h = torch.relu(layer(h))
        dx = self.out(h) * (self.cfg.output_scale or 1.0 / self.cfg.hidden)
        if self.cfg.zero_at_t0:
            dx = dx * (t != 0).to(dx.dtype)
        return dx


def init_linear(layers, generator: torch.Generator | None) -> None:
    """Kaiming-uniform weights / zero bias drawn from ``generator`` (deterministic init without global seeding)."""
    for layer in layers:
        bound = math.sqrt(6.0 / layer.in_features)
        with torch.no_grad():
            layer.weight.copy_(torch.rand(layer.weight.shape, generator=generator) * 2 * bound - bound)
            if layer.bias is not None:
                layer.bias.zero_()

"""tcnn-compatible multiresolution hash encoding (Instant-NGP) in pure PyTorch, with a lazy tinycudann backend.

Semantics follow tiny-cuda-nn's ``GridEncoding`` (see ``../shared/docs/nerf4d.md`` sections 2.1 and 3.2):

* level ``l``: ``scale_l = base * 2^(l * log2(per_level_scale)) - 1`` (float32), ``res_l = ceil(scale_l) + 1``;
* ``pos = scale_l * x + 0.5``, ``cell = floor(pos)``, ``frac = pos - cell`` (x in [0, 1]^3);
* entries per level ``size_l = min(next_multiple_of_8(res_l^3), 2^log2_hashmap_size)``, levels back to back;
* index: dense ``x + y*res + z*res^2`` while ``res^3 <= size_l``, else the coherent prime hash
  ``(x*1) ^ (y*2654435761) ^ (z*805459861)`` with uint32 wrap-around; then ``index % size_l``;
* trilinear weights over the 8 corners; output level-major ``[N, L*F]``; init ``U(-1e-4, 1e-4)``.

Parameter layout: one ``table`` parameter ``[sum(size_l), F]``. tinycudann stores the same numbers as a flat
``params`` vector of ``sum(size_l) * F`` floats (features innermost), so converting between backends is
``table.reshape(-1)`` <-> ``params.reshape(-1, F)``; both backends expose and load the ``table`` key.

CPU speed (section 3.3): per-level loop with int32 indices, ``index_select`` gathers, per-axis weights, and a
custom autograd function whose backward uses one gradient buffer plus one ``index_add_`` per level and also
returns d/dx (needed by the deformation field and normals). For double backward (analytic normals inside a
loss) use ``forward(x, create_graph=True)``, which runs the same math through plain autograd ops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..config import check_known_keys
from ..validate import check_fields
from torch import nn

PRIME_Y = 2654435761 - 2**32  # -1640531535: uint32 prime written as a two's-complement int32
PRIME_Z = 805459861


@dataclass(frozen=True)
class HashGridConfig:
    n_levels: int = 16  # L
    n_features_per_level: int = 2  # F
    log2_hashmap_size: int = 19  # T = 2^19 entries per hashed level
    base_resolution: int = 16  # N_min
    per_level_scale: float = 1.447269237440378  # growth per level; 16 levels -> N_max 4096 (threestudio)

    def __post_init__(self) -> None:
        check_fields(self, {"n_levels": (1, 32, "grid levels; memory grows with them"),
                            "n_features_per_level": (1, 8, "tinycudann supports 1, 2, 4 or 8"),
                            "log2_hashmap_size": (4, 24, "2^T rows per level; 2^24 x 16 levels x 2 x 4 B = 2 GiB"),
                            "base_resolution": (1, 4096, "cells of the coarsest level"),
                            "per_level_scale": (1.0, 16.0, "growth of the resolution per level")}, "field.grid")

    @classmethod
    def from_dict(cls, d: dict) -> "HashGridConfig":
        check_known_keys(cls, d)
        return cls(**d)

    def to_tcnn(self) -> dict:
        return {"otype": "HashGrid", "n_levels": self.n_levels, "n_features_per_level": self.n_features_per_level,
                "log2_hashmap_size": self.log2_hashmap_size, "base_resolution": self.base_resolution,
                "per_level_scale": self.per_level_scale}


@dataclass(frozen=True)
class GridLevel:
    scale: float  # pos = scale * x + 0.5
    resolution: int
    offset: int  # first row of this level in the flat table
    size: int  # rows of this level
    dense: bool  # True: x + y*res + z*res^2 ; False: prime hash


def level_table(cfg: HashGridConfig) -> list[GridLevel]:
    """Per-level (scale, res, offset, size, dense) exactly as tcnn computes them (float32 scale)."""
    log2_pls = np.log2(np.float32(cfg.per_level_scale), dtype=np.float32)
    levels, offset = [], 0
    for lvl in range(cfg.n_levels):
        scale = float(np.exp2(np.float32(lvl) * log2_pls, dtype=np.float32) * np.float32(cfg.base_resolution)
                      - np.float32(1.0))
        scale = float(np.float32(scale))
        res = int(math.ceil(scale)) + 1
        dense_params = min(res**3, 2**31 - 1)
        size = min(((dense_params + 7) // 8) * 8, 2**cfg.log2_hashmap_size)
        levels.append(GridLevel(scale, res, offset, size, res**3 <= size))
        offset += size
    return levels


def _level_corners(x: torch.Tensor, lv: GridLevel):
    """Corner indices ``[N, 8]`` int32, trilinear weights ``[N, 8]`` and the per-axis weights.

    Corner ``c = 4z + 2y + x`` (bit d set = +1 along axis d). Everything is built from contiguous ``[N]`` columns:
    broadcast ops with size-2 inner dims are ~10x slower per element on CPU. Returns (idx, w, axes) with
    ``axes = ((1-fx, fx), (1-fy, fy), (1-fz, fz))``, each entry ``[N]``.
    """
    pos = (x * lv.scale + 0.5).T.contiguous()  # [3, N]
    cell = torch.floor(pos)
    frac = pos - cell
    c0 = cell.to(torch.int32)
    axes = tuple((1.0 - frac[d], frac[d]) for d in range(3))
    (ox, fx), (oy, fy), (oz, fz) = axes
    zy = [oz * oy, oz * fy, fz * oy, fz * fy]  # index 2z + y
    w = torch.stack([zy[k // 2] * (fx if k % 2 else ox) for k in range(8)], dim=1)
    hx = (c0[0], c0[0] + 1)
    if lv.dense:
        r = lv.resolution
        hy = (c0[1] * r, (c0[1] + 1) * r)
        hz = (c0[2] * (r * r), (c0[2] + 1) * (r * r))
        szy = [hz[k // 2] + hy[k % 2] for k in range(4)]
        idx = torch.stack([szy[k // 2] + hx[k % 2] for k in range(8)], dim=1)
        idx = torch.remainder(idx, lv.size)  # reproduces tcnn's wrap-around at the +0.5 border
    else:
        hy = (c0[1] * PRIME_Y, (c0[1] + 1) * PRIME_Y)  # int32 wrap == uint32 low bits
        hz = (c0[2] * PRIME_Z, (c0[2] + 1) * PRIME_Z)
        szy = [torch.bitwise_xor(hz[k // 2], hy[k % 2]) for k in range(4)]
        idx = torch.stack([torch.bitwise_xor(szy[k // 2], hx[k % 2]) for k in range(8)], dim=1)
        idx = torch.bitwise_and(idx, lv.size - 1)  # size is 2^T: & == % on uint32
    return idx, w, axes


def _grad_frac(gv: torch.Tensor, axes) -> torch.Tensor:
    """d(sum_c gv_c w_c)/d frac ``[N, 3]`` from per-corner values ``gv [N, 8]`` (corner c = 4z + 2y + x)."""
    (ox, fx), (oy, fy), (oz, fz) = axes
    g = gv.T.contiguous()  # [8, N]
    wxs, wys, wzs = (ox, fx), (oy, fy), (oz, fz)
    gx = sum(wzs[z] * wys[y] * (g[4 * z + 2 * y + 1] - g[4 * z + 2 * y]) for z in (0, 1) for y in (0, 1))
    gy = sum(wzs[z] * wxs[xx] * (g[4 * z + 2 + xx] - g[4 * z + xx]) for z in (0, 1) for xx in (0, 1))
    gz = sum(wys[y] * wxs[xx] * (g[4 + 2 * y + xx] - g[2 * y + xx]) for y in (0, 1) for xx in (0, 1))
    return torch.stack([gx, gy, gz], dim=1)


SAVE_VALUES_MAX_BYTES = 2**29  # keep the gathered corner values for d/dx if they fit in 512 MB, else re-gather


def _corner_dot(vals: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """``[N, 8, F] . [N, F] -> [N, 8]``; an unrolled sum for small F (2x faster than bmm on CPU for F = 2)."""
    if vals.shape[2] > 4:
        return torch.bmm(vals, g.unsqueeze(2)).squeeze(2)
    out = vals[:, :, 0] * g[:, 0:1]
    for f in range(1, vals.shape[2]):
        out = out + vals[:, :, f] * g[:, f:f + 1]
    return out


class _HashGridFunction(torch.autograd.Function):
    """Forward per level with ``index_select``; backward: one grad buffer + ``index_add_``, plus d/dx."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, table: torch.Tensor, levels: tuple):
        n, feat = x.shape[0], table.shape[1]
        out = x.new_empty(n, len(levels) * feat, dtype=table.dtype)
        saved = []
        need_x = ctx.needs_input_grad[0]
        keep_vals = need_x and n * 8 * feat * len(levels) * table.element_size() <= SAVE_VALUES_MAX_BYTES
        for i, lv in enumerate(levels):
            idx, w, axes = _level_corners(x, lv)
            rows = table[lv.offset:lv.offset + lv.size]
            vals = rows.index_select(0, idx.reshape(-1)).view(n, 8, feat)
            out[:, i * feat:(i + 1) * feat] = torch.bmm(w.unsqueeze(1), vals).squeeze(1)
            saved.append((idx, w, axes if need_x else None, vals if keep_vals else None))
        ctx.levels, ctx.saved = levels, saved
        ctx.save_for_backward(x, table)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, table = ctx.saved_tensors
        n, feat = x.shape[0], table.shape[1]
        grad_table = grad_x = None
        if ctx.needs_input_grad[1]:
            grad_table = torch.zeros_like(table)
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x)
        for i, lv in enumerate(ctx.levels):
            idx, w, axes, vals = ctx.saved[i]
            g = grad_out[:, i * feat:(i + 1) * feat]  # [N, F]
            if grad_table is not None:
                contrib = (w.unsqueeze(2) * g.unsqueeze(1)).reshape(-1, feat)
                # int64 index: CPU index_add_ with an int32 index is ~4x slower (torch 2.14)
                grad_table[lv.offset:lv.offset + lv.size].index_add_(0, idx.reshape(-1).long(), contrib)
            if grad_x is not None:
                if vals is None:
                    vals = table[lv.offset:lv.offset + lv.size].index_select(0, idx.reshape(-1)).view(n, 8, feat)
                grad_x += lv.scale * _grad_frac(_corner_dot(vals, g), axes)
        return grad_x, grad_table, None


def hash_encode_autograd(x: torch.Tensor, table: torch.Tensor, levels: tuple) -> torch.Tensor:
    """Same encoding through plain autograd ops (supports double backward; ~1.3x slower)."""
    n, feat = x.shape[0], table.shape[1]
    outs = []
    for lv in levels:
        idx, w, _ = _level_corners(x, lv)
        vals = table[lv.offset:lv.offset + lv.size].index_select(0, idx.reshape(-1).long()).view(n, 8, feat)
        outs.append((w.unsqueeze(2) * vals).sum(1))
    return torch.cat(outs, dim=1)


def tcnn_available() -> bool:
    """True when CUDA is usable and ``import tinycudann`` succeeds (never raises)."""
    if not torch.cuda.is_available():
        return False
    try:
        import tinycudann  # noqa: F401
    except (ImportError, OSError, RuntimeError):
        return False
    return True


class HashGrid(nn.Module):
    """Multiresolution hash encoding ``x [N, 3] in [0,1] -> [N, L*F]``.

    Args:
        cfg: grid layout. backend: ``"auto"`` (tcnn when CUDA + tinycudann import, else torch), ``"torch"``
            or ``"tcnn"``. generator: for the U(-1e-4, 1e-4) init.
    The parameter is always ``table [sum(size_l), F]``; the tcnn backend views it flat (``table.view(-1)``),
    so state dicts load into either backend unchanged.
    """

    def __init__(self, cfg: HashGridConfig = HashGridConfig(), backend: str = "auto",
                 generator: torch.Generator | None = None):
        super().__init__()
        if backend not in ("auto", "torch", "tcnn"):
            raise ValueError(f"backend={backend!r}; use 'auto', 'torch' or 'tcnn'")
        if backend == "tcnn" and not tcnn_available():
            raise RuntimeError("backend='tcnn' needs CUDA and tinycudann (pip install "
                               "git+https://github.com/NVlabs/tiny-cuda-nn/#subdirectory=bindings/torch); "
                               "use backend='torch' or 'auto'")
        self.cfg = cfg
        self.levels = tuple(level_table(cfg))
        self.backend = "tcnn" if backend == "tcnn" or (backend == "auto" and tcnn_available()) else "torch"
        n_rows = self.levels[-1].offset + self.levels[-1].size
        init = torch.rand(n_rows, cfg.n_features_per_level, generator=generator) * 2e-4 - 1e-4
        self.table = nn.Parameter(init)
        self._tcnn = None

    @property
    def n_output_dims(self) -> int:
        return self.cfg.n_levels * self.cfg.n_features_per_level

    def _tcnn_forward(self, x: torch.Tensor) -> torch.Tensor:
        """tinycudann path (not exercised in CI: no tinycudann wheel). Mirrors ``tcnn.Module.forward`` but feeds
        our ``table`` as the flat parameter vector, so gradients land in ``table``."""
        import tinycudann as tcnn
        from tinycudann.modules import _C, _module_function  # internal API of the torch bindings
        if self._tcnn is None:
            self._tcnn = (tcnn.Encoding(3, self.cfg.to_tcnn(), dtype=torch.float32),)  # not a submodule
        enc = self._tcnn[0]
        n = x.shape[0]
        gran = int(_C.batch_size_granularity())
        padded = (n + gran - 1) // gran * gran
        xp = torch.nn.functional.pad(x, [0, 0, 0, padded - n]) if padded != n else x
        out = _module_function.apply(enc.native_tcnn_module, xp.float().contiguous(),
                                     self.table.float().reshape(-1).contiguous(), enc.loss_scale)
        return out[:n, :self.n_output_dims].to(self.table.dtype)

    def forward(self, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
        """Encode ``x [N, 3]`` (expected in [0, 1]); ``create_graph=True`` keeps double-backward support."""
        if x.dim() != 2 or x.shape[1] != 3:
            raise ValueError(f"x must be [N, 3], got {tuple(x.shape)}")
        x = x.to(self.table.dtype)
        if self.backend == "tcnn" and x.is_cuda:
            return self._tcnn_forward(x)
        if create_graph:
            return hash_encode_autograd(x, self.table, self.levels)
        return _HashGridFunction.apply(x, self.table, self.levels)

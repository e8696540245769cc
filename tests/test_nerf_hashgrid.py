"""Hash grid: layout/index/interpolation vs a direct per-point tcnn-formula computation, and gradchecks."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sv4d_models.nerf.hashgrid import HashGrid, HashGridConfig, hash_encode_autograd, level_table


def _ref_index(cx: int, cy: int, cz: int, res: int, size: int) -> int:
    """tcnn grid_index in plain python integers (uint32 arithmetic)."""
    if res**3 <= size:
        index = (cx + cy * res + cz * res * res) % 2**32
    else:
        index = (cx * 1) ^ ((cy * 2654435761) % 2**32) ^ ((cz * 805459861) % 2**32)
    return index % size


def _ref_encode(x: np.ndarray, table: np.ndarray, cfg: HashGridConfig) -> np.ndarray:
    """Per-point reference with the tcnn formulas (float64 positions, python ints)."""
    out = np.zeros((x.shape[0], cfg.n_levels * cfg.n_features_per_level))
    offset = 0
    for lvl in range(cfg.n_levels):
        scale = np.float32(np.exp2(np.float32(lvl) * np.log2(np.float32(cfg.per_level_scale)))
                           * np.float32(cfg.base_resolution) - np.float32(1))
        res = math.ceil(scale) + 1
        size = min(((res**3 + 7) // 8) * 8, 2**cfg.log2_hashmap_size)
        for n in range(x.shape[0]):
            pos = [float(scale) * float(x[n, d]) + 0.5 for d in range(3)]
            cell = [math.floor(p) for p in pos]
            frac = [p - c for p, c in zip(pos, cell)]
            acc = np.zeros(cfg.n_features_per_level)
            for corner in range(8):
                bits = [(corner >> d) & 1 for d in range(3)]
                w = 1.0
                for d in range(3):
                    w *= frac[d] if bits[d] else 1.0 - frac[d]
                idx = _ref_index(cell[0] + bits[0], cell[1] + bits[1], cell[2] + bits[2], res, size)
                acc += w * table[offset + idx]
            f = cfg.n_features_per_level
            out[n, lvl * f:(lvl + 1) * f] = acc
        offset += size
    return out


def test_level_table_threestudio_layout():
    levels = level_table(HashGridConfig())
    assert [lv.resolution for lv in levels[:3]] == [16, 24, 34]
    assert levels[-1].resolution in (4096, 4097)
    assert sum(lv.dense for lv in levels) == 5  # 16^3 .. 72^3 fit under 2^19 (tcnn: first 5 dense)
    for a, b in zip(levels[:-1], levels[1:]):
        assert b.offset == a.offset + a.size
    assert all(lv.size % 8 == 0 and lv.size <= 2**19 for lv in levels)
    total = levels[-1].offset + levels[-1].size
    assert 6.2e6 < total < 6.4e6  # nerf4d.md 2.1: 6.30 M entries


def test_encoding_matches_reference_dense_and_hashed():
    cfg = HashGridConfig(n_levels=5, n_features_per_level=2, log2_hashmap_size=9, base_resolution=3,
                         per_level_scale=1.9)
    levels = level_table(cfg)
    assert any(lv.dense for lv in levels) and any(not lv.dense for lv in levels)
    g = torch.Generator().manual_seed(0)
    grid = HashGrid(cfg, backend="torch", generator=g).double()
    with torch.no_grad():
        grid.table.normal_(generator=g)
    x = torch.rand(40, 3, generator=g, dtype=torch.float64)
    x[0] = 0.0
    x[1] = 1.0
    ref = _ref_encode(x.numpy(), grid.table.detach().numpy(), cfg)
    out = grid(x)
    assert out.shape == (40, 10)
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(hash_encode_autograd(x, grid.table, grid.levels).detach().numpy(), ref, atol=1e-10)


def test_hash_int32_wrap_equals_uint32():
    cfg = HashGridConfig(n_levels=1, n_features_per_level=1, log2_hashmap_size=4, base_resolution=200,
                         per_level_scale=2.0)
    (lv,) = level_table(cfg)
    assert not lv.dense
    grid = HashGrid(cfg, backend="torch").double()
    with torch.no_grad():
        grid.table.copy_(torch.arange(16, dtype=torch.float64)[:, None])
    # Points whose lower corner is exactly a lattice vertex: output = table[index of that vertex].
    cells = torch.tensor([[3, 150, 199], [199, 199, 199], [0, 1, 2], [57, 0, 123]], dtype=torch.float64)
    x = (cells - 0.5) / lv.scale
    out = grid(x)[:, 0]
    expected = [_ref_index(int(c[0]), int(c[1]), int(c[2]), lv.resolution, lv.size) for c in cells.long()]
    assert torch.allclose(out, torch.tensor(expected, dtype=torch.float64), atol=1e-6)


def test_gradcheck_table_and_x():
    cfg = HashGridConfig(n_levels=2, n_features_per_level=2, log2_hashmap_size=5, base_resolution=2,
                         per_level_scale=2.5)
    levels = level_table(cfg)
    assert levels[0].dense and not levels[1].dense
    g = torch.Generator().manual_seed(1)
    grid = HashGrid(cfg, backend="torch", generator=g).double()
    with torch.no_grad():
        grid.table.normal_(generator=g)
    x = (torch.rand(6, 3, generator=g, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)

    def fn(xx, table):
        from sv4d_models.nerf.hashgrid import _HashGridFunction
        return _HashGridFunction.apply(xx, table, grid.levels)

    assert torch.autograd.gradcheck(fn, (x, grid.table), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda xx, t: hash_encode_autograd(xx, t, grid.levels), (x, grid.table),
                                    eps=1e-6, atol=1e-6)


def test_fast_backward_matches_autograd_path():
    cfg = HashGridConfig(n_levels=4, log2_hashmap_size=8, base_resolution=4, per_level_scale=2.0)
    g = torch.Generator().manual_seed(2)
    grid = HashGrid(cfg, backend="torch", generator=g)
    x = torch.rand(300, 3, generator=g).requires_grad_(True)
    w = torch.randn(300, 8, generator=g)
    (grid(x) * w).sum().backward()
    gx, gt = x.grad.clone(), grid.table.grad.clone()
    x.grad = None
    grid.table.grad = None
    (grid(x, create_graph=True) * w).sum().backward()
    assert torch.allclose(gx, x.grad, atol=1e-4)
    assert torch.allclose(gt, grid.table.grad, atol=1e-6)


def test_backend_validation_and_state_dict_key():
    with pytest.raises(ValueError, match="backend"):
        HashGrid(HashGridConfig(n_levels=1), backend="cuda")
    with pytest.raises(ValueError, match="unknown HashGridConfig key"):
        HashGridConfig.from_dict({"n_levels": 2, "levels": 3})
    grid = HashGrid(HashGridConfig(n_levels=2, log2_hashmap_size=6), backend="torch")
    assert list(grid.state_dict()) == ["table"]
    assert grid.table.abs().max() <= 1e-4


@pytest.mark.gpu
def test_cuda_torch_path_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cfg = HashGridConfig(n_levels=6, log2_hashmap_size=12, base_resolution=8, per_level_scale=1.8)
    g = torch.Generator().manual_seed(4)
    grid = HashGrid(cfg, backend="torch", generator=g)
    x = torch.rand(4096, 3, generator=g)
    out_cpu = grid(x)
    out_gpu = grid.cuda()(x.cuda())
    assert torch.allclose(out_cpu, out_gpu.cpu(), atol=1e-6)


@pytest.mark.gpu
def test_tcnn_parity_same_state_dict():
    from sv4d_models.nerf.hashgrid import tcnn_available
    if not tcnn_available():
        pytest.skip("needs CUDA and tinycudann")
    cfg = HashGridConfig(n_levels=8, log2_hashmap_size=14, base_resolution=16, per_level_scale=1.5)
    g = torch.Generator().manual_seed(5)
    ours = HashGrid(cfg, backend="torch", generator=g).cuda()
    with torch.no_grad():
        ours.table.uniform_(-1, 1)
    tc = HashGrid(cfg, backend="tcnn").cuda()
    tc.load_state_dict(ours.state_dict())
    x = torch.rand(10000, 3, device="cuda")
    assert (ours(x) - tc(x)).abs().max() < 1e-5
    w = torch.randn(10000, cfg.n_levels * 2, device="cuda")
    (ours(x) * w).sum().backward()
    (tc(x) * w).sum().backward()
    assert (ours.table.grad - tc.table.grad).abs().max() < 1e-4

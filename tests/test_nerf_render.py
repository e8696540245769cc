"""Renderer, field, deformation and loss unit tests (fast, CPU)."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from sv4d_models.camera import Cameras
from sv4d_models.nerf import losses as L
from sv4d_models.nerf.deformation import Deformation, DeformationConfig, cosine_window
from sv4d_models.nerf.field import DynamicNeRF, FieldConfig
from sv4d_models.camera import pixel_rays
from sv4d_models.nerf.fit_config import NeRFFitConfig
from sv4d_models.nerf.fit_config import tiny_preset
from sv4d_models.nerf.hashgrid import HashGridConfig
from sv4d_models.metrics.lpips import LPIPSDistance, load_lpips, lpips_network
from sv4d_models.nerf.renderer import (OccupancyGrid, ray_aabb, render_rays, stratified_samples,
                                       weights_from_alpha, weights_from_density)


def test_weights_hand_computed():
    sigma = torch.tensor([[0.0, 1.0, 2.0, 0.5]])
    delta = torch.tensor([[0.5, 0.5, 1.0, 2.0]])
    w, trans, alpha = weights_from_density(sigma, delta)
    a = [1 - math.exp(-s * d) for s, d in zip([0.0, 1.0, 2.0, 0.5], [0.5, 0.5, 1.0, 2.0])]
    t = [1.0, 1.0, 1 - a[1], (1 - a[1]) * (1 - a[2])]
    assert torch.allclose(alpha[0], torch.tensor(a), atol=1e-6)
    assert torch.allclose(trans[0], torch.tensor(t), atol=1e-6)
    assert torch.allclose(w[0], torch.tensor([ti * ai for ti, ai in zip(t, a)]), atol=1e-6)
    w2, trans2 = weights_from_alpha(alpha)
    assert torch.allclose(w, w2, atol=1e-6) and torch.allclose(trans, trans2, atol=1e-6)


def test_weights_density_vs_alpha_random(gen):
    sigma = torch.rand(64, 40, generator=gen, dtype=torch.float64) * 5
    delta = torch.rand(64, 40, generator=gen, dtype=torch.float64) * 0.1
    w, trans, alpha = weights_from_density(sigma, delta)
    w2, trans2 = weights_from_alpha(alpha)
    assert torch.allclose(w, w2, atol=1e-10) and torch.allclose(trans, trans2, atol=1e-10)
    assert bool((w.sum(-1) <= 1 + 1e-12).all())
    # opacity equals 1 - exp(-sum sigma delta)
    assert torch.allclose(w.sum(-1), 1 - torch.exp(-(sigma * delta).sum(-1)), atol=1e-10)


def test_ray_aabb_and_stratified(gen):
    o = torch.tensor([[2.0, 0.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    d = torch.tensor([[-1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    near, far, hit = ray_aabb(o, d, 0.5)
    assert hit.tolist() == [True, False, True]
    assert torch.allclose(near[[0, 2]], torch.tensor([1.5, 0.0])) and torch.allclose(far[[0, 2]], torch.tensor([2.5, 0.5]))
    t1, dl = stratified_samples(near, far, 8, torch.Generator().manual_seed(3))
    t2, _ = stratified_samples(near, far, 8, torch.Generator().manual_seed(3))
    assert torch.equal(t1, t2)
    assert bool((t1[0] >= 1.5).all() and (t1[0] <= 2.5).all()) and torch.allclose(dl[0], torch.full((8,), 0.125))


def test_pixel_rays_match_camera_rays():
    cams = Cameras.orbit([0.0, 100.0], [10.0, -20.0])
    o, d = cams.rays(12, 12)
    rows = torch.tensor([[0, 5, 11]] * 2)
    cols = torch.tensor([[3, 7]] * 2)
    o2, d2 = pixel_rays(cams.c2w, cams.fov_deg, 12, 12, rows, cols)
    assert torch.allclose(d2, d[:, [0, 5, 11]][:, :, [3, 7]], atol=1e-6)
    assert torch.allclose(o2, o[:, [0, 5, 11]][:, :, [3, 7]], atol=1e-6)


class _Ball(torch.nn.Module):
    """Analytic field: constant density inside a ball, colour = normalised position."""

    def __init__(self):
        super().__init__()
        self.cfg = FieldConfig(aabb_half_size=0.7)
        self.calls = 0

    def query(self, x, t, normals=None, create_graph=False):
        self.calls += x.shape[0]
        sigma = torch.where(x.norm(dim=-1) < 0.3, torch.full_like(x[:, 0], 50.0), torch.zeros_like(x[:, 0]))
        out = {"sigma": sigma, "rgb": torch.full_like(x, 0.2)}
        if normals:
            out["normal"] = torch.nn.functional.normalize(x, dim=-1)
        return out

    def density(self, x, t=0.0):
        return self.query(x, t)["sigma"]


def test_render_rays_ball_white_background_and_occupancy():
    ball = _Ball()
    cams = Cameras.orbit([0.0], [0.0])
    o, d = cams.rays(16, 16)
    o, d = o.reshape(-1, 3), d.reshape(-1, 3)
    t = torch.zeros(o.shape[0])
    full = render_rays(ball, o, d, t, 64, perturb=False, normals="analytic")
    center = 8 * 16 + 8
    assert full["opacity"][center] > 0.99 and full["opacity"][0] < 1e-6
    assert torch.allclose(full["rgb"][0], torch.ones(3)) and torch.allclose(full["rgb"][center], torch.full((3,), 0.2), atol=0.01)
    depth = full["depth"][center] / full["opacity"][center]
    assert abs(float(depth) - 1.7) < 0.05  # surface at distance 2 - 0.3
    assert full["normal"][center, 0] > 0.9  # camera on +x sees the +x side of the ball
    occ = OccupancyGrid(0.7, resolution=16, threshold=0.01)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):  # jittered cell samples: several EMA updates catch the cells the surface only grazes
        occ.update(ball.density, step_size=0.02, generator=g)
    ball.calls = 0
    culled = render_rays(ball, o, d, t, 64, occupancy=occ, perturb=False)
    assert ball.calls < 0.5 * full["n_evaluated"]
    assert torch.allclose(culled["rgb"], full["rgb"], atol=2e-3)


def test_deformation_zero_init_window_and_t0():
    cfg = DeformationConfig(n_freq_x=2, n_freq_t=3, hidden=16, n_hidden_layers=4)
    deform = Deformation(cfg, torch.Generator().manual_seed(0))
    x = torch.rand(10, 3)
    assert torch.equal(deform(x, torch.full((10,), 0.5)), torch.zeros(10, 3))
    torch.nn.init.normal_(deform.out.weight)
    assert deform(x, torch.full((10,), 0.5)).abs().sum() > 0
    assert torch.equal(deform(x, torch.zeros(10)), torch.zeros(10, 3))  # hard zero at t = 0
    w = cosine_window(1.5, 3)
    assert torch.allclose(w, torch.tensor([1.0, 0.5, 0.0]), atol=1e-6)


def _tiny_field(**kw) -> DynamicNeRF:
    cfg = FieldConfig(grid=HashGridConfig(n_levels=3, log2_hashmap_size=8, base_resolution=4, per_level_scale=2.0),
                      deformation=DeformationConfig(n_freq_x=2, n_freq_t=2, hidden=16, n_hidden_layers=2),
                      hidden=16, backend="torch", **kw)
    return DynamicNeRF(cfg, torch.Generator().manual_seed(0)).double()


def test_field_density_outside_box_blob_and_normals():
    model = _tiny_field()
    x = torch.tensor([[0.0, 0.0, 0.0], [0.69, 0.0, 0.0], [0.9, 0.0, 0.0]], dtype=torch.float64)
    sigma = model.density(x, 0.0)
    assert sigma[2] == 0 and sigma[0] > sigma[1] > 0  # blob bias decreases with radius, zero outside AABB
    assert model.color(x, 0.3).shape == (3, 3)
    pts = torch.rand(20, 3, dtype=torch.float64) * 0.6 - 0.3
    an = model.query(pts, 0.0, normals="analytic")["normal"]
    fd = model.query(pts, 0.0, normals="finite_difference", fd_eps=1e-5)["normal"]
    assert (an * fd).sum(-1).min() > 0.99
    radial = torch.nn.functional.normalize(pts, dim=-1)
    assert (an * radial).sum(-1).mean() > 0.9  # blob density falls off outward


def test_analytic_normals_are_differentiable():
    model = _tiny_field()
    pts = torch.rand(8, 3, dtype=torch.float64) * 0.4
    n = model.query(pts, 0.5, normals="analytic", create_graph=True)["normal"]
    n[:, 0].sum().backward()
    assert model.encoding.table.grad is not None and model.encoding.table.grad.abs().sum() > 0


def test_losses_basic():
    img = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    const = torch.full((2, 1, 8, 8), 0.7)
    assert float(L.bilateral_smoothness(const, img)) == 0.0
    ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(2, 1, 8, 8)
    assert float(L.bilateral_smoothness(ramp, torch.zeros(2, 3, 8, 8))) > float(L.bilateral_smoothness(ramp, img)) > 0
    assert float(L.smooth_depth(const)) == 0.0 and float(L.smooth_depth(ramp)) > 0
    n = torch.nn.functional.normalize(torch.randn(2, 3, 8, 8), dim=1)
    m = torch.ones(2, 8, 8)
    assert float(L.normal_prior_loss(n, n, m)) < 1e-6 and abs(float(L.normal_prior_loss(n, -n, m)) - 2) < 1e-5
    gx, gy = L.sobel(ramp)
    assert gx[..., 2:-2].std() < 1e-6 and gx.mean() > 0 and gy.abs().max() < 1e-6


def test_lpips_random_backbone_and_missing_weights(tmp_path, monkeypatch):
    """The fit's LPIPS term (the lpips package, sv4d_models.metrics.lpips): gradients reach the image, missing files
    drop the term with one warning, a torchvision-named backbone checkpoint loads."""
    for net in ("alex", "vgg"):
        torch.manual_seed(0)
        lp = LPIPSDistance(lpips_network(net))
        x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        y = (x + 0.2 * torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))).clamp(0, 1)
        x.requires_grad_(True)
        d = lp(x, y)
        assert d.shape == (2,) and float(lp(y, y).abs().max()) < 1e-6
        d.sum().backward()
        assert x.grad is not None and x.grad.abs().sum() > 0
        assert not any(p.requires_grad for p in lp.parameters())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        assert load_lpips("alex") is None
    assert any("LPIPS(alex) disabled" in str(r.message) and "alexnet-owt-7be5be79.pth" in str(r.message) for r in rec)
    torch.manual_seed(5)
    net = lpips_network("alex")
    torch.save({f"features.{k.split('.', 2)[1]}.{k.split('.', 2)[2]}": v
                for k, v in net.net.state_dict().items()}, tmp_path / "bb.pth")
    lp2 = load_lpips("alex", str(tmp_path / "bb.pth"))
    assert lp2 is not None and torch.equal(lp2.model.net.slice1[0].weight, net.net.slice1[0].weight)


def test_config_from_dict_strict():
    cfg = NeRFFitConfig.from_dict({"seed": 3, "field": {"hidden": 32, "grid": {"n_levels": 4}},
                                   "resolution_schedule": [[0, 32], [10, 64]]})
    assert cfg.field.hidden == 32 and cfg.field.grid.n_levels == 4 and cfg.resolution_schedule == ((0, 32), (10, 64))
    with pytest.raises(ValueError, match="bogus"):
        NeRFFitConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="hiden"):
        NeRFFitConfig.from_dict({"field": {"hiden": 3}})
    with pytest.raises(ValueError, match="normals"):
        NeRFFitConfig.from_dict({"normals": "pred"})
    assert NeRFFitConfig.from_dict(tiny_preset().to_dict()) == tiny_preset()

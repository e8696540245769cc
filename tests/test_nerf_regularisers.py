"""Each sparse-view regulariser of the 4D fit measurably removes what it targets, on a toy problem optimised with
and without it (same seed, same steps): the term is compared by what it is for, not by its own value alone."""
from __future__ import annotations

import torch

from sv4d_models.nerf import losses as L
from sv4d_models.nerf.kplanes import KPlanes, KPlanesConfig
from sv4d_models.nerf.renderer import stratified_samples, weights_from_density


def _optimise(params, loss_fn, steps=300, lr=0.05, sgd=False):
    opt = torch.optim.SGD(params, lr=lr) if sgd else torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()


def _ray(weight_distortion: float):
    """One ray's densities (two separated blobs at init) fitted to opacity 1: returns the weights' spread in t."""
    near, far = torch.tensor([0.0]), torch.tensor([2.0])
    t, delta = stratified_samples(near, far, 64, perturb=False)
    logits = (torch.exp(-((t - 0.5) / 0.1) ** 2) + torch.exp(-((t - 1.5) / 0.1) ** 2)).mul(3).clone().requires_grad_()

    def loss():
        w, _, _ = weights_from_density(torch.nn.functional.softplus(logits), delta)
        return (w.sum(-1) - 1).pow(2).mean() + weight_distortion * L.distortion(w, t, delta)

    _optimise([logits], loss)
    w, _, _ = weights_from_density(torch.nn.functional.softplus(logits), delta)
    w = w.detach() / w.detach().sum()
    mean = (w * t).sum()
    return float(((w * (t - mean) ** 2).sum()).sqrt()), float(w.sum())


def test_distortion_gathers_the_weights_of_a_ray_into_one_surface():
    spread_off, _ = _ray(0.0)
    spread_on, _ = _ray(1.0)
    assert spread_off > 0.25  # without it the second blob keeps part of the weight behind the first
    assert spread_on < 0.5 * spread_off


def test_distortion_matches_its_quadratic_definition():
    g = torch.Generator().manual_seed(0)
    w, t, d = torch.rand(3, 10, generator=g), torch.sort(torch.rand(3, 10, generator=g), -1)[0], torch.rand(3, 10)
    brute = (w[:, :, None] * w[:, None, :] * (t[:, :, None] - t[:, None, :]).abs()).sum((1, 2)) \
        + (w ** 2 * d).sum(-1) / 3
    assert torch.allclose(L.distortion(w, t, d), brute.mean(), atol=1e-6)


def test_opacity_entropy_makes_each_pixel_object_or_background():
    target = 0.5 + 0.1 * torch.randn(256, generator=torch.Generator().manual_seed(1))  # a soft, ambiguous mask

    def run(weight):
        p = torch.zeros(256, requires_grad=True)
        _optimise([p], lambda: (torch.sigmoid(p) - target).pow(2).mean()
                  + weight * L.opacity_entropy(torch.sigmoid(p)), steps=200)
        a = torch.sigmoid(p.detach())
        return float(((a > 0.1) & (a < 0.9)).float().mean())

    assert run(0.0) > 0.9
    assert run(1.0) < 0.2


def test_floater_penalty_clears_faint_opacity_off_the_object():
    mask = torch.zeros(32, 32)
    mask[8:24, 8:24] = 1
    gen = torch.Generator().manual_seed(2)

    def run(weight):
        p = torch.full((32, 32), -3.0).add(0.3 * torch.randn(32, 32, generator=gen)).requires_grad_()  # ~5% haze
        _optimise([p], lambda: 0.05 * L.mask_loss(torch.sigmoid(p), mask) + weight * L.floater_loss(torch.sigmoid(p), mask),
                  steps=100, lr=1000.0, sgd=True)  # SGD: the step follows the gradient's size (Adam would not)
        return float(torch.sigmoid(p.detach())[mask < 0.5].mean())

    haze_off, haze_on = run(0.0), run(1.0)
    assert haze_on < 0.5 * haze_off


def _planes_fit(weights: dict, target_fn, dynamic=True, steps=150):
    """KPlanes + a linear readout fitted to noisy samples of ``target_fn(x, t)``; returns the planes."""
    g = torch.Generator().manual_seed(3)
    planes = KPlanes(KPlanesConfig(resolution=16, n_scales=1, time_resolution=9, features=4), dynamic, g)
    head = torch.nn.Linear(4, 1)
    x, t = torch.rand(2048, 3, generator=g), torch.rand(2048, generator=g)
    y = target_fn(x, t) + 0.3 * torch.randn(2048, generator=g)

    def loss():
        pred = head(planes(x, t if dynamic else None))[:, 0]
        reg = planes.regularisers(tuple(weights))
        return (pred - y).pow(2).mean() + sum(w * reg[k] for k, w in weights.items())

    _optimise(list(planes.parameters()) + list(head.parameters()), loss, steps=steps, lr=0.02)
    return planes


def test_plane_tv_smooths_the_planes_in_space():
    smooth = lambda x, t: torch.sin(3 * x[:, 0]) + x[:, 1]  # noqa: E731
    rough = float(_planes_fit({}, smooth, dynamic=False).space_tv().detach())
    assert float(_planes_fit({"plane_tv": 1.0}, smooth, dynamic=False).space_tv().detach()) < 0.5 * rough


def test_time_smoothness_removes_jerks_along_t():
    moving = lambda x, t: torch.sin(3 * x[:, 0] + 4 * t)  # noqa: E731
    jerky = float(_planes_fit({}, moving).time_smoothness().detach())
    assert jerky > 0
    assert float(_planes_fit({"time_smooth": 10.0}, moving).time_smoothness().detach()) < 0.5 * jerky


def test_time_l1_keeps_a_static_scene_static():
    static = lambda x, t: torch.sin(3 * x[:, 0])  # noqa: E731
    drift = float(_planes_fit({}, static).time_l1().detach())
    assert drift > 0
    assert float(_planes_fit({"time_l1": 1.0}, static).time_l1().detach()) < 0.5 * drift

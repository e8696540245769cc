"""Synthetic ground-truth scenes: masks, depth, determinism, motion, bounds."""
from __future__ import annotations

import math

import pytest
import torch

from sv4d_models.camera import Cameras, default_matrix_azimuths_deg
from sv4d_models.synthetic import Primitive, SyntheticScene


def test_mask_is_alpha_and_background_is_white():
    scene = SyntheticScene.make("nonrigid", seed=0)
    out = scene.render(Cameras.orbit([0.0, 120.0], 10.0), 0.3, 40)
    mask, rgb = out["mask"], out["rgb"]
    assert out["rgba"].shape == (2, 40, 40, 4)
    assert torch.equal(out["rgba"][..., 3], mask)
    assert set(mask.unique().tolist()) == {0.0, 1.0}
    assert 0.05 < mask.mean() < 0.6
    bg = mask == 0
    assert torch.all(rgb[bg] == 1.0) and torch.all(out["depth"][bg] == 0)
    # every object pixel is recognisably not background under the "any channel <= 0.97" rule
    assert torch.all(rgb[~bg].min(dim=-1).values <= 0.97)
    assert torch.all(out["depth"][~bg] > 0)


def test_depth_matches_analytic_sphere():
    r = 0.3
    scene = SyntheticScene((Primitive("sphere", (r,), center=(0.1, -0.05, 0.0)),))
    cams = Cameras.orbit([30.0, 200.0], [15.0, -20.0])
    out = scene.render(cams, 0.0, 32)
    origins, dirs = cams.rays(32, 32, dtype=torch.float64)
    oc = origins - torch.tensor([0.1, -0.05, 0.0], dtype=torch.float64)
    b = (oc * dirs).sum(-1)
    disc = b * b - ((oc * oc).sum(-1) - r * r)
    expected_hit = disc > 0
    exact = -b - disc.clamp(min=0).sqrt()
    well_inside = disc > 0.02  # skip grazing silhouette pixels
    assert torch.equal(out["mask"].bool()[well_inside], expected_hit[well_inside])
    assert (out["mask"].bool() ^ expected_hit).float().mean() < 0.01
    err = (out["depth"].double() - exact)[well_inside].abs()
    assert err.max() < 1e-3, err.max()


def test_deterministic_by_seed_and_seed_changes_scene():
    cams = Cameras.orbit([45.0], 10.0)
    a = SyntheticScene.make("rigid", seed=3).render(cams, 0.4, 24)["rgb"]
    b = SyntheticScene.make("rigid", seed=3).render(cams, 0.4, 24)["rgb"]
    c = SyntheticScene.make("rigid", seed=4).render(cams, 0.4, 24)["rgb"]
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 0.2


@pytest.mark.parametrize("kind", ["rigid", "nonrigid"])
def test_motion_changes_frames_static_does_not(kind):
    cams = Cameras.orbit([0.0, 90.0], 10.0)
    moving = SyntheticScene.make(kind, seed=1)
    static = SyntheticScene.make("static", seed=1)
    m0, m1 = moving.render(cams, 0.0, 24)["mask"], moving.render(cams, 0.25, 24)["mask"]
    assert (m0 != m1).float().mean() > 0.01
    s0, s1 = static.render(cams, 0.0, 24)["rgb"], static.render(cams, 0.25, 24)["rgb"]
    assert torch.equal(s0, s1)
    # motions are periodic: t = 0 and t = 1 give the same geometry
    m_end = moving.render(cams, 1.0, 24)["mask"]
    assert (m0 != m_end).float().mean() < 0.002


def test_nonrigid_differs_from_rigid():
    x = torch.rand(4096, 3, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.6
    rigid, nonrigid = SyntheticScene.make("rigid", seed=0), SyntheticScene.make("nonrigid", seed=0)
    diffs = [(rigid.sdf(x, t) - nonrigid.sdf(x, t)).abs().max() for t in (0.1, 0.35, 0.6)]
    assert max(diffs) > 0.02


@pytest.mark.parametrize("kind", ["static", "nonrigid"])
def test_object_inside_aabb(kind):
    scene = SyntheticScene.make(kind, seed=2)
    h = scene.aabb_half_size
    lin = torch.linspace(-h, h, 25)
    a, b = torch.meshgrid(lin, lin, indexing="ij")
    faces = []
    for axis in range(3):
        for sign in (-1.0, 1.0):
            pts = torch.zeros(a.numel(), 3)
            others = [i for i in range(3) if i != axis]
            pts[:, others[0]], pts[:, others[1]], pts[:, axis] = a.flatten(), b.flatten(), sign * h
            faces.append(pts)
    shell = torch.cat(faces)
    for t in torch.linspace(0, 1, 9).tolist():
        assert scene.sdf(shell, t).min() > 0, t
        assert scene.density_fn(shell, t).max() < 0.5 * scene.iso_density


def test_density_and_color_agree_with_render():
    scene = SyntheticScene.make("nonrigid", seed=0)
    cams = Cameras.orbit([60.0], 10.0)
    out = scene.render(cams, 0.7, 24)
    origins, dirs = cams.rays(24)
    hit = out["mask"].bool()
    pts = origins[hit] + out["depth"][hit][:, None] * dirs[hit]
    dens = scene.density_fn(pts, 0.7)
    assert torch.allclose(dens, torch.full_like(dens, scene.iso_density), rtol=0.05)
    assert torch.allclose(scene.color_fn(pts, 0.7), out["rgb"][hit], atol=1e-5)


def test_render_matrix_layout():
    scene = SyntheticScene.make("rigid", seed=0)
    out = scene.render_matrix("sv4d2", n_frames=3, size=16, elevation_deg=0.0)
    assert out["images"].shape == (3, 5, 16, 16, 3)
    assert out["masks"].shape == (3, 5, 16, 16)
    assert torch.allclose(out["times"], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(out["cameras"].azimuth_deg, torch.as_tensor(default_matrix_azimuths_deg("sv4d2")))
    one = scene.render(out["cameras"][2], 0.5, 16)["rgb"][0]
    assert torch.equal(out["images"][1, 2], one)
    # input view column is the camera on +x
    assert math.isclose(float(out["cameras"].c2w[0, 0, 3]), 2.0, rel_tol=1e-9)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="kind"):
        SyntheticScene.make("wobbly")
    with pytest.raises(ValueError, match="aabb_half_size"):
        SyntheticScene((Primitive("sphere", (0.5,), center=(0.3, 0.0, 0.0)),))
    with pytest.raises(ValueError, match="t="):
        SyntheticScene.make().render(Cameras.orbit([0.0], 0.0), 1.5, 8)


def test_fields_accept_float64_points():
    scene = SyntheticScene.make("nonrigid", seed=0)
    x = torch.rand(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) - 0.5
    assert torch.allclose(scene.sdf(x, 0.3).float(), scene.sdf(x.float(), 0.3), atol=1e-5)
    assert scene.color_fn(x, 0.3).shape == (64, 3)


def test_supersampling_gives_fractional_alpha_on_edges_only():
    scene = SyntheticScene((Primitive("sphere", (0.4,), texture="solid"),))
    cams = Cameras.orbit([30.0], 10.0)
    hard = scene.render(cams, 0.0, 24)
    soft = scene.render(cams, 0.0, 24, supersample=3)
    a = soft["mask"]
    assert torch.equal(soft["rgba"][..., 3], a)
    edge = (a > 0) & (a < 1)
    assert edge.any() and edge.float().mean() < 0.2
    assert (a - hard["mask"]).abs().mean() < 0.05
    assert torch.all(soft["rgb"][a == 0] == 1.0)  # background in every sub-sample stays exactly white
    assert (soft["rgb"][a == 1] - hard["rgb"][a == 1]).abs().max() < 0.05  # smooth shading: pooling ~ centre
    assert torch.allclose(soft["depth"][a == 1], hard["depth"][a == 1], atol=0.02)


def test_render_matrix_supersamples_every_cell_as_render_does():
    scene = SyntheticScene.make("rigid", seed=0)
    hard = scene.render_matrix(model_kind="sv4d", n_frames=2, size=16)
    soft = scene.render_matrix(model_kind="sv4d", n_frames=2, size=16, supersample=2)
    one = scene.render(soft["cameras"], 1.0, 16, supersample=2)
    assert torch.equal(soft["images"][1], one["rgb"]) and torch.equal(soft["masks"][1], one["mask"])
    assert ((soft["masks"] > 0) & (soft["masks"] < 1)).any() and set(hard["masks"].unique().tolist()) <= {0.0, 1.0}


def test_midway_scene_moves_every_part_halfway_between_two_times():
    from sv4d_models.synthetic import _axis_angle, _euler

    scene = SyntheticScene.make("nonrigid", seed=3)
    t0, t1 = 0.25, 0.375
    mid_scene, tm = scene.midway(t0, t1)
    assert tm == pytest.approx(0.3125)
    for p, q in zip(scene.primitives, mid_scene.primitives):
        (c0, _, s0, b0), (c1, _, s1, b1) = p.pose(t0), p.pose(t1)
        cm, rm, sm, bm = q.pose(tm)
        torch.testing.assert_close(cm, (c0 + c1) / 2, atol=1e-6, rtol=0)
        assert sm == pytest.approx((s0 + s1) / 2) and bm == pytest.approx((b0 + b1) / 2)
        angle = lambda t: p.rotate_amp_deg * math.sin(2 * math.pi * (t + p.phase))  # noqa: E731
        want = _euler(p.base_rotation_deg) @ _axis_angle(p.rotate_axis, (angle(t0) + angle(t1)) / 2)
        torch.testing.assert_close(rm, want, atol=1e-6, rtol=0)
    # the midway of a time with itself is the scene at that time; a static scene has no motion to move
    same, t = scene.midway(0.4, 0.4)
    assert same.primitives == scene.primitives and t == 0.4
    static = SyntheticScene.make("static", seed=3)
    assert static.midway(0.0, 0.125)[0].primitives == static.primitives
    with pytest.raises(ValueError, match="t1=1.5"):
        scene.midway(0.0, 1.5)

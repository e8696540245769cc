"""K-Planes space-time field and the field designs of the 4D fit: shapes, the static start, config checks, a fit that
is deterministic for a seed and resumes bit-exactly, and loading a fitted K-Planes field back from its checkpoint."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

from sv4d_models.nerf.field import DynamicNeRF, FieldConfig
from sv4d_models.nerf.fit import fit_dynamic_nerf, load_fit_result
from sv4d_models.nerf.fit_config import DESIGNS, NeRFFitConfig, tiny_preset, with_design
from sv4d_models.nerf.kplanes import KPlanes, KPlanesConfig

_spec = importlib.util.spec_from_file_location("nerf_scene", Path(__file__).with_name("nerf_scene.py"))
scene = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scene)


def test_planes_shapes_and_static_start():
    g = torch.Generator().manual_seed(0)
    planes = KPlanes(KPlanesConfig(resolution=16, n_scales=2, time_resolution=5, features=4), True, g)
    x = torch.rand(50, 3, generator=g)
    static = planes(x)
    assert static.shape == (50, 8) and planes.n_output_dims == 8
    # space-time planes start at 1: every time reads the static field until the images say otherwise
    assert torch.equal(planes(x, torch.full((50,), 0.7)), static)
    with torch.no_grad():
        planes.time[1][:, :, 4].mul_(2.0)  # the finest scale's row at t = 1, in each of its 3 planes
    moved = planes(x, torch.ones(50))
    assert torch.equal(moved[:, :4], static[:, :4]) and torch.allclose(moved[:, 4:], 8 * static[:, 4:])
    # t = 0.875 lies halfway between the rows at 0.75 (1) and 1.0 (2): each of the 3 planes reads 1.5, the product 1.5^3
    half = planes(x, torch.full((50,), 0.875))
    assert torch.equal(half[:, :4], static[:, :4]) and torch.allclose(half[:, 4:], 1.5 ** 3 * static[:, 4:])
    assert float(planes.time_l1().detach()) > 0 and float(planes.time_smoothness().detach()) > 0


def test_field_reads_time_only_in_the_dynamic_stage():
    with pytest.raises(ValueError, match="needs the number of frames"):
        DynamicNeRF(FieldConfig(encoding="kplanes", motion="planes"))
    model = DynamicNeRF(FieldConfig(encoding="kplanes", motion="planes"), torch.Generator().manual_seed(0), n_frames=7)
    assert model.encoding.time[0].shape[2] == 7  # time_resolution 0: one row per frame
    with torch.no_grad():
        for p in model.encoding.time:
            p.add_(torch.rand(p.shape, generator=torch.Generator().manual_seed(1)))
    x = torch.rand(64, 3) - 0.5
    assert not torch.allclose(model.density(x, 0.0), model.density(x, 1.0))
    model.use_deformation = False  # the static stage: frame 0's field at every time
    assert torch.equal(model.density(x, 0.0), model.density(x, 1.0))
    assert model.deformation is None and len(model.dynamic_parameters()) == 3
    assert set(model.regularisers()) == {"plane_tv", "time_smooth", "time_l1"}
    warp = DynamicNeRF(FieldConfig(encoding="kplanes", motion="warp"), torch.Generator().manual_seed(0))
    assert warp.encoding.time is None and warp.deformation is not None


@pytest.mark.parametrize("bad, match", [
    ({"encoding": "hash", "motion": "planes"}, "needs field.encoding='kplanes'"),
    ({"encoding": "voxels"}, "field.encoding='voxels'"),
    ({"motion": "flow"}, "field.motion='flow'"),
])
def test_field_design_refusals(bad, match):
    with pytest.raises(ValueError, match=match):
        FieldConfig(**bad)


def test_planes_config_refusals_and_round_trip():
    with pytest.raises(ValueError, match="coarsest scale under 2 cells"):
        KPlanesConfig(resolution=8, n_scales=4)
    with pytest.raises(ValueError, match="time_resolution=1 cannot move"):
        KPlanesConfig(time_resolution=1)
    with pytest.raises(ValueError, match="init_low"):
        KPlanesConfig(init_low=0.5, init_high=0.1)
    with pytest.raises(ValueError, match="design='nerfies'"):
        with_design(tiny_preset(), "nerfies")
    for name in DESIGNS:
        cfg = with_design(tiny_preset(), name)
        assert NeRFFitConfig.from_dict(cfg.to_dict()) == cfg


def _problem(design):
    images, masks, cams, times = scene.scene_matrix([0.0, 120.0, 240.0], 3, 12, moving=True)
    cfg = with_design(tiny_preset(static_steps=6, dynamic_steps=8, resolution_schedule=((0, 12),), max_render_size=6,
                                  n_samples=12, checkpoint_every=5), design)
    cfg = dataclasses.replace(cfg, occupancy=dataclasses.replace(cfg.occupancy, warmup_steps=2, update_every=2))
    return images, masks, cams, times, cfg


@pytest.mark.parametrize("design", sorted(DESIGNS))
def test_every_design_fits_deterministically_for_a_seed(design):
    images, masks, cams, times, cfg = _problem(design)
    a = fit_dynamic_nerf(images, masks, cams, times, cfg)
    b = fit_dynamic_nerf(images, masks, cams, times, cfg)
    c = fit_dynamic_nerf(images, masks, cams, times, dataclasses.replace(cfg, seed=1))
    losses = [[h["loss"] for h in r.history] for r in (a, b, c)]
    assert losses[0] == losses[1] and losses[0] != losses[2]
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert all(torch.isfinite(torch.tensor(x)).all() for x in losses)
    if design != "hash_mlp":  # the regularisers of the design are in the loss
        assert {"plane_tv", "distortion", "floater"} <= set(a.history[-1]["terms"])


def test_kplanes_fit_resumes_bit_exactly_and_loads_back(tmp_path):
    images, masks, cams, times, cfg = _problem("kplanes")
    full = fit_dynamic_nerf(images, masks, cams, times, cfg)
    ckpt = dataclasses.replace(cfg, checkpoint_dir=str(tmp_path))
    with pytest.raises(InterruptedError):
        fit_dynamic_nerf(images, masks, cams, times, ckpt, should_stop=lambda: len(calls) >= 9,
                         callback=(calls := []).append)
    resumed = fit_dynamic_nerf(images, masks, cams, times, ckpt)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in full.history]
    loaded = load_fit_result(tmp_path / "nerf_checkpoint.pt")
    x = torch.rand(32, 3) - 0.5
    assert torch.equal(loaded.model.density(x, 0.5), full.model.density(x, 0.5))
    assert loaded.model.use_deformation  # the time planes are read after loading (dynamic stage was reached)

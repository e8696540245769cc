"""Conditioning vectors / dicts and camera angles against the official-code references."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sv4d_models import camera
from sv4d_models.kinds import KINDS, SV4D_ORBIT_VIEWS
from sv4d_models.sampling import conditioning as cond

from conftest import PARITY, require_shared


def _load(path: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(require_shared(path)))


@pytest.fixture(scope="module")
def full_size():
    return _load(PARITY / "full_size_conditioning_vectors.safetensors")


def test_timestep_embedding_layout():
    emb = cond.timestep_embedding(torch.tensor([0.0, 2.0]), 8)
    assert emb.dtype == torch.float32 and emb.shape == (2, 8)
    freqs = torch.exp(-np.log(10000.0) * torch.arange(4) / 4)
    torch.testing.assert_close(emb[1], torch.cat([torch.cos(2 * freqs), torch.sin(2 * freqs)]))
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))


@pytest.mark.parametrize("kind", ["sv4d", "sv4d2", "sv4d2_8views"])
def test_full_size_vectors_from_default_trajectories(full_size, kind):
    n_t, n_v = KINDS[kind].frames_per_pass, KINDS[kind].views_per_pass
    polars, azims = camera.conditioning_angles(kind)
    p, a = camera.tile_views(polars, n_t), camera.tile_views(azims, n_t)
    assert p.shape == (n_t * n_v,)
    torch.testing.assert_close(torch.from_numpy(p).float(), full_size[f"{kind}.polars_rad"], rtol=0, atol=0)
    torch.testing.assert_close(torch.from_numpy(a).float(), full_size[f"{kind}.azimuths_rad"], rtol=0, atol=0)
    c, uc = cond.camera_vectors(kind, p, a)
    torch.testing.assert_close(c, full_size[f"{kind}.c_vector"], rtol=0, atol=1e-6)
    torch.testing.assert_close(uc, full_size[f"{kind}.uc_vector"], rtol=0, atol=1e-6)
    assert torch.all(uc[:, :256] == 0) and not torch.all(c[:, :256] == 0)


def test_sv3d_p_vectors_inside_sv4d(full_size):
    polars, azims = camera.sv3d_conditioning_angles(10.0)
    torch.testing.assert_close(torch.from_numpy(polars).float(), full_size["sv3d_p_in_sv4d.polars_rad"], rtol=0, atol=0)
    torch.testing.assert_close(torch.from_numpy(azims).float(), full_size["sv3d_p_in_sv4d.azimuths_rad"], rtol=0, atol=0)
    c, uc = cond.camera_vectors("sv3d_p", polars, azims)
    torch.testing.assert_close(c, full_size["sv3d_p_in_sv4d.c_vector"], rtol=0, atol=1e-6)
    torch.testing.assert_close(uc, full_size["sv3d_p_in_sv4d.uc_vector"], rtol=0, atol=1e-6)


def test_sv3d_u_vector_is_cond_aug_only():
    c, uc = cond.camera_vectors("sv3d_u", n_latents=21)
    assert c.shape == (21, 256) and torch.equal(c, uc)
    with pytest.raises(ValueError, match="n_latents"):
        cond.camera_vectors("sv3d_u")


@pytest.mark.parametrize("name,kind", [("fixture_a", "sv4d"), ("fixture_c", "sv4d2"), ("fixture_e", "sv3d_p")])
def test_fixture_vectors(name, kind):
    d = _load(PARITY / name / "inputs.safetensors")
    c, uc = cond.camera_vectors(kind, d["cam.polars_rad"], d["cam.azimuths_rad"], dims=(32, 48, 48))
    torch.testing.assert_close(c, d["c.vector"], rtol=0, atol=1e-6)
    torch.testing.assert_close(uc, d["uc.vector"], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name,kind,n_views", [("fixture_a", "sv4d", 2), ("fixture_c", "sv4d2", 4)])
def test_build_sv4d_cond_reproduces_fixture_dicts(name, kind, n_views):
    d = _load(PARITY / name / "inputs.safetensors")
    n_t = d["c.crossattn"].shape[1]
    polars = d["cam.polars_rad"][:n_views]
    azims = d["cam.azimuths_rad"][:n_views]
    c, uc = cond.build_sv4d_cond(kind, d["c.crossattn"][0], d["c.concat"], d["c.cond_motion"], d["c.cond_view"],
                                 polars, azims, dims=(32, 48, 48))
    for key in ("crossattn", "concat", "vector", "cond_view", "cond_motion"):
        torch.testing.assert_close(c[key], d[f"c.{key}"], rtol=0, atol=1e-6, msg=f"c.{key}")
        torch.testing.assert_close(uc[key], d[f"uc.{key}"], rtol=0, atol=1e-6, msg=f"uc.{key}")
    # per-frame concat latents are repeated for the V views in (t, v) order
    frame_lat = torch.randn(n_t, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    c2, _ = cond.build_sv4d_cond(kind, d["c.crossattn"], frame_lat, d["c.cond_motion"], None, polars, azims,
                                 dims=(32, 48, 48), n_views=n_views)
    assert torch.equal(c2["concat"][n_views + 1], frame_lat[1])
    assert torch.equal(c2["concat"][n_views - 1], frame_lat[0])
    assert torch.all(c2["cond_view"] == 0) and c2["cond_view"].shape[0] == n_views


def test_build_sv3d_cond_matches_fixture_e():
    d = _load(PARITY / "fixture_e" / "inputs.safetensors")
    c, uc = cond.build_sv3d_cond("sv3d_p", d["c.crossattn"][0, 0], d["c.concat"][0], n_frames=5,
                                 polars_rad=d["cam.polars_rad"], azimuths_rad=d["cam.azimuths_rad"], dims=(32, 48, 48))
    for key in ("crossattn", "concat", "vector"):
        torch.testing.assert_close(c[key], d[f"c.{key}"], rtol=0, atol=1e-6, msg=f"c.{key}")
        torch.testing.assert_close(uc[key], d[f"uc.{key}"], rtol=0, atol=1e-6, msg=f"uc.{key}")


def test_build_sv4d_cond_rejects_bad_shapes():
    lat = torch.zeros(5, 4, 2, 2)
    with pytest.raises(ValueError, match="concat_latents"):
        cond.build_sv4d_cond("sv4d", torch.zeros(5, 16), torch.zeros(7, 4, 2, 2), lat, None, [0.1] * 8, [0.2] * 8)
    with pytest.raises(ValueError, match="angles"):
        cond.build_sv4d_cond("sv4d", torch.zeros(5, 16), lat, lat, None, [0.1] * 3, [0.2] * 3)


def test_sv4d_polar_off_by_one_quirk():
    elevs = list(np.linspace(0.0, 40.0, 21))  # per-view elevation list (sv3d_p)
    p_off, a_off = camera.sv4d_conditioning_angles(elevs, official=True)
    p_fix, a_fix = camera.sv4d_conditioning_angles(elevs, official=False)
    sub = np.array(SV4D_ORBIT_VIEWS[1:])
    # reference image of view j is raw SV3D frame sub[j] - 1; the official polar is read at sub[j]
    np.testing.assert_allclose(p_off, np.deg2rad(90 - np.asarray(elevs)[sub]))
    np.testing.assert_allclose(p_fix, np.deg2rad(90 - np.asarray(elevs)[sub - 1]))
    np.testing.assert_allclose(a_off, a_fix, atol=1e-12)  # uniform orbit: azimuth subtraction compensates
    assert np.all(np.abs(p_off - p_fix) > 1e-3)


def test_sv4d2_relative_angles():
    p, a = camera.sv4d2_conditioning_angles("sv4d2", [10.0, 10.0, 30.0, 10.0, -10.0], [20, 80, 140, 200, 260])
    np.testing.assert_allclose(np.rad2deg(p), [90.0, 70.0, 90.0, 110.0])
    np.testing.assert_allclose(np.rad2deg(a), [60.0, 120.0, 180.0, 240.0])
    with pytest.raises(ValueError, match="elevations_deg has 3 values"):
        camera.sv4d2_conditioning_angles("sv4d2", [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="model_kind"):
        camera.conditioning_angles("svd")

"""The node pack's ComfyUI-free helpers: socket values, angle widgets, previews / grid layout, output folders."""
from __future__ import annotations

import pytest
import torch

from comfyui_env import pack_module

values, asset = pack_module("nodes.values"), pack_module("nodes.asset")


def test_angle_widgets():
    assert values.parse_angles("", "x") is None and values.parse_angles(" 10, 12 14 ", "x") == (10.0, 12.0, 14.0)
    with pytest.raises(ValueError, match=r"elevations_deg: 'ten' is not a number.*'10, 10, 12'"):
        values.parse_angles("10, ten", "elevations_deg")


def test_camera_spec_checks_counts_and_kind():
    spec = values.CameraSpec("sv4d2", 5.0)
    assert spec.n_columns == 5 and len(spec.cameras()) == 5
    with pytest.raises(ValueError, match="azimuths_deg has 3 values; give 1 value or 5"):
        values.CameraSpec("sv4d2", None, (0.0, 10.0, 20.0))
    with pytest.raises(ValueError, match="elevations_deg has 2 values; give 1 value or 21"):
        values.CameraSpec("sv4d", (10.0, 12.0))
    with pytest.raises(ValueError, match="cameras for model kind 'sv3d_u'"):
        values.CameraSpec("sv3d_u")
    with pytest.raises(ValueError, match=r"21-view SV3D orbit .* MODEL is 'sv4d2'.*model_kind='sv4d2'"):
        values.CameraSpec("sv4d").check_kind("sv4d2")
    values.CameraSpec("sv4d2_8views").check_kind("sv4d2_8views")


def test_latent_mosaic_and_grid_layout():
    lat = torch.arange(5 * 4 * 2 * 3, dtype=torch.float32).view(5, 4, 2, 3)
    mosaic = values.tile_latents(lat, 2)  # 3 rows x 2 columns, last cell empty
    assert mosaic.shape == (1, 4, 6, 6)
    assert torch.equal(mosaic[0, :, 2:4, 3:6], lat[3]) and torch.equal(mosaic[0, :, 4:6, 3:6], torch.zeros(4, 2, 3))
    images = torch.rand(3, 4, 8, 8, 3)
    grid = values.grid_image(images, 0)
    assert grid.shape == (1, 24, 32, 3) and torch.equal(grid[0, 8:16, 16:24], images[1, 2])  # row = frame, col = view
    assert values.grid_image(images, 4).shape == (1, 12, 16, 3)


def test_run_keys_follow_the_inputs():
    a = values.run_key("x", 1, tensors=(torch.zeros(2),))
    assert a == values.run_key("x", 1, tensors=(torch.zeros(2),))
    assert a != values.run_key("x", 2, tensors=(torch.zeros(2),)) != values.run_key("x", 1, tensors=(torch.ones(2),))


@pytest.mark.parametrize("prefix", ["../escape", "/abs/path", "sv4d/../../x", "C:\\temp\\x", "sv4d/", "", ".hidden/x"])
def test_output_names_cannot_leave_the_output_folder(tmp_path, prefix):
    with pytest.raises(ValueError, match="filename_prefix .* (not allowed|outside).*such as 'sv4d/asset'"):
        asset.output_target(tmp_path, prefix)


def test_output_folders_are_numbered_and_published_whole(tmp_path):
    final, relative = asset.output_target(tmp_path, "sv4d/asset")
    assert relative == "sv4d/asset_00001_" and final == tmp_path / "sv4d" / "asset_00001_"

    def fail(folder):
        (folder / "half.glb").write_bytes(b"x")
        raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError, match="crash"):
        asset.publish(final, fail)
    assert list((tmp_path / "sv4d").iterdir()) == []  # nothing half-written is left, not even the partial folder
    asset.publish(final, lambda folder: (folder / "a.glb").write_bytes(b"glb"))
    assert (final / "a.glb").read_bytes() == b"glb"
    assert asset.output_target(tmp_path, "sv4d/asset")[1] == "sv4d/asset_00002_"
    with pytest.raises(FileExistsError, match="choose another filename_prefix"):
        asset.publish(final, lambda folder: None)

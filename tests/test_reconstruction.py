"""reconstruct(): outputs checked before the fit, metrics.json with held-out views / frames, and an empty field is an
error (no exports), not a result."""
from __future__ import annotations

import json

import pytest
import torch

from sv4d_models.nerf.fit_config import tiny_preset
from sv4d_models.presets import get_preset
from sv4d_models.reconstruction import EmptyReconstructionError, ExportSettings, holdout_split, reconstruct
from sv4d_models.synthetic import SyntheticScene


@pytest.fixture(scope="module")
def matrix():
    return SyntheticScene.make(kind="rigid", seed=3).render_matrix(model_kind="sv4d", n_frames=5, size=24)


def test_existing_outputs_are_refused_before_fitting(matrix, tmp_path):
    (tmp_path / "turntable.mp4").write_bytes(b"earlier run")
    with pytest.raises(FileExistsError, match="turntable.mp4 already exists"):
        reconstruct(matrix["images"], matrix["masks"], matrix["cameras"], matrix["times"], tmp_path,
                    config=tiny_preset(static_steps=1, dynamic_steps=1))
    assert not (tmp_path / "nerf").exists()  # nothing left behind by the refusal
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError, match="not a folder"):
        reconstruct(matrix["images"], matrix["masks"], matrix["cameras"], matrix["times"], tmp_path / "file")


def test_holdout_split_keeps_a_middle_view_and_frame_out():
    assert holdout_split(torch.zeros(5, 9, 2, 2, 3), ExportSettings()) == ([0, 1, 3, 4], [0, 1, 2, 3, 5, 6, 7, 8])
    assert holdout_split(torch.zeros(3, 9, 2, 2, 3), ExportSettings()) == ([0, 1, 2], list(range(9)))
    assert holdout_split(torch.zeros(5, 9, 2, 2, 3), ExportSettings(holdout=False))[1] == list(range(9))
    with pytest.raises(ValueError, match="preset='huge'"):
        get_preset("huge")
    assert get_preset("cpu").export_settings().turntable_frames < get_preset("gpu").export_settings().turntable_frames


def test_an_empty_field_is_an_error_with_metrics_and_no_exports(matrix, tmp_path, monkeypatch):
    from sv4d_models.nerf.field import DynamicNeRF

    monkeypatch.setattr(DynamicNeRF, "_sigma", lambda self, enc, xc, inside: torch.zeros(inside.shape))
    events = []
    with pytest.raises(EmptyReconstructionError, match=r"renders \(nearly\) nothing in 4 of 4 frames"):
        reconstruct(matrix["images"], matrix["masks"], matrix["cameras"], matrix["times"], tmp_path,
                    config=tiny_preset(static_steps=1, dynamic_steps=0), callback=events.append,
                    export=get_preset("tiny").export_settings(eval_size=16))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["fitted"]["min_coverage_ratio"] < 0.5 and metrics["held_out_view"]["view"] == 4
    assert not (tmp_path / "turntable.mp4").exists() and not (tmp_path / "animated.glb").exists()
    assert any(e.get("stage") == "quality" for e in events)


def test_a_field_without_surface_in_some_frame_is_an_error(matrix, tmp_path):
    with pytest.raises(EmptyReconstructionError, match=r"no surface at density 1e\+09 in 5 of 5 frames"):
        reconstruct(matrix["images"], matrix["masks"], matrix["cameras"], matrix["times"], tmp_path,
                    config=tiny_preset(static_steps=2, dynamic_steps=0),
                    export=get_preset("tiny").export_settings(eval_size=16, mesh_threshold=1e9, min_coverage_ratio=0))
    assert not (tmp_path / "animated.glb").exists() and (tmp_path / "metrics.json").is_file()

"""fit_dynamic_nerf: quality on the analytic two-sphere scene, checkpoint/resume determinism, cancellation."""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import warnings
from pathlib import Path

import pytest
import torch

from sv4d_models.camera import Cameras
from sv4d_models.nerf.fit import CHECKPOINT_NAME, fit_dynamic_nerf, load_fit_result, render
from sv4d_models.nerf.fit_config import NeRFFitConfig, tiny_preset
from sv4d_models.stopping import JobInterrupted

_spec = importlib.util.spec_from_file_location("nerf_scene", Path(__file__).with_name("nerf_scene.py"))
scene = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scene)

TRAIN_AZ = [0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0]
HELD_OUT = Cameras.orbit(torch.tensor([20.0, 160.0, 250.0]), 10.0)


def _dynamic_cfg(**kw):
    # Few training frames: time enters linearly (no sin/cos bands) so held-out times interpolate smoothly, and
    # frame 0 stays in the dynamic batches (no hard zero) so the warp is pinned to identity at t = 0.
    base = tiny_preset()
    deform = dataclasses.replace(base.field.deformation, n_freq_t=0, zero_at_t0=False, hidden=64)
    return tiny_preset(field=dataclasses.replace(base.field, deformation=deform), **kw)


def test_static_fit_psnr_on_held_out_views():  # ~22 s on one core
    images, masks, cams, times = scene.scene_matrix(TRAIN_AZ, 1, 32, moving=False)
    cfg = tiny_preset(static_steps=150, dynamic_steps=0, resolution_schedule=((0, 32),), max_render_size=32,
                      static_views_per_step=4)
    res = fit_dynamic_nerf(images, masks, cams, times, cfg)
    gt, gt_mask = scene.render_scene(HELD_OUT, 32, 0.0)
    out = res.render(HELD_OUT, 0.0, 32)
    assert scene.psnr(out["rgb"], gt) >= 26.0
    assert float(out["opacity"][gt_mask > 0].mean()) > 0.9 > 0.1 > float(out["opacity"][gt_mask == 0].mean())
    assert out["normal"].shape == (3, 32, 32, 3) and out["depth"].shape == (3, 32, 32)


@pytest.mark.slow
def test_dynamic_fit_psnr_on_held_out_views_and_times():  # ~65 s on one core
    images, masks, cams, times = scene.scene_matrix(TRAIN_AZ, 4, 32, moving=True)
    cfg = _dynamic_cfg(static_steps=100, dynamic_steps=300, resolution_schedule=((0, 32),), max_render_size=32,
                       static_views_per_step=4, lr_deformation=0.01, dynamic_canonical_lr_scale=0.2)
    res = fit_dynamic_nerf(images, masks, cams, times, cfg)
    for t in (1 / 3, 1 / 6, 0.5, 5 / 6):  # a training time, then three held-out times
        gt, _ = scene.render_scene(HELD_OUT, 32, t, moving=True)
        assert scene.psnr(res.render(HELD_OUT, t, 32, normals=None)["rgb"], gt) >= 24.0, t
    # The deformation really moves the object: the render at t = 1 matches frame 1, not frame 0.
    late = res.render(HELD_OUT, 1.0, 32, normals=None)["rgb"]
    gt_late, _ = scene.render_scene(HELD_OUT, 32, 1.0, moving=True)
    gt_early, _ = scene.render_scene(HELD_OUT, 32, 0.0, moving=True)
    assert scene.psnr(late, gt_late) > scene.psnr(late, gt_early) + 2.0


def _small_problem():
    images, masks, cams, times = scene.scene_matrix([0.0, 120.0, 240.0], 2, 12, moving=True)
    cfg = _dynamic_cfg(static_steps=6, dynamic_steps=6, resolution_schedule=((0, 8), (3, 12)), max_render_size=6,
                       n_samples=12, checkpoint_every=4)
    cfg = dataclasses.replace(cfg, occupancy=dataclasses.replace(cfg.occupancy, warmup_steps=2, update_every=2))
    return images, masks, cams, times, cfg


def test_resume_from_checkpoint_is_bit_exact(tmp_path):
    images, masks, cams, times, cfg = _small_problem()
    full = fit_dynamic_nerf(images, masks, cams, times, cfg)
    ckpt_cfg = dataclasses.replace(cfg, checkpoint_dir=str(tmp_path / "run"))
    calls = []
    with pytest.raises(JobInterrupted, match="step 7 of 12 is saved") as stop:
        fit_dynamic_nerf(images, masks, cams, times, ckpt_cfg, callback=calls.append, should_stop=lambda: len(calls) >= 7)
    assert stop.value.step == 7 and stop.value.resumable and (tmp_path / "run" / CHECKPOINT_NAME).exists()
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")]  # no temp files left
    resumed = fit_dynamic_nerf(images, masks, cams, times, ckpt_cfg)
    assert resumed.step == cfg.total_steps
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert torch.equal(full.occupancy.binary, resumed.occupancy.binary)
    assert [h["loss"] for h in full.history] == [h["loss"] for h in resumed.history]
    assert len(resumed.history) == cfg.total_steps
    loaded = load_fit_result(tmp_path / "run" / CHECKPOINT_NAME)
    assert loaded.step == cfg.total_steps and loaded.config.field == cfg.field
    r1 = render(loaded.model, cams[[1]], 0.5, 8, n_samples=8, occupancy=loaded.occupancy)
    r2 = render(full.model, cams[[1]], 0.5, 8, n_samples=8, occupancy=full.occupancy)
    assert torch.equal(r1["rgb"], r2["rgb"])
    # A finished checkpoint returns at once; a different config is refused.
    again = fit_dynamic_nerf(images, masks, cams, times, ckpt_cfg, callback=lambda i: pytest.fail("trained"))
    assert again.step == cfg.total_steps
    with pytest.raises(ValueError, match=r"nerf_checkpoint.pt was written with other fit settings \(seed: 0 \(recorded\) vs 1 \(now\)\)"):
        fit_dynamic_nerf(images, masks, cams, times, dataclasses.replace(ckpt_cfg, seed=1))
    with pytest.raises(ValueError, match="written for other images"):
        fit_dynamic_nerf(images.flip(-2), masks, cams, times, ckpt_cfg)


def test_part_motion_is_estimated_once_saved_and_used_between_frames(tmp_path, monkeypatch):
    from sv4d_models.nerf import fit as fit_module
    from sv4d_models.nerf.motion import MotionConfig, MotionField

    images, masks, cams, times, cfg = _small_problem()
    cfg = dataclasses.replace(cfg, checkpoint_dir=str(tmp_path / "run"),
                              motion=MotionConfig(enabled=True, grid=16, refine_steps=4))
    res = fit_dynamic_nerf(images, masks, cams, times, cfg)
    assert res.motion is not None and res.motion.times.tolist() == times.double().tolist()
    assert isinstance(res.render_field(), MotionField)
    loaded = load_fit_result(tmp_path / "run" / CHECKPOINT_NAME)
    saved = loaded.motion.state_dict()
    for k, v in res.motion.state_dict().items():
        assert (torch.equal(v, saved[k]) if torch.is_tensor(v) else v == saved[k]), k
    # a finished checkpoint brings its motion back: nothing is estimated again
    monkeypatch.setattr(fit_module, "estimate_part_motion", lambda *a, **k: pytest.fail("estimated again"))
    again = fit_dynamic_nerf(images, masks, cams, times, cfg)
    assert torch.equal(again.motion.step_w, res.motion.step_w)
    # renders at a fitted frame are the field's; without motion the result renders the model itself
    r_motion = res.render(cams[[1]], 1.0, 8, n_samples=8, normals=None)
    r_plain = render(res.model, cams[[1]], 1.0, 8, n_samples=8, occupancy=res.occupancy, normals=None)
    assert torch.equal(r_motion["rgb"], r_plain["rgb"])
    off = fit_dynamic_nerf(images, masks, cams, times, dataclasses.replace(
        cfg, checkpoint_dir="", motion=MotionConfig(enabled=False)))
    assert off.motion is None and off.render_field() is off.model


def test_should_stop_and_callback_and_determinism():
    images, masks, cams, times, cfg = _small_problem()
    cfg = dataclasses.replace(cfg, preview_every=5, preview_size=8)
    infos = []
    with pytest.raises(JobInterrupted, match="stopped at step 5 of 12; nothing was kept") as stop:
        fit_dynamic_nerf(images, masks, cams, times, cfg, callback=infos.append, should_stop=lambda: len(infos) >= 5)
    assert isinstance(stop.value, InterruptedError) and stop.value.step == 5 and len(infos) == 5
    assert infos[0]["stage"] == "static" and set(infos[0]["terms"]) >= {"rgb", "mask"}
    assert infos[4]["preview"].shape == (8, 8, 3)
    with pytest.raises(JobInterrupted, match="step 0 of 12"):
        fit_dynamic_nerf(images, masks, cams, times, cfg, should_stop=lambda: True)
    a = fit_dynamic_nerf(images, masks, cams, times, cfg)
    b = fit_dynamic_nerf(images, masks, cams, times, cfg)
    assert a.history[-1]["stage"] == "dynamic"
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert torch.equal(a.model.encoding.table, b.model.encoding.table)
    out = render(a.model, cams[[0]], 0.5, 10, n_samples=8, normals=None)
    assert set(out) == {"rgb", "opacity", "depth"} and out["rgb"].shape == (1, 10, 10, 3)


def test_fit_input_validation():
    images, masks, cams, times, cfg = _small_problem()
    with pytest.raises(ValueError, match="masks"):
        fit_dynamic_nerf(images, masks[:, :, :5], cams, times, cfg)
    with pytest.raises(ValueError, match="times"):
        fit_dynamic_nerf(images, masks, cams, torch.tensor([0.0, 2.0]), cfg)
    with pytest.raises(ValueError, match="views"):
        fit_dynamic_nerf(images, masks, cams[[0, 1]], times, cfg)
    with pytest.raises(TypeError, match="cameras"):
        fit_dynamic_nerf(images, masks, "cams", times, cfg)


def test_gpu_recipe_defaults_run_on_cpu_with_small_grid():
    """The default (paper) recipe: analytic normals with double backward, bilateral depth/normal terms, LPIPS
    dropped with a warning when its weights are not on disk; only the grid and step counts are shrunk."""
    images, masks, cams, times = scene.scene_matrix([0.0, 120.0, 240.0], 2, 12, moving=True)
    base = NeRFFitConfig()
    small = dataclasses.replace(base.field.grid, n_levels=4, log2_hashmap_size=10, base_resolution=8)
    cfg = dataclasses.replace(base, field=dataclasses.replace(base.field, grid=small, backend="torch"),
                              static_steps=2, dynamic_steps=2, n_samples=16, checkpoint_every=1000)
    infos = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = fit_dynamic_nerf(images, masks, cams, times, cfg, callback=infos.append)
    assert [i["stage"] for i in infos] == ["static", "static", "dynamic", "dynamic"]
    assert {"rgb", "mask", "bilateral_depth", "bilateral_normal"} <= set(infos[-1]["terms"])
    assert all(math.isfinite(i["loss"]) for i in infos)
    assert res.model.deformation.layers[0].weight.grad is not None  # deformation trained in stage 2


def test_a_stop_during_the_part_motion_keeps_the_finished_field_and_resumes_without_refitting(tmp_path):
    from sv4d_models.events import PROGRESS
    from sv4d_models.nerf.motion import MotionConfig

    images, masks, cams, times, cfg = _small_problem()
    cfg = dataclasses.replace(cfg, checkpoint_dir=str(tmp_path / "run"),
                              motion=MotionConfig(enabled=True, grid=16, refine_steps=4))
    seen = []
    with pytest.raises(JobInterrupted, match="estimate the parts' motion") as stopped:  # stop once training is done
        fit_dynamic_nerf(images, masks, cams, times, cfg, callback=seen.append,
                         should_stop=lambda: bool(seen) and seen[-1].get("step") == cfg.total_steps)
    assert stopped.value.resumable and stopped.value.step == cfg.total_steps
    assert [e for e in seen if e["type"] == PROGRESS] == []  # stopped before the first frame step
    steps = []
    res = fit_dynamic_nerf(images, masks, cams, times, cfg, callback=steps.append)
    assert not [e for e in steps if "step" in e]  # no training step ran again
    motion_events = [e for e in steps if e["type"] == PROGRESS]
    assert [(e["stage"], e["done"], e["total"]) for e in motion_events] == \
        [("part motion", k + 1, len(times) - 1) for k in range(len(times) - 1)]
    assert res.motion is not None and res.step == cfg.total_steps
    fresh = fit_dynamic_nerf(images, masks, cams, times, dataclasses.replace(cfg, checkpoint_dir=""))
    assert torch.equal(res.motion.step_w, fresh.motion.step_w)  # the same motion as an uninterrupted fit
    seen.clear()
    with pytest.raises(JobInterrupted, match="nothing was kept"):  # without a checkpoint nothing survives
        fit_dynamic_nerf(images, masks, cams, times, dataclasses.replace(cfg, checkpoint_dir=""), callback=seen.append,
                         should_stop=lambda: bool(seen) and seen[-1].get("step") == cfg.total_steps)

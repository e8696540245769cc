"""The 4D fit's divergence guard (rollback + lower learning rate, then a named error) and its input checks."""
from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import torch

from sv4d_models.nerf import fit as fit_module
from sv4d_models.nerf.fit import fit_dynamic_nerf
from sv4d_models.nerf.fit_config import tiny_preset
from sv4d_models.nerf.guard import FitDivergedError, GuardConfig

_spec = importlib.util.spec_from_file_location("nerf_scene", Path(__file__).with_name("nerf_scene.py"))
scene = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(scene)


def small():
    images, masks, cams, times = scene.scene_matrix([0.0, 120.0, 240.0], 2, 12, moving=True)
    cfg = tiny_preset(static_steps=8, dynamic_steps=8, resolution_schedule=((0, 12),), max_render_size=12,
                      n_samples=12, guard=GuardConfig(snapshot_every=2))
    return images, masks, cams, times, cfg


def poison(monkeypatch, bad_steps, times: int = 1000):
    """Make ``train_step`` report a NaN loss (and NaN weights) at the given optimiser steps, ``times`` times."""
    real = fit_module.train_step
    left = {"n": times}

    def step(state):
        info = real(state)
        if info["step"] in bad_steps and left["n"] > 0:
            left["n"] -= 1
            with torch.no_grad():
                next(state.model.parameters()).fill_(float("nan"))
            info = {**info, "loss": float("nan")}
        return info

    monkeypatch.setattr(fit_module, "train_step", step)


def test_a_nan_step_is_rolled_back_and_the_fit_recovers(monkeypatch):
    images, masks, cams, times, cfg = small()
    poison(monkeypatch, {5}, times=1)
    events = []
    res = fit_dynamic_nerf(images, masks, cams, times, cfg, callback=events.append)
    rollbacks = [e for e in events if e["type"] == "rollback"]
    assert len(rollbacks) == 1 and rollbacks[0]["at_step"] == 5 and rollbacks[0]["to_step"] == 4
    assert rollbacks[0]["lr_scale"] == 0.5 and [r["at_step"] for r in res.rollbacks] == [5]
    assert res.step == cfg.total_steps and len(res.history) == cfg.total_steps
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


def test_a_fit_that_keeps_diverging_names_the_step(monkeypatch):
    images, masks, cams, times, cfg = small()
    poison(monkeypatch, {9})  # the retried step 9 fails every time
    with pytest.raises(FitDivergedError, match=r"diverged at step 9 .* 4 rollbacks .* last good state is step 8"):
        fit_dynamic_nerf(images, masks, cams, times, cfg)


def test_guard_can_be_switched_off_and_validates_its_settings(monkeypatch):
    images, masks, cams, times, cfg = small()
    poison(monkeypatch, {3})
    res = fit_dynamic_nerf(images, masks, cams, times, dataclasses.replace(cfg, guard=GuardConfig(enabled=False)))
    assert res.rollbacks == [] and not torch.isfinite(next(res.model.parameters())).all()
    with pytest.raises(ValueError, match="spike_factor"):
        GuardConfig(spike_factor=1.0)


def test_bad_training_data_is_refused_before_fitting():
    images, masks, cams, times, cfg = small()
    bad = images.clone()
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="images contain NaN"):
        fit_dynamic_nerf(bad, masks, cams, times, cfg)
    with pytest.raises(ValueError, match=r"range over \[22.95, 255\]; divide 0..255"):
        fit_dynamic_nerf(images * 255, masks, cams, times, cfg)
    with pytest.raises(ValueError, match="every mask is empty"):
        fit_dynamic_nerf(images, torch.zeros_like(masks), cams, times, cfg)
    with pytest.raises(TypeError, match="float tensor"):
        fit_dynamic_nerf((images * 255).to(torch.uint8), masks, cams, times, cfg)
    with pytest.raises(ValueError, match="at least one step"):
        tiny_preset(static_steps=0, dynamic_steps=0)
    with pytest.raises(ValueError, match="n_samples=0"):
        tiny_preset(n_samples=0)

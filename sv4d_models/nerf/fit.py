"""Fit a dynamic NeRF to the SV4D image matrix: static stage (frame 0) then dynamic stage, coarse-to-fine, with
checkpoint/resume, progress callback and cooperative stopping (``sv4d_models.stopping``). ``render()`` (novel views
and times) lives in ``renderer``; one optimisation step in ``fit_steps``.

Inputs: images ``[F, V, H, W, 3]`` in [0, 1] on white, masks ``[F, V, H, W]``, ``Cameras`` for the V views (shared
by all frames) or a sequence of F ``Cameras``, times ``[F]`` in [0, 1] (times[0] = 0 is the canonical frame).
Device and dtype follow ``images``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import events
from ..camera import Cameras
from ..config import config_identity, identity_differences
from ..files import atomic_torch_save, clean_temp_files, fingerprint, torch_load
from ..stopping import JobInterrupted, StopCheck, stop_requested
from .field import DynamicNeRF
from .fit_config import NeRFFitConfig
from .fit_steps import TrainState, build_state, train_step
from .guard import DivergenceGuard
from .motion import MotionField, PartMotion, estimate_part_motion
from .renderer import OccupancyGrid, render

CHECKPOINT_NAME = "nerf_checkpoint.pt"
CHECKPOINT_FORMAT = "sv4d_nerf_fit/2"


@dataclass
class NeRFFitResult:
    model: DynamicNeRF
    occupancy: OccupancyGrid | None
    config: NeRFFitConfig
    step: int  # steps completed
    history: list = field(default_factory=list)  # per-step dicts of float loss terms
    rollbacks: list = field(default_factory=list)  # divergence-guard events (nerf/guard.py)
    motion: PartMotion | None = None  # the parts' motion between the frames (config.motion; nerf/motion.py)

    def render_field(self):
        """What renders read: the model, through the parts' motion between its frames when it was estimated."""
        return self.model if self.motion is None else MotionField(self.model, self.motion)

    def render(self, cameras: Cameras, times, height: int, width: int | None = None, **kw) -> dict:
        kw.setdefault("n_samples", self.config.n_samples)
        kw.setdefault("chunk", self.config.render_chunk)
        return render(self.render_field(), cameras, times, height, width, occupancy=self.occupancy, **kw)

def camera_matrix(cameras, n_frames: int, n_views: int) -> tuple[torch.Tensor, float]:
    """``Cameras`` (V views) or a sequence of F ``Cameras`` -> c2w ``[F, V, 4, 4]`` float64 and the FoV (deg)."""
    if isinstance(cameras, Cameras):
        cams = [cameras] * n_frames
    elif isinstance(cameras, Sequence) and all(isinstance(c, Cameras) for c in cameras):
        cams = list(cameras)
    else:
        raise TypeError(f"cameras must be Cameras or a sequence of Cameras, got {type(cameras).__name__}")
    if len(cams) != n_frames or any(len(c) != n_views for c in cams):
        raise ValueError(f"cameras must hold {n_views} views (for each of {n_frames} frames); got "
                         f"{[len(c) for c in cams]} views for {len(cams)} frame(s)")
    if len({c.fov_deg for c in cams}) != 1:
        raise ValueError("all cameras must share one fov_deg")
    return torch.stack([c.c2w for c in cams]), cams[0].fov_deg


def data_fingerprint(images: torch.Tensor, masks: torch.Tensor, times: torch.Tensor) -> str:
    """Identity of the training data (``files.fingerprint`` of the float32 images, masks and times): a checkpoint
    is never resumed on other data."""
    return fingerprint(images.detach().float(), masks.detach().float(), torch.as_tensor(times, dtype=torch.float64))


def save_checkpoint(path: Path, state: TrainState, cfg: NeRFFitConfig, data_id: str | None = None,
                    motion: PartMotion | None = None) -> None:
    """Atomic save (``files.atomic_torch_save``) of everything needed to resume; tensors and plain containers
    only, so it is read back with ``weights_only=True``. ``motion``: the parts' motion, once the fit is done."""
    payload = {"format": CHECKPOINT_FORMAT, "config": cfg.to_dict(), "identity": config_identity(cfg),
               "motion": None if motion is None else motion.state_dict(),
               "data": data_id, "step": state.step, "model": state.model.state_dict(),
               "optimizer": state.optimizer.state_dict(),
               "occupancy": state.occupancy.state_dict() if state.occupancy is not None else None,
               "rng": state.generator.get_state(), "history": state.history, "lr_scale": state.lr_scale,
               "n_frames": len(state.times)}
    atomic_torch_save(payload, path)


def _read_checkpoint(path: Path) -> dict:
    payload = torch_load(path, "a NeRF fit checkpoint")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(f"{path} is not an {CHECKPOINT_FORMAT} checkpoint (format={found!r}); delete it to start "
                         "the fit over")
    return payload


def checkpoint_mismatch(payload: dict, cfg: NeRFFitConfig, data_id: str | None) -> list[str]:
    """What differs between a checkpoint and this fit: settings (dotted keys) and / or the data; [] = resumable."""
    changed = identity_differences(payload.get("identity"), config_identity(cfg))
    if data_id is not None and payload.get("data") != data_id:
        changed.append(f"data: {str(payload.get('data'))[:12]} (recorded) vs {data_id[:12]} (now): other images / "
                       "masks / times")
    return changed


def load_checkpoint(path: Path, state: TrainState, cfg: NeRFFitConfig, data_id: str | None = None) -> dict:
    """Restore a ``TrainState`` in place and return the checkpoint's payload (for what is not training state, e.g.
    the part motion); refuses a checkpoint of another config or other data (ValueError)."""
    payload = _read_checkpoint(path)
    changed = identity_differences(payload.get("identity"), config_identity(cfg))
    if changed:
        raise ValueError(f"checkpoint {path} was written with other fit settings ({'; '.join(changed[:3])}"
                         f"{'; ...' if len(changed) > 3 else ''}); pass --overwrite (overwrite=True) to start over, "
                         "use another checkpoint_dir, or go back to the recorded settings to continue")
    if data_id is not None and payload.get("data") != data_id:
        raise ValueError(f"checkpoint {path} was written for other images / masks / times (data "
                         f"{str(payload.get('data'))[:12]} vs {data_id[:12]} now); pass --overwrite "
                         "(overwrite=True) to start over or use another checkpoint_dir")
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    if state.occupancy is not None:
        state.occupancy.load_state_dict(payload["occupancy"])
    state.generator.set_state(payload["rng"])
    state.step = int(payload["step"])
    state.history = list(payload["history"])
    state.lr_scale = float(payload.get("lr_scale", 1.0))
    return payload


def load_fit_result(path: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> NeRFFitResult:
    """Rebuild model + occupancy grid + config from a checkpoint file written by ``fit_dynamic_nerf`` (for
    rendering / mesh export without the training data)."""
    payload = _read_checkpoint(path)
    cfg = NeRFFitConfig.from_dict(payload["config"])
    model = DynamicNeRF(cfg.field, n_frames=payload.get("n_frames")).to(device, dtype)
    model.load_state_dict(payload["model"])
    model.use_deformation = cfg.dynamic_steps > 0 and payload["step"] > cfg.static_steps
    occ = None
    if payload["occupancy"] is not None:
        occ = OccupancyGrid(cfg.field.aabb_half_size, cfg.occupancy.resolution, cfg.occupancy.ema_decay,
                            cfg.occupancy.threshold).to(device)
        occ.load_state_dict(payload["occupancy"])
    motion = PartMotion.from_state_dict(payload["motion"]) if payload.get("motion") is not None else None
    return NeRFFitResult(model, occ, cfg, int(payload["step"]), list(payload["history"]), motion=motion)


def check_fit_inputs(images, masks, cameras, times, normal_maps=None):
    """Everything ``fit_dynamic_nerf`` checks about its data, without fitting: ``(times [F] float64, c2w
    [F, V, 4, 4], fov_deg)``; ValueError / TypeError naming the input and the fix."""
    if not torch.is_tensor(images) or not torch.is_tensor(masks):
        raise TypeError(f"images and masks must be tensors, got {type(images).__name__} and {type(masks).__name__}")
    t = _check_inputs(images, masks, times)
    c2w, fov = camera_matrix(cameras, images.shape[0], images.shape[1])
    if normal_maps is not None and (not torch.is_tensor(normal_maps) or normal_maps.shape != images.shape):
        shape = tuple(normal_maps.shape) if torch.is_tensor(normal_maps) else type(normal_maps).__name__
        raise ValueError(f"normal_maps must be [F, V, H, W, 3] like the images {tuple(images.shape)}, got {shape}")
    if normal_maps is not None and not bool(torch.isfinite(normal_maps).all()):
        raise ValueError("normal_maps contain NaN or infinite values")
    return t, c2w, fov


def _check_inputs(images, masks, times):
    if images.dim() != 5 or images.shape[-1] != 3:
        raise ValueError(f"images must be [F, V, H, W, 3], got {tuple(images.shape)}")
    if masks.shape != images.shape[:-1]:
        raise ValueError(f"masks must be [F, V, H, W] = {tuple(images.shape[:-1])}, got {tuple(masks.shape)}")
    t = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
    if t.numel() != images.shape[0] or not bool(torch.isfinite(t).all()) or bool((t < 0).any() or (t > 1).any()):
        raise ValueError(f"times must hold {images.shape[0]} values in [0, 1], got {t.tolist()}")
    for name, x, fix in (("images", images, "divide 0..255 images by 255"), ("masks", masks, "use 0/1 or [0, 1] masks")):
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a float tensor in [0, 1], got {x.dtype}; {fix}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contain NaN or infinite values; fix the source images before fitting")
        lo, hi = float(x.min()), float(x.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"{name} must be in [0, 1] but range over [{lo:.4g}, {hi:.4g}]; {fix}")
    coverage = masks.float().flatten(2).mean(-1)  # [F, V]
    if float(coverage.max()) == 0.0:
        raise ValueError("every mask is empty: no view shows the object; check the masks (the foreground of images on "
                         "white is (images < 0.97).any(-1))")
    return t


def fit_dynamic_nerf(images: torch.Tensor, masks: torch.Tensor, cameras, times, config: NeRFFitConfig,
                     callback: Callable[[dict], None] | None = None, should_stop: StopCheck | None = None,
                     normal_maps: torch.Tensor | None = None, restart_mismatched: bool = False) -> NeRFFitResult:
    """Static-to-dynamic NeRF fit (SV4D section 3.2). See module docstring for shapes.

    ``normal_maps`` (optional) ``[F, V, H, W, 3]`` world-frame unit normals for the mono-normal prior.
    ``callback(event)`` gets ``fit_step`` events (``sv4d_models.events``: ``step, stage, loss, terms,
    n_evaluated, total_steps``; ``rollback`` after a loss spike) and ``preview [h, w, 3]`` every
    ``preview_every`` steps, then ``progress`` events of the part motion (``motion.py``; stage "part motion").
    ``should_stop()`` is polled before every step and each part-motion frame step; on True the fit saves a checkpoint
    (when ``checkpoint_dir`` is set) and raises ``JobInterrupted``. With ``checkpoint_dir`` a rerun resumes; a
    checkpoint of other settings or data is an error naming what differs, or (``restart_mismatched``) replaced.
    """
    t, c2w, fov = check_fit_inputs(images, masks, cameras, times, normal_maps)
    state = build_state(config, images, masks, c2w, fov, t, normal_maps)
    ckpt = Path(config.checkpoint_dir) / CHECKPOINT_NAME if config.checkpoint_dir else None
    data_id = data_fingerprint(images, masks, t) if ckpt is not None else None
    if ckpt is not None:
        clean_temp_files(ckpt.parent)  # left by a save that was killed mid-way
    if ckpt is not None and ckpt.exists() and restart_mismatched and \
            checkpoint_mismatch(_read_checkpoint(ckpt), config, data_id):
        ckpt.unlink()  # overwrite: an earlier fit of other settings / data is replaced, not resumed
    motion = None
    if ckpt is not None and ckpt.exists():
        saved = load_checkpoint(ckpt, state, config, data_id).get("motion")
        if saved is not None and state.step >= config.total_steps:
            motion = PartMotion.from_state_dict(saved)
    guard = DivergenceGuard(config.guard, state)
    while state.step < config.total_steps:
        if stop_requested(should_stop):
            if ckpt is not None:
                save_checkpoint(ckpt, state, config, data_id)
            where = (f"step {state.step} of {config.total_steps} is saved in {ckpt}; run again with the same data "
                     "and config to continue") if ckpt is not None else \
                f"stopped at step {state.step} of {config.total_steps}; nothing was kept (no checkpoint_dir)"
            raise JobInterrupted("nerf fit", where, state.step, ckpt is not None)
        info = train_step(state)
        state.history.append({k: v for k, v in info.items() if k != "preview"})
        if guard.after_step(state, info):  # rolled back to the last good state, learning rate lowered
            if callback is not None:
                callback(events.rollback(guard.events[-1], state.step, info["stage"], info["loss"]))
            continue
        if callback is not None:
            callback(events.fit_step(info, config.total_steps))
        if ckpt is not None and state.step % config.checkpoint_every == 0:
            save_checkpoint(ckpt, state, config, data_id)
    if motion is None and config.motion.enabled and config.dynamic_steps > 0:
        try:
            motion = estimate_part_motion(state.model, state.times, config.motion, config.field.aabb_half_size,
                                          should_stop, callback)
        except JobInterrupted as stopped:  # the field is done: keep it, the motion is estimated on the next run
            if ckpt is not None:
                save_checkpoint(ckpt, state, config, data_id)
            where = (f"all {state.step} steps are saved in {ckpt}; run again with the same data and config to "
                     "estimate the parts' motion (a few seconds) and finish") if ckpt is not None else \
                f"stopped while estimating the parts' motion ({stopped}); nothing was kept (no checkpoint_dir)"
            raise JobInterrupted("nerf fit", where, state.step, ckpt is not None) from stopped
    if ckpt is not None:
        save_checkpoint(ckpt, state, config, data_id, motion)
    return NeRFFitResult(state.model, state.occupancy, config, state.step, state.history, guard.events, motion)

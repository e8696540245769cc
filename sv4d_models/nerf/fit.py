"""Fit a dynamic NeRF to the SV4D image matrix: static stage (frame 0) then dynamic stage, coarse-to-fine, with
checkpoint/resume, progress callback and cooperative cancellation. Also ``render()`` for novel views/times.

Inputs: images ``[F, V, H, W, 3]`` in [0, 1] on white, masks ``[F, V, H, W]``, ``Cameras`` for the V views (shared
by all frames) or a sequence of F ``Cameras``, times ``[F]`` in [0, 1] (times[0] = 0 is the canonical frame).
Device and dtype follow ``images``.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..camera import Cameras
from .field import DynamicNeRF
from .fit_config import NeRFFitConfig
from .fit_steps import TrainState, build_state, train_step
from .renderer import OccupancyGrid, render_rays

CHECKPOINT_NAME = "nerf_checkpoint.pt"
_NON_IDENTITY_KEYS = ("checkpoint_dir", "checkpoint_every", "preview_every", "preview_size", "render_chunk")


@dataclass
class NeRFFitResult:
    model: DynamicNeRF
    occupancy: OccupancyGrid | None
    config: NeRFFitConfig
    step: int  # steps completed
    stopped: bool  # True when should_stop() interrupted the fit
    history: list = field(default_factory=list)  # per-step dicts of float loss terms

    def render(self, cameras: Cameras, times, height: int, width: int | None = None, **kw) -> dict:
        kw.setdefault("n_samples", self.config.n_samples)
        kw.setdefault("chunk", self.config.render_chunk)
        return render(self.model, cameras, times, height, width, occupancy=self.occupancy, **kw)


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


def pixel_rays(c2w: torch.Tensor, fov_deg: float, height: int, width: int, rows: torch.Tensor,
               cols: torch.Tensor, dtype=torch.float32):
    """Rays through pixel centres (rows ``[B, h]``, cols ``[B, w]``) of cameras ``c2w [B, 4, 4]``, same convention as
    ``Cameras.rays``. Returns origins, dirs ``[B, h, w, 3]``."""
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    v = rows.to(torch.float64)[:, :, None].expand(-1, -1, cols.shape[1])
    u = cols.to(torch.float64)[:, None, :].expand(-1, rows.shape[1], -1)
    d_cam = torch.stack([(u + 0.5 - width / 2) / f, -(v + 0.5 - height / 2) / f, -torch.ones_like(u)], -1)
    c2w = c2w.to(torch.float64)
    dirs = torch.nn.functional.normalize(torch.einsum("bij,bhwj->bhwi", c2w[:, :3, :3], d_cam), dim=-1)
    origins = c2w[:, None, None, :3, 3].expand_as(dirs)
    return origins.to(dtype), dirs.to(dtype)


@torch.no_grad()
def _render_rays_chunked(model, origins, dirs, times, n_samples, occupancy, chunk, normals):
    outs = []
    for o, d, t in zip(origins.split(chunk), dirs.split(chunk), times.split(chunk)):
        r = render_rays(model, o, d, t, n_samples, occupancy, perturb=False, normals=normals)
        outs.append({k: v for k, v in r.items() if k in ("rgb", "opacity", "depth", "normal")})
    return {k: torch.cat([o[k] for o in outs]) for k in outs[0]}


def render(model: DynamicNeRF, cameras: Cameras, times, height: int, width: int | None = None,
           chunk: int = 65536, n_samples: int = 128, occupancy: OccupancyGrid | None = None,
           normals: str | None = "finite_difference") -> dict:
    """Render N cameras at ``times`` (float or ``[N]``) -> rgb ``[N, H, W, 3]`` (on white), opacity ``[N, H, W]``,
    depth ``[N, H, W]`` (sum of w*t; divide by opacity for the surface distance), normal ``[N, H, W, 3]``
    (world frame, weight-accumulated; omitted when ``normals=None``). Deterministic (midpoint samples)."""
    width = height if width is None else width
    p = next(model.parameters())
    n = len(cameras)
    t = torch.as_tensor(times, dtype=p.dtype, device=p.device).reshape(-1)
    if t.numel() not in (1, n):
        raise ValueError(f"times has {t.numel()} entries; pass one time or one per camera ({n})")
    rows = torch.arange(height).expand(n, height)
    cols = torch.arange(width).expand(n, width)
    o, d = pixel_rays(cameras.c2w, cameras.fov_deg, height, width, rows, cols, p.dtype)
    t_rays = t.expand(n).reshape(n, 1).expand(n, height * width).reshape(-1)
    was_training = model.training
    model.eval()
    out = _render_rays_chunked(model, o.reshape(-1, 3).to(p.device), d.reshape(-1, 3).to(p.device), t_rays,
                               n_samples, occupancy, chunk, normals)
    model.train(was_training)
    return {k: v.reshape(n, height, width, *v.shape[1:]) for k, v in out.items()}


def _config_identity(cfg: NeRFFitConfig) -> dict:
    d = cfg.to_dict()
    for k in _NON_IDENTITY_KEYS:
        d.pop(k)
    return d


def data_fingerprint(images: torch.Tensor, masks: torch.Tensor, times: torch.Tensor) -> list:
    """Identity of the training data (shape, BLAKE2 of the float32 bytes, times): a checkpoint is never resumed
    on other data."""
    h = hashlib.blake2b(digest_size=16)
    for tensor in (images, masks):
        for frame in tensor:  # frame by frame: bounded extra memory
            h.update(frame.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return [list(images.shape), h.hexdigest(), [round(float(t), 6) for t in times]]


def save_checkpoint(path: Path, state: TrainState, cfg: NeRFFitConfig, fingerprint: list | None = None) -> None:
    """Atomic save (temp file in the same folder, then ``os.replace``) of everything needed to resume."""
    payload = {"format": "sv4d_nerf_fit/1", "config": _config_identity(cfg), "data": fingerprint, "step": state.step,
               "model": state.model.state_dict(), "optimizer": state.optimizer.state_dict(),
               "occupancy": state.occupancy.state_dict() if state.occupancy is not None else None,
               "rng": state.generator.get_state(), "history": state.history}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, state: TrainState, cfg: NeRFFitConfig, fingerprint: list | None = None) -> None:
    """Restore a ``TrainState`` in place; refuses a checkpoint of another config or other data (ValueError)."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("config") != _config_identity(cfg):
        raise ValueError(f"checkpoint {path} was written with a different NeRFFitConfig; use another "
                         "checkpoint_dir or delete the file to start over")
    if fingerprint is not None and payload.get("data") != fingerprint:
        raise ValueError(f"checkpoint {path} was written for different images/masks/times "
                         f"({payload.get('data')} vs {fingerprint}); use another checkpoint_dir")
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    if state.occupancy is not None:
        state.occupancy.load_state_dict(payload["occupancy"])
    state.generator.set_state(payload["rng"])
    state.step = int(payload["step"])
    state.history = list(payload["history"])


def load_fit_result(path: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> NeRFFitResult:
    """Rebuild model + occupancy grid + config from a checkpoint file written by ``fit_dynamic_nerf`` (for
    rendering / mesh export without the training data)."""
    payload = torch.load(Path(path), map_location="cpu", weights_only=False)
    if payload.get("format") != "sv4d_nerf_fit/1":
        raise ValueError(f"{path} is not an sv4d_nerf_fit/1 checkpoint (format={payload.get('format')!r})")
    cfg = NeRFFitConfig.from_dict(payload["config"])
    model = DynamicNeRF(cfg.field).to(device, dtype)
    model.load_state_dict(payload["model"])
    model.use_deformation = cfg.dynamic_steps > 0 and payload["step"] > cfg.static_steps
    occ = None
    if payload["occupancy"] is not None:
        occ = OccupancyGrid(cfg.field.aabb_half_size, cfg.occupancy.resolution, cfg.occupancy.ema_decay,
                            cfg.occupancy.threshold).to(device)
        occ.load_state_dict(payload["occupancy"])
    return NeRFFitResult(model, occ, cfg, int(payload["step"]), False, list(payload["history"]))


def _check_inputs(images, masks, times):
    if images.dim() != 5 or images.shape[-1] != 3:
        raise ValueError(f"images must be [F, V, H, W, 3], got {tuple(images.shape)}")
    if masks.shape != images.shape[:-1]:
        raise ValueError(f"masks must be [F, V, H, W] = {tuple(images.shape[:-1])}, got {tuple(masks.shape)}")
    t = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
    if t.numel() != images.shape[0] or bool((t < 0).any() or (t > 1).any()):
        raise ValueError(f"times must hold {images.shape[0]} values in [0, 1], got {t.tolist()}")
    return t


def fit_dynamic_nerf(images: torch.Tensor, masks: torch.Tensor, cameras, times, config: NeRFFitConfig,
                     callback: Callable[[dict], None] | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     normal_maps: torch.Tensor | None = None) -> NeRFFitResult:
    """Static-to-dynamic NeRF fit (SV4D section 3.2). See module docstring for shapes.

    ``normal_maps`` (optional) ``[F, V, H, W, 3]`` world-frame unit normals for the mono-normal prior.
    ``callback(info)`` gets ``step, stage, loss, terms, n_evaluated`` and ``preview [h, w, 3]`` every
    ``preview_every`` steps. ``should_stop()`` is polled before every step; on True the fit saves a checkpoint
    (when ``checkpoint_dir`` is set) and returns with ``stopped=True``. With ``checkpoint_dir`` a rerun resumes.
    """
    t = _check_inputs(images, masks, times)
    c2w, fov = camera_matrix(cameras, images.shape[0], images.shape[1])
    state = build_state(config, images, masks, c2w, fov, t, normal_maps)
    ckpt = Path(config.checkpoint_dir) / CHECKPOINT_NAME if config.checkpoint_dir else None
    fp = data_fingerprint(images, masks, t) if ckpt is not None else None
    if ckpt is not None and ckpt.exists():
        load_checkpoint(ckpt, state, config, fp)
    stopped = False
    while state.step < config.total_steps:
        if should_stop is not None and should_stop():
            stopped = True
            break
        info = train_step(state)
        state.history.append({k: v for k, v in info.items() if k != "preview"})
        if callback is not None:
            callback(info)
        if ckpt is not None and state.step % config.checkpoint_every == 0:
            save_checkpoint(ckpt, state, config, fp)
    if ckpt is not None:
        save_checkpoint(ckpt, state, config, fp)
    return NeRFFitResult(state.model, state.occupancy, config, state.step, stopped, state.history)

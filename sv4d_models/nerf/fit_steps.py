"""One optimisation step of ``fit_dynamic_nerf``: batch choice, strided coarse-to-fine pixels, losses, Adam,
occupancy update. All randomness comes from ``TrainState.generator`` (CPU), so a resumed run repeats exactly."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..camera import Cameras, pixel_rays
from ..metrics.lpips import LPIPSDistance, load_lpips
from . import losses as L
from .deformation import max_time_bands
from .field import DynamicNeRF
from .fit_config import NeRFFitConfig
from .kplanes import PLANE_REGULARISERS
from .renderer import OccupancyGrid, render, render_rays


@dataclass
class TrainState:
    cfg: NeRFFitConfig
    model: DynamicNeRF
    occupancy: OccupancyGrid | None
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    images: torch.Tensor  # [F, V, H, W, 3]
    masks: torch.Tensor  # [F, V, H, W]
    c2w: torch.Tensor  # [F, V, 4, 4] float64 (CPU)
    fov_deg: float
    times: torch.Tensor  # [F] float64 (CPU)
    normal_maps: torch.Tensor | None = None  # [F, V, H, W, 3]
    lpips: LPIPSDistance | None = None
    step: int = 0
    history: list = field(default_factory=list)
    lr_scale: float = 1.0  # lowered by the divergence guard after a rollback


def build_state(cfg: NeRFFitConfig, images, masks, c2w, fov_deg, times, normal_maps=None) -> TrainState:
    """Model (init from ``cfg.seed``), occupancy grid, Adam with [canonical, deformation] groups, RNG."""
    dev, dtype = images.device, images.dtype
    if not dtype.is_floating_point:
        raise TypeError(f"images must be a float tensor in [0, 1], got {dtype}")
    model = DynamicNeRF(cfg.field, torch.Generator().manual_seed(cfg.seed), len(times)).to(dev, dtype)
    occ = None
    if cfg.occupancy.enabled:
        occ = OccupancyGrid(cfg.field.aabb_half_size, cfg.occupancy.resolution, cfg.occupancy.ema_decay,
                            cfg.occupancy.threshold).to(dev)
    moving = model.dynamic_parameters()
    canonical = [p for p in model.parameters() if all(p is not q for q in moving)]
    groups = [{"params": canonical, "lr": cfg.lr}]
    if moving:
        groups.append({"params": moving, "lr": cfg.lr_deformation})
    opt = torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)
    lp = None
    if cfg.loss.lpips > 0:
        lp = load_lpips(cfg.loss.lpips_net, cfg.loss.lpips_backbone_path or None, cfg.loss.lpips_heads_path or None)
        lp = lp.to(dev, dtype) if lp is not None else None
    return TrainState(cfg, model, occ, opt, torch.Generator().manual_seed(cfg.seed + 1), images,
                      masks.to(dtype), c2w.cpu(), fov_deg, times.cpu(),
                      None if normal_maps is None else normal_maps.to(dev, dtype), lp)


def _resolution(cfg: NeRFFitConfig, stage_step: int) -> int:
    res = cfg.resolution_schedule[0][1]
    for start, r in cfg.resolution_schedule:
        if stage_step >= start:
            res = r
    return res


def _pick_batch(state: TrainState, static: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(frame, view) index pairs ``[B]`` each: frame 0 x views (static) or frames x views (dynamic)."""
    cfg, g = state.cfg, state.generator
    n_f, n_v = state.images.shape[:2]
    if static:
        frames = torch.zeros(1, dtype=torch.long)
        views = torch.randperm(n_v, generator=g)[:cfg.static_views_per_step or n_v]
    else:
        frames = torch.randperm(n_f, generator=g)[:cfg.dynamic_frames_per_step]
        views = torch.randperm(n_v, generator=g)[:cfg.dynamic_views_per_step]
    return frames.repeat_interleave(len(views)), views.repeat(len(frames))


def _pick_pixels(state: TrainState, batch: int, res: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Strided sub-image of the image downsampled to ``res``: rows, cols ``[B, r]`` in full-resolution pixels,
    with a random stride offset and a random sub-cell position per image (coarse-to-fine with random offsets)."""
    h, w = state.images.shape[2:4]
    res = min(res, h)
    stride = max(1, math.ceil(res / state.cfg.max_render_size))
    r = res // stride
    g = state.generator
    off = torch.randint(0, stride, (batch, 2), generator=g)
    sub = torch.rand(batch, 2, generator=g)
    k = torch.arange(r)[None] * stride
    rows = ((k + off[:, :1] + sub[:, :1]) * (h / res)).floor().long().clamp_(0, h - 1)
    cols = ((k + off[:, 1:] + sub[:, 1:]) * (w / res)).floor().long().clamp_(0, w - 1)
    return rows, cols


def _losses(state: TrainState, out: dict, gt: torch.Tensor, mask: torch.Tensor, prior, stage_step: int):
    """Weighted loss terms; images ``[B, 3, r, r]``, masks ``[B, r, r]``. Returns (total, {name: float})."""
    lc = state.cfg.loss
    b, r = gt.shape[0], gt.shape[-1]
    rgb = out["rgb"].view(b, r, r, 3).permute(0, 3, 1, 2)
    acc = out["opacity"].view(b, r, r)
    terms = {"rgb": (lc.rgb, L.mse(rgb, gt)), "mask": (lc.mask, L.mask_loss(acc, mask))}
    if state.lpips is not None and lc.lpips > 0:
        terms["lpips"] = (L.ramp(stage_step, lc.lpips, lc.lpips_ramp_steps), state.lpips(rgb, gt).mean())
    depth = out["depth"].view(b, 1, r, r)
    if lc.bilateral_depth > 0:
        terms["bilateral_depth"] = (lc.bilateral_depth, L.bilateral_smoothness(depth, gt, mask))
    if lc.depth_smooth > 0:
        terms["depth_smooth"] = (lc.depth_smooth, L.smooth_depth(depth, mask))
    if "normal" in out:
        nrm = out["normal"].view(b, r, r, 3).permute(0, 3, 1, 2)
        if lc.bilateral_normal > 0:
            terms["bilateral_normal"] = (lc.bilateral_normal, L.bilateral_smoothness(nrm, gt, mask))
        if prior is not None and lc.normal_prior > 0:
            terms["normal_prior"] = (lc.normal_prior, L.normal_prior_loss(nrm, prior, mask))
    if lc.distortion > 0:
        terms["distortion"] = (lc.distortion, L.distortion(out["weights"], out["t"], out["delta"]))
    if lc.opacity_entropy > 0:
        terms["opacity_entropy"] = (lc.opacity_entropy, L.opacity_entropy(acc))
    if lc.floater > 0:
        terms["floater"] = (lc.floater, L.floater_loss(acc, mask))
    weighted = [n for n in PLANE_REGULARISERS if getattr(lc, n) > 0]  # none computed at weight 0
    for name, value in state.model.regularisers(weighted).items():
        terms[name] = (getattr(lc, name), value)
    total = sum(w * v for w, v in terms.values() if w > 0)
    return total, {k: float(v.detach()) for k, (_, v) in terms.items()}


def _set_schedules(state: TrainState, static: bool, stage_step: int) -> None:
    cfg = state.cfg
    groups = state.optimizer.param_groups
    groups[0]["lr"] = cfg.lr * (1.0 if static else cfg.dynamic_canonical_lr_scale) * state.lr_scale
    if len(groups) > 1:  # fresh deformation params: linear warmup, Adam's first steps are full-size sign steps
        warm = min(1.0, (stage_step + 1) / max(1, cfg.dynamic_lr_warmup))
        groups[1]["lr"] = cfg.lr_deformation * warm * state.lr_scale
    deform = state.model.deformation
    state.model.use_deformation = not static
    if deform is not None and not static:
        span = max(1.0, cfg.time_anneal_fraction * cfg.dynamic_steps)
        n_bands = min(deform.cfg.n_freq_t, max_time_bands(len(state.times)))
        deform.set_time_alpha(min(n_bands, 1.0 + (n_bands - 1) * min(1.0, stage_step / span)))


def _update_occupancy(state: TrainState, static: bool, frames: torch.Tensor) -> None:
    oc, cfg = state.cfg.occupancy, state.cfg
    if state.occupancy is None or state.step < oc.warmup_steps or state.step % oc.update_every != 0:
        return
    if static:
        times = [0.0]
    else:
        pick = torch.randperm(len(frames), generator=state.generator)[:oc.n_times]
        times = [float(state.times[frames[i]]) for i in pick]
    step_size = math.sqrt(3) * 2 * cfg.field.aabb_half_size / cfg.n_samples
    state.occupancy.update(state.model.density, step_size, times, state.generator)


def train_step(state: TrainState) -> dict:
    """One Adam step on a batch of strided (frame, view) sub-images; returns the callback info dict."""
    cfg = state.cfg
    static = state.step < cfg.static_steps
    stage_step = state.step if static else state.step - cfg.static_steps
    _set_schedules(state, static, stage_step)
    frames, views = _pick_batch(state, static)
    rows, cols = _pick_pixels(state, len(frames), _resolution(cfg, stage_step))
    fi, vi = frames[:, None, None], views[:, None, None]
    dev = state.images.device
    ri, ci = rows[:, :, None].to(dev), cols[:, None, :].to(dev)
    gt = state.images[fi.to(dev), vi.to(dev), ri, ci].permute(0, 3, 1, 2)  # [B, 3, r, r]
    mask = state.masks[fi.to(dev), vi.to(dev), ri, ci]  # [B, r, r]
    prior = None
    if state.normal_maps is not None:
        prior = state.normal_maps[fi.to(dev), vi.to(dev), ri, ci].permute(0, 3, 1, 2)
    h, w = state.images.shape[2:4]
    o, d = pixel_rays(state.c2w[frames, views], state.fov_deg, h, w, rows, cols, state.images.dtype)
    t_rays = state.times[frames].to(o.dtype)[:, None].expand(-1, rows.shape[1] * cols.shape[1]).reshape(-1)
    lc = cfg.loss
    need_n = lc.bilateral_normal > 0 or (lc.normal_prior > 0 and prior is not None)
    use_occ = state.occupancy if state.occupancy is not None and int(state.occupancy.n_updates) > 0 else None
    out = render_rays(state.model, o.reshape(-1, 3).to(dev), d.reshape(-1, 3).to(dev), t_rays.to(dev),
                      cfg.n_samples, use_occ, state.generator, perturb=True,
                      normals=cfg.normals if need_n else None, create_graph=need_n)
    total, terms = _losses(state, out, gt, mask, prior, stage_step)
    state.optimizer.zero_grad(set_to_none=True)
    total.backward()
    state.optimizer.step()
    state.step += 1
    _update_occupancy(state, static, frames)
    info = {"step": state.step, "stage": "static" if static else "dynamic", "loss": float(total.detach()),
            "terms": terms, "n_evaluated": out["n_evaluated"], "n_rays": int(o.shape[0] * rows.shape[1] ** 2)}
    if cfg.preview_every and state.step % cfg.preview_every == 0:
        cam = Cameras(state.c2w[0, :1], torch.zeros(1), torch.zeros(1), state.fov_deg)
        t_prev = float(state.times[frames[0]])
        info["preview"] = render(state.model, cam, t_prev, cfg.preview_size, n_samples=cfg.n_samples,
                                 occupancy=use_occ, normals=None)["rgb"][0]
    return info

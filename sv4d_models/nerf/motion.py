"""Per-part rigid motion between the fitted frames, for rendering a fit at times between them (issue 23).

A space-time field fitted to F frames is exact only at those frames: between two of them, K-Planes interpolates its
time rows linearly (a blend of the two frames' features), so a part that turns or moves shows up twice, faded. This
module reads the motion of each part out of the fitted field and renders an in-between time by moving the parts:

1. **Volumes**: density (as the opacity of one voxel) and colour of the field on a ``grid^3`` lattice at every
   fitted frame; the channels compared are opacity and opacity x colour (empty space has no colour).
2. **Parts**: the connected components (26-neighbourhood) of frame 0's occupied voxels; components under
   ``min_part_voxels`` (floaters) are left to the field.
3. **Tracking over the clip**: for each frame step and part, the similarity transform (rotation about the part's
   centre, translation, scale) that carries the part's voxels at frame k onto frame k + 1 is found by an
   exhaustive search (translations, then rotations of up to ``max_rotation_deg``, on blurred volumes) and a
   gradient refinement of the best ``candidates``; the part's points are then carried to frame k + 1 and tracked
   on. Frame 0's part masks follow the parts through the composed transforms.
4. **Ambiguity**: a symmetric part with a periodic texture (a striped ring turning about its axis) matches itself
   under more than one rotation. Of the hypotheses within ``ambiguity_cost`` of the best cost (and more than 25
   degrees apart), the smallest rotation is taken (the slowest motion the data allows) when a speed prior (a
   Gaussian on the angle per step, sigma 30 degrees) makes it at least 3 times likelier than each of the others;
   otherwise the turn is unknown (e.g. 45 degrees either way): the part keeps its translation and scale and its two
   readings are blended (``ambiguous``). A turn the frames show only as a slower one (a 4-fold striped ring turning
   69 degrees looks like -21) is taken as the slower: nothing in the frames tells. The cost itself leans to the
   slower of two aliases (a small error in the found axis misplaces more at a larger angle), so ``ambiguity_cost``
   must be wider than the noise of the cost. Chosen on the benchmark's six moving cells (mean held-out times): with
   the fits of issue 23's fifth session 1.15 / 1.25 / 1.3 / 1.4 gave 23.62 / 23.68 / 23.71 / 23.71 dB, with the
   sharper fits of the cpu preset since its sixth session (Adam lr 0.03) 1.15 / 1.3 / 1.4 give 24.27 / 24.23 /
   24.23 dB: 1.15 (the rules differ by 0.05 dB on the mean, up to 0.2 dB on one cell).

Rendering (``MotionField``): a point ``x`` at time ``t = t_k + u (t_{k+1} - t_k)`` belongs to a part when the part's
transform from time t back to frame 0 lands it in the part's (dilated) frame-0 mask; it then reads the field at frame
k through the fraction ``u`` of the step (rotation angle x u, translation x u, log scale x u) and at frame k + 1
through the rest, and blends the two readings ``(1 - u, u)``. Points of no part read the field at time ``t`` as
before, and at the fitted frames the field is read unchanged.

What it does not do: non-rigid motion inside a part (a bending limb is tracked as its best rigid fit and its two
readings blended), parts that touch at frame 0 (one component, one motion), rotations over ``max_rotation_deg`` per
frame step, and the direction of a turn that the frames cannot tell (see 4).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import events
from ..config import check_known_keys
from ..stopping import JobInterrupted, StopCheck, stop_requested
from ..validate import check_fields

MOTION_FORMAT = "sv4d_part_motion/1"
SEPARATION_DEG = 25.0  # hypotheses closer than this are the same motion
TURN_PRIOR_DEG = 30.0  # spread of the speed prior on a part's turn per frame step (a Gaussian on the angle)
PICK_ODDS = 3.0  # of equally good turns the slowest is taken when the prior makes it this much likelier than each


@dataclass(frozen=True)
class MotionConfig:
    enabled: bool = False  # estimate the parts' motion after the fit and render in-between times with it
    grid: int = 48  # voxels per axis of the volumes the motion is read from
    min_part_voxels: int = 20  # smaller components of frame 0 are left to the field
    max_rotation_deg: float = 90.0  # per frame step
    rotation_step_deg: float = 20.0  # spacing of the rotation search
    max_translation: float = 0.15  # world units per frame step (the translation search's half width)
    translation_step: float = 0.03
    blur_voxels: float = 1.0  # Gaussian sigma of the volumes for the search and the first half of the refinement
    search_points: int = 1024  # at most this many of a part's points (evenly strided) score the search
    candidates: int = 5  # rotation hypotheses refined per part and step
    refine_steps: int = 40
    refine_lr: float = 0.02
    ambiguity_cost: float = 1.15  # hypotheses within this factor of the best cost are equally good

    def __post_init__(self) -> None:
        check_fields(self, {"grid": (8, 256, "voxels per axis; time grows with its cube"),
                            "min_part_voxels": (1, 10**7, "voxels"),
                            "max_rotation_deg": (0.0, 180.0, "degrees per frame step"),
                            "rotation_step_deg": (("open", 0.0), 180.0, "degrees"),
                            "max_translation": (0.0, 100.0, "world units per frame step"),
                            "translation_step": (("open", 0.0), 100.0, "world units"),
                            "blur_voxels": (0.0, 16.0, "voxels"), "candidates": (1, 64, "hypotheses"),
                            "search_points": (16, 10**7, "points"),
                            "refine_steps": (0, 10000, "Adam steps"), "refine_lr": (("open", 0.0), 10.0, "Adam lr"),
                            "ambiguity_cost": (1.0, 10.0, "a cost ratio")}, "motion")

    @classmethod
    def from_dict(cls, d: dict) -> "MotionConfig":
        check_known_keys(cls, d)
        return cls(**d)


def _axis_angle(w: torch.Tensor) -> torch.Tensor:
    """Rodrigues: axis-angle ``[..., 3]`` -> rotation ``[..., 3, 3]`` (differentiable, exact at 0)."""
    theta2 = (w * w).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-8
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = w.unbind(-1)
    o = torch.zeros_like(x)
    k = torch.stack([o, -z, y, z, o, -x, -y, x, o], -1).reshape(*w.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=w.dtype, device=w.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def _lattice(grid: int, half: float) -> torch.Tensor:
    """Voxel centres ``[G, G, G, 3]`` (indexed z, y, x; points x, y, z) over ``[-half, half]^3``."""
    ax = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid * 2 * half - half
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")
    return torch.stack([x, y, z], -1)


@torch.no_grad()
def field_volumes(model, times, grid: int, half: float, chunk: int = 65536) -> torch.Tensor:
    """``[F, 4, G, G, G]`` (z, y, x): voxel opacity ``1 - exp(-sigma * voxel)`` and opacity x colour per frame."""
    p = next(model.parameters())
    pts = _lattice(grid, half).reshape(-1, 3).to(p)
    out = []
    for t in times:
        sig, col = [], []
        for x in pts.split(chunk):
            q = model.query(x, torch.full((x.shape[0],), float(t), dtype=p.dtype, device=p.device), normals=None)
            sig.append(q["sigma"].float().cpu())
            col.append(q["rgb"].float().cpu())
        a = 1 - torch.exp(-torch.cat(sig) * (2 * half / grid))
        out.append(torch.cat([a[None], a[None] * torch.cat(col).T]).reshape(4, grid, grid, grid))
    return torch.stack(out)


def connected_components(occupied: torch.Tensor) -> torch.Tensor:
    """Labels ``[G, G, G]`` (long; 0 = empty, then 1, 2, ... ordered by each part's last voxel in z, y, x order) of
    a bool volume's 26-connected parts."""
    lab = torch.where(occupied, torch.arange(1, occupied.numel() + 1, dtype=torch.float32).view_as(occupied),
                      torch.zeros(()))
    occ = occupied.float()
    while True:  # every voxel takes the largest label of its neighbourhood until nothing changes
        new = F.max_pool3d(lab[None, None], 3, 1, 1)[0, 0] * occ
        if torch.equal(new, lab):
            break
        lab = new
    ids = torch.unique(torch.cat([lab.new_zeros(1), lab.reshape(-1)]))  # 0 first, then the parts' labels
    return torch.searchsorted(ids, lab)


def _sample(vol: torch.Tensor, p: torch.Tensor, half: float) -> torch.Tensor:
    """``vol [C, G, G, G]``, points ``[..., N, 3]`` (world) -> trilinear values ``[..., N, C]`` (edge values outside)."""
    g = (p / half).reshape(1, -1, 1, 1, 3)
    v = F.grid_sample(vol[None], g, mode="bilinear", padding_mode="border", align_corners=False)
    return v[0, :, :, 0, 0].T.reshape(*p.shape[:-1], vol.shape[0])


def _blur(vol: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[C, G, G, G]`` (sigma in voxels, radius 2 sigma, edges replicated)."""
    if sigma <= 0:
        return vol
    r = int(math.ceil(2 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=vol.dtype) / sigma) ** 2)
    k = (k / k.sum()).to(vol.device)
    x = vol[:, None]  # [C, 1, D, H, W]
    for shape, pad in (((1, 1, -1, 1, 1), (0, 0, 0, 0, r, r)), ((1, 1, 1, -1, 1), (0, 0, r, r, 0, 0)),
                       ((1, 1, 1, 1, -1), (r, r, 0, 0, 0, 0))):
        x = F.conv3d(F.pad(x, pad, mode="replicate"), k.view(shape))
    return x[:, 0]


def _step(y: torch.Tensor, w, d, log_s, c) -> torch.Tensor:
    """The step transform ``s R(w) (y - c) + c + d`` for hypotheses ``w, d [H, 3]``, ``log_s [H]``: ``[H, N, 3]``."""
    rot = _axis_angle(w)
    return torch.exp(log_s)[:, None, None] * ((y - c) @ rot.transpose(-1, -2)) + c + d[:, None, :]


def _cost(target, y, src, weights, w, d, log_s, c, half) -> torch.Tensor:
    """Weighted squared difference of the target volume at the moved points and the source values: ``[H]``."""
    v = _sample(target, _step(y, w, d, log_s, c), half)
    return (((v - src) ** 2).sum(-1) * weights).sum(-1) / weights.sum()


def _grid3(limit: float, step: float) -> torch.Tensor:
    a = torch.arange(-limit, limit + 1e-9, step) if limit > 0 else torch.zeros(1)
    return torch.stack(torch.meshgrid(a, a, a, indexing="ij"), -1).reshape(-1, 3)


def _best(target, y, src, weights, hyps_w, hyps_d, c, half, chunk: int = 512) -> torch.Tensor:
    costs = [_cost(target, y, src, weights, w, d, torch.zeros(len(w)), c, half)
             for w, d in zip(hyps_w.split(chunk), hyps_d.split(chunk))]
    return torch.cat(costs)


def _choose(w: torch.Tensor, cost: torch.Tensor, cfg: MotionConfig) -> tuple[int, bool]:
    """The hypothesis taken and whether its turn is ambiguous (module docstring, 4). A wrong turn shows the
    part's texture half a period off at the mid time, a blend half as far (a quarter of the squared error), so the
    slower turn is taken only where the speed prior makes it ``PICK_ODDS`` = 3 times likelier than each other one
    (a wrong pick then has a chance under 1/4)."""
    b = int(cost.argmin())
    sep = math.radians(SEPARATION_DEG)
    equal = [i for i in range(len(w)) if float(cost[i]) <= float(cost[b]) * cfg.ambiguity_cost + 1e-6
             and (i == b or float((w[i] - w[b]).norm()) > sep)]
    deg = torch.rad2deg(w.norm(dim=-1))
    pick = min(equal, key=lambda i: float(deg[i]))
    odds = [math.exp((float(deg[i]) ** 2 - float(deg[pick]) ** 2) / (2 * TURN_PRIOR_DEG ** 2))
            for i in equal if i != pick and float((w[i] - w[pick]).norm()) > sep]
    return pick, any(o < PICK_ODDS for o in odds)


@dataclass
class PartMotion:
    """The tracked parts of one fit: frame-0 masks and, per part and frame step, the step transform."""

    masks: torch.Tensor  # [P, G, G, G] bool: each part's frame-0 voxels, dilated by one voxel
    rot: torch.Tensor  # [P, F, 3, 3] frame 0 -> frame k: y_k = scale R y_0 + tau
    tau: torch.Tensor  # [P, F, 3]
    scale: torch.Tensor  # [P, F]
    step_w: torch.Tensor  # [P, F-1, 3] axis-angle of the step k -> k+1 (about step_c)
    step_d: torch.Tensor  # [P, F-1, 3] translation of the step
    step_log_s: torch.Tensor  # [P, F-1]
    step_c: torch.Tensor  # [P, F-1, 3] the part's centre at frame k
    ambiguous: torch.Tensor  # [P, F-1] bool: the rotation of this step is unknown (blend)
    times: torch.Tensor  # [F] float64
    half_size: float

    @property
    def n_parts(self) -> int:
        return int(self.masks.shape[0])

    def state_dict(self) -> dict:
        return {"format": MOTION_FORMAT, "half_size": float(self.half_size),
                **{k: getattr(self, k) for k in ("masks", "rot", "tau", "scale", "step_w", "step_d", "step_log_s",
                                                 "step_c", "ambiguous", "times")}}

    @classmethod
    def from_state_dict(cls, d: dict) -> "PartMotion":
        if not isinstance(d, dict) or d.get("format") != MOTION_FORMAT:
            raise ValueError(f"not a {MOTION_FORMAT} record (format={d.get('format') if isinstance(d, dict) else d!r})")
        return cls(**{k: v for k, v in d.items() if k != "format"})


def estimate_part_motion(model, times, cfg: MotionConfig, half_size: float, should_stop: StopCheck | None = None,
                         callback: events.Reporter | None = None) -> PartMotion:
    """Track the parts of frame 0 through the fitted frames (module docstring, 1-4). ``callback`` gets a
    ``progress`` event (stage "part motion", unit "frame step") after each frame step; ``should_stop()`` is polled
    before each: on True it raises ``JobInterrupted`` (nothing of the estimate is kept)."""
    times = torch.as_tensor(times, dtype=torch.float64).reshape(-1).cpu()
    half = float(half_size)
    vols = field_volumes(model, times, cfg.grid, half)
    with torch.enable_grad():
        return _track(vols, times, cfg, half, should_stop, callback)


def _search(dst_blur, y, src_b, weights, c, rot_grid, shifts, cfg: MotionConfig, half: float):
    """The exhaustive search on blurred volumes (at most ``search_points`` of the band): the best translation, then
    up to ``candidates`` rotations at it, each more than ``SEPARATION_DEG`` from the others, plus "no turn".
    Returns (translation ``[3]``, rotations ``[n, 3]`` axis-angle)."""
    few = slice(None, None, max(1, math.ceil(len(y) / cfg.search_points)))
    ys, ss, ws = y[few], src_b[few], weights[few]
    d0 = shifts[_best(dst_blur, ys, ss, ws, torch.zeros(len(shifts), 3), shifts, c, half).argmin()]
    cost = _best(dst_blur, ys, ss, ws, rot_grid, d0.expand(len(rot_grid), 3), c, half)
    cands: list[torch.Tensor] = []
    for i in cost.argsort().tolist():
        if all(float((rot_grid[i] - q).norm()) > math.radians(SEPARATION_DEG) for q in cands):
            cands.append(rot_grid[i])
        if len(cands) == cfg.candidates:
            break
    if not any(float(q.norm()) < 1e-9 for q in cands):
        cands.append(torch.zeros(3))  # "it did not turn" is always a hypothesis
    return d0, torch.stack(cands)


def _track(vols: torch.Tensor, times: torch.Tensor, cfg: MotionConfig, half: float,
           should_stop: StopCheck | None = None, callback: events.Reporter | None = None) -> PartMotion:
    n_f, g = vols.shape[0], cfg.grid
    labels = connected_components(vols[0, 0] > 0.5)
    lattice = _lattice(g, half)
    parts = []
    for j in range(1, int(labels.max()) + 1):
        m = labels == j
        if int(m.sum()) >= cfg.min_part_voxels:
            band = (F.max_pool3d(m[None, None].float(), 5, 1, 2)[0, 0] > 0) & ((labels == 0) | m)
            parts.append((m, lattice[band]))
    n_p = len(parts)
    rot = torch.eye(3).repeat(n_p, n_f, 1, 1)
    tau, scale = torch.zeros(n_p, n_f, 3), torch.ones(n_p, n_f)
    step_w, step_d, step_c = torch.zeros(n_p, n_f - 1, 3), torch.zeros(n_p, n_f - 1, 3), torch.zeros(n_p, n_f - 1, 3)
    step_log_s, ambiguous = torch.zeros(n_p, n_f - 1), torch.zeros(n_p, n_f - 1, dtype=torch.bool)
    rot_grid = _grid3(math.radians(cfg.max_rotation_deg), math.radians(cfg.rotation_step_deg))
    rot_grid = rot_grid[rot_grid.norm(dim=-1) <= math.radians(cfg.max_rotation_deg) + 1e-6]
    shifts = _grid3(cfg.max_translation, cfg.translation_step)
    for k in range(n_f - 1):
        if stop_requested(should_stop):
            raise JobInterrupted("part motion", f"stopped after {k} of {n_f - 1} frame steps", k, False)
        src_vol, dst_vol = vols[k], vols[k + 1]
        src_blur, dst_blur = _blur(src_vol, cfg.blur_voxels), _blur(dst_vol, cfg.blur_voxels)
        for p, (_, y0) in enumerate(parts):
            y = scale[p, k] * (y0 @ rot[p, k].T) + tau[p, k]  # the part's band at frame k
            src, src_b = _sample(src_vol, y, half), _sample(src_blur, y, half)
            weights = 0.2 + src[:, 0]  # the part counts most; the empty band around it keeps it from growing
            c = (y * src[:, :1]).sum(0) / src[:, 0].sum().clamp_min(1e-6)
            d0, cands = _search(dst_blur, y, src_b, weights, c, rot_grid, shifts, cfg, half)
            w = cands.clone().requires_grad_(True)
            d = d0.expand(len(cands), 3).clone().requires_grad_(True)
            log_s = torch.zeros(len(cands), requires_grad=True)
            opt = torch.optim.Adam([w, d, log_s], lr=cfg.refine_lr)
            for it in range(cfg.refine_steps):  # blurred volumes first, then the sharp ones
                tgt, s_ = (dst_blur, src_b) if it < cfg.refine_steps // 2 else (dst_vol, src)
                loss = _cost(tgt, y, s_, weights, w, d, log_s, c, half).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            w, d, log_s = w.detach(), d.detach(), log_s.detach()
            final = _cost(dst_vol, y, src, weights, w, d, log_s, c, half)
            b, amb = _choose(w, final, cfg)
            r_step, s_step = _axis_angle(w[b]), float(torch.exp(log_s[b]))
            rot[p, k + 1] = r_step @ rot[p, k]
            scale[p, k + 1] = s_step * scale[p, k]
            tau[p, k + 1] = s_step * (r_step @ (tau[p, k] - c)) + c + d[b]
            step_w[p, k], step_d[p, k], step_log_s[p, k], step_c[p, k] = w[b], d[b], log_s[b], c
            ambiguous[p, k] = amb
        if callback is not None:
            callback(events.progress("part motion", k + 1, n_f - 1, "frame step"))
    masks = torch.stack([F.max_pool3d(m[None, None].float(), 3, 1, 1)[0, 0] > 0 for m, _ in parts]) if parts \
        else torch.zeros(0, g, g, g, dtype=torch.bool)
    return PartMotion(masks, rot, tau, scale, step_w, step_d, step_log_s, step_c, ambiguous, times, half)


class MotionField(nn.Module):
    """A fitted field read through a ``PartMotion`` between its frames (module docstring); the same query API
    (``query``, ``density``, ``color``, ``cfg``) and parameters as the field, so ``render`` takes it in its place."""

    def __init__(self, model: nn.Module, motion: PartMotion):
        super().__init__()
        self.model, self.motion = model, motion
        self.cfg = model.cfg

    def _in_part(self, p: int, y0: torch.Tensor) -> torch.Tensor:
        g, h = self.motion.masks.shape[-1], self.motion.half_size
        ijk = ((y0 / h + 1) / 2 * g).floor().long()
        inside = ((ijk >= 0) & (ijk < g)).all(-1)
        ijk = ijk.clamp(0, g - 1)
        return inside & self.motion.masks[p].to(y0.device)[ijk[:, 2], ijk[:, 1], ijk[:, 0]]

    def _at_time(self, x: torch.Tensor, t: float, normals) -> dict:
        m, times, dev = self.motion, self.motion.times, dict(dtype=x.dtype, device=x.device)
        k = int(torch.searchsorted(times, torch.tensor(t, dtype=times.dtype), right=True)) - 1
        k = max(0, min(k, len(times) - 2))
        u = (t - float(times[k])) / max(float(times[k + 1] - times[k]), 1e-12)
        if u <= 1e-6 or u >= 1 - 1e-6 or m.n_parts == 0:  # a fitted frame (or nothing tracked): the field as it is
            return self.model.query(x, torch.full((x.shape[0],), t, **dev), normals=normals)
        owned = []  # (points, their position at frame k, at frame k + 1) per part
        taken = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for p in range(m.n_parts):
            w = m.step_w[p, k].to(**dev) * (0.0 if bool(m.ambiguous[p, k]) else 1.0)
            d, log_s, c = m.step_d[p, k].to(**dev), m.step_log_s[p, k].to(**dev), m.step_c[p, k].to(**dev)
            y_k = ((x - c - u * d) / torch.exp(u * log_s)) @ _axis_angle(w * u) + c  # undo the fraction u
            y_0 = ((y_k - m.tau[p, k].to(**dev)) @ m.rot[p, k].to(**dev)) / m.scale[p, k].to(**dev)
            sel = (self._in_part(p, y_0) & ~taken).nonzero().squeeze(1)
            if sel.numel() == 0:
                continue
            y_k1 = torch.exp(log_s) * ((y_k[sel] - c) @ _axis_angle(w).T) + c + d  # the whole step on
            owned.append((sel, y_k[sel], y_k1))
            taken[sel] = True
        # the field at time t for the points of no part (all points for normals: moved parts keep those at x)
        read = torch.arange(x.shape[0], device=x.device) if normals is not None else (~taken).nonzero().squeeze(1)
        base = self.model.query(x[read], torch.full((read.numel(),), t, **dev), normals=normals)
        sigma, rgb = x.new_empty(x.shape[0]), x.new_empty(x.shape[0], 3)
        sigma[read], rgb[read] = base["sigma"], base["rgb"]
        for sel, ya, yb in owned:
            qa = self.model.query(ya, torch.full((sel.numel(),), float(times[k]), **dev), normals=None)
            qb = self.model.query(yb, torch.full((sel.numel(),), float(times[k + 1]), **dev), normals=None)
            sigma[sel] = (1 - u) * qa["sigma"] + u * qb["sigma"]
            rgb[sel] = (1 - u) * qa["rgb"] + u * qb["rgb"]
        out = {"sigma": sigma, "rgb": rgb}
        if normals is not None:
            out["normal"] = base["normal"]
        return out

    def query(self, x: torch.Tensor, t=0.0, normals: str | None = None, create_graph: bool = False) -> dict:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1)
        if t.numel() == 1:
            return self._at_time(x, float(t), normals)
        outs = {}
        for tv in torch.unique(t).tolist():  # one render can hold several times (one per camera)
            sel = (t == tv).nonzero().squeeze(1)
            outs[tv] = (sel, self._at_time(x[sel], tv, normals))
        first = next(iter(outs.values()))[1]
        merged = {k: x.new_zeros(x.shape[0], *v.shape[1:]) for k, v in first.items()}
        for sel, o in outs.values():
            for k, v in o.items():
                merged[k][sel] = v
        return merged

    def density(self, x: torch.Tensor, t=0.0) -> torch.Tensor:
        return self.query(x, t)["sigma"]

    def color(self, x: torch.Tensor, t=0.0) -> torch.Tensor:
        return self.query(x, t)["rgb"]


__all__ = ["MotionConfig", "PartMotion", "MotionField", "estimate_part_motion", "field_volumes",
           "connected_components"]

"""The sampling stages as pure functions: loaded models and in-memory tensors in, tensors out, no file I/O.

    orbit = sample_reference_orbit(sv3d_models, frames[0], seed=pass_seed(23, REFERENCE), num_steps=20)
    outputs = {REFERENCE: orbit.row}
    for p in plan.passes:
        refs = reference_images(plan, p, outputs)
        outputs[p.index] = sample_pass(models, p, frames, clip, refs, seed=pass_seed(23, p.index)).cells
    matrix = assemble_matrix(plan, frames, outputs)

``SV4DPipeline.run`` is this loop plus a work-dir store (resume, re-roll, manifest); the ComfyUI nodes and the
trainer's validation call these functions directly.

RNG: every stage draws from its own ``torch.Generator`` seeded with the ``seed`` it is given (the pipeline uses
``pass_seed(seed, index)``; SV3D stage: index -1), in this order: the 1e-5 noise of the concat / cond_view /
cond_motion encodes (per direction), then the initial latent. A pass's output depends only on its seed and its
inputs, which makes resuming and re-rolling exact. The official scripts draw everything from one global stream
(``torch.manual_seed(seed)`` once), so outputs are not bit-identical to theirs for the same seed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import numpy as np
import torch

from ..camera import Cameras, conditioning_angles, frame_times, matrix_cameras, sv3d_conditioning_angles
from ..kinds import KINDS, SV3D_N_VIEWS, SV4D_ORBIT_VIEWS
from ..sampling import (CFGDenoiser, Denoiser, build_sv3d_cond, build_sv4d_cond, default_guider, get_sigmas_edm,
                        initial_latent, run_pass, sample_euler_edm)
from ..sampling.plan import REFERENCE, Plan, PlannedPass
from ..stopping import JobInterrupted, StopCheck, stop_requested

__all__ = ["SamplingModels", "OrbitResult", "PassResult", "ImageMatrix", "pass_seed", "sample_reference_orbit",
           "sample_pass", "reference_images", "assemble_matrix", "to_unit_hwc"]


class SamplingModels(Protocol):
    """What the stages need of the models (``EngineModels`` has it; ComfyUI nodes may pass their own)."""

    kind: str
    unet: Callable
    vector_dims: tuple[int, ...]
    device: torch.device

    def autocast(self): ...
    def clip_embed(self, images: torch.Tensor) -> torch.Tensor: ...
    def encode(self, role: str, images: torch.Tensor) -> torch.Tensor: ...
    def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


@dataclass
class OrbitResult:
    """The SV3D stage. ``images [21, 3, S, S]`` in [-1, 1], index k = azimuth ``k * 360 / 21`` (0 = the input view);
    ``row [V, 3, S, S]``: the SV4D views 1..8 of frame 0; ``latents [21, 4, h, w]`` in raw model order."""

    images: torch.Tensor
    row: torch.Tensor
    latents: torch.Tensor
    seed: int
    generator_state: torch.Tensor


@dataclass
class PassResult:
    """One pass. ``latents [T, V, 4, h, w]`` (forward row order), ``cells [n_writes, 3, S, S]`` in [-1, 1] in the
    order of ``writes`` (the cells this pass overwrites)."""

    index: int
    latents: torch.Tensor
    cells: torch.Tensor
    writes: tuple[tuple[int, int], ...]
    seed: int
    generator_state: torch.Tensor


@dataclass
class ImageMatrix:
    """``images [F, V + 1, S, S, 3]`` in [0, 1] (column 0 = the input), ``cameras`` of the columns, ``times [F]``."""

    images: torch.Tensor
    cameras: Cameras
    times: torch.Tensor


def pass_seed(seed: int, index: int) -> int:
    """Seed of pass ``index`` (-1: the SV3D stage): independent of every other pass (SeedSequence mix)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(seed) >> 32 & 0xFFFFFFFF, index + 1]).generate_state(2)
    return int(state[0]) << 31 ^ int(state[1])


def _noisy(images: torch.Tensor, cond_aug: float, g: torch.Generator) -> torch.Tensor:
    """``images + cond_aug * randn`` (official ZeroSampler / SV3D cond_aug; always consumes the RNG)."""
    return images + cond_aug * torch.randn(images.shape, generator=g)


def _step_callback(callback, should_stop: StopCheck | None, n_steps: int, shape: tuple[int, ...], where: str):
    """Sampler callback: report each step, then poll ``should_stop`` (not after the last step)."""
    def cb(info: dict) -> None:
        i = int(info["i"])
        if callback is not None:
            callback({"step": i, "total_steps": n_steps, "sigma": float(info["sigma"]),
                      "sigma_next": float(info["sigma_next"]), "direction": info.get("direction", "forward"),
                      "denoised": info["denoised"].view(shape)})
        if i < n_steps - 1 and stop_requested(should_stop):
            raise JobInterrupted("sampling", f"{where} was stopped at step {i + 1} of {n_steps}; it is not kept",
                                 step=i + 1)
    return cb


def to_unit_hwc(image: torch.Tensor) -> torch.Tensor:
    """``[3, S, S]`` in [-1, 1] -> ``[S, S, 3]`` float32 in [0, 1] (how cells appear in the matrix)."""
    return ((image + 1.0) / 2.0).clamp(0.0, 1.0).permute(1, 2, 0).contiguous()


@torch.no_grad()
def sample_reference_orbit(models: SamplingModels, image: torch.Tensor, *, seed: int, num_steps: int,
                           elevations_deg=None, azimuths_deg=None, cond_aug: float = 1e-5,
                           callback: Callable[[dict], None] | None = None,
                           should_stop: StopCheck | None = None) -> OrbitResult:
    """SV3D orbit of one image (spec section 5): the 21-view orbit and the 8 SV4D reference views of frame 0.

    Args:
        models: an SV3D model (``sv3d_u`` / ``sv3d_p``).
        image: ``[3, S, S]`` or ``[1, 3, S, S]`` in [-1, 1] (frame 0).
        elevations_deg, azimuths_deg: sv3d_p camera arguments (scalar or 21 values, raw orbit order).
        callback: per step ``{step, total_steps, sigma, sigma_next, direction, denoised [21, 4, h, w]}``.
    """
    g = torch.Generator().manual_seed(seed)
    image = image.reshape(1, *image.shape[-3:]).float()
    clip = models.clip_embed(image).to(models.device)
    latent = models.encode("concat", _noisy(image, cond_aug, g))
    polars = azims = None
    spec = KINDS[models.kind]
    if spec.camera_conditioned:  # sv3d_p
        elev = spec.default_elevation_deg if elevations_deg is None else elevations_deg
        polars, azims = sv3d_conditioning_angles(elev, azimuths_deg)
    c, uc = build_sv3d_cond(models.kind, clip, latent, SV3D_N_VIEWS, polars, azims, cond_aug, dims=models.vector_dims)
    sigmas = get_sigmas_edm(num_steps)
    size = image.shape[-1] // 8
    x = initial_latent((SV3D_N_VIEWS, 4, size, size), sigmas, g).to(models.device)
    model = CFGDenoiser(Denoiser(models.unet, SV3D_N_VIEWS, 0.0), c, uc, default_guider(models.kind))
    cb = _step_callback(callback, should_stop, num_steps, tuple(x.shape), "the SV3D reference orbit")
    with models.autocast():
        z = sample_euler_edm(model, x, sigmas, callback=cb).float().cpu()  # [21, 4, h, w]
    orbit = models.decode(z)
    orbit[-1] = image[0]  # the last (azimuth 0) frame is replaced by the input, as the official script
    orbit = torch.roll(orbit.clamp(-1.0, 1.0), 1, 0)  # index k = azimuth k * 360/21, 0 = input view
    return OrbitResult(orbit, orbit[list(SV4D_ORBIT_VIEWS[1:])], z, seed, g.get_state())


def _direction_cond(models: SamplingModels, p: PlannedPass, d, frames, clip_embeds, reference: torch.Tensor | None,
                    g: torch.Generator, cond_aug: float, per_view: bool, angles) -> tuple[dict, dict]:
    images = frames[list(d.cond_frames)].float()  # [T, 3, S, S]
    concat_in = images.repeat_interleave(len(p.views), 0) if per_view else images
    concat = models.encode("concat", _noisy(concat_in, cond_aug, g))
    ref = None
    if d.reference_frame is not None:
        if reference is None:
            raise ValueError(f"pass {p.index} ({p.kind}) direction {d.name!r} needs the views of frame "
                             f"{d.reference_frame} as references; pass references={{{d.name!r}: [V, 3, S, S]}}")
        ref = models.encode("view", _noisy(reference.float(), cond_aug, g))
    motion = models.encode("motion", _noisy(images, cond_aug, g))
    clip = clip_embeds[list(d.cond_frames)].float().to(models.device)
    return build_sv4d_cond(models.kind, clip, concat, motion, ref, *angles, dims=models.vector_dims,
                           n_views=len(p.views))


@torch.no_grad()
def sample_pass(models: SamplingModels, planned: PlannedPass, frames, clip_embeds,
                references: Mapping[str, torch.Tensor] | None = None, *, seed: int, sigmas: torch.Tensor | None = None,
                cfg: float | None = None, min_cfg: float | None = None, elevations_deg=None, azimuths_deg=None,
                cond_aug: float = 1e-5, encode_per_view: bool = False,
                callback: Callable[[dict], None] | None = None, should_stop: StopCheck | None = None) -> PassResult:
    """One planned anchor / dense / window pass (spec sections 6-7).

    Args:
        models: the 4D model (``EngineModels`` or equivalent).
        planned: the pass (``make_plan(...).passes[k]``).
        frames: ``[F, 3, S, S]`` in [-1, 1], or anything indexable by a list of frame indices like it.
        clip_embeds: ``[F, D]`` CLIP embeddings of the frames (``models.clip_embed(frames)``), same indexing.
        references: ``{direction name: [V, 3, S, S]}`` views 1..V of each direction's reference frame, in
            [-1, 1] (``reference_images``); not needed by passes without a reference (SV4D 2.0 first window).
        seed: this pass's seed (the pipeline uses ``pass_seed(base_seed, planned.index)``).
        sigmas: ``[n + 1]`` schedule ending in 0; default ``get_sigmas_edm(len(planned.step_directions))``.
        cfg, min_cfg: guidance scales (None = the kind's official values).
        elevations_deg, azimuths_deg: camera arguments (``conditioning_angles``; None = official defaults).
        encode_per_view: encode each concat frame V times (official mode) instead of once.
        callback: per step ``{step, total_steps, sigma, sigma_next, direction, denoised [T, V, 4, h, w]}``.
        should_stop: polled between steps; True raises ``JobInterrupted`` (nothing of the pass is returned).
    """
    sigmas = get_sigmas_edm(len(planned.step_directions)) if sigmas is None else sigmas
    g = torch.Generator().manual_seed(seed)
    angles = conditioning_angles(models.kind, elevations_deg, azimuths_deg)
    conds = {d.name: _direction_cond(models, planned, d, frames, clip_embeds, (references or {}).get(d.name), g,
                                     cond_aug, encode_per_view, angles) for d in planned.directions}
    size = frames[[0]].shape[-1] // 8
    shape = (len(planned.frames), len(planned.views), 4, size, size)
    x = initial_latent(shape, sigmas, g).to(models.device)
    cb = _step_callback(callback, should_stop, len(sigmas) - 1, shape, f"pass {planned.index} ({planned.kind})")
    with models.autocast():
        z = run_pass(models.unet, planned, conds, sigmas, default_guider(models.kind, cfg, min_cfg), shape[2:],
                     None, cb, models.device, torch.float32, x_init=x)
    z = z.float().cpu()  # [T, V, 4, h, w]
    latents = torch.stack([z[planned.row_of(t), planned.views.index(v)] for t, v in planned.writes])
    images = models.decode(latents)
    cells = ((images + 1.0) / 2.0).clamp(0.0, 1.0) * 2.0 - 1.0  # official decode_latents / do_sample
    return PassResult(planned.index, z, cells, planned.writes, seed, g.get_state())


def _cell_getter(plan: Plan, outputs: Mapping[int, torch.Tensor]):
    writes = {p.index: {c: i for i, c in enumerate(p.writes)} for p in plan.passes}
    writes[REFERENCE] = {c: i for i, c in enumerate(sorted(plan.reference_row()))}

    def cell(index: int, t: int, v: int) -> torch.Tensor:
        if index not in outputs:
            raise ValueError(f"cell ({t}, {v}) comes from pass {index}, which is not in outputs "
                             f"(have {sorted(outputs)}); run it first")
        return outputs[index][writes[index][(t, v)]]
    return cell


def reference_images(plan: Plan, planned: PlannedPass, outputs: Mapping[int, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{direction: [V, 3, S, S]}`` reference views of ``planned`` from the cells of earlier passes.

    ``outputs``: ``{pass index: cells [n_writes, 3, S, S]}`` of the passes run so far (``REFERENCE``: the given
    row 0, views 1..V, e.g. ``OrbitResult.row``).
    """
    sources, cell = plan.reference_sources()[planned.index], _cell_getter(plan, outputs)
    return {d.name: torch.stack([cell(sources[(d.reference_frame, v)], d.reference_frame, v) for v in planned.views])
            for d in planned.directions if d.reference_frame is not None}


def assemble_matrix(plan: Plan, frames, outputs: Mapping[int, torch.Tensor], elevations_deg=None,
                    azimuths_deg=None) -> ImageMatrix:
    """The ``[F, V + 1, S, S, 3]`` image matrix (column 0 = the input frames) with cameras and times.

    Args:
        frames: ``[F, 3, S, S]`` in [-1, 1] (or indexable like it); outputs: as in ``reference_images``, every
            pass of the plan (each cell is taken from the pass that wrote it last: ``plan.final_sources()``).
        elevations_deg, azimuths_deg: the run's camera arguments (``matrix_cameras``).
    """
    cell, sources = _cell_getter(plan, outputs), plan.final_sources()
    first = frames[[0]][0]
    out = torch.empty(plan.n_frames, plan.n_views + 1, first.shape[-1], first.shape[-1], 3)
    for t in range(plan.n_frames):
        out[t, 0] = to_unit_hwc(frames[[t]][0].float())
        for v in range(1, plan.n_views + 1):
            out[t, v] = to_unit_hwc(cell(sources[(t, v)], t, v))
    return ImageMatrix(out, matrix_cameras(plan.model_kind, elevations_deg, azimuths_deg), frame_times(plan.n_frames))

"""4D reconstruction end to end: the V x F image matrix -> dynamic NeRF fit -> quality check -> the export set.

    result = reconstruct(images, masks, cameras, times, out_dir="runs/cat/4d", config=cpu_preset(),
                         export=PRESETS["cpu"].export_settings())

Writes (every file atomically, nothing overwritten unless ``overwrite=True``, checked before the fit starts):
``nerf/nerf_checkpoint.pt`` (resumable fit), ``metrics.json`` (PSNR on the fitted views, on a held-out view and a
held-out frame when the matrix is large enough, foreground coverage per frame, rollbacks), ``turntable.mp4`` (camera
orbits while time loops), ``animated.glb`` (frame-switching GLB that ComfyUI's Preview3D / three.js plays),
``meshes/frame_NNNN.ply`` (per-frame vertex-coloured meshes), ``cameras/transforms.json`` (nerfstudio poses).
A fit whose renders cover far less than the input masks (``EmptyReconstructionError``) writes ``metrics.json`` and no
exports: an empty turntable or mesh set is an error, not a result.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from . import events
from .camera import Cameras
from .files import atomic_write_json, check_writable
from .validate import bounds, check_fields

OUTPUTS = ("turntable.mp4", "animated.glb", "metrics.json", "meshes", "cameras")


class EmptyReconstructionError(RuntimeError):
    """The fitted field renders (nearly) nothing where the input masks show the object."""


@dataclass(frozen=True)
class ExportSettings:
    """What ``reconstruct`` writes after the fit (``sv4d_models.presets`` matches the sizes to a fit preset)."""

    turntable_frames: int = 48  # frames of the turntable video
    turntable_size: int = 256  # its resolution
    mesh_resolution: int = 128  # marching-cubes grid per axis (GPU: 256)
    mesh_threshold: float | None = None  # iso-density of the exported surface; None: surface_density(fit config)
    fps: float = 10.0  # GLB / video frame rate
    write_transforms: bool = True  # nerfstudio transforms.json + PNGs of the input matrix
    holdout: bool = True  # keep one view and one frame out of the fit to measure PSNR on them (V >= 6, F >= 5)
    min_coverage_ratio: float = 0.5  # a frame whose renders cover less than this x the masks' foreground = error
    eval_size: int = 128  # render size of the quality check

    def __post_init__(self) -> None:
        check_fields(self, EXPORT_BOUNDS, "export")


EXPORT_BOUNDS = bounds(turntable_frames="turntable_frames", turntable_size="render_size",
                       mesh_resolution="mesh_resolution", mesh_threshold="mesh_threshold", fps="fps",
                       min_coverage_ratio="fraction", eval_size="render_size")


def surface_density(config) -> float:
    """Iso-density of the exported surface for a field fitted with ``config``: the density at which one render
    sample (chord of the AABB / ``n_samples``) is half opaque, ``ln 2 / delta``. A field learns densities on the
    scale of its own sample spacing, so a fixed level (SV3D exported at 25) cuts a coarse fit's surface away
    (tiny preset: max density ~26, 36 vertices at 25, 2600 at this level 11.9); cpu preset: 23.8."""
    delta = 2.0 * config.field.aabb_half_size / config.n_samples
    return math.log(2.0) / delta


def holdout_split(images: torch.Tensor, export: ExportSettings) -> tuple[list[int], list[int]]:
    """(fitted frames, fitted views): all, or all but one middle frame and one middle novel view."""
    n_f, n_v = images.shape[:2]
    frames, views = list(range(n_f)), list(range(n_v))
    if export.holdout and n_f >= 5 and n_v >= 6:
        frames.remove(n_f // 2)
        views.remove(n_v // 2)
    return frames, views


def _check_outputs(out: Path, overwrite: bool) -> None:
    for name in OUTPUTS:
        check_writable(out / name, overwrite)


def _numbered(summary: dict, frame_ids: list[int]) -> dict:
    """``summarise`` rows carry the index within the evaluated subset; give them the matrix frame numbers."""
    for row in summary.get("frames", []):
        row["frame"] = frame_ids[row["frame"]]
    return summary


def _quality(fit, images, masks, cameras: Cameras, times, frames, views, export, progress) -> dict:
    """Metrics of the fitted cells and of the held-out view / frame (when any)."""
    from .nerf.quality import evaluate, summarise

    t = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
    sel_f, sel_v = torch.tensor(frames), torch.tensor(views)
    fitted = evaluate(fit, images[sel_f][:, sel_v], masks[sel_f][:, sel_v], cameras[sel_v], t[sel_f],
                      export.eval_size, lambda i, n: progress("quality", i, n))
    metrics = {"fitted": _numbered(summarise(fitted), frames)}
    held_v = [v for v in range(images.shape[1]) if v not in views]
    held_f = [f for f in range(images.shape[0]) if f not in frames]
    if held_v:
        hv = torch.tensor(held_v)
        metrics["held_out_view"] = {"view": held_v[0], **_numbered(summarise(evaluate(
            fit, images[sel_f][:, hv], masks[sel_f][:, hv], cameras[hv], t[sel_f], export.eval_size)), frames)}
    if held_f:
        hf = torch.tensor(held_f)
        metrics["held_out_frame"] = {"frame": held_f[0], **_numbered(summarise(evaluate(
            fit, images[hf], masks[hf], cameras, t[hf], export.eval_size)), held_f)}
    return metrics


def resolve_mesh_threshold(value: float | None, config) -> float:
    """The surface level of the exports: ``value``, or ``surface_density(config)`` when it is None or <= 0
    ("automatic": the CLI's default and the Export node's 0)."""
    return surface_density(config) if value is None or value <= 0 else float(value)


def render_fit_turntable(fit, elevation_deg: float, n_frames: int, size: int,
                         progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """``[n_frames, size, size, 3]`` in [0, 1]: the camera circles the object while time runs (``render_turntable``)
    at the matrix's elevation; ``progress(done, total)`` after every rendered frame."""
    from .export.video import render_turntable

    done = {"n": 0}

    def render_fn(cams: Cameras, t: float, height: int, width: int) -> torch.Tensor:
        with torch.no_grad():
            rgb = fit.render(cams, t, height, width, normals=None)["rgb"].clamp(0, 1)
        done["n"] += len(cams)
        if progress is not None:
            progress(done["n"], n_frames)
        return rgb

    frames, _ = render_turntable(render_fn, n_frames, size, elevation_deg=elevation_deg)
    return frames


def _meshes(fit, t_list, resolution: int, level: float, progress):
    from .export.mesh import MeshConfig, extract_mesh_sequence

    model = fit.model
    cfg = MeshConfig(resolution=resolution, threshold=level, aabb_half_size=fit.config.field.aabb_half_size)
    with torch.no_grad():
        seq = extract_mesh_sequence(lambda x, t: model.density(x, t), lambda x, t: model.color(x, t).clamp(0, 1),
                                    t_list, cfg, device=next(model.parameters()).device,
                                    callback=lambda i, n: progress("meshes", i, n))
    empty = [i for i, v in enumerate(seq.vertices) if len(v) == 0]
    if empty:
        raise EmptyReconstructionError(
            f"the 4D fit has no surface at density {level:g} in {len(empty)} of {len(t_list)} frames "
            f"({', '.join(str(i) for i in empty[:8])}{' ...' if len(empty) > 8 else ''}); no exports were written. "
            "Lower the mesh threshold (sv4d --mesh-threshold, node widget mesh_threshold) or check the input views")
    return seq


def _keep_foreground(seq, masks: torch.Tensor | None, cameras: Cameras):
    """The meshes without the components the frame's masks do not support (floaters; ``export.mesh_filter``), and
    the vertices removed per frame. Without masks (one per mesh frame) the meshes are kept as they are."""
    from .export.mesh import MeshSequence
    from .export.mesh_filter import filter_components

    if masks is None or masks.dim() != 4 or masks.shape[0] != seq.n_frames or masks.shape[1] != len(cameras):
        return seq, [0] * seq.n_frames
    out = [filter_components(v, f, None if seq.colors is None else seq.colors[i], cameras.c2w, cameras.fov_deg,
                             masks[i].detach().cpu()) for i, (v, f) in enumerate(zip(seq.vertices, seq.faces))]
    colors = None if seq.colors is None else [o[2] for o in out]
    return MeshSequence([o[0] for o in out], [o[1] for o in out], colors, seq.times), [o[3] for o in out]


def export_asset(fit, images: torch.Tensor, masks: torch.Tensor | None, cameras: Cameras, times,
                 out_dir: str | os.PathLike, export: ExportSettings | None = None, mesh_format: str = "ply",
                 turntable: bool = True, progress: Callable[[str, int, int], None] | None = None,
                 overwrite: bool = False) -> dict:
    """The 4D asset of a fit, written into ``out_dir``: per-frame meshes (none may be empty:
    ``EmptyReconstructionError`` naming the frames, before anything is written), ``animated.glb``,
    ``meshes/frame_*.{ply,obj}`` + ``sequence.json``, ``cameras/transforms.json`` + images (``write_transforms``),
    and with ``turntable`` ``turntable.mp4``. ``sv4d run`` (through ``reconstruct``) and the ComfyUI Export node
    both write through here. ``progress(stage, done, total)``; returns ``{name: path, "mesh_vertices": [...],
    "mesh_vertices_removed": [...] (floater vertices per frame, ``_keep_foreground``),
    "mesh_threshold": level}``."""
    from .export.cameras import export_transforms
    from .export.glb import write_glb
    from .export.sequence import write_mesh_sequence
    from .export.video import write_mp4

    export = export or ExportSettings()
    if mesh_format not in ("ply", "obj"):
        raise ValueError(f"mesh_format={mesh_format!r}: use 'ply' or 'obj'")
    progress = progress or (lambda stage, i, n: None)
    out = Path(out_dir)
    t_list = [float(x) for x in torch.as_tensor(times, dtype=torch.float64).reshape(-1)]
    level = resolve_mesh_threshold(export.mesh_threshold, fit.config)
    seq = _meshes(fit, t_list, export.mesh_resolution, level, progress)
    seq, removed = _keep_foreground(seq, masks, cameras)
    paths: dict = {"mesh_threshold": level, "mesh_vertices_removed": removed}
    if turntable:
        frames = render_fit_turntable(fit, float(cameras.elevation_deg[0]), export.turntable_frames,
                                      export.turntable_size, lambda i, n: progress("turntable", i, n))
        paths["turntable"] = write_mp4(frames, out / "turntable.mp4", fps=export.fps, overwrite=overwrite)
    paths.update({"glb": write_glb(seq, out / "animated.glb", fps=export.fps, overwrite=overwrite),
                  "meshes": write_mesh_sequence(seq, out / "meshes", fmt=mesh_format, fps=export.fps,
                                                overwrite=overwrite),
                  "mesh_vertices": [int(len(v)) for v in seq.vertices]})
    if export.write_transforms:
        paths["transforms"] = export_transforms(out / "cameras", cameras, images, masks, times=t_list,
                                                overwrite=overwrite)
    return paths


def reconstruct(images: torch.Tensor, masks: torch.Tensor, cameras: Cameras, times, out_dir: str | os.PathLike,
                config=None, export: ExportSettings | None = None, callback: Callable[[dict], None] | None = None,
                should_stop: Callable[[], bool] | None = None, overwrite: bool = False) -> dict:
    """Fit a dynamic NeRF to ``images [F, V, H, W, 3]`` (masks ``[F, V, H, W]``, ``cameras`` of the V columns,
    ``times [F]``), check it, and write the export set into ``out_dir``.

    Returns ``{"fit": NeRFFitResult, "metrics": dict, name: path}``. ``callback`` gets the fit's per-step dicts and
    ``progress`` events (``sv4d_models.events``; stage ``quality`` / ``turntable`` / ``meshes``) during the checks
    and exports. The fit
    resumes from ``out_dir/nerf`` when a previous run was interrupted (same data and config); ``should_stop()``
    returning True ends it with ``JobInterrupted`` (the fit checkpoint is kept, nothing exported).
    """
    from .nerf.fit import check_fit_inputs, fit_dynamic_nerf
    from .nerf.fit_config import cpu_preset

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder; choose another output folder")
    _check_outputs(out, overwrite)
    export = export or ExportSettings()
    config = dataclasses.replace(config or cpu_preset(), checkpoint_dir=str(out / "nerf"))
    export = dataclasses.replace(export, mesh_threshold=resolve_mesh_threshold(export.mesh_threshold, config))
    progress = (lambda stage, i, n: callback(events.progress(stage, i, n))) if callback else \
        (lambda stage, i, n: None)
    check_fit_inputs(images, masks, cameras, times)  # before the folder exists
    frames, views = holdout_split(images, export)
    t = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
    sel_f, sel_v = torch.tensor(frames), torch.tensor(views)
    out.mkdir(parents=True, exist_ok=True)
    fit = fit_dynamic_nerf(images[sel_f][:, sel_v], masks[sel_f][:, sel_v], cameras[sel_v], t[sel_f], config,
                           callback=callback, should_stop=should_stop, restart_mismatched=overwrite)
    metrics = {**_quality(fit, images, masks, cameras, t, frames, views, export, progress),
               "fit_steps": fit.step, "rollbacks": fit.rollbacks, "fitted_frames": frames, "fitted_views": views,
               "mesh_threshold": export.mesh_threshold}
    atomic_write_json(out / "metrics.json", metrics, overwrite=True)
    worst = metrics["fitted"]["min_coverage_ratio"]
    if worst < export.min_coverage_ratio:
        bad = [q for q in metrics["fitted"]["frames"] if q["mask_coverage"] and
               q["coverage"] / q["mask_coverage"] < export.min_coverage_ratio]
        raise EmptyReconstructionError(
            f"the 4D fit renders (nearly) nothing in {len(bad)} of {len(frames)} frames (e.g. frame {bad[0]['frame']}: "
            f"{100 * bad[0]['coverage']:.1f}% foreground vs {100 * bad[0]['mask_coverage']:.1f}% in the masks); no "
            f"exports were written (metrics: {out / 'metrics.json'}). Check the input views and masks, or fit longer")
    paths = export_asset(fit, images, masks, cameras, t, out, export, progress=progress, overwrite=overwrite)
    return {"fit": fit, "metrics": metrics, "checkpoint": out / "nerf", "metrics_file": out / "metrics.json", **paths}

"""4D reconstruction end to end: the V x F image matrix -> dynamic NeRF fit -> the export set in one folder.

    result = reconstruct(images, masks, cameras, times, out_dir="runs/cat/4d", config=cpu_preset())

Writes (every file atomically, nothing overwritten unless ``overwrite=True``):
``nerf/nerf_checkpoint.pt`` (resumable fit), ``turntable.mp4`` (camera orbits while time loops),
``animated.glb`` (frame-switching GLB that ComfyUI's Preview3D / three.js plays), ``meshes/frame_NNNN.ply``
(per-frame vertex-coloured meshes), ``cameras/transforms.json`` (nerfstudio poses of the input matrix).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .camera import Cameras


@dataclass(frozen=True)
class ExportSettings:
    """What ``reconstruct`` writes after the fit."""

    turntable_frames: int = 48  # frames of the turntable video
    turntable_size: int = 256  # its resolution
    mesh_resolution: int = 128  # marching-cubes grid per axis (GPU: 256)
    mesh_threshold: float = 25.0  # iso-density of the exported surface (SV3D exported at 25-50)
    fps: float = 10.0  # GLB / video frame rate
    write_transforms: bool = True  # nerfstudio transforms.json + PNGs of the input matrix


def reconstruct(images: torch.Tensor, masks: torch.Tensor, cameras: Cameras, times, out_dir: str | os.PathLike,
                config=None, export: ExportSettings = ExportSettings(), callback: Callable[[dict], None] | None = None,
                should_stop: Callable[[], bool] | None = None, overwrite: bool = False) -> dict:
    """Fit a dynamic NeRF to ``images [F, V, H, W, 3]`` (masks ``[F, V, H, W]``, ``cameras`` of the V columns,
    ``times [F]``) and write the export set into ``out_dir``. Returns ``{"fit": NeRFFitResult, name: path}``.

    The fit resumes from ``out_dir/nerf`` when a previous run was interrupted (same data and config); a
    ``should_stop()`` returning True ends it with ``JobInterrupted`` (the fit checkpoint is kept, nothing exported).
    """
    from .export.cameras import export_transforms
    from .export.glb import write_glb
    from .export.mesh import MeshConfig, extract_mesh_sequence
    from .export.sequence import write_mesh_sequence
    from .export.video import render_turntable, write_mp4
    from .nerf.fit import fit_dynamic_nerf
    from .nerf.fit_config import cpu_preset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = dataclasses.replace(config or cpu_preset(), checkpoint_dir=str(out / "nerf"))
    fit = fit_dynamic_nerf(images, masks, cameras, times, config, callback=callback, should_stop=should_stop)
    paths: dict = {"fit": fit, "checkpoint": out / "nerf"}
    model = fit.model
    t_list = [float(t) for t in torch.as_tensor(times).reshape(-1)]

    def render_fn(cams: Cameras, t: float, height: int, width: int) -> torch.Tensor:
        with torch.no_grad():
            return fit.render(cams, t, height, width, normals=None)["rgb"].clamp(0, 1)

    frames, _ = render_turntable(render_fn, export.turntable_frames, export.turntable_size,
                                 elevation_deg=float(cameras.elevation_deg[0]))
    paths["turntable"] = write_mp4(frames, out / "turntable.mp4", fps=export.fps, overwrite=overwrite)
    mesh_cfg = MeshConfig(resolution=export.mesh_resolution, threshold=export.mesh_threshold,
                          aabb_half_size=config.field.aabb_half_size)
    with torch.no_grad():
        seq = extract_mesh_sequence(lambda x, t: model.density(x, t), lambda x, t: model.color(x, t).clamp(0, 1),
                                    t_list, mesh_cfg, device=next(model.parameters()).device)
    paths["glb"] = write_glb(seq, out / "animated.glb", fps=export.fps, overwrite=overwrite)
    paths["meshes"] = write_mesh_sequence(seq, out / "meshes", fmt="ply", fps=export.fps, overwrite=overwrite)
    if export.write_transforms:
        paths["transforms"] = export_transforms(out / "cameras", cameras, images, masks, times=t_list, overwrite=overwrite)
    return paths

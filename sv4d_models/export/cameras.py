"""Camera poses + images as a nerfstudio / instant-ngp ``transforms.json`` dataset, and the matching reader.

Layout written by :func:`export_transforms`::

    folder/transforms.json        # Cameras.to_transforms_json (OpenGL c2w, pixel intrinsics, per-frame time)
    folder/images/f000_v00.png    # RGB, or RGBA when masks are given (alpha = mask)

For the V x F image matrix of the sampling stage (``images [F, V, H, W, 3]`` with V cameras and F times) every
(frame, view) pair becomes one entry, frame-major; ``transforms.json["sv4d"]`` records the matrix shape so the
reader can restore it. Plain ``images [N, H, W, 3]`` with N cameras are written as ``images/00000.png`` ...
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..camera import Cameras
from ..files import atomic_write_bytes, atomic_write_text, json_text, prepare_folder, read_json
from ..images import png_bytes
from ..validate import check_finite_tensor


def _flatten(cameras: Cameras, images: torch.Tensor, masks, times):
    """-> (cameras per entry, images [N, H, W, 3], masks [N, H, W] | None, times [N] | None, names, matrix shape)."""
    if images.ndim == 5:
        n_f, n_v = images.shape[:2]
        if len(cameras) != n_v:
            raise ValueError(f"images [F={n_f}, V={n_v}, ...] needs {n_v} cameras (one per view), got {len(cameras)}")
        if times is None or len(times) != n_f:
            raise ValueError(f"a [F, V, H, W, 3] matrix needs times with F={n_f} entries, got {times}")
        cams = cameras[torch.arange(n_v).repeat(n_f)]
        names = [f"images/f{f:03d}_v{v:02d}.png" for f in range(n_f) for v in range(n_v)]
        flat_times = torch.as_tensor(times, dtype=torch.float64).repeat_interleave(n_v)
        flat_masks = None if masks is None else masks.reshape(n_f * n_v, *masks.shape[2:])
        return cams, images.reshape(n_f * n_v, *images.shape[2:]), flat_masks, flat_times, names, [n_f, n_v]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3] or [F, V, H, W, 3], got {tuple(images.shape)}")
    if len(cameras) != images.shape[0]:
        raise ValueError(f"{images.shape[0]} images need {images.shape[0]} cameras, got {len(cameras)}")
    if times is not None and len(times) != images.shape[0]:
        raise ValueError(f"times needs one entry per image ({images.shape[0]}), got {len(times)}")
    names = [f"images/{i:05d}.png" for i in range(images.shape[0])]
    return cameras, images, masks, (None if times is None else torch.as_tensor(times, dtype=torch.float64)), names, None


def export_transforms(folder: str | os.PathLike, cameras: Cameras, images: torch.Tensor,
                      masks: torch.Tensor | None = None, times=None, overwrite: bool = False) -> Path:
    """Write images and ``transforms.json`` into ``folder``; returns the JSON path.

    Args:
        images: ``[N, H, W, 3]`` (one per camera) or the matrix ``[F, V, H, W, 3]`` (V cameras, F ``times``), [0, 1].
        masks: optional ``[N, H, W]`` / ``[F, V, H, W]`` in [0, 1], stored as the PNG alpha channel.
        times: optional ``[N]`` (or ``[F]`` for a matrix) frame times in [0, 1].
    """
    cams, imgs, msks, flat_times, names, matrix = _flatten(cameras, images, masks, times)
    if msks is not None and msks.shape != imgs.shape[:-1]:
        raise ValueError(f"masks {tuple(msks.shape)} must match the images without channels {tuple(imgs.shape[:-1])}")
    height, width = imgs.shape[1:3]
    data = cams.to_transforms_json(width, height, file_paths=names, times=flat_times)
    data["sv4d"] = {"fov_deg": cams.fov_deg, "radius": cams.radius, "matrix_shape_fv": matrix,
                    "has_alpha": msks is not None}
    text = json_text(data, Path(folder) / "transforms.json", indent=1)  # refused (NaN) before anything is written
    check_finite_tensor(imgs, "the images of transforms.json")
    folder = prepare_folder(folder, names + ["transforms.json"], overwrite)
    (folder / "images").mkdir(exist_ok=True)
    for i, name in enumerate(names):
        atomic_write_bytes(folder / name, png_bytes(imgs[i], None if msks is None else msks[i]), overwrite)
    return atomic_write_text(folder / "transforms.json", text, overwrite)


@dataclass
class TransformsData:
    """What :func:`load_transforms` returns. ``images [N, H, W, 3]`` / ``masks [N, H, W]`` only if loaded."""

    cameras: Cameras
    file_paths: list[str]
    times: torch.Tensor | None  # [N] float64
    width: int
    height: int
    focal: float  # pixels (fl_y)
    matrix_shape: tuple[int, int] | None  # (F, V) when written from a matrix
    images: torch.Tensor | None = None
    masks: torch.Tensor | None = None


def _load_images(folder: Path, file_paths: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
    from PIL import Image

    arrs = [np.asarray(Image.open(folder / p)) for p in file_paths]
    stack = torch.from_numpy(np.stack(arrs)).float() / 255.0
    if stack.shape[-1] == 4:
        return stack[..., :3], stack[..., 3]
    return stack[..., :3], None


def load_transforms(path: str | os.PathLike, load_images: bool = False) -> TransformsData:
    """Read a ``transforms.json`` (ours or any nerfstudio-style file with OpenGL ``transform_matrix``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "transforms.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass a transforms.json or the folder holding it")
    data = read_json(path, "a camera file")
    frames = data.get("frames") if isinstance(data, dict) else None
    if not frames:
        raise ValueError(f"{path} has no 'frames' list; is it a nerfstudio transforms.json?")
    missing = [k for k in ("h", "w") if k not in data] + [k for k in ("transform_matrix", "file_path")
                                                          if any(k not in f for f in frames)]
    if missing:
        raise ValueError(f"{path} lacks {missing}; it is not a complete transforms.json (rewrite it with "
                         "export_transforms)")
    c2w = torch.tensor([f["transform_matrix"] for f in frames], dtype=torch.float64)
    height, width = int(data["h"]), int(data["w"])
    focal = float(data.get("fl_y", data.get("fl_x", 0.0)))
    fov = math.degrees(data["camera_angle_y"]) if "camera_angle_y" in data else \
        math.degrees(2 * math.atan(0.5 * height / focal))
    pos = c2w[:, :3, 3]
    radius = float(pos.norm(dim=-1).mean())
    if all("azimuth_deg" in f and "elevation_deg" in f for f in frames):
        az = torch.tensor([f["azimuth_deg"] for f in frames], dtype=torch.float64)
        el = torch.tensor([f["elevation_deg"] for f in frames], dtype=torch.float64)
    else:
        az = torch.rad2deg(torch.atan2(pos[:, 1], pos[:, 0]))
        el = torch.rad2deg(torch.asin((pos[:, 2] / pos.norm(dim=-1)).clamp(-1, 1)))
    extra = data.get("sv4d", {})
    cams = Cameras(c2w=c2w, azimuth_deg=az, elevation_deg=el, fov_deg=float(extra.get("fov_deg", fov)),
                   radius=float(extra.get("radius", radius)))
    times = torch.tensor([f["time"] for f in frames], dtype=torch.float64) if all("time" in f for f in frames) else None
    file_paths = [f["file_path"] for f in frames]
    shape = extra.get("matrix_shape_fv")
    out = TransformsData(cams, file_paths, times, width, height, focal, None if shape is None else tuple(shape))
    if load_images:
        out.images, out.masks = _load_images(path.parent, file_paths)
    return out

"""Camera/time sweeps rendered through any ``render_fn``, and an atomic mp4 writer.

``render_fn(cameras: Cameras, t: float, height: int, width: int) -> Tensor[N, H, W, 3]`` in [0, 1] is the only
contact with the field (the dynamic NeRF, or :meth:`SyntheticScene.render_fn` for ground truth). Sweeps:

* :func:`render_time_sweep`: fixed cameras, time runs -> ``[T, N, H, W, 3]`` (one video per view),
* :func:`render_bullet_time`: fixed time, the camera orbits 360 deg -> ``[A, H, W, 3]``,
* :func:`render_turntable`: the camera orbits while time loops (ping-pong or saw-tooth) -> ``[F, H, W, 3]``,
* :func:`render_path`: any per-frame (camera, time) path, the building block of the others.

:func:`write_mp4` encodes H.264 (yuv420p, odd sizes padded by edge replication) with imageio-ffmpeg's bundled
ffmpeg, falling back to PyAV (a ComfyUI core dependency) when imageio-ffmpeg is missing.
"""
from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..camera import CAMERA_DISTANCE, FOV_DEG, Cameras
from ..files import atomic_path
from ..images import to_uint8
from ..validate import RANGES, check_number

RenderFn = Callable[[Cameras, float, int, int], torch.Tensor]
TIME_MODES = ("pingpong", "loop")
VIDEO_BACKENDS = ("auto", "imageio", "pyav")


def orbit_cameras(n_views: int, elevation_deg: float = 10.0, start_azimuth_deg: float = 0.0,
                  radius: float = CAMERA_DISTANCE, fov_deg: float = FOV_DEG) -> Cameras:
    """``n_views`` cameras evenly spaced on a full circle (end point excluded), azimuth from the input view."""
    if n_views < 1:
        raise ValueError(f"n_views={n_views} must be >= 1")
    az = start_azimuth_deg + 360.0 * torch.arange(n_views, dtype=torch.float64) / n_views
    return Cameras.orbit(az, elevation_deg, radius=radius, fov_deg=fov_deg)


def render_path(render_fn: RenderFn, cameras: Cameras, times: Sequence[float], height: int,
                width: int | None = None, chunk: int = 8) -> torch.Tensor:
    """Frame ``i`` = ``cameras[i]`` at ``times[i]``; consecutive frames sharing a time are rendered together
    (at most ``chunk`` cameras per call). Returns ``[N, H, W, 3]`` float32 on CPU."""
    width = height if width is None else width
    times = [float(t) for t in times]
    if len(times) != len(cameras):
        raise ValueError(f"render_path needs one time per camera: {len(cameras)} cameras, {len(times)} times")
    if chunk < 1:
        raise ValueError(f"chunk={chunk} must be >= 1 camera per render_fn call")
    frames, start = [], 0
    while start < len(times):
        stop = start + 1
        while stop < len(times) and stop - start < chunk and times[stop] == times[start]:
            stop += 1
        with torch.no_grad():
            out = render_fn(cameras[torch.arange(start, stop)], times[start], height, width)
        if out.shape != (stop - start, height, width, 3):
            raise ValueError(f"render_fn returned {tuple(out.shape)}; expected [{stop - start}, {height}, {width}, 3]")
        frames.append(out.detach().float().cpu())
        start = stop
    return torch.cat(frames)


def render_time_sweep(render_fn: RenderFn, cameras: Cameras, times: Sequence[float], height: int,
                      width: int | None = None, chunk: int = 8) -> torch.Tensor:
    """Fixed cameras while time runs: ``[T, N, H, W, 3]`` (column n is the video of camera n)."""
    n = len(cameras)
    idx = torch.arange(n).repeat(len(times))
    flat_times = [float(t) for t in times for _ in range(n)]
    out = render_path(render_fn, cameras[idx], flat_times, height, width, chunk)
    return out.reshape(len(times), n, *out.shape[1:])


def render_bullet_time(render_fn: RenderFn, t: float, n_views: int = 36, height: int = 256,
                       width: int | None = None, elevation_deg: float = 10.0, start_azimuth_deg: float = 0.0,
                       radius: float = CAMERA_DISTANCE, fov_deg: float = FOV_DEG, chunk: int = 8) -> torch.Tensor:
    """Frozen time ``t``, the camera makes one full orbit: ``[n_views, H, W, 3]``."""
    cams = orbit_cameras(n_views, elevation_deg, start_azimuth_deg, radius, fov_deg)
    return render_path(render_fn, cams, [t] * n_views, height, width, chunk)


def turntable_times(n_frames: int, time_loops: float = 1.0, mode: str = "pingpong") -> np.ndarray:
    """Times ``[n_frames]`` in [0, 1]: ``pingpong`` goes 0 -> 1 -> 0 per loop, ``loop`` is a saw-tooth (0 -> 1, jump)."""
    if mode not in TIME_MODES:
        raise ValueError(f"time mode={mode!r} is not supported; use one of {TIME_MODES}")
    phase = (time_loops * np.arange(n_frames) / max(n_frames, 1)) % 1.0
    if mode == "loop":
        return phase
    return 1.0 - np.abs(1.0 - 2.0 * phase)


def render_turntable(render_fn: RenderFn, n_frames: int = 48, height: int = 256, width: int | None = None,
                     elevation_deg: float = 10.0, time_loops: float = 1.0, time_mode: str = "pingpong",
                     start_azimuth_deg: float = 0.0, radius: float = CAMERA_DISTANCE,
                     fov_deg: float = FOV_DEG) -> tuple[torch.Tensor, np.ndarray]:
    """The camera orbits 360 deg while time loops ``time_loops`` times. Returns ``([n_frames, H, W, 3], times)``."""
    cams = orbit_cameras(n_frames, elevation_deg, start_azimuth_deg, radius, fov_deg)
    times = turntable_times(n_frames, time_loops, time_mode)
    return render_path(render_fn, cams, times.tolist(), height, width), times


def frames_to_uint8(frames, what: str = "frames") -> np.ndarray:
    """``[F, H, W, 3]`` float in [0, 1] (tensor or array) or uint8 -> contiguous uint8 array; NaN / infinite values
    raise ValueError naming ``what`` (they would become black or white pixels without a word)."""
    arr = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise ValueError(f"frames must be [F, H, W, 3] with F >= 1, got {arr.shape}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{what} hold {int((~np.isfinite(arr)).sum())} NaN or infinite values; nothing was written")
    if arr.dtype != np.uint8:
        arr = to_uint8(arr.astype(np.float32))
    return np.ascontiguousarray(arr)


def _pad_even(arr: np.ndarray) -> np.ndarray:
    ph, pw = arr.shape[1] % 2, arr.shape[2] % 2
    return np.pad(arr, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else arr


def _write_imageio(arr: np.ndarray, path: Path, fps: float, crf: int) -> None:
    import imageio_ffmpeg

    writer = imageio_ffmpeg.write_frames(str(path), (arr.shape[2], arr.shape[1]), fps=fps, codec="libx264",
                                         pix_fmt_out="yuv420p", quality=None, macro_block_size=1,
                                         output_params=["-crf", str(crf)], ffmpeg_log_level="error")
    writer.send(None)
    for frame in arr:
        writer.send(frame)
    writer.close()


def _write_pyav(arr: np.ndarray, path: Path, fps: float, crf: int) -> None:
    import av

    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = arr.shape[2], arr.shape[1], "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in arr:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _pick_backend(backend: str):
    if backend not in VIDEO_BACKENDS:
        raise ValueError(f"backend={backend!r} is not supported; use one of {VIDEO_BACKENDS}")
    for name, module, fn in (("imageio", "imageio_ffmpeg", _write_imageio), ("pyav", "av", _write_pyav)):
        if backend in ("auto", name):
            try:
                __import__(module)
            except ImportError:
                if backend == name:
                    raise ImportError(f"backend={name!r} needs {module}: pip install "
                                      f"{'imageio-ffmpeg' if name == 'imageio' else 'av'}") from None
                continue
            return fn
    raise ImportError("writing mp4 needs imageio-ffmpeg or PyAV: pip install imageio-ffmpeg")


def write_mp4(frames, path: str | os.PathLike, fps: float = 12.0, crf: int = 18, backend: str = "auto",
              overwrite: bool = False) -> Path:
    """Encode ``frames [F, H, W, 3]`` (float [0, 1] or uint8) as H.264 mp4 at ``path`` (atomic, no clobber)."""
    check_number(fps, "fps", *RANGES["fps"])
    check_number(crf, "crf", 0, 51, "x264 quality; lower is better, 18 ~ visually lossless", integer=True)
    arr = _pad_even(frames_to_uint8(frames, f"the frames of {path}"))
    writer = _pick_backend(backend)
    with atomic_path(path, overwrite) as tmp:
        writer(arr, tmp, float(fps), int(crf))
    return Path(path)

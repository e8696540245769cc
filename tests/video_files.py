"""Test helper: small video files in the containers users send (mp4, mov, mkv, webm), with or without an alpha
channel, written with the ffmpeg that imageio-ffmpeg bundles (raw frames piped in)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

# codec arguments per (container, alpha)
OPAQUE = {"mp4": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
          "mov": ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart"],
          "mkv": ["-c:v", "libx264", "-pix_fmt", "yuv420p"],
          "webm": ["-c:v", "libvpx-vp9", "-pix_fmt", "yuv420p", "-b:v", "200k"]}
ALPHA = {"mov_qtrle": ["-c:v", "qtrle", "-pix_fmt", "argb"],
         "mov_png": ["-c:v", "png", "-pix_fmt", "rgba"],
         "mov_prores4444": ["-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p10le"],
         "webm_vp9": ["-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", "-b:v", "400k"],
         "webm_vp8": ["-c:v", "libvpx", "-pix_fmt", "yuva420p", "-auto-alt-ref", "0", "-b:v", "400k"]}


def encode(path: Path, frames: np.ndarray, codec_args: list[str], fps: int = 10) -> Path:
    """Write ``frames [N, H, W, 3 | 4]`` uint8 to ``path`` with ``codec_args``."""
    import imageio_ffmpeg

    n, h, w, c = frames.shape
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
           "-pix_fmt", "rgba" if c == 4 else "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", *codec_args,
           str(path)]
    subprocess.run(cmd, input=np.ascontiguousarray(frames, dtype=np.uint8).tobytes(), check=True, timeout=120)
    return path


def noise_frames(n: int = 30, size: int = 32, seed: int = 0) -> np.ndarray:
    """Random RGB frames (incompressible: the file's bytes spread evenly over its duration)."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def alpha_frames(n: int = 6, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """RGBA frames of a red square on a transparent background (60 % of the pixels transparent) and the mask."""
    mask = np.zeros((size, size), bool)
    side = int(round(size * 0.4 ** 0.5))
    lo = (size - side) // 2
    mask[lo:lo + side, lo:lo + side] = True
    rgba = np.zeros((n, size, size, 4), np.uint8)
    rgba[..., 1] = 90  # the colour under transparent pixels: must not show through
    rgba[:, mask] = (220, 30, 30, 255)
    rgba[:, mask, 0] -= (np.arange(n, dtype=np.uint8) * 10)[:, None]  # frames differ (a GIF merges equal ones)
    return rgba, mask


def truncate(path: Path, fraction: float = 0.6) -> Path:
    """Keep the first ``fraction`` of the file's bytes (an interrupted copy or download), in place."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path

"""SV4D input preprocessing: object-centred square crop, LANCZOS resize, white composite (reference doc section 6.2).

Follows the official ``preprocess_video`` + ``read_video`` (``scripts/demo/sv4d_helpers.py``) for frames
``[F, H, W, C]`` in [0, 1] (see :func:`sv4d_models.frames_io.load_frames`):

1. foreground mask per frame: ``alpha > 0`` (RGBA) or ``mean(RGB) * 255 <= white_threshold`` (RGB; a white
   background is assumed);
2. union bounding box of the masks over all frames;
3. ``half`` = largest distance from the image centre ``(H // 2, W // 2)`` to a box edge; the centred square window
   of side ``2 * half`` is cut out (clipped to the image);
4. the window is pasted centred into a transparent square canvas of side ``int(2 * half / image_frame_ratio)``
   (so the object spans ~``image_frame_ratio`` of the side), resized to ``size x size`` with LANCZOS and
   composited over white ``rgb * a + (1 - a)``; images are returned in [-1, 1].

Modes
-----
``official=False`` (default) is the geometrically correct version:
  * rows and columns are handled separately, so a non-square input keeps its object centred;
  * float32 throughout: premultiplied RGB and alpha of the canvas are resized as PIL ``"F"`` images (same order
    as PIL's uint8 RGBA resize, which premultiplies internally), alpha clipped to [0, 1], colour clipped to
    [0, alpha], composited ``premultiplied + 1 - alpha``. Nothing is quantised;
  * no video round trip.
``official=True`` reproduces the official code literally:
  * the axis mixing: the official code names the row count ``in_w`` and compares the row centre ``H // 2`` with the
    box *column* coordinates of ``cv2.boundingRect`` and the column centre with the *row* coordinates, then cuts rows
    ``[max(0, H//2 - half), +min(H, 2 half))`` and columns ``[max(0, W//2 - half), +min(W, 2 half))``. For square
    inputs this equals the default geometry exactly; for non-square ones the window and scale differ;
  * uint8 everywhere: input rounded to uint8, PIL resize of the uint8 RGBA canvas (PIL premultiplies internally and
    rounds), composite truncated with ``astype(uint8)`` (up to 1/255 darker than rounding);
  * the mp4 round trip: frames are written to an H.264 mp4 at fps 10 exactly like the official
    ``imageio.mimwrite(path, frames, fps=10)`` (imageio-ffmpeg, libx264 default CRF, yuv420p, macro block 16) and
    decoded again. The official script decodes with OpenCV, we decode with imageio-ffmpeg. The two bring their own
    FFmpeg builds (decoder and yuv420p -> RGB conversion), so identical output is not guaranteed across versions;
    with opencv-python-headless 5.0.0.93 and imageio-ffmpeg 0.8.1 (FFmpeg 9.0.2) it was bit-identical on the three
    sample inputs and on tests/data/preprocess_official_parity.npz. Everything before the codec is bit-identical
    to the official uint8 frames (same fixture, incl. non-square inputs). The output ``size`` must then be a
    multiple of 16 (576 is).
On square inputs the two modes use the identical window and canvas; before the mp4 round trip the images differ by
the uint8 steps only: mean ~0.1 levels (of 255) and max ~5 on the sample videos; on synthetic hard-edged RGBA 99 % of
the pixels are within 2 levels and isolated edge pixels differ by up to ~25 (PIL's uint8 LANCZOS clips the ringing
after its first pass). The round trip itself changes ~1-2 % of the pixels by > 8 levels (sample videos).
Both modes, like the official code, treat an RGB frame as an opaque window: the white background inside the window
is resampled as colour, so an RGBA frame and its white composite give the same box and masks and identical
interiors, but LANCZOS ringing at the object edges differs (up to ~55 levels on isolated hard-edge pixels).

``masks`` (not produced by the official code) carry the foreground through the same crop/paste/resize: the alpha
channel for RGBA input, the white-threshold test (0/1) for RGB input, float LANCZOS, clipped to [0, 1].
``remove_bg=True`` runs rembg (``remove(img, alpha_matting=True)``, as official) on RGB frames; rembg is optional and
is never installed or allowed to download weights from here.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

from .frames_io import SUPPORTED_EXTENSIONS, load_frames, read_video_file, validate_frames
from .kinds import IMAGE_SIZE, KINDS

__all__ = ["Preprocessed", "preprocess_frames", "pingpong_pad", "load_frames", "validate_frames",
           "SUPPORTED_EXTENSIONS"]

MP4_FPS = 10  # official process_input.mp4 frame rate
_T = TypeVar("_T", torch.Tensor, list)


@dataclass(frozen=True, eq=False)
class Preprocessed:
    """Result of :func:`preprocess_frames`. Boxes are ``(x0, y0, x1, y1)`` source pixels, x = column, end-exclusive."""

    images: torch.Tensor  # [F, 3, size, size] float32 in [-1, 1], composited over white
    masks: torch.Tensor  # [F, size, size] float32 in [0, 1]
    box: tuple[int, int, int, int]  # union foreground bounding box over all frames
    crop: tuple[int, int, int, int]  # source window actually cut out (clipped to the image)
    paste: tuple[int, int]  # (x, y) of the window's top-left corner in the canvas
    half: int  # half side of the centred square window (before clipping)
    side: int  # side of the square canvas in source pixels = int(2 * half / image_frame_ratio)
    scale: float  # output pixels per source pixel = size / side
    official: bool  # True: official quirks reproduced (see module docstring)


@dataclass(frozen=True)
class _Placement:
    rows: tuple[int, int]  # source rows [r0, r1)
    cols: tuple[int, int]  # source cols [c0, c1)
    offset: tuple[int, int]  # canvas (row, col) of the window's top-left
    half: int
    side: int


# ----------------------------------------------------------------------------------------------------- geometry
def foreground_masks(frames: torch.Tensor, white_threshold: float = 250) -> torch.Tensor:
    """[F, H, W, C] in [0, 1] -> bool [F, H, W]: alpha > 0 (RGBA) or mean(RGB) * 255 <= white_threshold (RGB)."""
    if frames.shape[-1] == 4:
        return frames[..., 3] > 0
    return frames[..., :3].mean(-1) * 255.0 <= white_threshold + 1e-3  # 1e-3: float noise of uint8 / 255 values


def union_box(masks: torch.Tensor) -> tuple[int, int, int, int]:
    """bool [F, H, W] -> (x0, y0, x1, y1) of all True pixels (cv2.boundingRect convention, end-exclusive)."""
    any_frame = masks.any(0)
    rows, cols = any_frame.any(1).nonzero()[:, 0], any_frame.any(0).nonzero()[:, 0]
    if rows.numel() == 0:
        raise ValueError("no foreground in any frame: every alpha is 0 (RGBA) or every pixel is brighter than "
                         "white_threshold (RGB); use RGBA input, pass remove_bg=True or raise white_threshold")
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _placement(box: tuple[int, int, int, int], h: int, w: int, ratio: float, official: bool) -> _Placement:
    x0, y0, x1, y1 = box
    cy, cx = h // 2, w // 2
    if official:  # literal official code: row centre vs x (columns), column centre vs y (rows)
        half = max(cy - x0, cx - y0, x1 - cy, y1 - cx)
    else:
        half = max(cy - y0, y1 - cy, cx - x0, x1 - cx)
    r0, c0 = max(0, cy - half), max(0, cx - half)
    if official:
        r1, c1 = r0 + min(h, 2 * half), c0 + min(w, 2 * half)
    else:
        r1, c1 = min(h, cy + half), min(w, cx + half)
    side = int(2 * half / ratio)
    centre = side // 2
    if official:  # window pasted centred by its own (clipped) size
        offset = (centre - (r1 - r0) // 2, centre - (c1 - c0) // 2)
    else:  # image centre lands on the canvas centre
        offset = (centre - cy + r0, centre - cx + c0)
    return _Placement((r0, r1), (c0, c1), offset, half, side)


def _paste(src: np.ndarray, pl: _Placement) -> np.ndarray:
    """[H, W, K] -> [side, side, K] zero canvas with the window pasted at the placement offset."""
    canvas = np.zeros((pl.side, pl.side) + src.shape[2:], dtype=src.dtype)
    (r0, r1), (c0, c1), (dr, dc) = pl.rows, pl.cols, pl.offset
    canvas[dr:dr + r1 - r0, dc:dc + c1 - c0] = src[r0:r1, c0:c1]
    return canvas


# ----------------------------------------------------------------------------------------------------- rendering
def _resize_float(channels: np.ndarray, size: int) -> np.ndarray:
    """[S, S, K] float32 -> [size, size, K] float32, LANCZOS per channel (PIL "F" images), no clipping."""
    from PIL import Image

    out = [np.asarray(Image.fromarray(np.ascontiguousarray(channels[..., k], dtype=np.float32))
                      .resize((size, size), Image.LANCZOS)) for k in range(channels.shape[-1])]
    return np.stack(out, -1)


def _render_float(frames: np.ndarray, pl: _Placement, size: int) -> np.ndarray:
    """float path: [F, H, W, C] in [0, 1] -> [F, size, size, 3] composited over white, in [0, 1]."""
    out = []
    for frame in frames:
        alpha = frame[..., 3:] if frame.shape[-1] == 4 else np.ones_like(frame[..., :1])
        canvas = _paste(np.concatenate([frame[..., :3] * alpha, alpha], -1), pl)  # premultiplied RGBA
        res = _resize_float(canvas, size)
        # same order and clamps as PIL's RGBA resize (premultiplied, colour <= 1 on un-premultiplying) + composite
        a = np.clip(res[..., 3:], 0.0, 1.0)
        out.append(np.clip(res[..., :3], 0.0, a) + 1.0 - a)
    return np.stack(out)


def _render_official(frames_u8: np.ndarray, pl: _Placement, size: int) -> np.ndarray:
    """official path: uint8 [F, H, W, C] -> uint8 [F, size, size, 3] (uint8 RGBA resize, truncated composite)."""
    from PIL import Image

    out = []
    for frame in frames_u8:
        if frame.shape[-1] == 3:  # image.convert("RGBA"): opaque alpha
            frame = np.concatenate([frame, np.full_like(frame[..., :1], 255)], -1)
        rgba = np.asarray(Image.fromarray(_paste(frame, pl), "RGBA").resize((size, size), Image.LANCZOS)) / 255.0
        rgb = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])
        out.append((rgb * 255).astype(np.uint8))
    return np.stack(out)


def _render_masks(masks: np.ndarray, pl: _Placement, size: int) -> np.ndarray:
    """[F, H, W] float -> [F, size, size] float in [0, 1]."""
    return np.stack([np.clip(_resize_float(_paste(m[..., None], pl), size)[..., 0], 0.0, 1.0) for m in masks])


def mp4_roundtrip(frames_u8: np.ndarray, fps: int = MP4_FPS) -> np.ndarray:
    """Encode uint8 [F, S, S, 3] to a temporary H.264 mp4 like official ``imageio.mimwrite`` and decode it back."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise ImportError("official=True needs imageio-ffmpeg for the mp4 round trip: pip install imageio-ffmpeg"
                          ) from exc
    n, h, w, _ = frames_u8.shape
    if h % 16 or w % 16:
        raise ValueError(f"the official mp4 round trip needs a size divisible by 16 (ffmpeg would rescale), got "
                         f"{w}x{h}; use size={IMAGE_SIZE} or another multiple of 16")
    with tempfile.TemporaryDirectory(prefix="sv4d_preprocess_") as tmp:
        path = os.path.join(tmp, "process_input.mp4")
        # the arguments imageio's FFMPEG writer passes for mimwrite(path, frames, fps=10): quality None -> libx264
        # default CRF, yuv420p, macro block 16
        writer = imageio_ffmpeg.write_frames(path, (w, h), pix_fmt_in="rgb24", pix_fmt_out="yuv420p", fps=fps,
                                             quality=None, codec="libx264", macro_block_size=16,
                                             ffmpeg_log_level="error")
        writer.send(None)
        for frame in frames_u8:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        decoded = read_video_file(path)
    if len(decoded) != n:
        raise RuntimeError(f"mp4 round trip returned {len(decoded)} frames instead of {n}")
    return np.stack(decoded)


# ----------------------------------------------------------------------------------------------------- public API
def _remove_background(frames: torch.Tensor) -> torch.Tensor:
    """RGB [F, H, W, 3] -> RGBA via rembg ``remove(alpha_matting=True)``; RGBA input is returned unchanged."""
    if frames.shape[-1] == 4:
        return frames
    try:
        from rembg import remove
    except ImportError as exc:
        raise ImportError("remove_bg=True needs the optional package rembg (pip install rembg onnxruntime); or pass "
                          "RGBA frames / frames on a white background with remove_bg=False") from exc
    home = os.environ.get("U2NET_HOME", os.path.join(os.path.expanduser("~"), ".u2net"))
    if not os.path.isfile(os.path.join(home, "u2net.onnx")):
        raise RuntimeError(f"rembg weights {os.path.join(home, 'u2net.onnx')} not found and this library never "
                           "downloads weights; run `rembg i in.png out.png` once or place u2net.onnx in U2NET_HOME")
    from PIL import Image

    u8 = (frames * 255).round().to(torch.uint8).numpy()
    out = [np.asarray(remove(Image.fromarray(f).convert("RGBA"), alpha_matting=True).convert("RGBA")) for f in u8]
    return torch.from_numpy(np.stack(out)).float() / 255.0


def _check_args(size: int, image_frame_ratio: float, white_threshold: float) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}; SV4D uses {IMAGE_SIZE}")
    if not 0.0 < float(image_frame_ratio) <= 1.0:
        raise ValueError(f"image_frame_ratio must be in (0, 1], got {image_frame_ratio!r}; SV4D uses 0.917, "
                         "SV4D 2.0 0.9")
    if not 0.0 <= float(white_threshold) <= 255.0:
        raise ValueError(f"white_threshold is a 0-255 level, got {white_threshold!r}; the official value is 250")


MIN_INPUT_SIDE = 16  # smaller inputs cannot show an object SV4D could reconstruct


def _check_upsampling(h: int, w: int, side: int, size: int) -> None:
    """Refuse inputs too small to carry an object; warn when the object is upsampled more than 4x."""
    if min(h, w) < MIN_INPUT_SIDE:
        raise ValueError(f"the input frames are {w}x{h} pixels; SV4D needs the object at a usable size (at least "
                         f"{MIN_INPUT_SIDE} px, ideally {size} px or more): use a larger video")
    if size / max(side, 1) > 4.0:
        warnings.warn(f"the object's square crop is {side} px and is upsampled {size / side:.1f}x to {size} px; the "
                      "result will be blurry: use a higher-resolution video or a smaller image_size", stacklevel=3)


def _preprocess(frames: torch.Tensor, size: int, image_frame_ratio: float, white_threshold: float,
                remove_bg: bool, official: bool, mp4: bool) -> Preprocessed:
    """:func:`preprocess_frames` with the official mp4 round trip switchable (``mp4``) for tests."""
    _check_args(size, image_frame_ratio, white_threshold)
    validate_frames(frames)
    frames = frames.detach().cpu()
    frames = frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()
    if remove_bg:
        frames = _remove_background(frames)
    if official:  # everything downstream sees the uint8 values the official code sees
        u8 = (frames * 255.0).round().to(torch.uint8)
        frames = u8.float() / 255.0
    fg = foreground_masks(frames, white_threshold)  # [F, H, W]
    box = union_box(fg)
    h, w = frames.shape[1:3]
    pl = _placement(box, h, w, image_frame_ratio, official)
    _check_upsampling(h, w, pl.side, size)
    if official:
        rgb_u8 = _render_official(u8.numpy(), pl, size)
        if mp4:
            rgb_u8 = mp4_roundtrip(rgb_u8)
        rgb = rgb_u8.astype(np.float32) / 255.0
    else:
        rgb = _render_float(frames.numpy(), pl, size)
    mask_src = frames[..., 3] if frames.shape[-1] == 4 else fg.float()
    masks = _render_masks(mask_src.numpy(), pl, size)
    (r0, r1), (c0, c1) = pl.rows, pl.cols
    return Preprocessed(
        images=torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2).contiguous() * 2.0 - 1.0,
        masks=torch.from_numpy(masks).float(), box=box, crop=(c0, r0, c1, r1),
        paste=(pl.offset[1], pl.offset[0]), half=pl.half, side=pl.side, scale=size / pl.side, official=official)


def preprocess_frames(frames: torch.Tensor, size: int = IMAGE_SIZE,
                      image_frame_ratio: float = KINDS["sv4d"].image_frame_ratio, white_threshold: float = 250, remove_bg: bool = False, official: bool = False) -> Preprocessed:
    """Crop, centre, resize and white-composite frames for SV4D (reference doc 6.2; modes in the module docstring).

    Args:
        frames: [F, H, W, C] float in [0, 1] (or uint8), C = 3 (white background assumed) or 4 (RGBA).
        size: output side (SV4D: 576).
        image_frame_ratio: fraction of the output side the object box spans (SV4D 0.917, SV4D 2.0 0.9).
        white_threshold: RGB pixels with mean level (0-255) <= this are foreground (official 250).
        remove_bg: run rembg on RGB frames first (optional dependency, never downloaded here).
        official: reproduce the official quirks (axis mixing, uint8, mp4 round trip) instead of the exact geometry.
    Returns:
        :class:`Preprocessed` with images [F, 3, size, size] in [-1, 1] and masks [F, size, size] in [0, 1].
    """
    return _preprocess(frames, size, image_frame_ratio, white_threshold, remove_bg, official, mp4=official)


def pingpong_pad(frames: _T, n: int) -> _T:
    """Official ``read_video`` length rule: keep the first ``n`` frames, or pad with the reversed clip once.

    ``(frames + frames[::-1])[:n]``, e.g. 3 frames -> n=5 gives ``0 1 2 2 1``; raises ``ValueError`` when even the
    padded clip is shorter than ``n`` (official: "Input video contains fewer than n frames"). Works on a tensor
    (frame axis 0) or a list. Note the official SV4D script already requires n frames in ``preprocess_video``.
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    count = len(frames)
    if count == 0:
        raise ValueError("no frames to pad; pass at least one frame")
    if count >= n:
        return frames[:n]
    if 2 * count < n:
        raise ValueError(f"{count} frames cannot be ping-pong padded to {n}: the official rule appends the reversed "
                         f"clip once ({2 * count} frames at most); provide at least {(n + 1) // 2} frames")
    if isinstance(frames, torch.Tensor):
        return torch.cat([frames, frames.flip(0)])[:n]
    return (list(frames) + list(frames)[::-1])[:n]

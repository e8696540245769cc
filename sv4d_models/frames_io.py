"""Load input frames for SV4D: tensors, arrays, PIL images, video files, gifs, image folders and glob patterns.

Everything ends up as one float32 CPU tensor ``[F, H, W, C]`` in ``[0, 1]`` with ``C`` = 3 (RGB) or 4 (RGBA),
checked by :func:`validate_frames`. Reading follows the official ``read_video`` / ``preprocess_video`` input rules
(``scripts/demo/sv4d_helpers.py``): gif frames are converted to RGBA, folders keep only ``.jpg/.jpeg/.png`` files
sorted by name (plain string order, so ``f10.png`` sorts before ``f2.png``), glob patterns take every match in sorted
order. Differences: the official code decodes mp4 with OpenCV (BGR -> RGB), we use imageio-ffmpeg (PyAV fallback);
both convert yuv420p to RGB through FFmpeg's swscale but with different settings, so single pixels may differ by a
few levels. Palette / grey images are converted to RGB, or RGBA when they carry transparency (the official code
would fail on them); if a sequence mixes RGB and RGBA frames the RGB ones get an opaque alpha channel. Videos with
an alpha channel (ProRes 4444, QuickTime RLE / PNG .mov, VP8 / VP9 .webm with alpha) are read as RGBA like gifs (the
official code reads them as RGB, where transparent pixels turn black); lossy alpha (VP8 / VP9) carries codec noise of
a few levels, so alpha <= 4/255 is read as 0 and >= 251/255 as 1 (``ALPHA_NOISE``): otherwise the ``alpha > 0``
foreground rule of preprocessing would count the whole noisy background as object. A video whose data ends before the duration
its header promises (a truncated download) is an error, not a shorter clip; AVI files derive their duration from the
file size, so a truncated AVI cannot be told from a short one.
imageio-ffmpeg, PyAV and PIL's gif reader are imported lazily.
"""
from __future__ import annotations

import glob as _glob
import os
import re
import warnings
from collections.abc import Sequence
from typing import Any, Union

import numpy as np
import torch

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi")
GIF_EXTENSIONS = (".gif",)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # folder members (official rule) and single still images
SUPPORTED_EXTENSIONS = VIDEO_EXTENSIONS + GIF_EXTENSIONS + IMAGE_EXTENSIONS
_GLOB_CHARS = ("*", "?", "[")

FrameSource = Union[str, os.PathLike, torch.Tensor, np.ndarray, Sequence[Any]]


# ----------------------------------------------------------------------------------------------------- validation
def _is_pil(frame: Any) -> bool:
    from PIL import Image

    return isinstance(frame, Image.Image)


def _frame_shape(frame: Any) -> tuple[int, ...]:
    if _is_pil(frame):  # PIL size is (W, H)
        return (frame.size[1], frame.size[0], len(frame.getbands()))
    return tuple(frame.shape)


def _check_values(frame: torch.Tensor | np.ndarray, index_offset: int = 0) -> None:
    """NaN/inf and [0, 1] range checks for one float array or a stacked [F, H, W, C] tensor."""
    t = torch.as_tensor(np.asarray(frame)) if isinstance(frame, np.ndarray) else frame
    if not torch.is_floating_point(t):
        return  # integer frames are uint8 pixel values, range-checked by their dtype
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        first = int(bad.reshape(bad.shape[0], -1).any(1).nonzero()[0, 0]) if t.ndim == 4 else 0
        raise ValueError(
            f"frames contain {int(bad.sum())} NaN/inf values (first in frame {first + index_offset}); clean them "
            "first, e.g. torch.nan_to_num(frames, nan=1.0, posinf=1.0, neginf=0.0)")
    lo, hi = float(t.min()), float(t.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"frame values range from {lo:.4g} to {hi:.4g}, outside [0, 1]; pass uint8 frames, divide 0-255 floats "
            "by 255, or map [-1, 1] frames with (x + 1) / 2")


def validate_frames(frames: torch.Tensor | np.ndarray | Sequence[Any]) -> None:
    """Raise ``ValueError`` naming the problem and the fix unless ``frames`` is a usable frame sequence.

    Accepts a ``[F, H, W, C]`` tensor/array (channels last) or a list of ``[H, W, C]`` frames / PIL images.
    Checks: at least one frame, C in (3, 4), one common size, finite values, values in [0, 1] (floats).
    """
    if isinstance(frames, (torch.Tensor, np.ndarray)):
        if frames.ndim != 4:
            raise ValueError(
                f"frames must be a [F, H, W, C] channels-last tensor, got shape {tuple(frames.shape)}; add a frame "
                "axis with x[None] for a single [H, W, C] image")
        items: Sequence[Any] = frames
    elif isinstance(frames, Sequence) and not isinstance(frames, (str, bytes)):
        items = frames
    else:
        raise TypeError(f"frames must be a tensor, an array or a list of frames, got {type(frames).__name__}")
    if len(items) == 0:
        raise ValueError("no frames: the input is empty; pass at least one frame ([F, H, W, C] tensor, video/gif "
                         "file or folder of images)")
    shapes = [_frame_shape(f) for f in items] if not hasattr(items, "shape") else [tuple(items.shape[1:])]
    for i, shape in enumerate(shapes):
        if len(shape) != 3 or shape[2] not in (3, 4):
            channels = shape[2] if len(shape) == 3 else "no channel axis"
            raise ValueError(
                f"frame {i} has shape {shape} ({channels} channels); expected channels-last [H, W, 3] (RGB) or "
                "[H, W, 4] (RGBA); convert a [F, C, H, W] tensor with x.permute(0, 2, 3, 1)")
        if shape[0] == 0 or shape[1] == 0:
            raise ValueError(f"frame {i} is empty ({shape[0]}x{shape[1]} pixels); drop it or fix the source")
        if shape[:2] != shapes[0][:2]:
            raise ValueError(
                f"frame {i} is {shape[0]}x{shape[1]} (HxW) but frame 0 is {shapes[0][0]}x{shapes[0][1]}; all "
                "frames must have the same size - resize or crop them to one size first")
    if hasattr(items, "shape"):
        _check_values(torch.as_tensor(items) if isinstance(items, np.ndarray) else items)
    else:
        for i, f in enumerate(items):
            if isinstance(f, (torch.Tensor, np.ndarray)):
                _check_values(f[None], index_offset=i)


# ----------------------------------------------------------------------------------------------------- conversion
def _pil_to_uint8(img: Any) -> np.ndarray:
    """PIL image -> uint8 [H, W, 3|4]; RGBA kept, transparency-carrying modes -> RGBA, everything else -> RGB."""
    if img.mode != "RGBA":
        transparent = img.mode in ("LA", "PA", "La", "RGBa") or "transparency" in img.info
        img = img.convert("RGBA" if transparent else "RGB")
    return np.asarray(img)


def _to_float(frame: Any) -> torch.Tensor:
    """One frame (PIL, array or tensor, [H, W, C] or [H, W]) -> float32 [H, W, C] in source units."""
    if _is_pil(frame):
        frame = _pil_to_uint8(frame)
    t = torch.from_numpy(np.require(frame, requirements=["C", "W"])) if isinstance(frame, np.ndarray) else frame.detach().cpu()
    if t.ndim == 2:
        t = t[..., None].expand(*t.shape, 3)  # grey -> RGB
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if not torch.is_floating_point(t):
        raise TypeError(f"frames must be uint8 or float in [0, 1], got dtype {t.dtype}; convert with "
                        "x.to(torch.uint8) or x.float() / max_value")
    return t.float()


def _stack(frames: Sequence[Any]) -> torch.Tensor:
    """List of frames -> [F, H, W, C]; mixed RGB/RGBA lists are promoted to RGBA (opaque alpha)."""
    items = [_to_float(f) for f in frames]
    validate_frames(items)
    if len({int(t.shape[-1]) for t in items}) > 1:
        items = [t if t.shape[-1] == 4 else torch.cat([t, torch.ones_like(t[..., :1])], -1) for t in items]
    return torch.stack(items).contiguous()


# ----------------------------------------------------------------------------------------------------- readers
def _unreadable(path: str, exc: BaseException) -> ValueError:
    first = (str(exc).splitlines() or [type(exc).__name__])[0]
    return ValueError(f"could not read {path!r} as an image ({type(exc).__name__}: {first}); check that it is a "
                      "valid, complete image / gif file")


def _read_gif(path: str, max_frames: int | None) -> list[np.ndarray]:
    from PIL import Image, ImageSequence

    out: list[np.ndarray] = []
    try:
        with Image.open(path) as im:
            for frame in ImageSequence.Iterator(im):
                out.append(np.asarray(frame.convert("RGBA")))  # official read_gif: every frame as RGBA
                if max_frames is not None and len(out) == max_frames:
                    break
    except (OSError, SyntaxError, ValueError) as exc:  # PIL: UnidentifiedImageError, truncated data, bad headers
        raise _unreadable(path, exc) from exc
    return out


_ALPHA_FORMATS = re.compile(r"^(yuva|rgba|argb|bgra|abgr|gbrap|ya8|ya16|rgba64|bgra64)")


def _probe(path: str, input_params: list[str] | None = None) -> dict:
    """imageio-ffmpeg's meta dict of a video (codec, pix_fmt, fps, duration, size) without decoding it."""
    import imageio_ffmpeg

    gen = imageio_ffmpeg.read_frames(path, input_params=input_params)
    try:
        return next(gen)
    except OSError as exc:  # imageio-ffmpeg: "Could not load meta information" + the ffmpeg log
        raise ValueError(f"could not decode video {path!r} ({str(exc).splitlines()[0]}); check that it is a "
                         "valid, complete video file") from exc
    finally:
        gen.close()


def _decoder(path: str) -> tuple[dict, list[str] | None]:
    """(meta, ffmpeg input params) that keep the alpha channel when the video has one: VP8 / VP9 (webm) store alpha
    as side data only libvpx decodes (FFmpeg's own decoders drop it); other codecs report an alpha pixel format."""
    meta = _probe(path)
    codec = str(meta.get("codec", ""))
    if codec.startswith(("vp8", "vp9")):
        params = ["-c:v", "libvpx-vp9" if codec.startswith("vp9") else "libvpx"]
        try:
            return _probe(path, params), params
        except ValueError:
            warnings.warn(f"{path}: this FFmpeg has no libvpx decoder, so an alpha channel of this {codec.rstrip(',')} "
                          "video cannot be read (transparent pixels come out as stored colour)", stacklevel=3)
    return meta, None


def _stream_end(path: str) -> float | None:
    """Seconds up to the last video / audio packet the file actually holds (no decoding: stream copy to null)."""
    import subprocess

    import imageio_ffmpeg

    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostats", "-i", path, "-map", "0:v", "-map", "0:a?",
           "-c", "copy", "-f", "null", "-", "-progress", "pipe:1"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired):
        return None
    times = [line.split("=", 1)[1] for line in done.stdout.splitlines() if line.startswith("out_time_us=")]
    try:
        return int(times[-1]) / 1e6 if times else None
    except ValueError:  # "N/A"
        return None


def _check_complete(path: str, meta: dict, decoded: int) -> None:
    """ValueError when the container promises more video than the file holds (a truncated download or copy: the
    header still says the full length, the data stops). Streams without a duration promise nothing."""
    duration, fps = float(meta.get("duration") or 0), float(meta.get("fps") or 0)
    if duration <= 0 or fps <= 0:
        return
    end = _stream_end(path)
    if end is None:
        return
    covered = end + 1.0 / fps  # the last packet's start + one frame
    if covered < duration - max(2.0 / fps, 0.02 * duration):
        raise ValueError(f"video {path!r} is truncated: its header promises {duration:.2f} s (about "
                         f"{round(duration * fps)} frames at {fps:g} fps) but its data ends at {covered:.2f} s "
                         f"({decoded} frames decode); copy or download it again, or cut it to the part that is there "
                         f"(ffmpeg -i IN -t {covered:.2f} -c copy OUT)")


ALPHA_NOISE = 4  # levels of codec noise on decoded alpha: <= 4 is transparent, >= 255 - 4 opaque (lossy VP8 / VP9)


def _snap_alpha(frame: np.ndarray) -> np.ndarray:
    if frame.shape[-1] != 4:
        return frame
    frame = frame.copy()
    alpha = frame[..., 3]
    alpha[alpha <= ALPHA_NOISE] = 0
    alpha[alpha >= 255 - ALPHA_NOISE] = 255
    return frame


def read_video_file(path: str, max_frames: int | None = None) -> list[np.ndarray]:
    """Decode a video file to uint8 frames: RGBA ``[H, W, 4]`` when the video has an alpha channel (ProRes 4444,
    QuickTime RLE / PNG in .mov, VP8 / VP9 with alpha in .webm, ...), else RGB ``[H, W, 3]``. Uses imageio-ffmpeg
    (PyAV fallback). A file whose data ends before its header's duration (truncated) is a ValueError unless
    ``max_frames`` frames were decoded before the damage."""
    out: list[np.ndarray] = []
    try:
        import imageio_ffmpeg
    except ImportError:
        imageio_ffmpeg = None
    if imageio_ffmpeg is not None:
        meta, params = _decoder(path)
        channels = 4 if _ALPHA_FORMATS.match(str(meta.get("pix_fmt", ""))) else 3
        gen = imageio_ffmpeg.read_frames(path, pix_fmt="rgba" if channels == 4 else "rgb24",
                                         bits_per_pixel=8 * channels, input_params=params)
        try:
            w, h = next(gen)["size"]
            for buf in gen:
                out.append(_snap_alpha(np.frombuffer(buf, np.uint8).reshape(h, w, channels)))
                if max_frames is not None and len(out) == max_frames:
                    break
        except OSError as exc:  # imageio-ffmpeg: "Could not load meta information" + the ffmpeg log
            raise ValueError(f"could not decode video {path!r} ({str(exc).splitlines()[0]}); check that it is a "
                             "valid, complete video file") from exc
        finally:
            gen.close()
        if max_frames is None or len(out) < max_frames:
            _check_complete(path, meta, len(out))
        return out
    try:
        import av
    except ImportError as exc:
        raise ImportError(f"reading {path!r} needs imageio-ffmpeg or PyAV: pip install imageio-ffmpeg") from exc
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            alpha = _ALPHA_FORMATS.match(str(stream.codec_context.pix_fmt or "")) is not None
            for frame in container.decode(video=0):
                out.append(_snap_alpha(frame.to_ndarray(format="rgba" if alpha else "rgb24")))
                if max_frames is not None and len(out) == max_frames:
                    break
            promised = int(stream.frames or 0)
    except (OSError, av.error.FFmpegError) as exc:
        raise ValueError(f"could not decode video {path!r} ({exc}); check that it is a valid, complete video") from exc
    if promised and len(out) < min(promised, max_frames or promised) - 1:
        raise ValueError(f"video {path!r} is truncated: its header promises {promised} frames but {len(out)} decode; "
                         "copy or download it again")
    return out


def _read_images(paths: Sequence[str]) -> list[np.ndarray]:
    from PIL import Image

    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append(_pil_to_uint8(im))
        except (OSError, SyntaxError, ValueError) as exc:
            raise _unreadable(p, exc) from exc
    return out


def _from_path(path: str, max_frames: int | None) -> list[np.ndarray]:
    if not os.path.exists(path) and any(c in path for c in _GLOB_CHARS):
        files = sorted(f for f in _glob.glob(path) if os.path.isfile(f))
        if not files:
            raise FileNotFoundError(f"no files match the pattern {path!r}")
        return _read_images(files[:max_frames])
    if not os.path.exists(path):
        raise FileNotFoundError(f"input path {path!r} does not exist")
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path)
                       if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS and os.path.isfile(os.path.join(path, n)))
        if not names:
            raise ValueError(f"folder {path!r} contains no {'/'.join(IMAGE_EXTENSIONS)} images; put the frames "
                             "there or pass a video/gif file or a glob pattern")
        return _read_images([os.path.join(path, n) for n in names[:max_frames]])
    ext = os.path.splitext(path)[1].lower()
    if ext in GIF_EXTENSIONS:
        return _read_gif(path, max_frames)
    if ext in VIDEO_EXTENSIONS:
        return read_video_file(path, max_frames)
    if ext in IMAGE_EXTENSIONS:
        return _read_images([path])
    raise ValueError(f"unsupported file extension {ext!r} for {path!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}"
                     ", a folder of images or a glob pattern")


def load_frames(source: FrameSource, max_frames: int | None = None) -> torch.Tensor:
    """Load frames from any supported source into a float32 CPU tensor ``[F, H, W, C]`` in [0, 1], C in (3, 4).

    Args:
        source: ``[F, H, W, C]`` tensor/array (uint8, or float in [0, 1]; channels-first is not guessed), a list of
            PIL images / ``[H, W, C]`` arrays, a video file (.mp4/.webm/.mov/.mkv/.avi), a .gif (RGBA frames), a
            single .jpg/.jpeg/.png, a folder of .jpg/.jpeg/.png (sorted by name) or a glob pattern.
        max_frames: keep only the first ``max_frames`` frames (decoding stops early); None keeps all.
    """
    if max_frames is not None and (not isinstance(max_frames, int) or isinstance(max_frames, bool) or max_frames < 1):
        raise ValueError(f"max_frames must be a positive int or None, got {max_frames!r}")
    if isinstance(source, (torch.Tensor, np.ndarray)):
        validate_frames(source)  # shape, channels, values before any conversion
        frames = _to_float(source[:max_frames]).contiguous()
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        decoded = _from_path(path, max_frames)
        if not decoded:
            raise ValueError(f"no frames could be read from {path!r}; check that the file is a valid video/image")
        frames = _stack(decoded)
    elif isinstance(source, Sequence) and not isinstance(source, bytes):
        frames = _stack(list(source)[:max_frames])
    else:
        raise TypeError(f"unsupported frame source of type {type(source).__name__}; pass a path, a [F, H, W, C] "
                        "tensor/array or a list of images")
    validate_frames(frames)
    return frames

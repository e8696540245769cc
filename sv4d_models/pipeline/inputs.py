"""Input handling for ``SV4DPipeline``: frame validation and conversion, file inputs, user reference views.

Frames reach the models as ``[F, 3, S, S]`` float32 in [-1, 1] (channel-first, square). Callers may pass
that layout, ``[F, S, S, 3]`` in [0, 1] (ComfyUI IMAGE layout), a list of such frames, or a file path
(video / gif / folder of images; preprocessed by ``sv4d_models.preprocess``, imported lazily).
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from ..kinds import IMAGE_SIZE, OFFICIAL_VIDEO_FRAMES, SV3D_N_VIEWS, SV4D_ORBIT_VIEWS


def _layout(shape: tuple[int, ...]) -> str:
    """``"cf"`` for [F, C, S, S], ``"cl"`` for [F, S, S, C]; ValueError when neither is square."""
    if shape[2] == shape[3] and shape[1] in (1, 2, 3, 4) and shape[1] != shape[2]:
        return "cf"
    if shape[1] == shape[2]:
        return "cl"
    if shape[2] == shape[3]:
        return "cf"
    raise ValueError(f"frames have shape {shape}; expected square frames [F, 3, S, S] in [-1, 1] or "
                     "[F, S, S, 3] in [0, 1]; crop/pad to a square first (sv4d_models.preprocess.preprocess_frames "
                     "does it) or pass the video file path")


def _stack(frames) -> torch.Tensor:
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if isinstance(frames, (list, tuple)):
        if len(frames) == 0:
            raise ValueError("no frames: got an empty list; pass at least one frame "
                             f"(SV4D uses {OFFICIAL_VIDEO_FRAMES})")
        items = [torch.as_tensor(np.asarray(f)) if not torch.is_tensor(f) else f for f in frames]
        shapes = sorted({tuple(f.shape) for f in items})
        if len(shapes) > 1:
            raise ValueError(f"frames have different sizes {shapes[:4]}; resize them to one size first or pass "
                             "the video path so sv4d_models.preprocess crops and resizes every frame alike")
        frames = torch.stack(items)
    if not torch.is_tensor(frames):
        raise TypeError(f"frames must be a tensor, numpy array, list of frames or a path, got {type(frames).__name__}")
    return frames


def to_model_frames(frames) -> torch.Tensor:
    """Validate and convert frames to ``[F, 3, S, S]`` float32 in [-1, 1] on the CPU.

    Accepts ``[F, 3, S, S]`` in [-1, 1], ``[F, S, S, 3]`` in [0, 1] (uint8 in [0, 255] too), a single frame
    (3-d) or a list of equally sized frames. Raises ValueError naming the problem and the fix.
    """
    x = _stack(frames)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"frames have shape {tuple(x.shape)}; expected [F, 3, S, S] or [F, S, S, 3]")
    if x.shape[0] == 0:
        raise ValueError("no frames: the frame tensor is empty; pass at least one frame "
                         f"(SV4D uses {OFFICIAL_VIDEO_FRAMES})")
    layout = _layout(tuple(x.shape))
    channels = x.shape[1] if layout == "cf" else x.shape[3]
    if channels != 3:
        raise ValueError(f"frames have {channels} channels (shape {tuple(x.shape)}); SV4D needs RGB: composite "
                         "RGBA over a white background / convert grayscale to RGB first, or pass the file path "
                         "to let sv4d_models.preprocess do it")
    uint8 = x.dtype == torch.uint8
    x = x.to(torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError("frames contain NaN or infinite values; fix the source images (every value must be finite)")
    lo, hi = float(x.min()), float(x.max())
    if not uint8 and layout == "cl" and (lo < -1e-3 or hi > 1 + 1e-3):
        raise ValueError(f"[F, S, S, 3] frames must be in [0, 1] but range over [{lo:.3g}, {hi:.3g}]; rescale them, "
                         "or pass [F, 3, S, S] for values in [-1, 1]")
    if not uint8 and layout == "cf" and (lo < -1 - 1e-3 or hi > 1 + 1e-3):
        raise ValueError(f"[F, 3, S, S] frames must be in [-1, 1] but range over [{lo:.3g}, {hi:.3g}]; rescale them "
                         "(x / 127.5 - 1 for 0..255 values)")
    if not uint8 and layout == "cf" and lo >= 0.0:
        warnings.warn(f"[F, 3, S, S] frames are read as [-1, 1], but these range over [{lo:.3g}, {hi:.3g}] as if "
                      "they were in [0, 1] (colours would come out washed out): pass x * 2 - 1, or [F, S, S, 3] "
                      "frames in [0, 1]", stacklevel=2)
    if layout == "cl":
        x = x.permute(0, 3, 1, 2)
        x = x / 127.5 - 1.0 if uint8 else x * 2.0 - 1.0
    elif uint8:
        x = x / 127.5 - 1.0
    return x.contiguous()


def load_input(source: str | os.PathLike, size: int, image_frame_ratio: float, max_frames: int | None = None,
               remove_bg: bool = False, official: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Read and preprocess a video / gif / image folder with ``sv4d_models.preprocess`` (imported lazily).

    Returns:
        ``(images [F, 3, S, S] in [-1, 1], masks [F, S, S] in [0, 1])``.
    """
    from .. import preprocess  # lazy: PIL / video readers

    frames = preprocess.load_frames(source, max_frames=max_frames)
    pre = preprocess.preprocess_frames(frames, size=size, image_frame_ratio=image_frame_ratio, remove_bg=remove_bg,
                                       official=official)
    return to_model_frames(pre.images), pre.masks.float()


def check_image_size(size: int, channel_mult_levels: int) -> None:
    """The UNet halves the latent ``levels - 1`` times: the image side must be a multiple of 8 * 2^(levels-1)."""
    step = 8 * 2 ** (channel_mult_levels - 1)
    if size < step or size % step:
        lo, hi = max(step, size // step * step), (size // step + 1) * step
        raise ValueError(f"image size {size} cannot be used by this UNet: it must be a multiple of {step} "
                         f"(8 x 2^{channel_mult_levels - 1}); resize the frames to {lo} or {hi} "
                         f"(the official size is {IMAGE_SIZE})")


def reference_row(views, n_views: int, size: int) -> torch.Tensor:
    """User-supplied reference views of frame 0 -> ``[V, 3, S, S]`` in [-1, 1] (views 1..V).

    Accepts V images (views 1..V), V + 1 images (column 0, the input view, is dropped) or, for the 8-view
    SV4D, a full 21-view SV3D orbit with the input view first (subsampled at ``SV4D_ORBIT_VIEWS``).
    """
    x = to_model_frames(views)
    if x.shape[-1] != size:
        raise ValueError(f"reference_views are {x.shape[-1]}x{x.shape[-1]} but the frames are {size}x{size}; "
                         "resize them to the frame size")
    n = x.shape[0]
    if n == n_views:
        return x
    if n == n_views + 1:
        return x[1:]
    if n == SV3D_N_VIEWS and n_views == len(SV4D_ORBIT_VIEWS) - 1:
        return x[list(SV4D_ORBIT_VIEWS[1:])]
    raise ValueError(f"reference_views has {n} images; give {n_views} (views 1..{n_views}), {n_views + 1} "
                     f"(input view first) or a 21-view SV3D orbit (input view first)")

"""The values that travel on the pack's own sockets, and the pure helpers the nodes share (no ComfyUI imports).

    SV4D_CAMERAS  CameraSpec      which 4D kind the angles are for, elevations / azimuths (the library's conventions)
    SV4D_PASSES   SampledPasses   plan, model input frames, CLIP rows, reference row, finished passes' cells
    SV4D_MATRIX   ImageMatrixValue  the [F, V+1, S, S, 3] image matrix with cameras, times and masks
    SV4D_NERF     NeRFValue       a fitted dynamic NeRF and the matrix it was fitted to

Everything here is importable without ComfyUI (tests use it directly).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import torch

from sv4d_models.camera import Cameras, matrix_cameras
from sv4d_models.files import fingerprint
from sv4d_models.kinds import FOUR_D_KINDS, KINDS
from sv4d_models.sampling.plan import Plan
from sv4d_models.validate import check_angle

__all__ = ["CameraSpec", "SampledPasses", "ImageMatrixValue", "NeRFValue", "parse_angles", "run_key",
           "tile_latents", "grid_image", "resolve_setting"]


def parse_angles(text: str, name: str) -> tuple[float, ...] | None:
    """A widget's comma / space separated degrees -> tuple (empty text -> None); ValueError naming the bad item."""
    items = [t for t in text.replace(",", " ").split() if t]
    if not items:
        return None
    bad = next((t for t in items if not _is_float(t)), None)
    if bad is not None:
        raise ValueError(f"{name}: {bad!r} is not a number; give degrees separated by commas, e.g. '10, 10, 12'")
    return tuple(check_angle(float(t), f"{name}[{i}]") for i, t in enumerate(items))  # "nan", "inf", 1000 refused


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class CameraSpec:
    """Camera arguments of one 4D kind, in the library's conventions (``sv4d_models.camera``).

    ``model_kind``: the 4D kind these angles are for (sv4d: the 21-view SV3D orbit arguments, raw orbit order,
    input view last; sv4d2 / sv4d2_8views: V + 1 values, input view first). ``None`` angles = official defaults.
    """

    model_kind: str
    elevations_deg: float | tuple[float, ...] | None = None
    azimuths_deg: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.model_kind not in FOUR_D_KINDS:
            raise ValueError(f"cameras for model kind {self.model_kind!r}: use one of {', '.join(FOUR_D_KINDS)}")
        self.cameras()  # validates the number of values now, with the library's message

    @property
    def n_columns(self) -> int:
        """Columns of the image matrix these cameras describe (input view included)."""
        return len(KINDS[self.model_kind].azimuths_deg)

    def cameras(self) -> Cameras:
        """Cameras of the V + 1 matrix columns (column 0 = the input view)."""
        return matrix_cameras(self.model_kind, self.elevations_deg, self.azimuths_deg)

    def check_kind(self, model_kind: str) -> None:
        """ValueError naming both kinds and the fix when these cameras were made for another model kind."""
        if model_kind != self.model_kind:
            what = ("a 21-view SV3D orbit (SV4D Reference Orbit)" if self.model_kind == "sv4d"
                    else f"{self.n_columns} {self.model_kind} views")
            raise ValueError(f"the cameras describe {what} but the MODEL is {model_kind!r}; connect cameras made for "
                             f"{model_kind} (an SV4D Cameras node with model_kind={model_kind!r}"
                             + (", or the SV4D Reference Orbit node's cameras" if model_kind == "sv4d" else "")
                             + ") or leave the cameras input empty for the official ones")

    def identity(self) -> Any:
        return [self.model_kind, self.elevations_deg, self.azimuths_deg]


@dataclass
class SampledPasses:
    """Sampling state handed from node to node (``SV4D_PASSES``).

    Attributes:
        plan: the pass plan (``sv4d_models.sampling.plan``); kind: the 4D model kind.
        frames: model input ``[F, 3, S, S]`` float32 in [-1, 1]; clip: CLIP rows ``[F, D]``.
        outputs: ``{pass index: cells [n_writes, 3, S, S]}`` of every finished pass (``REFERENCE``: row 0).
        cameras: the camera arguments used; key: hash of everything that fixed the cells so far.
    """

    plan: Plan
    kind: str
    frames: torch.Tensor
    clip: torch.Tensor
    outputs: dict[int, torch.Tensor]
    cameras: CameraSpec
    key: str
    source: str = ""
    settings: dict = field(default_factory=dict)

    @property
    def image_size(self) -> int:
        return int(self.frames.shape[-1])

    def done(self) -> list[int]:
        return sorted(i for i in self.outputs if i >= 0)

    def missing(self) -> list[int]:
        return [p.index for p in self.plan.passes if p.index not in self.outputs]

    def extended(self, outputs: dict[int, torch.Tensor], key: str, **settings) -> "SampledPasses":
        """A new value with more finished passes (inputs are never mutated: ComfyUI caches them)."""
        return dataclasses.replace(self, outputs={**self.outputs, **outputs}, key=key,
                                   settings={**self.settings, **settings})


@dataclass(frozen=True)
class ImageMatrixValue:
    """``images [F, V+1, S, S, 3]`` in [0, 1] (column 0 = input), cameras of the columns, ``times [F]``."""

    images: torch.Tensor
    cameras: Cameras
    times: torch.Tensor
    model_kind: str

    @property
    def n_frames(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_views(self) -> int:
        return int(self.images.shape[1])


@dataclass(frozen=True)
class NeRFValue:
    """A fitted dynamic NeRF (``sv4d_models.nerf.fit.NeRFFitResult``), the matrix and masks ``[F, V+1, S, S]`` it
    was fitted to."""

    fit: Any
    matrix: ImageMatrixValue
    masks: torch.Tensor
    preset: str


def run_key(*parts: Any, tensors: tuple[torch.Tensor, ...] = ()) -> str:
    """sha256 of JSON-able ``parts`` and of the tensors' bytes: names a work dir by what fixes its results."""
    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    if tensors:
        h.update(fingerprint(*tensors).encode())
    return h.hexdigest()


def resolve_setting(value: float, default: float) -> float:
    """Widgets use 0 for "the model kind's official value"."""
    return default if not value else value


def tile_latents(latents: torch.Tensor, columns: int) -> torch.Tensor:
    """``[N, C, h, w]`` latents -> one ``[1, C, rows * h, columns * w]`` mosaic (for a single preview image)."""
    n, c, h, w = latents.shape
    rows = -(-n // columns)
    pad = latents.new_zeros(rows * columns - n, c, h, w)
    x = torch.cat([latents, pad]).view(rows, columns, c, h, w)
    return x.permute(2, 0, 3, 1, 4).reshape(1, c, rows * h, columns * w)


def grid_image(images: torch.Tensor, cell: int) -> torch.Tensor:
    """Matrix ``[F, V, S, S, 3]`` -> one IMAGE ``[1, F * c, V * c, 3]`` (rows = frames, columns = views), cells
    resized to ``c = cell`` pixels (0 keeps the full size)."""
    f, v, s, _, _ = images.shape
    x = images.reshape(f * v, s, s, 3).permute(0, 3, 1, 2)
    if cell and cell != s:
        x = torch.nn.functional.interpolate(x, size=(cell, cell), mode="bilinear", antialias=cell < s,
                                            align_corners=False).clamp(0, 1)
    c = x.shape[-1]
    return x.view(f, v, 3, c, c).permute(0, 3, 1, 4, 2).reshape(1, f * c, v * c, 3).contiguous()

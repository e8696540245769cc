"""The five model kinds and every fact the library needs about them, in one table (``KINDS``).

Every other module reads kind facts from here: pass layout, default steps, guider and scales, framing ratio,
default cameras, the VAE copies in the conditioner, the official file name and whether a reference orbit is
needed. Values are those of Stability's sampling scripts (``scripts/sampling/simple_video_sample_4d.py``,
``_4d2.py``, ``simple_video_sample.py``; spec ``sv4d_reference.md`` sections 4-7).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

SV3D_N_VIEWS = 21  # frames of an SV3D orbit
SV4D_ORBIT_VIEWS = (0, 2, 5, 7, 9, 12, 14, 16, 19)  # SV3D orbit indices (input view = 0) that SV4D uses
VECTOR_DIMS = (256, 512, 512)  # [cond sigma / cond_aug | polar | azimuth] widths of the 1280-d vector
IMAGE_SIZE = 576  # frame side of every released model (a multiple of 64 works with their UNets)
OFFICIAL_VIDEO_FRAMES = 21  # frames the official scripts read from a video
CHECKPOINT_FOLDER_HINT = "ComfyUI/models/checkpoints/ (or models/sv4d/)"


@dataclass(frozen=True)
class KindSpec:
    """Facts about one model kind.

    Attributes:
        name: ``sv4d`` / ``sv4d2`` / ``sv4d2_8views`` / ``sv3d_u`` / ``sv3d_p``.
        family: ``"4d"`` (multi-view video passes) or ``"orbit"`` (SV3D: one image -> 21-view orbit).
        frames_per_pass, views_per_pass: latent rows T and generated views V of one pass (orbit: 21 x 1).
        default_steps: Euler steps of the official script.
        guider: ``"spatiotemporal"`` / ``"linear"`` / ``"triangle"``; ``cfg`` / ``min_cfg`` its max / min scale.
        image_frame_ratio: object size in the preprocessed frame (None: not a video model's input).
        default_elevation_deg: camera elevation when none is given; ``elevation_relative``: SV4D 2.0 angles
            are relative to the input view.
        azimuths_deg: default azimuth of each column of the image matrix, input view first.
        vae_copies: conditioning role -> index of the VAE-encoder embedder in ``conditioner.embedders``.
        official_file: the released checkpoint's file name.
        needs_reference_orbit: True when row 0's novel views come from an SV3D orbit (sv4d).
        vector_dims: widths of the parts of the UNet's ``vector`` input.
        official_frames: ``(fewest, most or None, step)``: the video lengths the official script runs completely
            (``runs_officially``); the planner's ``official`` mode needs one of them.
        view_grouping_3d: SV4D 2.0's view attention over all frames' views at once (``use_3d_attention``: the 4-view
            model); the 8-view model attends over each frame's views.
    """

    name: str
    family: str
    frames_per_pass: int
    views_per_pass: int
    default_steps: int
    guider: str
    cfg: float
    min_cfg: float
    image_frame_ratio: float | None
    default_elevation_deg: float
    elevation_relative: bool
    azimuths_deg: tuple[float, ...]
    vae_copies: Mapping[str, int] = field(default_factory=dict)
    official_file: str = ""
    needs_reference_orbit: bool = False
    vector_dims: tuple[int, ...] = VECTOR_DIMS
    official_frames: tuple[int, int | None, int] = (SV3D_N_VIEWS, SV3D_N_VIEWS, 1)
    view_grouping_3d: bool = False

    @property
    def is_4d(self) -> bool:
        return self.family == "4d"

    def runs_officially(self, n_frames: int) -> bool:
        """Whether the official script runs and generates every frame of an ``n_frames`` video."""
        fewest, most, step = self.official_frames
        return n_frames >= fewest and (most is None or n_frames <= most) and (n_frames - fewest) % step == 0

    @property
    def camera_conditioned(self) -> bool:
        """Whether the UNet's vector input carries camera angles (all kinds but sv3d_u)."""
        return len(self.vector_dims) > 1

    @property
    def n_latents(self) -> int:
        """Latents of one pass (the guider's table length)."""
        return self.frames_per_pass * self.views_per_pass


_SV4D_VAE = MappingProxyType({"concat": 1, "view": 4, "motion": 5})  # official conditioner embedder indices
_ORBIT_VAE = MappingProxyType({"concat": 1})
_SV4D_AZIMUTHS = tuple(360.0 * k / SV3D_N_VIEWS for k in SV4D_ORBIT_VIEWS)
_ORBIT_AZIMUTHS = tuple(360.0 * k / SV3D_N_VIEWS for k in range(SV3D_N_VIEWS))

KINDS: Mapping[str, KindSpec] = MappingProxyType({
    "sv4d": KindSpec("sv4d", "4d", 5, 8, 20, "spatiotemporal", 2.0, 1.0, 0.917, 10.0, False, _SV4D_AZIMUTHS,
                     _SV4D_VAE, "sv4d.safetensors", needs_reference_orbit=True,
                     official_frames=(OFFICIAL_VIDEO_FRAMES, OFFICIAL_VIDEO_FRAMES, 1)),
    # n < 12: a negative first window; n >= 24: window 2 reads a row nothing generated
    "sv4d2": KindSpec("sv4d2", "4d", 12, 4, 50, "linear", 2.0, 1.0, 0.9, 0.0, True,
                      (0.0, 60.0, 120.0, 180.0, 240.0), _SV4D_VAE, "sv4d2.safetensors", official_frames=(12, 23, 1),
                      view_grouping_3d=True),
    # (n - 1) % 4 != 0: the tail is never generated
    "sv4d2_8views": KindSpec("sv4d2_8views", "4d", 5, 8, 50, "spatiotemporal", 2.5, 1.5, 0.9, 0.0, True,
                             (0.0, 30.0, 75.0, 120.0, 165.0, 210.0, 255.0, 300.0, 330.0), _SV4D_VAE,
                             "sv4d2_8views.safetensors", official_frames=(5, None, 4)),
    "sv3d_u": KindSpec("sv3d_u", "orbit", SV3D_N_VIEWS, 1, 50, "triangle", 2.5, 1.0, None, 10.0, False,
                       _ORBIT_AZIMUTHS, _ORBIT_VAE, "sv3d_u.safetensors", vector_dims=VECTOR_DIMS[:1]),
    "sv3d_p": KindSpec("sv3d_p", "orbit", SV3D_N_VIEWS, 1, 50, "triangle", 2.5, 1.0, None, 10.0, False,
                       _ORBIT_AZIMUTHS, _ORBIT_VAE, "sv3d_p.safetensors"),
})
MODEL_KINDS = tuple(KINDS)
FOUR_D_KINDS = tuple(k for k, s in KINDS.items() if s.is_4d)
ORBIT_KINDS = tuple(k for k, s in KINDS.items() if not s.is_4d)


def kind_list(kinds: tuple[str, ...] = FOUR_D_KINDS, sep: str = " / ") -> str:
    """``sv4d / sv4d2 / sv4d2_8views`` for help texts and tooltips."""
    return sep.join(kinds)


def kind_values(attr: str, kinds: tuple[str, ...] = FOUR_D_KINDS) -> str:
    """``sv4d 20, sv4d2 50, sv4d2_8views 50``: one fact of every kind, for help texts and tooltips."""
    return ", ".join(f"{k} {getattr(KINDS[k], attr):g}" for k in kinds)


def get_kind(name: str, allowed: tuple[str, ...] = MODEL_KINDS, what: str = "model_kind") -> KindSpec:
    """The spec of ``name``; ValueError naming the value and the allowed kinds otherwise."""
    if name not in allowed:
        raise ValueError(f"{what}={name!r} is not supported; use one of {', '.join(allowed)}")
    return KINDS[name]


__all__ = ["KindSpec", "KINDS", "MODEL_KINDS", "FOUR_D_KINDS", "ORBIT_KINDS", "get_kind", "kind_list", "kind_values",
           "SV3D_N_VIEWS", "SV4D_ORBIT_VIEWS", "VECTOR_DIMS", "CHECKPOINT_FOLDER_HINT", "IMAGE_SIZE",
           "OFFICIAL_VIDEO_FRAMES"]

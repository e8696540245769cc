"""``PipelineConfig``: every knob of a standalone SV4D / SV4D 2.0 sampling run, in the groups a user sets together.

    sampling   what is generated: model kind, steps, seed, schedule mode, cameras, guidance, SV3D stage
    framing    how input frames become model input: image size, object framing, frame limit, preprocessing
    placement  where and how it runs: device, dtype, encode / decode chunk sizes, where finished passes are kept

``PipelineConfig.from_dict`` takes a flat dict (``{"seed": 3, "image_size": 64}``: each key is routed to its
group) or a nested one (``{"sampling": {"seed": 3}}``); unknown keys raise ValueError naming them. Defaults are
the official ones of ``simple_video_sample_4d.py`` / ``_4d2.py`` (``None`` = the model kind's value, ``KINDS``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import torch

from ..config import MAX_SEED, ConfigGroups, check_all, config_identity
from ..validate import ANGLES as ANGLE_RANGE, bounds, check_device, check_fields, check_number, check_numbers
from ..kinds import FOUR_D_KINDS, IMAGE_SIZE, ORBIT_KINDS, get_kind
from .models import DECODE_CHUNK, ENCODE_CHUNK

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


SAMPLING_BOUNDS = {**bounds(num_steps="sampler_steps", sv3d_num_steps="sampler_steps", seed="seed", cfg="cfg",
                          min_cfg="cfg", cond_aug="cond_aug")}
FRAMING_BOUNDS = {**bounds(image_size="image_size", max_frames="video_frames"),
                  "image_frame_ratio": (("open", 0.0), 1.0, "share of the frame side the object fills")}
PLACEMENT_BOUNDS = {"encoding_t": (1, 4096, "images per encode call; memory grows with it"),
                    "decoding_t": (1, 4096, "latents per decode call; memory grows with it")}


def _tuple_or_scalar(value, name: str):
    """A number or a list of numbers -> float or tuple of floats, each finite and in ``ANGLE_RANGE[name]``."""
    lo, hi, why = ANGLE_RANGE[name]
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(check_number(value, name, lo, hi, why=why))
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name}={value!r} must be a number or a list of numbers")
    try:
        items = [float(v) if isinstance(v, str) else v for v in value]
    except ValueError:
        raise ValueError(f"{name}={value!r}: could not convert string to a number") from None
    return check_numbers(items, name, lo, hi, why)


@dataclass(frozen=True)
class SamplingConfig:
    """What is generated."""

    model_kind: str | None = None  # sv4d / sv4d2 / sv4d2_8views; None = inferred from the checkpoint
    num_steps: int | None = None  # Euler steps per pass; None = 20 (sv4d) / 50 (sv4d2, sv4d2_8views)
    seed: int = 23  # base seed; pass k samples with pass_seed(seed, k) (SV3D stage: k = -1)
    mode: str = "auto"  # "official" (the scripts' schedule exactly), "extended" (any length), "auto"
    sv3d_kind: str | None = None  # sv3d_u / sv3d_p reference-orbit model (sv4d only); None = from its checkpoint
    sv3d_num_steps: int | None = None  # SV3D stage steps; None = num_steps (official)
    elevations_deg: float | tuple[float, ...] | None = None  # None = 10 (sv4d, absolute) / 0 (sv4d2*, relative)
    azimuths_deg: tuple[float, ...] | None = None  # sv4d: 21 raw SV3D orbit values; sv4d2*: V+1, input first
    cfg: float | None = None  # max guidance scale; None = official (2.0 / 2.0 / 2.5)
    min_cfg: float | None = None  # min guidance scale; None = official (1.0 / 1.0 / 1.5)
    cond_aug: float = 1e-5  # noise std added before every VAE conditioning encode (official ZeroSampler / SV3D)
    encode_per_view: bool | None = None  # concat latents: encode each frame V times (official) or once;
    #                                      None = per view in official mode, once per frame otherwise

    def __post_init__(self) -> None:
        object.__setattr__(self, "elevations_deg", _tuple_or_scalar(self.elevations_deg, "elevations_deg"))
        az = _tuple_or_scalar(self.azimuths_deg, "azimuths_deg")
        if isinstance(az, float):
            raise ValueError("azimuths_deg must be a list (one azimuth per view), not a single number")
        object.__setattr__(self, "azimuths_deg", az)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed={self.seed!r} must be an integer in [0, 2^63) (pass seeds are derived from it)")
        check_fields(self, SAMPLING_BOUNDS)
        check_all([
            (self.model_kind is None or self.model_kind in FOUR_D_KINDS,
             f"model_kind={self.model_kind!r} is not supported; use one of {list(FOUR_D_KINDS)} or None"),
            (self.mode in ("auto", "official", "extended"),
             f"mode={self.mode!r} is not supported; use 'auto', 'official' or 'extended'"),
            (self.sv3d_kind is None or self.sv3d_kind in ORBIT_KINDS,
             f"sv3d_kind={self.sv3d_kind!r}: use 'sv3d_u' or 'sv3d_p'"),
        ])


@dataclass(frozen=True)
class FramingConfig:
    """How input frames become model input."""

    image_size: int = IMAGE_SIZE  # square frame side; a multiple of 8 * 2^(UNet levels - 1) (64 for the released UNets)
    image_frame_ratio: float | None = None  # object size in the frame for file inputs; None = 0.917 / 0.9
    max_frames: int | None = None  # file inputs: keep the first N frames (official: 21); None = all
    remove_bg: bool = False  # file inputs: rembg background removal of RGB frames (optional dependency)
    official_preprocess: bool = False  # file inputs: reproduce the official crop quirks + mp4 round trip

    def __post_init__(self) -> None:
        check_fields(self, FRAMING_BOUNDS)


@dataclass(frozen=True)
class PlacementConfig:
    """Where and how the run executes (does not change the sampled numbers on one device, except dtype)."""

    device: str | None = None  # None = "cuda" when available, else "cpu"
    dtype: str = "auto"  # "auto" (float16 autocast on CUDA, float32 on CPU), "float32", "float16", "bfloat16"
    encoding_t: int = ENCODE_CHUNK  # frames per VAE / CLIP encode call (lower = less accelerator memory)
    decoding_t: int = DECODE_CHUNK  # latents per VAE decode call
    offload: str = "workdir"  # without work_dir: "workdir" = temporary folder (bounded RAM), "cpu" = CPU RAM

    def __post_init__(self) -> None:
        check_fields(self, PLACEMENT_BOUNDS)
        if self.device is not None:
            check_device(self.device, available=False)  # the name now; presence when a run resolves it
        check_all([
            (self.offload in ("workdir", "cpu"), f"offload={self.offload!r}: use 'workdir' or 'cpu'"),
            (self.dtype == "auto" or self.dtype in DTYPES, f"dtype={self.dtype!r}: use 'auto' or one of {list(DTYPES)}"),
        ])

    @property
    def torch_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            raise RuntimeError("dtype is 'auto'; call PipelineConfig.resolved() first")
        return DTYPES[self.dtype]


_GROUPS = ConfigGroups("PipelineConfig", {"sampling": SamplingConfig, "framing": FramingConfig,
                                          "placement": PlacementConfig})


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of ``SV4DPipeline`` in three groups (see the module docstring)."""

    sampling: SamplingConfig = dataclasses.field(default_factory=SamplingConfig)
    framing: FramingConfig = dataclasses.field(default_factory=FramingConfig)
    placement: PlacementConfig = dataclasses.field(default_factory=PlacementConfig)

    IDENTITY_NEUTRAL = ("placement.offload",)  # a work dir made with other values can still be resumed

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "PipelineConfig":
        """Build from a flat or nested dict (or a mix); unknown keys raise ValueError naming them."""
        return cls().replace(**(d or {}))

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict (lists for angle tuples), loadable by ``from_dict``."""
        out = dataclasses.asdict(self)
        for k in ("elevations_deg", "azimuths_deg"):
            if isinstance(out["sampling"][k], tuple):
                out["sampling"][k] = list(out["sampling"][k])
        return out

    def replace(self, **changes) -> "PipelineConfig":
        """A copy with flat (``seed=3``) or nested (``sampling={"seed": 3}``) changes."""
        groups = _GROUPS.split(changes)
        return PipelineConfig(**{name: dataclasses.replace(getattr(self, name), **values)
                                 for name, values in groups.items()})

    def resolved(self, model_kind: str, sv3d_kind: str | None = None) -> "PipelineConfig":
        """Fill every None / "auto" with the value a run will use (model kind from the checkpoint)."""
        s = self.sampling
        if s.model_kind is not None and s.model_kind != model_kind:
            raise ValueError(f"model_kind={s.model_kind!r} was requested but the checkpoint is {model_kind!r}")
        spec = get_kind(model_kind, FOUR_D_KINDS)
        device = check_device(self.placement.device)
        dtype = self.placement.dtype
        if dtype == "auto":
            dtype = "float16" if torch.device(device).type == "cuda" else "float32"
        steps = spec.default_steps if s.num_steps is None else int(s.num_steps)
        orbit = spec.needs_reference_orbit
        return self.replace(model_kind=model_kind, num_steps=steps, device=str(device), dtype=dtype,
                            image_frame_ratio=self.framing.image_frame_ratio or spec.image_frame_ratio,
                            sv3d_kind=sv3d_kind if orbit else None,
                            sv3d_num_steps=(s.sv3d_num_steps or steps) if orbit else None)

    def identity(self) -> dict[str, Any]:
        """The values a work dir must share to be resumed (device reduced to its type)."""
        d = json.loads(json.dumps(config_identity(self)))  # tuples -> lists, as read back from a manifest
        device = d["placement"]["device"]
        d["placement"]["device"] = torch.device(device).type if device else None
        return d


__all__ = ["PipelineConfig", "SamplingConfig", "FramingConfig", "PlacementConfig", "DTYPES"]

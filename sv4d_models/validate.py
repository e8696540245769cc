"""The one validation helper for every value a user can type: numbers are real numbers (a bool is not an int),
finite, of the right kind (int / float) and inside a documented range; text and paths are strings.

    check_number(settings.mesh_resolution, "mesh_resolution", 8, 1024, integer=True, why=MEMORY)
    check_fields(self, {"turntable_size": (8, 4096, MEMORY)})      # in a config's __post_init__

``check_fields`` reads the dataclass's field types: every ``int`` / ``float`` field (also ``| None``) is checked for a
real, finite value, with the range of its entry in ``bounds``; ``bool`` fields must be bools and ``str`` fields
strings. Messages name the setting, the value, the range and why the range is what it is.
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import fields
from typing import Any, Iterable

MEMORY = "memory and time grow with it"
STEPS = "a step count"
PROBABILITY = "a fraction"
DEGREES = "degrees"
MAX_SEED = 2**63 - 1  # seeds are int64 everywhere (torch generators, work-dir records): the library, CLI and nodes
MAX_STEPS = 10_000_000  # optimiser / fit steps: far beyond any run (the paper's fit: 2600, our trainer demo: 8800)

# The ranges shared by several doors (CLI, JobSettings, the library's configs, node widgets), each with its reason.
# ``(lo, hi, why)``: inclusive bounds, ``("open", x)`` exclusive, None open-ended.
RANGES = {
    "seed": (0, MAX_SEED, "seeds are 64-bit integers"),
    "sampler_steps": (1, 1000, "sampler steps per pass; the official scripts use 20 (sv4d) or 50 (sv4d2)"),
    "cfg": (0.0, 30.0, "guidance scale; the official values are 1 to 2.5, far above 10 the images saturate"),
    "cond_aug": (0.0, 1.0, "noise std on conditioning images in [-1, 1]; the official value is 1e-5"),
    "image_size": (8, 4096, "pixels per side; the official models were trained at 576, memory grows with the square"),
    "video_frames": (1, 100_000, "frames of the input video; memory and time grow with it"),
    "turntable_frames": (1, 10_000, "frames of the turntable video; each one is a full render"),
    "render_size": (8, 4096, "pixels per side of a render; memory grows with the square"),
    "mesh_resolution": (8, 1024, "marching-cubes grid points per axis; memory grows with the cube "
                                 "(1024^3 densities = 4 GiB)"),
    "mesh_threshold": (0.0, 1e10, "iso-density of the surface, 0 = automatic (half opacity per render sample); "
                                  "fields stay far below 1e10"),
    "fps": (("open", 0.0), 240.0, "frames per second of videos and the GLB animation"),
    "fit_steps": (2, MAX_STEPS, "NeRF steps in total: a static and a dynamic stage need one each"),
    "mask_threshold": (("open", 0.0), 1.0, "pixel value in [0, 1]; below it a pixel is the object"),
    "fraction": (0.0, 1.0, "a fraction"),
}


def bounds(**names: str) -> dict:
    """``{field: RANGES[name]}`` for a config's ``check_fields`` table: ``bounds(num_steps="sampler_steps")``."""
    return {field: RANGES[name] for field, name in names.items()}

try:
    from numpy import bool_ as np_bool
except ImportError:  # pragma: no cover - numpy comes with torch
    np_bool = bool

Bound = tuple  # (lo, hi) or (lo, hi, why); lo / hi None = open; lo given as ("open", x) = exclusive


def _describe(lo, hi) -> str:
    lo_text = "" if lo is None else (f"> {lo[1]}" if isinstance(lo, tuple) else f">= {lo}")
    hi_text = "" if hi is None else (f"< {hi[1]}" if isinstance(hi, tuple) else f"<= {hi}")
    text = " and ".join(t for t in (lo_text, hi_text) if t)
    return f" {text}" if text else ""


def check_number(value: Any, name: str, lo=None, hi=None, why: str = "", *, integer: bool = False):
    """``value`` if it is a finite real number (an int when ``integer``) inside ``[lo, hi]``; else ValueError (or
    TypeError for a non-number) naming ``name``, the value, the range and ``why``. ``lo`` / ``hi`` may be
    ``("open", x)`` for an exclusive bound."""
    reason = f" ({why})" if why else ""
    kind = "an integer" if integer else "a number"
    if not isinstance(value, numbers.Real):  # text, lists, None: the wrong type altogether
        raise TypeError(f"{name}={value!r} must be {kind}{_describe(lo, hi)}{reason}")
    if isinstance(value, (bool, np_bool)) or (integer and not isinstance(value, numbers.Integral)):
        raise ValueError(f"{name}={value!r} must be {kind}{_describe(lo, hi)}{reason}")  # True is not 1
    if not math.isfinite(value):
        raise ValueError(f"{name}={value!r} must be a finite number{_describe(lo, hi)}{reason}")
    below = lo is not None and (value <= lo[1] if isinstance(lo, tuple) else value < lo)
    above = hi is not None and (value >= hi[1] if isinstance(hi, tuple) else value > hi)
    if below or above:
        raise ValueError(f"{name}={value!r} must be{_describe(lo, hi)}{reason}")
    return value


def check_numbers(values: Iterable, name: str, lo=None, hi=None, why: str = "") -> tuple[float, ...]:
    """Every item of a list of numbers (``name[i]`` in messages)."""
    return tuple(check_number(v, f"{name}[{i}]", lo, hi, why=why) for i, v in enumerate(values))


def check_text(value: Any, name: str, allow_path: bool = True) -> str:
    """A string (or ``os.PathLike`` when ``allow_path``); TypeError naming the setting otherwise."""
    if isinstance(value, str) or (allow_path and isinstance(value, os.PathLike)):
        return os.fspath(value)
    raise TypeError(f"{name}={value!r} must be {'a path or ' if allow_path else ''}text, not {type(value).__name__}")


def check_fields(obj, bounds: dict[str, Bound] | None = None, owner: str | None = None) -> None:
    """Check every typed scalar field of the dataclass instance ``obj`` (see the module docstring)."""
    bounds = bounds or {}
    prefix = f"{owner}." if owner else ""
    for f in fields(obj):
        value, kind = getattr(obj, f.name), str(f.type).replace(" ", "")
        optional = kind.endswith("|None")
        base = kind[:-len("|None")] if optional else kind
        if value is None and optional:
            continue
        name = prefix + f.name
        if base in ("int", "float"):
            lo, hi, *why = bounds.get(f.name, (None, None))
            check_number(value, name, lo, hi, integer=base == "int", why=why[0] if why else "")
        elif base == "bool" and not isinstance(value, bool):
            raise TypeError(f"{name}={value!r} must be true or false, not {type(value).__name__}")
        elif base == "str" and not isinstance(value, str):
            raise TypeError(f"{name}={value!r} must be text, not {type(value).__name__}")


ANGLES = {"elevations_deg": (-90.0, 90.0, "degrees above the object's equator; 90 = straight above"),
          "azimuths_deg": (-720.0, 720.0, "degrees around the object")}


def check_angle(value: Any, name: str) -> float:
    """One camera angle in degrees: finite and inside the elevation range when ``name`` names an elevation, else the
    azimuth range (``ANGLES``)."""
    lo, hi, why = ANGLES["elevations_deg" if "elev" in name else "azimuths_deg"]
    return float(check_number(value, name, lo, hi, why=why))


def check_device(device: Any, available: bool = True) -> str:
    """A device name torch accepts (``cpu``, ``cuda``, ``cuda:N``, ``mps``); with ``available`` also present on
    this machine. None -> ``cuda`` when available, else ``cpu``. ValueError naming the value and the fix."""
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device={device!r} must be text such as 'cpu' or 'cuda', not {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"device={device!r} is not a device name; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device={device!r} is not supported; use cpu or cuda")
    if available and dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r}: CUDA is not available on this machine (no NVIDIA GPU, or a "
                             "CPU-only torch); use device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                             "use cuda:0 .. cuda:N-1")
    if available and dev.type == "mps" and not (getattr(torch.backends, "mps", None)
                                                and torch.backends.mps.is_available()):
        raise ValueError(f"device={device!r}: MPS is not available on this machine; use device cpu")
    return device


def check_finite_tensor(t, name: str):
    """``t`` unless it holds NaN or infinity (ValueError naming ``name`` and how many values are bad)."""
    import torch

    if torch.is_tensor(t) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} holds {bad} NaN or infinite values of {t.numel()}; nothing was written")
    return t


def check_finite_array(a, name: str):
    """``a`` (a numpy array or anything ``np.asarray`` takes) unless it holds NaN or infinity (ValueError naming
    ``name``); writers call it so that no file holds a NaN."""
    import numpy as np

    arr = np.asarray(a)
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise ValueError(f"{name} hold {int((~np.isfinite(arr)).sum())} NaN or infinite values of {arr.size}; a file "
                         "cannot hold them and nothing was written")
    return a


__all__ = ["RANGES", "MAX_SEED", "MAX_STEPS", "bounds", "MEMORY", "STEPS", "PROBABILITY", "DEGREES", "ANGLES", "check_angle", "check_device", "check_number", "check_numbers", "check_text", "check_fields",
           "check_finite_tensor", "check_finite_array"]

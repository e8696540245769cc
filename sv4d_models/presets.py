"""The 4D-fit presets, in one table that ``sv4d`` (``--preset``, ``--fast``), ``JobSettings``, the demo and the ComfyUI
nodes (the Fit node's Combo, the export widgets' "0 = the preset's") all read.

    tiny   smoke test / ``--fast``: seconds to a minute on a CPU, small exports
    cpu    preview quality in minutes on a CPU (the default without CUDA)
    gpu    the paper's recipe (SV4D section 3.2: 512 px renders, 2600 steps; the default with CUDA)

A preset is a fit configuration (``sv4d_models.nerf.fit_config``: ``tiny_preset`` / ``cpu_preset`` / the
``NeRFFitConfig`` defaults), export sizes matched to its cost, and the device memory the ComfyUI node asks ComfyUI to
free before fitting. Importing this module is cheap (no torch): the fit and export classes load on first use.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping


@dataclass(frozen=True)
class Preset:
    """One row of ``PRESETS``.

    Attributes:
        name: ``tiny`` / ``cpu`` / ``gpu``; description: one line for help texts and tooltips.
        fit_factory: name of the ``sv4d_models.nerf.fit_config`` function (or class) giving the fit config.
        export: ``ExportSettings`` fields of the exports (turntable frames / size, mesh resolution).
        device_memory_gib: what the ComfyUI fit node frees on the device before it starts.
    """

    name: str
    description: str
    fit_factory: str
    export: Mapping[str, int] = field(default_factory=dict)
    device_memory_gib: float = 1.0

    def fit_config(self, fit_steps: int | None = None, **overrides):
        """The ``NeRFFitConfig``; ``fit_steps`` (total) splits as a third static, the rest dynamic."""
        from .nerf import fit_config as module

        config = getattr(module, self.fit_factory)(**overrides)
        if fit_steps:
            static, dynamic = split_fit_steps(fit_steps)
            config = dataclasses.replace(config, static_steps=static, dynamic_steps=dynamic)
        return config

    def export_settings(self, **overrides):
        """``ExportSettings`` with this preset's sizes; an override of None keeps the preset's value."""
        from .reconstruction import ExportSettings

        return ExportSettings(**{**self.export, **{k: v for k, v in overrides.items() if v is not None}})


def split_fit_steps(total: int) -> tuple[int, int]:
    """(static, dynamic) steps of a fit of ``total`` steps: a third on frame 0, the rest on the whole matrix."""
    if total < 2:
        raise ValueError(f"fit_steps={total} must be >= 2 (a static and a dynamic stage)")
    return total // 3, total - total // 3


PRESETS: Mapping[str, Preset] = MappingProxyType({
    "tiny": Preset("tiny", "smoke test: seconds to a minute on a CPU, small exports", "tiny_preset",
                   {"turntable_frames": 12, "turntable_size": 64, "mesh_resolution": 48}, 1.0),
    "cpu": Preset("cpu", "preview quality in minutes on a CPU", "cpu_preset",
                  {"turntable_frames": 24, "turntable_size": 128, "mesh_resolution": 96}, 1.0),
    "gpu": Preset("gpu", "the paper's recipe: 512 px renders, 2600 steps (a GPU)", "NeRFFitConfig",
                  {"turntable_frames": 48, "turntable_size": 256, "mesh_resolution": 192}, 4.0),
})
FAST_PRESET, FAST_FIT_STEPS = "tiny", 240  # ``--fast`` (run and demo): this preset and this many fit steps


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"preset={name!r}: use one of {', '.join(PRESETS)}")
    return PRESETS[name]


def default_preset(cuda: bool) -> str:
    """The preset when none is named: gpu with CUDA, else cpu."""
    return "gpu" if cuda else "cpu"


def presets_help() -> str:
    """``tiny: ..., cpu: ..., gpu: ...`` for help texts and tooltips."""
    return "; ".join(f"{p.name}: {p.description}" for p in PRESETS.values())


def sizes_help(key: str) -> str:
    """``tiny 12, cpu 24, gpu 48`` for one export size (help texts and widget tooltips)."""
    return ", ".join(f"{p.name} {p.export[key]}" for p in PRESETS.values())


__all__ = ["Preset", "PRESETS", "sizes_help", "FAST_PRESET", "FAST_FIT_STEPS", "get_preset", "default_preset", "presets_help",
           "split_fit_steps"]

"""The pack's socket types (``SV4D_<NOUN>``) and input factories shared by several nodes.

The values on these sockets are the classes of ``values.py``: SV4D_CAMERAS -> ``CameraSpec``, SV4D_PASSES ->
``SampledPasses``, SV4D_MATRIX -> ``ImageMatrixValue``, SV4D_NERF -> ``NeRFValue``.
"""
from __future__ import annotations

import functools
import inspect

from sv4d_models.config import MAX_SEED
from sv4d_models.kinds import kind_values
from sv4d_models.validate import check_number

from .compat import io

Cameras = io.Custom("SV4D_CAMERAS")
Passes = io.Custom("SV4D_PASSES")
Matrix = io.Custom("SV4D_MATRIX")
NeRF = io.Custom("SV4D_NERF")

SEED_TOOLTIP = "base seed: pass k samples with a seed mixed from (seed, k), so a resumed or re-queued run is exact"


def checked_widgets(execute):
    """Decorator of a node's ``execute``: every INT / FLOAT widget value is checked before the node does anything:
    a real number (an int for INT), finite and inside the widget's min / max. ComfyUI's own check lets NaN through
    (``NaN < min`` is False) and API prompts may send any JSON; the error names the node, the input and the range.

        @classmethod
        @checked_widgets
        def execute(cls, matrix, preset: str, nerf_seed: int, mask_threshold: float) -> io.NodeOutput: ...
    """
    signature = inspect.signature(execute)

    @functools.wraps(execute)
    def run(cls, *args, **kwargs):
        values = signature.bind_partial(cls, *args, **kwargs).arguments
        title, widgets = _number_widgets(cls)
        for name, (lo, hi, integer) in widgets.items():
            if values.get(name) is not None:
                check_number(values[name], f"{title}: {name}", lo, hi, "the widget's range", integer=integer)
        return execute(cls, *args, **kwargs)

    return run


@functools.lru_cache(maxsize=None)
def _number_widgets(cls) -> tuple[str, dict]:
    """(display name, ``{input: (min, max, is_int)}``) of a node's INT / FLOAT widgets (read from its schema)."""
    schema = cls.define_schema()
    widgets = {inp.id: (inp.min, inp.max, isinstance(inp, io.Int.Input)) for inp in schema.inputs
               if isinstance(inp, (io.Int.Input, io.Float.Input))}
    return schema.display_name or schema.node_id, widgets


def video_input(name: str = "video", tooltip: str = "the input video: an IMAGE batch (frames) or a core VIDEO",
                optional: bool = False) -> io.MultiType.Input:
    """An input taking an IMAGE batch or a core VIDEO."""
    return io.MultiType.Input(name, types=[io.Image, io.Video], tooltip=tooltip, optional=optional)


def seed_input(default: int = 23) -> io.Int.Input:
    return io.Int.Input("seed", default=default, min=0, max=MAX_SEED, control_after_generate=True,
                        tooltip=SEED_TOOLTIP)


def model_inputs(what: str, optional: bool = False, lazy: bool = False) -> list:
    """MODEL, CLIP_VISION and VAE inputs of one loader (``what`` names it in the tooltips)."""
    return [io.Model.Input("model", tooltip=f"{what} MODEL", optional=optional, lazy=lazy or None),
            io.ClipVision.Input("clip_vision", tooltip=f"{what} CLIP_VISION (the image conditioning)",
                                optional=optional, lazy=lazy or None),
            io.Vae.Input("vae", tooltip=f"{what} VAE (conditioning latents and the decoder)", optional=optional,
                         lazy=lazy or None)]


def guidance_inputs() -> list:
    """steps / cfg / min_cfg widgets; 0 means the model kind's official value."""
    return [io.Int.Input("steps", default=0, min=0, max=500,
                         tooltip=f"sampler steps per pass; 0 = official ({kind_values('default_steps')}); "
                                 "ignored when sigmas are connected"),
            io.Float.Input("cfg", default=0.0, min=0.0, max=30.0, step=0.05, round=0.001,
                           tooltip=f"maximum guidance scale; 0 = official ({kind_values('cfg')})"),
            io.Float.Input("min_cfg", default=0.0, min=0.0, max=30.0, step=0.05, round=0.001,
                           tooltip="minimum guidance scale of the per-frame / per-view guider; 0 = official "
                                   f"({kind_values('min_cfg')})"),
            io.Sigmas.Input("sigmas", optional=True,
                            tooltip="optional noise schedule from any core scheduler node (steps = its length - 1); "
                                    "empty = the official EDM schedule (sigma 700 -> 0.002, rho 7)")]

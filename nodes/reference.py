"""SV4D Reference Orbit (SV3D): frame 0 -> the official 21-view SV3D orbit (azimuth k * 360 / 21, the input view
first), which gives SV4D its reference views of frame 0, plus the SV4D camera settings of that orbit.

The SV3D MODEL / CLIP_VISION / VAE come from core Image Only Checkpoint Loader (sv3d_u / sv3d_p.safetensors).
A user-made orbit IMAGE (21 views, input first; or 8 / 9 views) can be given instead; then no SV3D model loads.
"""
from __future__ import annotations

import torch

from sv4d_models import events
from sv4d_models.kinds import KINDS, ORBIT_KINDS, SV3D_N_VIEWS, SV4D_ORBIT_VIEWS
from sv4d_models.pipeline import check_image_size, pass_seed, sample_reference_orbit, to_unit_hwc
from sv4d_models.sampling import REFERENCE

from .comfy_bridge import ComfySamplingModels, StepProgress, orbit_columns, should_stop
from .compat import io
from .inputs import model_frames, same_size
from .sockets import Cameras, checked_widgets, model_inputs, seed_input, video_input
from .values import CameraSpec, parse_angles

N = SV3D_N_VIEWS
ORBIT_COUNTS = (SV3D_N_VIEWS, len(SV4D_ORBIT_VIEWS), len(SV4D_ORBIT_VIEWS) - 1)  # 21, 9, 8


def orbit_camera_spec(elevation_deg: float, elevations_deg: str, azimuths_deg: str) -> CameraSpec:
    """SV4D camera settings of an orbit: the widget elevation, or per-view lists (raw official order)."""
    elev = parse_angles(elevations_deg, "elevations_deg")
    elev = float(elevation_deg) if elev is None else (elev[0] if len(elev) == 1 else elev)
    return CameraSpec("sv4d", elev, parse_angles(azimuths_deg, "azimuths_deg"))


def given_orbit(orbit: torch.Tensor, size: int) -> torch.Tensor:
    """A user-supplied orbit IMAGE, checked: 21 (or 9 / 8) views of the frames' size."""
    if orbit.shape[0] not in ORBIT_COUNTS:
        raise ValueError(f"the orbit has {orbit.shape[0]} views; give the 21-view SV3D orbit (input view first), "
                         "9 views (input + the 8 SV4D views) or the 8 SV4D views (azimuths "
                         f"{[round(a, 1) for a in KINDS['sv4d'].azimuths_deg[1:]]})")
    same_size("the orbit", orbit, size)
    return orbit


def sample_orbit(model, clip_vision, vae, frames: torch.Tensor, seed: int, steps: int,
                 cameras: CameraSpec) -> torch.Tensor:
    """Sample the SV3D orbit of ``frames[0]``: IMAGE ``[21, S, S, 3]`` in [0, 1], index 0 = the input view."""
    models = ComfySamplingModels(model, clip_vision, vae)
    if models.kind not in ORBIT_KINDS:
        raise ValueError(f"the MODEL is {models.kind!r}; the reference orbit needs SV3D: load sv3d_u.safetensors or "
                         "sv3d_p.safetensors with core Image Only Checkpoint Loader")
    check_image_size(frames.shape[-1], models.levels)
    progress = StepProgress(models, columns=orbit_columns(SV3D_N_VIEWS))
    orbit = sample_reference_orbit(models, frames[0], seed=pass_seed(seed, REFERENCE), num_steps=steps,
                                   elevations_deg=cameras.elevations_deg, azimuths_deg=cameras.azimuths_deg,
                                   callback=lambda info: progress(events.sample_step(REFERENCE, "sv3d", info["step"],
                                                                                     steps, info)),
                                   should_stop=should_stop)
    return torch.stack([to_unit_hwc(view) for view in orbit.images])


class SampleReferenceOrbit(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SV4D_SampleReferenceOrbit", display_name="SV4D Reference Orbit (SV3D)",
            category="SV4D/reference",
            description="The official SV3D orbit of frame 0 (21 views, 360/21 deg apart; not core SV3D "
                        "Conditioning's spacing): SV4D's reference views. Or pass your own orbit IMAGE.",
            inputs=[video_input(tooltip="the prepared video (frame 0 is used), IMAGE batch or core VIDEO"),
                    *model_inputs("SV3D (core Image Only Checkpoint Loader, sv3d_u / sv3d_p)", optional=True,
                                  lazy=True),
                    io.Image.Input("orbit", optional=True, tooltip="optional: your own orbit of frame 0 (21 views, "
                                   "input first; or 9 / 8 views) instead of sampling one; the SV3D model is then "
                                   "not loaded"),
                    seed_input(),
                    io.Int.Input("steps", default=KINDS["sv4d"].default_steps, min=1, max=500,
                                 tooltip="SV3D sampler steps (the official SV4D script uses its own "
                                         f"{KINDS['sv4d'].default_steps} here)"),
                    io.Float.Input("elevation_deg", default=KINDS["sv4d"].default_elevation_deg, min=-90.0, max=90.0,
                                   step=0.5, tooltip="camera elevation of the orbit in degrees (official "
                                                     f"{KINDS['sv4d'].default_elevation_deg:g})"),
                    io.String.Input("elevations_deg", default="", tooltip=f"optional per-view elevations, {N} "
                                    "values in the official script's order (input view last); overrides elevation_deg"),
                    io.String.Input("azimuths_deg", default="", tooltip=f"optional {N} azimuths in the official "
                                    f"script's order (input view last); empty = 360/{N} deg steps")],
            outputs=[io.Image.Output(display_name="orbit", tooltip=f"the orbit views [{N}, S, S, 3], index 0 = the "
                                                                   f"input view, index k at azimuth k * 360 / {N}"),
                     Cameras.Output(display_name="cameras", tooltip="SV4D camera settings of this orbit")],
        )

    @classmethod
    def check_lazy_status(cls, orbit=None, model=None, clip_vision=None, vae=None, **kwargs) -> list[str]:
        if orbit is not None:
            return []
        return [name for name, v in (("model", model), ("clip_vision", clip_vision), ("vae", vae)) if v is None]

    @classmethod
    @checked_widgets
    def execute(cls, video, seed: int, steps: int, elevation_deg: float, elevations_deg: str, azimuths_deg: str,
                model=None, clip_vision=None, vae=None, orbit=None) -> io.NodeOutput:
        frames = model_frames(video)
        cameras = orbit_camera_spec(elevation_deg, elevations_deg, azimuths_deg)
        if orbit is not None:
            return io.NodeOutput(given_orbit(orbit, frames.shape[-1]), cameras)
        if model is None:
            raise ValueError("connect an SV3D MODEL, CLIP_VISION and VAE (core Image Only Checkpoint Loader with "
                             "sv3d_u.safetensors or sv3d_p.safetensors) or your own orbit IMAGE")
        return io.NodeOutput(sample_orbit(model, clip_vision, vae, frames, seed, steps, cameras), cameras)


NODES = [SampleReferenceOrbit]

"""Input nodes: video preparation (object framing as the official scripts do) and camera settings.

Also the frame helpers the sampling nodes share: IMAGE batch or core VIDEO -> frames, checked with messages that
name the value and the fix.
"""
from __future__ import annotations

import torch

from sv4d_models.kinds import (FOUR_D_KINDS, IMAGE_SIZE, KINDS, OFFICIAL_VIDEO_FRAMES, SV3D_N_VIEWS, kind_list,
                               kind_values)
from sv4d_models.pipeline import to_model_frames
from sv4d_models.preprocess import preprocess_frames

from .compat import io
from .sockets import Cameras, checked_widgets, video_input
from .values import CameraSpec, parse_angles

PREPARE_HINT = f"add an SV4D Prepare Video node (size {IMAGE_SIZE}) before this node"


def video_frames(video) -> torch.Tensor:
    """IMAGE ``[F, H, W, C]`` or a core VIDEO -> ``[F, H, W, C]`` float in [0, 1]; ValueError for no frames."""
    if video is None:
        raise ValueError("no video connected: connect an IMAGE batch (e.g. core Load Video + Get Video Components) "
                         "or a core VIDEO")
    if hasattr(video, "get_components"):
        video = video.get_components().images
    if not torch.is_tensor(video) or video.ndim not in (3, 4):
        raise ValueError(f"the video must be an IMAGE batch [frames, height, width, 3], got "
                         f"{tuple(video.shape) if torch.is_tensor(video) else type(video).__name__}")
    frames = video[None] if video.ndim == 3 else video
    if frames.shape[0] == 0:
        raise ValueError("the video has zero frames: connect a video with at least one frame (the official scripts "
                         f"read {OFFICIAL_VIDEO_FRAMES})")
    return frames


def model_frames(video) -> torch.Tensor:
    """Frames ready for sampling: ``[F, 3, S, S]`` float32 in [-1, 1] (square; the size is checked by the model)."""
    frames = video_frames(video)
    h, w = frames.shape[1:3]
    if h != w:
        raise ValueError(f"the frames are {w}x{h}, not square: SV4D samples square frames; {PREPARE_HINT}")
    return to_model_frames(frames[..., :3] if frames.shape[-1] == 4 else frames)


def same_size(what: str, images: torch.Tensor, size: int) -> None:
    """ValueError when an IMAGE batch's frames are not ``size`` x ``size`` like the video's."""
    h, w = images.shape[1:3]
    if (h, w) != (size, size):
        raise ValueError(f"{what} is {w}x{h} but the video frames are {size}x{size}: frame batches of mixed sizes "
                         f"cannot be sampled together; resize {what} to {size}x{size} (core Upscale Image) or "
                         "prepare both with the same SV4D Prepare Video size")


class PrepareVideo(io.ComfyNode):
    """Official SV4D framing: object box over all frames, centred square crop, white background, resize."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SV4D_PrepareVideo", display_name="SV4D Prepare Video", category="SV4D/input",
            description="Crops every frame around the object (one box over the whole clip), centres it on a white "
                        "square of the model's size, as the official SV4D scripts do.",
            inputs=[video_input(tooltip="frames of one object on a white / plain background (RGBA: alpha is used)"),
                    io.Int.Input("size", default=IMAGE_SIZE, min=16, max=2048, step=16,
                                 tooltip=f"output side in pixels (official {IMAGE_SIZE}; the released models need a "
                                         "multiple of 64)"),
                    io.Int.Input("max_frames", default=OFFICIAL_VIDEO_FRAMES, min=0, max=4096,
                                 tooltip=f"keep the first N frames (official {OFFICIAL_VIDEO_FRAMES}; 0 = all)"),
                    io.Float.Input("image_frame_ratio", default=KINDS["sv4d"].image_frame_ratio, min=0.05, max=1.0,
                                   step=0.001, tooltip="share of the side the object spans (official: "
                                                       f"{kind_values('image_frame_ratio')})")],
            outputs=[io.Image.Output(display_name="frames", tooltip="square frames [F, size, size, 3] in [0, 1]"),
                     io.Mask.Output(display_name="masks", tooltip="object masks [F, size, size] of the frames")],
        )

    @classmethod
    @checked_widgets
    def execute(cls, video, size: int, max_frames: int, image_frame_ratio: float) -> io.NodeOutput:
        frames = video_frames(video)
        if max_frames:
            frames = frames[:max_frames]
        pre = preprocess_frames(frames.float().cpu(), size=size, image_frame_ratio=image_frame_ratio)
        images = ((pre.images + 1.0) / 2.0).clamp(0.0, 1.0).permute(0, 2, 3, 1).contiguous()
        return io.NodeOutput(images, pre.masks.float())


class MakeCameras(io.ComfyNode):
    """Camera arguments for a 4D model kind (empty lists = the official trajectory)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SV4D_MakeCameras", display_name="SV4D Cameras", category="SV4D/cameras",
            description="Camera elevations / azimuths for a 4D model kind. Leave a list empty for the official "
                        f"values. sv4d: 1 or {SV3D_N_VIEWS} values of the SV3D orbit in the official script's order "
                        f"(input view last); {kind_list(FOUR_D_KINDS[1:])}: 1 or V+1 values, input view first, "
                        "elevations relative.",
            inputs=[io.Combo.Input("model_kind", options=list(FOUR_D_KINDS), default="sv4d",
                                   tooltip="the 4D model these cameras are for (must match the MODEL)"),
                    io.String.Input("elevations_deg", default="", tooltip="one elevation, or one per view "
                                    "(degrees, comma separated); empty = official "
                                    f"({kind_values('default_elevation_deg')}; SV4D 2.0: relative to the input)"),
                    io.String.Input("azimuths_deg", default="", tooltip="one azimuth per view (degrees, comma "
                                    "separated); empty = the official trajectory")],
            outputs=[Cameras.Output(display_name="cameras", tooltip="camera settings for the sampling nodes")],
        )

    @classmethod
    @checked_widgets
    def execute(cls, model_kind: str, elevations_deg: str, azimuths_deg: str) -> io.NodeOutput:
        elev = parse_angles(elevations_deg, "elevations_deg")
        elev = elev[0] if elev is not None and len(elev) == 1 else elev
        return io.NodeOutput(CameraSpec(model_kind, elev, parse_angles(azimuths_deg, "azimuths_deg")))


NODES = [PrepareVideo, MakeCameras]

"""SV4D Assemble Grid: the sampled passes -> the V+1 views x F frames image matrix, as ComfyUI types.

Outputs: one IMAGE batch per view and one core VIDEO per view (list outputs: a downstream node runs once per
view: core SaveVideo on the videos, VHS_VideoCombine / PreviewImage on the IMAGE batches), the whole grid as one
IMAGE, the cameras as nerfstudio ``transforms.json`` text, and the matrix for the 4D reconstruction nodes.
"""
from __future__ import annotations

import json
from fractions import Fraction

import torch

from sv4d_models.pipeline import assemble_matrix

from .compat import InputImpl, Types, io
from .sockets import Matrix, Passes, checked_widgets
from .values import ImageMatrixValue, SampledPasses, grid_image


def matrix_of(passes: SampledPasses) -> ImageMatrixValue:
    """The image matrix of finished passes; ValueError naming the missing passes and the node that samples them."""
    missing = passes.missing()
    if missing:
        raise ValueError(f"passes {missing} of the {passes.kind} plan are not sampled yet; connect the output of "
                         "SV4D Sample Dense (or SV4D Sampler) instead of SV4D Sample Anchors")
    m = assemble_matrix(passes.plan, passes.frames, passes.outputs, passes.cameras.elevations_deg,
                        passes.cameras.azimuths_deg)
    return ImageMatrixValue(m.images, m.cameras, m.times, passes.kind)


def cameras_json(matrix: ImageMatrixValue) -> str:
    """nerfstudio-style transforms.json text: one entry per (frame, view), the layout SV4D Export 4D writes."""
    n_f, n_v, size = matrix.n_frames, matrix.n_views, matrix.images.shape[2]
    cams = matrix.cameras[torch.arange(n_v).repeat(n_f)]
    names = [f"images/f{f:03d}_v{v:02d}.png" for f in range(n_f) for v in range(n_v)]
    data = cams.to_transforms_json(size, file_paths=names, times=matrix.times.repeat_interleave(n_v))
    data["sv4d"] = {"fov_deg": cams.fov_deg, "radius": cams.radius, "matrix_shape_fv": [n_f, n_v],
                    "model_kind": matrix.model_kind}
    return json.dumps(data, indent=1)


def view_videos(matrix: ImageMatrixValue, fps: float) -> list:
    rate = Fraction(fps).limit_denominator(1000)
    return [InputImpl.VideoFromComponents(Types.VideoComponents(images=matrix.images[:, v].contiguous(),
                                                                frame_rate=rate)) for v in range(matrix.n_views)]


class AssembleGrid(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SV4D_AssembleGrid", display_name="SV4D Assemble Grid", category="SV4D/grid",
            description="The V+1 views x F frames matrix of the sampled passes (column 0 = the input video): one "
                        "IMAGE batch and one VIDEO per view, the grid as one IMAGE, cameras as transforms.json.",
            inputs=[Passes.Input("passes", tooltip="every pass sampled (SV4D Sample Dense or SV4D Sampler)"),
                    io.Float.Input("fps", default=10.0, min=0.1, max=120.0, step=0.1,
                                   tooltip="frame rate of the per-view videos"),
                    io.Int.Input("grid_cell_size", default=128, min=0, max=2048, step=8,
                                 tooltip="side of one cell in the grid IMAGE (0 = full size; the full 21 x 9 grid at "
                                         "576 px is 12096 x 5184)")],
            outputs=[io.Image.Output(display_name="views", is_output_list=True,
                                     tooltip="one IMAGE batch [F, S, S, 3] per view (list, view 0 = the input; "
                                             "VHS_VideoCombine takes it)"),
                     io.Image.Output(display_name="grid", tooltip="the whole matrix as one IMAGE: rows = frames, "
                                                                   "columns = views"),
                     io.Video.Output(display_name="videos", is_output_list=True,
                                     tooltip="one core VIDEO per view (list; core SaveVideo takes it)"),
                     io.String.Output(display_name="cameras_json", tooltip="nerfstudio-style transforms.json of "
                                                                           "every (frame, view) image"),
                     Matrix.Output(display_name="matrix", tooltip="the matrix with cameras and times, for SV4D Fit "
                                                                  "4D NeRF")],
        )

    @classmethod
    @checked_widgets
    def execute(cls, passes: SampledPasses, fps: float, grid_cell_size: int) -> io.NodeOutput:
        matrix = matrix_of(passes)
        views = [matrix.images[:, v].contiguous() for v in range(matrix.n_views)]
        return io.NodeOutput(views, grid_image(matrix.images, grid_cell_size), view_videos(matrix, fps),
                             cameras_json(matrix), matrix)


NODES = [AssembleGrid]

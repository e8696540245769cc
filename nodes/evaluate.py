"""SV4D Evaluate: the library's evaluation (``sv4d_models.metrics.run_evaluation``, the one ``sv4d eval`` runs) on a
generated matrix (the SV4D_MATRIX of SV4D Assemble Grid, or a folder) against a ground-truth folder. Weight files
come from ComfyUI's ``models/sv4d_eval`` folder (``sv4d_eval:`` in extra_model_paths.yaml); nothing is downloaded.
Every run writes ``metrics.json`` and ``metrics.md`` into a new ``output/sv4d_eval/metrics_NNNNN_/`` folder."""
from __future__ import annotations

import json
import os

import comfy.model_management as mm
import folder_paths

from sv4d_models.metrics.evaluate import METRICS, EvalSettings, markdown_table, parse_metrics, run_evaluation

from .asset import output_target, publish
from .comfy_bridge import EventProgress
from .compat import io, ui
from .sockets import Matrix, checked_widgets

FOLDER = "sv4d_eval"


def weight_folders() -> tuple[str, ...]:
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))
    return tuple(folder_paths.get_folder_paths(FOLDER))


def metric_names(metrics: str) -> tuple[str, ...]:
    """The widget's text as metric names (empty = all); ValueError naming unknown ones."""
    return parse_metrics(metrics.strip() or "all")


def settings_of(metrics: str, lpips_net: str, drop_input_view: bool, batch: int, device: str) -> EvalSettings:
    return EvalSettings(metrics=metric_names(metrics), lpips_net=lpips_net, weights=weight_folders(),
                        drop_input_view=drop_input_view, batch=batch, device=device)


class Evaluate(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SV4D_EvaluateMatrix", display_name="SV4D Evaluate", category="SV4D/evaluation", is_output_node=True,
            description="Scores generated views against ground truth as the SV4D paper does: PSNR, SSIM, LPIPS, "
                        "CLIP-S and FVD-F / FVD-V / FVD-Diag / FV4D (weights from models/sv4d_eval, never downloaded).",
            inputs=[io.String.Input("gt_dir", default="", tooltip="ground-truth folder: per-view videos, "
                                    "f000_v00.png images, a sv4d run folder, or one such folder per object"),
                    io.String.Input("metrics", default="all", tooltip=f"comma-separated: {', '.join(METRICS)}; all"),
                    io.Combo.Input("lpips_net", options=["alex", "vgg"], default="alex", tooltip="LPIPS backbone"),
                    io.Boolean.Input("drop_input_view", default=False, tooltip="score views 1.. only (view 0 is "
                                                                               "the input video)"),
                    io.Int.Input("batch", default=4, min=1, max=64, tooltip="videos per I3D call"),
                    io.String.Input("pred_dir", default="", optional=True, tooltip="generated folder (used when no "
                                                                                    "matrix is connected)"),
                    Matrix.Input("matrix", optional=True, tooltip="the generated matrix of SV4D Assemble Grid")],
            outputs=[io.String.Output(display_name="table", tooltip="the metrics as a Markdown table"),
                     io.String.Output(display_name="metrics_json", tooltip="every number (per object, per view)")],
        )

    @classmethod
    def validate_inputs(cls, gt_dir: str, metrics: str, **_) -> bool | str:
        try:
            metric_names(metrics)
        except ValueError as exc:
            return str(exc)
        return True if gt_dir.strip() else "gt_dir is empty: give the ground-truth folder"

    @classmethod
    @checked_widgets
    def execute(cls, gt_dir: str, metrics: str, lpips_net: str, drop_input_view: bool, batch: int,
                pred_dir: str = "", matrix=None) -> io.NodeOutput:
        if matrix is None and not pred_dir.strip():
            raise ValueError("SV4D Evaluate needs a generated matrix: connect SV4D Assemble Grid's matrix or set "
                             "pred_dir")
        s = settings_of(metrics, lpips_net, drop_input_view, batch, str(mm.get_torch_device()))
        final, relative = output_target(folder_paths.get_output_directory(), "sv4d_eval/metrics")
        results = []  # metrics.json + metrics.md land in a new numbered folder of ComfyUI's output, all or nothing
        publish(final, lambda folder: results.append(run_evaluation(
            matrix.images if matrix is not None else pred_dir, gt_dir, folder, s, EventProgress())))
        table = markdown_table(results[0])
        return io.NodeOutput(table, json.dumps(results[0], indent=1),
                             ui=ui.PreviewText(f"{table}\n\nwritten to output/{relative}/metrics.json and metrics.md"))


NODES = [Evaluate]

"""4D reconstruction nodes: fit a dynamic NeRF to the image matrix, render a turntable, export the 4D asset.

The fit keeps its checkpoint in a work dir under ComfyUI's temp folder keyed by the matrix and the settings, so a
Cancelled fit continues when queued again. The export writes a numbered folder under the output folder
(animated GLB for core Preview3D, per-frame meshes, transforms.json) that appears only once complete.
"""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import torch

import comfy.model_management as mm
import comfy.utils
import folder_paths

from sv4d_models.images import FOREGROUND_THRESHOLD, foreground_masks
from sv4d_models.nerf.fit import fit_dynamic_nerf
from sv4d_models.presets import PRESETS, get_preset, presets_help, sizes_help
from sv4d_models.reconstruction import export_asset, render_fit_turntable

from .asset import output_target, publish
from .comfy_bridge import should_stop
from .compat import InputImpl, Types, io, ui
from .sockets import Matrix, NeRF, checked_widgets
from .values import ImageMatrixValue, NeRFValue, run_key

AUTO = "0 = the fit preset's"  # export widgets: 0 takes the size of the preset the NeRF was fitted with


def fit_config(preset: str, seed: int, key: str):
    config = get_preset(preset).fit_config()
    folder = Path(folder_paths.get_temp_directory()) / "sv4d" / f"nerf-{key[:24]}"
    return dataclasses.replace(config, seed=int(seed), checkpoint_dir=str(folder))


def _fit_progress(bar, event: dict) -> None:
    """The fit's steps move the node's bar; the part motion's few seconds after the last step (``progress``
    events, no ``step``) leave it full."""
    if "step" in event:
        bar.update_absolute(int(event["step"]))


def fit(matrix: ImageMatrixValue, preset: str, seed: int, mask_threshold: float) -> NeRFValue:
    """Fit on ComfyUI's device with a progress bar; white pixels (all channels >= threshold) are background.

    ComfyUI runs nodes under ``torch.inference_mode()``; the fit needs autograd, so it runs with inference mode
    off on fresh copies of its inputs (inference tensors cannot take part in backward)."""
    device = mm.get_torch_device()
    mm.free_memory(int(get_preset(preset).device_memory_gib * 1024 ** 3), device)
    key = run_key("sv4d-nerf", preset, int(seed), float(mask_threshold), tensors=(matrix.images,))
    config = fit_config(preset, seed, key)
    bar = comfy.utils.ProgressBar(config.total_steps)
    with torch.inference_mode(False), torch.enable_grad():
        images = matrix.images.clone().to(device)
        masks = foreground_masks(images, mask_threshold)
        cams = dataclasses.replace(matrix.cameras, **{f.name: getattr(matrix.cameras, f.name).clone()
                                                       for f in dataclasses.fields(matrix.cameras)
                                                       if torch.is_tensor(getattr(matrix.cameras, f.name))})
        result = fit_dynamic_nerf(images, masks, cams, matrix.times.clone(), config,
                                  callback=lambda event: _fit_progress(bar, event), should_stop=should_stop)
    mm.soft_empty_cache()
    return NeRFValue(result, matrix, masks.cpu(), preset)


class FitNeRF(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SV4D_FitNeRF", display_name="SV4D Fit 4D NeRF", category="SV4D/reconstruction",
            description="Dynamic NeRF fit to the image matrix (static frame-0 stage, then the space-time K-Planes "
                        "field: the cpu / gpu presets), following SV4D section 3.2; the cpu preset then reads each "
                        "part's motion between the frames, so renders between frames move the parts.",
            inputs=[Matrix.Input("matrix", tooltip="the image matrix from SV4D Assemble Grid"),
                    io.Combo.Input("preset", options=list(PRESETS), default="cpu",
                                   tooltip=f"{presets_help()} (the same presets as sv4d --preset; the export nodes' "
                                           "sizes follow it)"),
                    io.Int.Input("nerf_seed", default=0, min=0, max=2 ** 31 - 1,
                                 tooltip="seed of the fit's initialisation and batches"),
                    io.Float.Input("mask_threshold", default=FOREGROUND_THRESHOLD, min=0.5, max=1.0, step=0.005,
                                   tooltip="pixels with every channel at or above this are background (white)")],
            outputs=[NeRF.Output(display_name="nerf", tooltip="the fitted dynamic NeRF")],
        )

    @classmethod
    @checked_widgets
    def execute(cls, matrix: ImageMatrixValue, preset: str, nerf_seed: int, mask_threshold: float) -> io.NodeOutput:
        return io.NodeOutput(fit(matrix, preset, nerf_seed, mask_threshold))


class RenderTurntable(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SV4D_RenderTurntable", display_name="SV4D Render Turntable", category="SV4D/reconstruction",
            description="Renders the NeRF from a camera circling the object while time loops (ping-pong).",
            inputs=[NeRF.Input("nerf", tooltip="the fitted NeRF (SV4D Fit 4D NeRF)"),
                    io.Int.Input("frames", default=0, min=0, max=1000,
                                 tooltip=f"frames of the turntable; {AUTO} ({sizes_help('turntable_frames')})"),
                    io.Int.Input("size", default=0, min=0, max=2048, step=8,
                                 tooltip=f"image side in pixels; {AUTO} ({sizes_help('turntable_size')})"),
                    io.Float.Input("fps", default=10.0, min=0.1, max=120.0, step=0.1, tooltip="video frame rate")],
            outputs=[io.Image.Output(display_name="images", tooltip="turntable frames [N, size, size, 3]"),
                     io.Video.Output(display_name="video", tooltip="the turntable as a core VIDEO")],
        )

    @classmethod
    @checked_widgets
    def execute(cls, nerf: NeRFValue, frames: int, size: int, fps: float) -> io.NodeOutput:
        sizes = get_preset(nerf.preset).export_settings(turntable_frames=frames or None, turntable_size=size or None)
        bar = comfy.utils.ProgressBar(sizes.turntable_frames)
        progress = lambda done, total: (should_stop(), bar.update_absolute(done, total))  # noqa: E731
        images = render_fit_turntable(nerf.fit, float(nerf.matrix.cameras.elevation_deg[0]), sizes.turntable_frames,
                                      sizes.turntable_size, progress)
        images = images.float().cpu().contiguous()
        video = InputImpl.VideoFromComponents(Types.VideoComponents(images=images,
                                                                    frame_rate=Fraction(fps).limit_denominator(1000)))
        return io.NodeOutput(images, video)


class ExportAsset(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SV4D_ExportAsset", display_name="SV4D Export 4D Asset", category="SV4D/reconstruction",
            description="Writes <output>/<prefix>_NNNNN_/: animated.glb (connect glb_path to core Preview3D), "
                        "meshes/frame_*.ply|obj + sequence.json, cameras/transforms.json + images.",
            is_output_node=True,
            inputs=[NeRF.Input("nerf", tooltip="the fitted NeRF (SV4D Fit 4D NeRF)"),
                    io.String.Input("filename_prefix", default="sv4d/asset",
                                    tooltip="folder name inside ComfyUI's output folder (a number is appended)"),
                    io.Int.Input("mesh_resolution", default=0, min=0, max=512, step=8,
                                 tooltip=f"marching-cubes grid per axis; {AUTO} ({sizes_help('mesh_resolution')})"),
                    io.Float.Input("mesh_threshold", default=0.0, min=0.0, max=1000.0, step=0.5,
                                   tooltip="density of the exported surface; 0 = automatic: where one render "
                                           "sample is half opaque, ln 2 / sample spacing (cpu preset 23.8, "
                                           "tiny 11.9; what `sv4d run` uses)"),
                    io.Float.Input("fps", default=10.0, min=0.1, max=120.0, step=0.1, tooltip="GLB animation rate"),
                    io.Combo.Input("mesh_format", options=["ply", "obj"], default="ply",
                                   tooltip="file format of the per-frame meshes")],
            outputs=[io.String.Output(display_name="glb_path", tooltip="the GLB's path relative to the output folder "
                                                                       "(core Preview3D's model_file)")],
        )

    @classmethod
    @checked_widgets
    def execute(cls, nerf: NeRFValue, filename_prefix: str, mesh_resolution: int, mesh_threshold: float,
                fps: float, mesh_format: str) -> io.NodeOutput:
        final, relative = output_target(folder_paths.get_output_directory(), filename_prefix)
        m = nerf.matrix
        export = get_preset(nerf.preset).export_settings(mesh_resolution=mesh_resolution or None,
                                                         mesh_threshold=mesh_threshold or None, fps=fps)
        bar = comfy.utils.ProgressBar(m.n_frames)
        progress = lambda stage, done, total: (should_stop(), bar.update_absolute(done, total))  # noqa: E731
        paths = {}
        publish(final, lambda folder: paths.update(export_asset(nerf.fit, m.images, nerf.masks, m.cameras, m.times,
                                                                folder, export, mesh_format, turntable=False,
                                                                progress=progress)))
        glb = f"{relative}/{Path(paths['glb']).name}"
        return io.NodeOutput(glb, ui=ui.PreviewText(f"wrote {glb}, {m.n_frames} meshes (surface density "
                                                    f"{paths['mesh_threshold']:.1f}), cameras/transforms.json"))


NODES = [FitNeRF, RenderTurntable, ExportAsset]

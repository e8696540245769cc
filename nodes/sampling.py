"""Sampling nodes: anchors (SV4D 2.0: its windows), dense passes, and one node for the whole plan.

Each node runs the library's sampling loop over the planner's passes (``runs.py``): ComfyUI progress over all
its steps with a latent preview per step, Cancel within one step, finished passes kept in a work dir under
ComfyUI's temp folder keyed by the inputs' hash (a Cancelled or failed node resumes from them when queued again;
ComfyUI wipes its temp folder when it starts, so not across restarts).
"""
from __future__ import annotations

from pathlib import Path

import folder_paths

from sv4d_models.kinds import FOUR_D_KINDS

from .comfy_bridge import ComfySamplingModels, StepProgress, should_stop
from .compat import io
from .inputs import model_frames, same_size
from .runs import SamplingWidgets, is_first_stage, run_passes, start_run
from .sockets import Cameras, Passes, checked_widgets, guidance_inputs, model_inputs, seed_input, video_input
from .values import SampledPasses

MODES = ["auto", "official", "extended"]
MODEL_WHAT = "SV4D (SV4D Checkpoint Loader)"


def work_root() -> Path:
    return Path(folder_paths.get_temp_directory()) / "sv4d"


def run_inputs() -> list:
    """Inputs of the nodes that start a run: the video, the reference orbit, cameras and the planner mode."""
    return [video_input(tooltip="the prepared video: square frames of the model's size (SV4D Prepare Video), "
                                "IMAGE batch or core VIDEO"),
            io.Image.Input("orbit", optional=True, tooltip="sv4d only: the reference orbit of frame 0 (SV4D Reference "
                           "Orbit's orbit, or 8 / 9 / 21 views of the frames' size)"),
            Cameras.Input("cameras", optional=True, tooltip="camera settings (SV4D Reference Orbit or SV4D Cameras); "
                          "empty = the official ones of the model kind")]


def mode_input() -> io.Combo.Input:
    return io.Combo.Input("mode", options=MODES, default="auto",
                          tooltip="planner: official = the official scripts' schedule (21 frames for sv4d), extended "
                                  "= any length (long videos: chained anchors, shifted last windows), auto = official "
                                  "when it can run the video, else extended")


def check_4d(models: ComfySamplingModels) -> None:
    if models.kind not in FOUR_D_KINDS:
        raise ValueError(f"the MODEL is {models.kind!r} (SV3D): connect SV4D Checkpoint Loader's MODEL / CLIP_VISION "
                         "/ VAE here; the SV3D model belongs in SV4D Reference Orbit (SV3D)")


def start(models: ComfySamplingModels, video, orbit, cameras, mode: str, steps: int, sigmas) -> SampledPasses:
    check_4d(models)
    frames = model_frames(video)
    if orbit is not None:
        same_size("the orbit", orbit, frames.shape[-1])
    widgets = SamplingWidgets(steps=steps, sigmas=sigmas).resolved(models.kind)
    return start_run(models, frames, orbit, cameras, mode, widgets.steps, models.identity())


def sample(models: ComfySamplingModels, state: SampledPasses, select, widgets: SamplingWidgets) -> SampledPasses:
    """Run the selected passes with one progress bar over all their steps."""
    check_4d(models)
    if state.kind != models.kind:
        raise ValueError(f"the passes were sampled with a {state.kind!r} model but this MODEL is {models.kind!r}; "
                         "connect the same SV4D Checkpoint Loader to both sampling nodes")
    return run_passes(models, state, select, widgets, work_root(), StepProgress(models), should_stop)


def outputs() -> list:
    return [Passes.Output(display_name="passes", tooltip="the sampled passes (SV4D Sample Dense / SV4D Assemble "
                                                         "Grid take them)")]


def start_inputs() -> list:
    """Inputs of the nodes that start a run from the video (SV4D Sample Anchors, SV4D Sampler)."""
    return [*model_inputs(MODEL_WHAT), *run_inputs(), seed_input(), *guidance_inputs(), mode_input()]


class _RunNode(io.ComfyNode):
    """The execute of the nodes that start a run from the video: they differ only in which passes they sample
    (``RUN_SELECT``) and in their schema."""

    RUN_SELECT = staticmethod(lambda p: True)

    @classmethod
    @checked_widgets
    def execute(cls, model, clip_vision, vae, video, seed: int, steps: int, cfg: float, min_cfg: float, mode: str,
                orbit=None, cameras=None, sigmas=None) -> io.NodeOutput:
        models = ComfySamplingModels(model, clip_vision, vae)
        state = start(models, video, orbit, cameras, mode, steps, sigmas)
        widgets = SamplingWidgets(seed, steps, cfg, min_cfg, sigmas)
        return io.NodeOutput(sample(models, state, cls.RUN_SELECT, widgets))


class SampleAnchors(_RunNode):
    RUN_SELECT = staticmethod(is_first_stage)

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SV4D_SampleAnchors", display_name="SV4D Sample Anchors", category="SV4D/sampling",
            description="First sampling stage: SV4D's anchor frames (every 4th frame, all views, from frame 0's "
                        "reference orbit); SV4D 2.0 samples all its autoregressive windows here.",
            inputs=start_inputs(), outputs=outputs())


class SampleDense(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SV4D_SampleDense", display_name="SV4D Sample Dense", category="SV4D/sampling",
            description="Second stage: SV4D's dense passes between the anchors (alternating forward / backward "
                        "references). SV4D 2.0 has none: its passes go through unchanged.",
            inputs=[*model_inputs(MODEL_WHAT),
                    Passes.Input("passes", tooltip="the anchors from SV4D Sample Anchors"),
                    seed_input(), *guidance_inputs()],
            outputs=outputs(),
        )

    @classmethod
    @checked_widgets
    def execute(cls, model, clip_vision, vae, passes: SampledPasses, seed: int, steps: int, cfg: float,
                min_cfg: float, sigmas=None) -> io.NodeOutput:
        models = ComfySamplingModels(model, clip_vision, vae)
        widgets = SamplingWidgets(seed, steps, cfg, min_cfg, sigmas)
        return io.NodeOutput(sample(models, passes, every_pass, widgets))


class SampleVideo(_RunNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="SV4D_SampleVideo", display_name="SV4D Sampler", category="SV4D/sampling",
            description="The whole sampling plan in one node (anchors then dense passes; SV4D 2.0 windows), same "
                        "results as SV4D Sample Anchors + SV4D Sample Dense with equal settings.",
            inputs=start_inputs(), outputs=outputs())


def every_pass(p) -> bool:
    return True


NODES = [SampleAnchors, SampleDense, SampleVideo]

"""The sampling nodes' stage loop (``nodes/runs.py``) without ComfyUI, on the library's own models: it gives exactly
``SV4DPipeline.run``'s images (same stage functions, same RNG order), resumes from its work dir after a stop
(bit-identical), and refuses bad inputs with messages that name the fix."""
from __future__ import annotations

import pytest
import torch

from comfyui_env import pack_module
from sv4d_models.pipeline import SV4DPipeline, assemble_matrix, load_engine_models, pass_seed, sample_reference_orbit
from sv4d_models.pipeline.inputs import reference_row, to_model_frames
from sv4d_models.pipeline.stages import to_unit_hwc
from sv4d_models.sampling import REFERENCE
from sv4d_models.stopping import JobInterrupted
from sv4d_models.tiny_checkpoint import write_tiny_checkpoint

SIZE, STEPS = 16, 2
runs, values = pack_module("nodes.runs"), pack_module("nodes.values")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_ckpts")
    return {k: write_tiny_checkpoint(folder / f"{k}.safetensors", k, seed=i)
            for i, k in enumerate(("sv4d", "sv3d_u", "sv4d2"))}


def video(n: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    return (0.6 * torch.rand(1, SIZE, SIZE, 3, generator=g) + 0.4 * torch.linspace(0, 1, n)[:, None, None, None]).clamp(0, 1)


class Progress:
    """Stand-in for the node's ComfyUI progress bar (a reporter of the loop's events): counts sampled and resumed
    steps, optionally stops after ``stop_after`` sampled steps."""

    def __init__(self, stop_after: int | None = None):
        self.steps, self.skipped, self.stop_after = 0, 0, stop_after

    def __call__(self, event):
        if event["type"] == "sample_step":
            self.steps += 1
        elif event["type"] == "pass_resumed":
            self.skipped += event["steps"]

    def should_stop(self):
        return self.stop_after is not None and self.steps >= self.stop_after


def node_path(models, frames, orbit, work, progress=None, mode="auto"):
    """What SV4D Sample Anchors + SV4D Sample Dense + SV4D Assemble Grid compute."""
    progress = progress or Progress()
    state = runs.start_run(models, frames, orbit, None, mode, STEPS, ["lib"])
    settings = runs.SamplingWidgets(seed=23, steps=STEPS)
    state = runs.run_passes(models, state, runs.is_first_stage, settings, work, progress, progress.should_stop)
    state = runs.run_passes(models, state, lambda p: True, settings, work, progress, progress.should_stop)
    return assemble_matrix(state.plan, state.frames, state.outputs).images, state


@pytest.mark.parametrize("kind", ["sv4d", "sv4d2"])
def test_stage_loop_equals_the_pipeline_exactly(ckpts, kind, tmp_path):
    """sv4d: the orbit travels as an IMAGE in [0, 1] (ComfyUI's convention), so the pipeline gets the same views as
    reference_views; the orbit itself is the pipeline's SV3D stage bit for bit (checked here too). Feeding the
    pipeline its own [-1, 1] row instead differs only by the IMAGE's float rounding of the reference views
    (<= 6e-8), which these random tiny networks amplify to ~1e-2."""
    frames = video(9)
    pipe = SV4DPipeline.from_checkpoints(ckpts[kind], ckpts["sv3d_u"], config={"image_size": SIZE, "num_steps": STEPS})
    x = to_model_frames(frames)  # contiguous, as the nodes make it (layout changes conv rounding)
    orbit = None
    if kind == "sv4d":  # the orbit node: SV3D stage with pass_seed(seed, REFERENCE), output as IMAGE
        result = sample_reference_orbit(load_engine_models(ckpts["sv3d_u"]), x[0], seed=pass_seed(23, REFERENCE),
                                        num_steps=STEPS)
        orbit = torch.stack([to_unit_hwc(v) for v in result.images])
        own = pipe.run(frames, work_dir=tmp_path / "pipe")
        assert torch.equal(own.store.load_pass(REFERENCE)["cells"], result.row)  # same SV3D stage, bit for bit
        assert float((reference_row(orbit, 8, SIZE) - result.row).abs().max()) <= 6e-8  # the IMAGE's rounding
    expected = pipe.run(frames, reference_views=orbit).images
    images, state = node_path(load_engine_models(ckpts[kind]), x, orbit, tmp_path / "nodes")
    assert state.missing() == [] and torch.equal(images, expected)


def test_resume_after_a_stop_is_bit_identical(ckpts, tmp_path):
    models, frames = load_engine_models(ckpts["sv4d2"]), to_model_frames(video(16))
    expected, _ = node_path(models, frames, None, tmp_path / "fresh")
    stopper = Progress(stop_after=STEPS + 1)  # inside the second window
    with pytest.raises(JobInterrupted):
        node_path(models, frames, None, tmp_path / "work", stopper)
    files = sorted(p.name for p in (tmp_path / "work").rglob("pass_*.pt"))
    assert files == ["pass_000.pt"]  # the finished window is kept, the stopped one is not
    again = Progress()
    images, _ = node_path(models, frames, None, tmp_path / "work", again)
    assert again.skipped == STEPS and again.steps == STEPS * (len(runs.make_plan("sv4d2", 16, "auto", STEPS).passes) - 1)
    assert torch.equal(images, expected)


def test_bad_inputs_name_the_fix(ckpts, tmp_path):
    models = load_engine_models(ckpts["sv4d"])
    frames = to_model_frames(video(9))
    with pytest.raises(ValueError, match="needs reference views of frame 0.*SV4D Reference Orbit"):
        runs.start_run(models, frames, None, None, "auto", STEPS, [])
    with pytest.raises(ValueError, match="has 5 images; give 8"):
        runs.start_run(models, frames, torch.rand(5, SIZE, SIZE, 3), None, "auto", STEPS, [])
    with pytest.raises(ValueError, match="cameras describe 5 sv4d2 views but the MODEL is 'sv4d'"):
        runs.start_run(models, frames, torch.rand(21, SIZE, SIZE, 3), values.CameraSpec("sv4d2"), "auto", STEPS, [])
    with pytest.raises(ValueError, match="image size 24 cannot be used.*multiple of 16"):
        runs.start_run(models, torch.rand(9, 3, 24, 24), torch.rand(21, 24, 24, 3), None, "auto", STEPS, [])
    with pytest.raises(ValueError, match="no reference-orbit stage"):
        runs.start_run(load_engine_models(ckpts["sv4d2"]), frames, torch.rand(21, SIZE, SIZE, 3), None, "auto",
                       STEPS, [])
    with pytest.raises(ValueError, match="official sv4d script cannot run 9 frames"):
        runs.start_run(models, frames, torch.rand(21, SIZE, SIZE, 3), None, "official", STEPS, [])
    with pytest.raises(ValueError, match="sigmas must decrease and end in 0"):
        runs.check_sigmas(torch.tensor([1.0, 2.0, 0.5]))
    with pytest.raises(ValueError, match="1-D schedule"):
        runs.check_sigmas(torch.ones(2, 2))
    assert runs.check_sigmas(torch.tensor([700.0, 1.0, 0.0])) == 2


def test_settings_resolve_to_the_official_values():
    assert runs.SamplingWidgets().resolved("sv4d").identity() == [23, 20, 2.0, 1.0, None]
    assert runs.SamplingWidgets().resolved("sv4d2_8views").identity() == [23, 50, 2.5, 1.5, None]
    s = runs.SamplingWidgets(seed=3, steps=7, cfg=3.0, sigmas=torch.tensor([5.0, 1.0, 0.0])).resolved("sv4d")
    assert (s.steps, s.cfg, s.min_cfg) == (2, 3.0, 1.0) and torch.equal(s.schedule(), torch.tensor([5.0, 1.0, 0.0]))

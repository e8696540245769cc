"""SV4DPipeline end to end on tiny random checkpoints (16 px frames, 2 steps): shapes, provenance of every cell,
determinism, resume after interruption (bit-identical), re-roll, refusal of mismatched work dirs, bad inputs."""
from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from sv4d_models.pipeline import PipelineConfig, SV4DPipeline
from sv4d_models.sampling import make_plan
from sv4d_models.tiny_checkpoint import write_tiny_checkpoint

SIZE, STEPS = 16, 2
BASE = dict(image_size=SIZE, num_steps=STEPS, device="cpu")


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_ckpts")
    return {k: write_tiny_checkpoint(folder / f"{k}.safetensors", k, seed=i)
            for i, k in enumerate(("sv4d", "sv3d_u", "sv4d2", "sv4d2_8views"))}


@pytest.fixture(scope="module")
def sv4d(ckpts):
    return SV4DPipeline.from_checkpoints(ckpts["sv4d"], ckpts["sv3d_u"], config=BASE)


def video(n: int, seed: int = 0) -> torch.Tensor:
    """[F, S, S, 3] in [0, 1], smooth in time."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, SIZE, SIZE, 3, generator=g)
    drift = torch.rand(1, SIZE, SIZE, 3, generator=g)
    t = torch.linspace(0, 1, n)[:, None, None, None]
    return (0.7 * base + 0.3 * drift * t).clamp(0, 1)


@pytest.fixture(scope="module")
def sv4d_21(sv4d, tmp_path_factory):
    """One uninterrupted 21-frame sv4d run in a work dir, with the callback log."""
    work = tmp_path_factory.mktemp("sv4d21") / "work"
    log = []
    result = sv4d.run(video(21), work_dir=work, callback=log.append)
    return result, work, log


def redecode(pipe, result, index, cell):
    """Decode the stored latent of ``cell`` from pass ``index`` again -> [S, S, 3] in [0, 1]."""
    rec = result.store.load_pass(index)
    p = result.plan.passes[index]
    z = rec["latents"][p.row_of(cell[0]), p.views.index(cell[1])][None]
    cell = ((pipe.models.decoder.decode(z)[0] + 1) / 2).clamp(0, 1) * 2 - 1  # as stored
    return ((cell + 1) / 2).clamp(0, 1).permute(1, 2, 0)


def test_sv4d_21_frames_end_to_end(sv4d, sv4d_21):
    result, _, log = sv4d_21
    plan = result.plan
    assert plan.mode == "official" and [p.kind for p in plan.passes] == ["anchor"] + ["dense"] * 5
    images = result.images
    assert images.shape == (21, 9, SIZE, SIZE, 3) and torch.isfinite(images).all()
    assert images.min() >= 0 and images.max() <= 1
    torch.testing.assert_close(images[:, 0], video(21), rtol=0, atol=1e-6)  # column 0 = the input
    writer = plan.final_writer()
    assert set(writer) == {(t, v) for t in range(21) for v in range(1, 9)}
    for (t, v), index in writer.items():
        assert result.source(t, v) == index
    assert [result.source(0, v) for v in range(1, 9)] == [1] * 8  # SV3D row overwritten by dense pass 0
    for cell in [(0, 3), (4, 1), (8, 8), (20, 5)]:  # the image is the decode of that pass's latent
        torch.testing.assert_close(result.cell(*cell), redecode(sv4d, result, writer[cell], cell), rtol=0, atol=1e-5)
    other = redecode(sv4d, result, 0, (4, 1))  # anchor's row 4, later overwritten by dense pass 1 / 2
    assert writer[(4, 1)] != 0 and not torch.allclose(result.cell(4, 1), other)
    sv3d_row = result.store.load_pass(-1)["cells"]
    assert sv3d_row.shape == (8, 3, SIZE, SIZE) and not torch.allclose(sv3d_row[0], images[0, 1].permute(2, 0, 1) * 2 - 1)
    order = list(dict.fromkeys(e["pass_index"] for e in log))
    assert order == [-1, 0, 1, 2, 3, 4, 5] and len(log) == 7 * STEPS
    assert log[-1]["global_step"] == log[-1]["global_total"] - 1
    assert [e["direction"] for e in log if e["pass_index"] == 1] == ["backward", "forward"]
    assert result.times[0] == 0 and result.times[-1] == 1 and len(result.cameras) == 9
    assert json.loads(json.dumps(result.plan_json)) == plan.to_json()


def test_reference_provenance_matches_the_official_table():
    """Spec 6.7: dense k forward ref = row t0 from dense k-1 (SV3D for k=0), backward ref = anchor row t0+4."""
    src = make_plan("sv4d", 21, num_steps=4).reference_sources()
    views = range(1, 9)
    assert src[0] == {(0, v): -1 for v in views}  # anchor: SV3D views of frame 0
    assert src[1] == {**{(0, v): -1 for v in views}, **{(4, v): 0 for v in views}}
    for k, t0 in enumerate([4, 8, 12, 16], start=2):
        assert src[k] == {**{(t0, v): k - 1 for v in views}, **{(t0 + 4, v): 0 for v in views}}
    src2 = make_plan("sv4d2", 21, num_steps=4).reference_sources()
    assert src2[0] == {} and src2[1] == {(9, v): 0 for v in range(1, 5)}


def test_determinism_and_seed(sv4d, sv4d_21):
    result = sv4d_21[0]
    again = sv4d.configure(offload="cpu").run(video(21))  # RAM store, same seed
    assert torch.equal(again.images, result.images)
    other = sv4d.configure(seed=24).run(video(21))
    assert not torch.allclose(other.images[:, 1:], result.images[:, 1:])
    assert torch.equal(other.images[:, 0], result.images[:, 0])


def test_sv4d_13_frames_extended(sv4d):
    result = sv4d.run(video(13))
    assert result.plan.mode == "extended"
    images = result.images
    assert images.shape == (13, 9, SIZE, SIZE, 3) and torch.isfinite(images).all()
    writer = result.plan.final_writer()
    assert [p.kind for p in result.plan.passes] == ["anchor", "dense", "dense", "dense"]
    assert all(result.source(t, v) == writer[(t, v)] for t in range(13) for v in range(1, 9))
    assert set(writer.values()) == {1, 2, 3}  # the anchors only condition the dense passes
    short = sv4d.run(video(3))  # shorter than one pass: one ping-pong padded window
    assert [p.kind for p in short.plan.passes] == ["window"] and short.images.shape == (3, 9, SIZE, SIZE, 3)
    assert torch.isfinite(short.images).all()


class SpyUNet:
    """Records cond_view and image_only_indicator of every call of the wrapped UNet."""

    def __init__(self, unet):
        self.unet, self.config, self.calls = unet, unet.config, []

    def __call__(self, x, timesteps, **kw):
        self.calls.append((kw["cond_view"].clone(), kw["image_only_indicator"].clone()))
        return self.unet(x, timesteps, **kw)


@pytest.mark.parametrize("kind,n_views,n_passes", [("sv4d2", 4, 2), ("sv4d2_8views", 8, 5)])
def test_sv4d2_windows(ckpts, kind, n_views, n_passes):
    pipe = SV4DPipeline.from_checkpoints(ckpts[kind], config=BASE, model_kind=kind)
    spy = SpyUNet(pipe.models.unet)
    pipe = SV4DPipeline(dataclasses.replace(pipe.models, unet=spy), BASE)
    result = pipe.run(video(21))
    images = result.images
    assert images.shape == (21, n_views + 1, SIZE, SIZE, 3) and torch.isfinite(images).all()
    assert len(result.plan.passes) == n_passes and result.plan.passes[0].reference_frame is None
    torch.testing.assert_close(images[:, 0], video(21), rtol=0, atol=1e-6)
    first, later = spy.calls[:STEPS], spy.calls[STEPS:]
    assert all(torch.all(cv == 0) and torch.all(ind == 0) for cv, ind in first)  # no reference, indicator 0
    assert all(cv[n_views:].abs().sum() > 0 and torch.all(ind == 1) for cv, ind in later)
    assert all(torch.all(cv[:n_views] == 0) for cv, _ in later)  # uc half zeroed
    writer = result.plan.final_writer()
    assert {result.source(t, v) for t in range(21) for v in range(1, n_views + 1)} == set(writer.values())
    assert pipe.run(video(21)).images.equal(images)


def test_resume_after_interruption_is_bit_identical(sv4d, sv4d_21, tmp_path):
    full, _, _ = sv4d_21
    work = tmp_path / "work"
    seen = []

    def stop():  # stop once pass 2 has taken its last step
        return any(e["pass_index"] == 2 and e["step"] == STEPS - 1 for e in seen)

    with pytest.raises(InterruptedError, match="same work_dir"):
        sv4d.run(video(21), work_dir=work, callback=seen.append, should_stop=stop)
    manifest = json.loads((work / "manifest.json").read_text())
    assert manifest["done"] == [-1, 0, 1, 2]
    assert not [p.name for p in work.iterdir() if p.name.startswith(".")]  # no temp files left behind
    assert not (work / "pass_003.pt").exists()
    resumed_log = []
    resumed = sv4d.run(video(21), work_dir=work, callback=resumed_log.append)
    assert sorted({e["pass_index"] for e in resumed_log if e["type"] == "sample_step"}) == [3, 4, 5]
    assert [e["pass_index"] for e in resumed_log if e["type"] == "pass_resumed"] == [0, 1, 2]
    assert torch.equal(resumed.images, full.images)


def test_stop_mid_pass_keeps_finished_passes(sv4d, tmp_path):
    work = tmp_path / "w"
    seen = []
    with pytest.raises(InterruptedError):
        sv4d.run(video(21), work_dir=work, callback=seen.append,
                 should_stop=lambda: any(e["pass_index"] == 1 for e in seen))
    assert json.loads((work / "manifest.json").read_text())["done"] == [-1, 0]
    with pytest.raises(InterruptedError, match="nothing was kept"):
        sv4d.run(video(21), should_stop=lambda: True)


def test_reroll_changes_exactly_the_dependent_passes(sv4d, sv4d_21, tmp_path):
    full, work, _ = sv4d_21
    plan = full.plan
    assert plan.dependents([4]) == {4, 5} and plan.dependents([0]) == {0, 1, 2, 3, 4, 5}
    copy = tmp_path / "copy"
    shutil.copytree(work, copy)
    log = []
    rerolled = sv4d.run(video(21), work_dir=copy, reroll={4: 7}, callback=log.append)
    assert sorted({e["pass_index"] for e in log if e["type"] == "sample_step"}) == [4, 5]
    new, old = rerolled.images, full.images
    for (t, v), index in plan.final_writer().items():
        same = torch.equal(new[t, v], old[t, v])
        assert same == (index not in (4, 5)), (t, v, index)
    fresh = sv4d.run(video(21), work_dir=tmp_path / "fresh", reroll={4: 7})  # same seeds from scratch
    assert torch.equal(fresh.images, new)
    again = sv4d.run(video(21), work_dir=copy)  # the override is remembered: nothing to do
    assert torch.equal(again.images, new)
    with pytest.raises(ValueError, match="not passes of this plan"):
        sv4d.run(video(21), work_dir=copy, reroll={9: 1})


def test_reroll_sv3d_stage_invalidates_everything(sv4d, sv4d_21, tmp_path):
    _, work, _ = sv4d_21
    copy = tmp_path / "copy"
    shutil.copytree(work, copy)
    with pytest.raises(InterruptedError):
        sv4d.run(video(21), work_dir=copy, reroll={-1: 5}, should_stop=lambda: True)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["done"] == [] and manifest["seed_overrides"] == {"-1": 5}
    assert not list(copy.glob("pass_*.pt"))


def test_mismatched_work_dir_is_refused(sv4d, sv4d_21, tmp_path):
    _, work, _ = sv4d_21
    with pytest.raises(ValueError, match=r"seed: 23 \(recorded\) vs 24 \(now\).*new work_dir.*overwrite=True"):
        sv4d.configure(seed=24).run(video(21), work_dir=work)
    with pytest.raises(ValueError, match=r"num_steps: 2 \(recorded\) vs 3 \(now\)"):
        sv4d.configure(num_steps=3).run(video(21), work_dir=work)
    with pytest.raises(ValueError, match="the input frames differ"):
        sv4d.run(video(21, seed=5), work_dir=work)
    copy = tmp_path / "copy"
    shutil.copytree(work, copy)
    with pytest.raises(InterruptedError):
        sv4d.configure(seed=24).run(video(21), work_dir=copy, overwrite=True, should_stop=lambda: True)
    assert json.loads((copy / "manifest.json").read_text())["config"]["sampling"]["seed"] == 24
    assert not (copy / "pass_000.pt").exists()


def test_user_reference_views(ckpts, tmp_path):
    pipe = SV4DPipeline.from_checkpoints(ckpts["sv4d"], config=BASE)  # no SV3D checkpoint
    with pytest.raises(ValueError, match="sv3d_checkpoint_path=.*reference_views="):
        pipe.run(video(5))
    views = torch.rand(9, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(3))
    a = pipe.run(video(5), reference_views=views, work_dir=tmp_path / "a")
    torch.testing.assert_close(a.store.load_pass(-1)["cells"], views[1:].permute(0, 3, 1, 2) * 2 - 1)
    b = pipe.run(video(5), reference_views=views.flip(0))
    assert not torch.equal(a.images[:, 1:], b.images[:, 1:])
    with pytest.raises(ValueError, match="reference_views has 5 images"):
        pipe.run(video(5), reference_views=views[:5])


def test_bad_inputs(sv4d, ckpts):
    with pytest.raises(ValueError, match="no frames"):
        sv4d.run(torch.empty(0, SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="no frames"):
        sv4d.run([])
    with pytest.raises(ValueError, match="4 channels.*RGB"):
        sv4d.run(torch.rand(21, SIZE, SIZE, 4))
    with pytest.raises(ValueError, match="different sizes.*resize"):
        sv4d.run([torch.rand(SIZE, SIZE, 3), torch.rand(2 * SIZE, 2 * SIZE, 3)])
    bad = video(21)
    bad[3, 2, 2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        sv4d.run(bad)
    with pytest.raises(ValueError, match="image size 24 .* multiple of 16"):
        sv4d.configure(image_size=24).run(torch.rand(21, 24, 24, 3))
    with pytest.raises(ValueError, match="frames are 32x32 but image_size=16"):
        sv4d.run(torch.rand(21, 32, 32, 3))
    with pytest.raises(ValueError, match="square"):
        sv4d.run(torch.rand(21, 16, 20, 3))
    with pytest.raises(ValueError, match=r"must be in \[0, 1\].*\[F, 3, S, S\]"):
        sv4d.run(video(21) * 2 - 1)
    with pytest.raises(ValueError, match=r"must be in \[-1, 1\]"):
        sv4d.run(video(21).permute(0, 3, 1, 2) * 255)
    with pytest.raises(ValueError, match="official sv4d script cannot run 13 frames.*mode='extended'"):
        sv4d.configure(mode="official").run(video(13))
    with pytest.raises(ValueError, match="elevations_deg has 3 values; give 1 value or 21"):
        sv4d.configure(elevations_deg=[0, 10, 20]).run(video(21))
    with pytest.raises(ValueError, match="'sv3d_u' checkpoint.*sv3d_checkpoint_path"):
        SV4DPipeline.from_checkpoints(ckpts["sv3d_u"], config=BASE)
    sv4d2 = SV4DPipeline.from_checkpoints(ckpts["sv4d2"], config=BASE)
    with pytest.raises(ValueError, match="only used by sv4d"):
        sv4d2.run(video(21), reference_views=torch.rand(5, SIZE, SIZE, 3))


def test_config():
    with pytest.raises(ValueError, match="unknown PipelineConfig key.*'stepz'"):
        PipelineConfig.from_dict({"stepz": 3})
    with pytest.raises(ValueError, match="mode="):
        PipelineConfig.from_dict({"mode": "fast"})
    cfg = PipelineConfig.from_dict({"elevations_deg": [10] * 21}).resolved("sv4d2")
    assert cfg.sampling.num_steps == 50 and cfg.placement.dtype == "float32" or cfg.placement.device != "cpu"
    assert isinstance(cfg.sampling.elevations_deg, tuple) and cfg.framing.image_frame_ratio == 0.9
    with pytest.raises(ValueError, match="checkpoint is 'sv4d2'"):
        PipelineConfig.from_dict({"model_kind": "sv4d"}).resolved("sv4d2")
    three = PipelineConfig.from_dict({"seed": 3})
    assert PipelineConfig.from_dict(three.to_dict()) == three == PipelineConfig.from_dict({"sampling": {"seed": 3}})
    assert three.sampling.seed == 3 and three.replace(image_size=64).framing.image_size == 64
    with pytest.raises(ValueError, match="unknown SamplingConfig key 'image_size'"):
        PipelineConfig.from_dict({"sampling": {"image_size": 64}})


def test_write_videos(sv4d_21, tmp_path):
    result = sv4d_21[0]
    paths = result.write_videos(tmp_path / "videos")
    assert [p.name for p in paths] == [f"v{v:03d}.mp4" for v in range(9)] and all(p.stat().st_size > 0 for p in paths)
    with pytest.raises(FileExistsError):
        result.write_videos(tmp_path / "videos")
    assert result.view_uint8(3).shape == (21, SIZE, SIZE, 3)


def test_file_path_input(sv4d, tmp_path):
    pytest.importorskip("sv4d_models.preprocess")
    from PIL import Image

    frames = video(21)
    folder = tmp_path / "frames"
    folder.mkdir()
    frames[:, 4:12, 4:12] = 0.2  # a dark object on white: masks are its square
    frames[:, :4], frames[:, 12:], frames[:, :, :4], frames[:, :, 12:] = 1.0, 1.0, 1.0, 1.0
    for i, f in enumerate(frames):
        Image.fromarray((f.numpy() * 255).round().astype("uint8")).save(folder / f"{i:03d}.png")
    pipe = sv4d.configure(max_frames=13, image_frame_ratio=0.5)
    result = pipe.run(folder)
    assert result.images.shape == (13, 9, SIZE, SIZE, 3) and torch.isfinite(result.images).all()
    masks = result.input_masks()
    assert masks.shape == (13, SIZE, SIZE) and 0.1 < float(masks.mean()) < 0.5
    torch.testing.assert_close(result.images[:, 0].permute(0, 3, 1, 2) * 2 - 1, pipe.read_frames(folder)[0],
                               rtol=0, atol=1e-6)  # column 0 = the preprocessed input
    assert sv4d.run(video(21)).input_masks() is None


def test_bfloat16_autocast_on_cpu(ckpts):
    """The reduced-precision path (UNet weights in the run dtype, CLIP / VAE float32, autocast) runs end to end."""
    frames = video(12)
    ref = SV4DPipeline.from_checkpoints(ckpts["sv4d2"], config=BASE).run(frames).images
    pipe = SV4DPipeline.from_checkpoints(ckpts["sv4d2"], config=BASE, dtype="bfloat16")
    assert pipe.models.unet.out[2].weight.dtype == torch.bfloat16
    assert pipe.models.decoder.conv_out.weight.dtype == torch.float32
    images = pipe.run(frames).images
    assert torch.isfinite(images).all() and torch.equal(images[:, 0], ref[:, 0])
    assert 0 < float((images[:, 1:] - ref[:, 1:]).abs().mean()) < 0.15  # rounding, not a different computation


def _by_hand(ckpt, sv3d_ckpt, kind, frames, seed=23):
    """The stage functions called directly, as the ComfyUI nodes and the trainer do."""
    from sv4d_models.pipeline import (assemble_matrix, load_engine_models, pass_seed, reference_images, sample_pass,
                                      sample_reference_orbit)
    from sv4d_models.sampling import REFERENCE

    models = load_engine_models(ckpt, kind)
    x = frames.permute(0, 3, 1, 2) * 2 - 1  # [F, 3, S, S] in [-1, 1]
    clip = models.clip_embed(x)
    the_plan = make_plan(kind, x.shape[0], num_steps=STEPS)
    outputs = {}
    if the_plan.given_reference_row:
        orbit = sample_reference_orbit(load_engine_models(sv3d_ckpt), x[0], seed=pass_seed(seed, REFERENCE),
                                       num_steps=STEPS)
        assert orbit.images.shape == (21, 3, SIZE, SIZE) and torch.equal(orbit.images[0], x[0])
        outputs[REFERENCE] = orbit.row
    for p in the_plan.passes:
        out = sample_pass(models, p, x, clip, reference_images(the_plan, p, outputs), seed=pass_seed(seed, p.index),
                          encode_per_view=the_plan.mode == "official")
        outputs[p.index] = out.cells
    return assemble_matrix(the_plan, x, outputs)


@pytest.mark.parametrize("kind", ["sv4d", "sv4d2"])
def test_stage_functions_by_hand_equal_the_pipeline(ckpts, sv4d_21, kind):
    if kind == "sv4d":
        expected = sv4d_21[0]
    else:
        expected = SV4DPipeline.from_checkpoints(ckpts[kind], config=BASE).run(video(21))
    matrix = _by_hand(ckpts[kind], ckpts["sv3d_u"], kind, video(21))
    assert torch.equal(matrix.images, expected.images)
    assert torch.equal(matrix.times, expected.times) and torch.equal(matrix.cameras.c2w, expected.cameras.c2w)

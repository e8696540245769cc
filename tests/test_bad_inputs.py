"""A catalogue of wrong inputs over the public entry points (library, trainer, node helpers; the CLI's are in
tests/test_cli.py, the ComfyUI nodes' in tests/test_nodes_*.py). Each case asserts the error type, that the message
names the value or the file and the fix, and that nothing was written or changed in the test's folder."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from sv4d_models.tiny_checkpoint import write_tiny_checkpoint

SIZE = 16


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """Tiny checkpoints, a pipeline, a synthetic matrix and a few broken files (written once, then read-only)."""
    from safetensors.torch import save_file

    from sv4d_models.pipeline import SV4DPipeline
    from sv4d_models.synthetic import SyntheticScene

    d = tmp_path_factory.mktemp("bad_inputs")
    files = {k: write_tiny_checkpoint(d / f"{k}.safetensors", k) for k in ("sv4d", "sv3d_u", "sv4d2")}
    data = files["sv4d"].read_bytes()
    (d / "truncated.safetensors").write_bytes(data[: len(data) // 3])
    (d / "text.safetensors").write_text("not a checkpoint")
    (d / "model.ckpt").write_bytes(b"\x80\x04")
    save_file({"cond_stage_model.transformer.x": torch.zeros(2), "model.diffusion_model.input_blocks.0.0.weight":
               torch.zeros(4, 4, 3, 3)}, str(d / "sd.safetensors"))
    (d / "bad.gif").write_text("not a gif")
    torch.save({"format": "someone_else/1", "step": 3}, d / "other_fit.pt")
    (d / "clip.xyz").write_bytes(b"?")
    (d / "empty_folder").mkdir()
    (d / "manifest_dir").mkdir()
    (d / "manifest_dir" / "manifest.json").write_text("{broken")
    pipe = SV4DPipeline.from_checkpoints(files["sv4d"], files["sv3d_u"],
                                         config={"image_size": SIZE, "num_steps": 2, "device": "cpu"})
    matrix = SyntheticScene.make(kind="rigid", seed=1).render_matrix(n_frames=3, size=SIZE)
    return {"dir": d, "files": files, "pipe": pipe, "m": matrix, "video": torch.rand(5, SIZE, SIZE, 3)}


def _fit(c, **kw):
    from sv4d_models.nerf.fit import fit_dynamic_nerf
    from sv4d_models.nerf.fit_config import tiny_preset

    m = {**c["m"], **kw}
    return fit_dynamic_nerf(m["images"], m["masks"], m["cameras"], m["times"], tiny_preset(static_steps=1, dynamic_steps=1))


def _pcfg(**kw):
    from sv4d_models.pipeline import PipelineConfig

    return PipelineConfig.from_dict(kw)


def _load_unet(c, name, **kw):
    from sv4d_models import load_unet

    return load_unet(c["dir"] / name if isinstance(name, str) else name, **kw)


def _frames(x):
    from sv4d_models.pipeline.inputs import to_model_frames

    return to_model_frames(x)


def _load(path):
    from sv4d_models.frames_io import load_frames

    return load_frames(path)


def _plan(*a, **kw):
    from sv4d_models.sampling import make_plan

    return make_plan(*a, **kw)


def _train_cfg(*overrides):
    from train.config import TrainConfig

    return TrainConfig().with_overrides(list(overrides))


def _export(**kw):
    from sv4d_models.reconstruction import ExportSettings

    return ExportSettings(**kw)


def _job(c, **kw):
    from sv4d_models.job import JobSettings

    return JobSettings(**{"video": "v.mp4", "out": str(c["dir"] / "o"), **kw})


def _nerf_cfg(**kw):
    from sv4d_models.nerf.fit_config import tiny_preset

    return tiny_preset(**kw)


CASES = [
    # ---- checkpoints ------------------------------------------------------------------------------------
    ("ckpt missing", lambda c: _load_unet(c, "nope.safetensors"), FileNotFoundError, r"nope.safetensors.*does not exist.*models/checkpoints"),
    ("ckpt is a folder", lambda c: _load_unet(c, "empty_folder"), FileNotFoundError, r"empty_folder.*is a folder, not a file; pass the .safetensors file inside it"),
    ("ckpt .ckpt file", lambda c: _load_unet(c, "model.ckpt"), ValueError, r"model.ckpt.*not a .safetensors file.*convert"),
    ("ckpt truncated", lambda c: _load_unet(c, "truncated.safetensors"), ValueError, r"truncated.safetensors.*truncated or corrupt"),
    ("ckpt text file", lambda c: _load_unet(c, "text.safetensors"), ValueError, r"text.safetensors.*not a readable safetensors"),
    ("ckpt SD file", lambda c: _load_unet(c, "sd.safetensors"), ValueError, r"Stable Diffusion 1.x/2.x.*Supported files"),
    ("ckpt wrong kind asked", lambda c: _load_unet(c, "sv4d.safetensors", model_kind="sv3d_p"), ValueError, r"model_kind='sv3d_p' was requested but the weights are a 'sv4d'"),
    ("ckpt sv3d asked as sv4d", lambda c: _load_unet(c, "sv3d_u.safetensors", model_kind="sv4d"), ValueError, r"model_kind='sv4d' was requested but the weights are a 'sv3d_u'"),
    ("ckpt unknown kind", lambda c: _load_unet(c, "sv4d.safetensors", model_kind="sv5d"), ValueError, r"model_kind='sv5d' is not supported"),
    ("ckpt not a path", lambda c: _load_unet(c, 42), TypeError, r"state dict.*safetensors"),
    ("ckpt network key", lambda c: _load_unet(c, "sv4d.safetensors", network_config={"params": {"magic": 1}}), ValueError, r"'magic'"),
    ("pipeline sv3d as 4D", lambda c: __import__("sv4d_models.pipeline", fromlist=["x"]).SV4DPipeline.from_checkpoints(c["files"]["sv3d_u"]), ValueError, r"sv3d_u.*'sv3d_u' checkpoint.*sv3d_checkpoint_path"),
    ("pipeline 4D as sv3d", lambda c: __import__("sv4d_models.pipeline", fromlist=["x"]).SV4DPipeline.from_checkpoints(c["files"]["sv4d"], c["files"]["sv4d2"]), ValueError, r"sv4d2.safetensors is a 'sv4d2' checkpoint; pass sv3d_u"),
    ("pipeline missing sv3d", lambda c: __import__("sv4d_models.pipeline", fromlist=["x"]).SV4DPipeline.from_checkpoints(c["files"]["sv4d"], c["dir"] / "no_sv3d.safetensors"), FileNotFoundError, r"no_sv3d.safetensors.*does not exist"),
    # ---- pipeline config ----------------------------------------------------------------------------------
    ("cfg unknown key", lambda c: _pcfg(stepz=3), ValueError, r"unknown PipelineConfig key 'stepz'"),
    ("cfg bad mode", lambda c: _pcfg(mode="fast"), ValueError, r"mode='fast'.*'official'"),
    ("cfg bad dtype", lambda c: _pcfg(dtype="half"), ValueError, r"dtype='half'"),
    ("cfg zero steps", lambda c: _pcfg(num_steps=0), ValueError, r"num_steps=0 must be >= 1"),
    ("cfg float seed", lambda c: _pcfg(seed=1.5), ValueError, r"seed=1.5 must be an integer"),
    ("cfg negative seed", lambda c: _pcfg(seed=-3), ValueError, r"seed=-3 must be an integer in \[0, 2\^63\)"),
    ("cfg bool seed", lambda c: _pcfg(seed=True), ValueError, r"seed=True"),
    ("cfg tiny image", lambda c: _pcfg(image_size=4), ValueError, r"image_size=4 must be >= 8"),
    ("cfg frame ratio", lambda c: _pcfg(image_frame_ratio=1.5), ValueError, r"image_frame_ratio=1.5"),
    ("cfg offload", lambda c: _pcfg(offload="gpu"), ValueError, r"offload='gpu'"),
    ("cfg sv3d kind", lambda c: _pcfg(sv3d_kind="sv4d"), ValueError, r"sv3d_kind='sv4d'"),
    ("cfg model kind", lambda c: _pcfg(model_kind="sv3d_u"), ValueError, r"model_kind='sv3d_u' is not supported"),
    ("cfg scalar azimuths", lambda c: _pcfg(azimuths_deg=30.0), ValueError, r"azimuths_deg must be a list"),
    ("cfg text elevations", lambda c: _pcfg(elevations_deg=["a"]), ValueError, r"could not convert string"),
    ("cfg bad group", lambda c: _pcfg(sampling={"image_size": 64}), ValueError, r"unknown SamplingConfig key 'image_size'"),
    ("cfg negative cond_aug", lambda c: _pcfg(cond_aug=-1.0), ValueError, r"cond_aug=-1.0 must be >= 0"),
    ("cfg zero chunks", lambda c: _pcfg(encoding_t=0), ValueError, r"encoding_t=0"),
    ("cfg configure device", lambda c: c["pipe"].configure(device="cuda"), ValueError, r"\['device'\] need other weights"),
    # ---- frames -----------------------------------------------------------------------------------------------
    ("frames empty list", lambda c: _frames([]), ValueError, r"no frames: got an empty list"),
    ("frames empty tensor", lambda c: _frames(torch.empty(0, 8, 8, 3)), ValueError, r"no frames"),
    ("frames RGBA tensor", lambda c: _frames(torch.rand(2, 8, 8, 4)), ValueError, r"4 channels.*RGB"),
    ("frames mixed sizes", lambda c: _frames([torch.rand(8, 8, 3), torch.rand(9, 9, 3)]), ValueError, r"different sizes.*resize"),
    ("frames NaN", lambda c: _frames(torch.full((1, 8, 8, 3), float("nan"))), ValueError, r"NaN or infinite"),
    ("frames 0..255 float HWC", lambda c: _frames(torch.rand(1, 8, 8, 3) * 255), ValueError, r"must be in \[0, 1\] but range over"),
    ("frames 0..255 float CHW", lambda c: _frames(torch.rand(1, 3, 8, 8) * 255), ValueError, r"must be in \[-1, 1\].*x / 127.5 - 1"),
    ("frames not square", lambda c: _frames(torch.rand(2, 8, 10, 3)), ValueError, r"square"),
    ("frames 5-d", lambda c: _frames(torch.rand(1, 2, 8, 8, 3)), ValueError, r"expected \[F, 3, S, S\]"),
    ("frames wrong type", lambda c: _frames("no"), TypeError, r"must be a tensor, numpy array, list of frames or a path"),
    ("video missing", lambda c: _load(c["dir"] / "nope.mp4"), FileNotFoundError, r"nope.mp4.*does not exist"),
    ("video corrupt gif", lambda c: _load(c["dir"] / "bad.gif"), ValueError, r"could not read .*bad.gif. as an image"),
    ("video bad extension", lambda c: _load(c["dir"] / "clip.xyz"), ValueError, r"unsupported file extension '.xyz'"),
    ("video empty folder", lambda c: _load(c["dir"] / "empty_folder"), ValueError, r"empty_folder.*contains no"),
    ("video glob no match", lambda c: _load(str(c["dir"] / "*.jpeg")), FileNotFoundError, r"no files match"),
    ("video max_frames 0", lambda c: __import__("sv4d_models.frames_io", fromlist=["x"]).load_frames(c["video"], max_frames=0), ValueError, r"max_frames must be a positive int"),
    ("preprocess 1x1 video", lambda c: __import__("sv4d_models.preprocess", fromlist=["x"]).preprocess_frames(torch.zeros(3, 1, 1, 3), size=64), ValueError, r"1x1 pixels.*larger video"),
    ("preprocess size", lambda c: __import__("sv4d_models.preprocess", fromlist=["x"]).preprocess_frames(torch.zeros(3, 32, 32, 3), size=4), ValueError, r"size must be an int >= 8"),
    # ---- pipeline run ----------------------------------------------------------------------------------------
    ("run size mismatch", lambda c: c["pipe"].run(torch.rand(5, 32, 32, 3)), ValueError, r"frames are 32x32 but image_size=16"),
    ("run size not multiple", lambda c: c["pipe"].configure(image_size=24).run(torch.rand(5, 24, 24, 3)), ValueError, r"image size 24 cannot be used.*multiple of 16"),
    ("run official 13 frames", lambda c: c["pipe"].configure(mode="official").run(torch.rand(13, SIZE, SIZE, 3)), ValueError, r"official sv4d script cannot run 13 frames"),
    ("run elevations count", lambda c: c["pipe"].configure(elevations_deg=[0, 1, 2]).run(c["video"]), ValueError, r"elevations_deg has 3 values; give 1 value or 21"),
    ("run azimuths count", lambda c: c["pipe"].configure(azimuths_deg=[0, 1]).run(c["video"]), ValueError, r"azimuths_deg has 2 values"),
    ("run reference count", lambda c: c["pipe"].run(c["video"], reference_views=torch.rand(5, SIZE, SIZE, 3)), ValueError, r"reference_views has 5 images"),
    ("run reference size", lambda c: c["pipe"].run(c["video"], reference_views=torch.rand(8, 32, 32, 3)), ValueError, r"reference_views are 32x32 but the frames are 16x16"),
    ("run reroll key", lambda c: c["pipe"].configure(offload="cpu").run(c["video"], reroll={9: 1}), ValueError, r"reroll keys \[9\] are not passes of this plan"),
    ("run corrupt manifest", lambda c: c["pipe"].run(c["video"], work_dir=c["dir"] / "manifest_dir"), ValueError, r"manifest.json \(the work dir's manifest\) is damaged"),
    ("run path missing", lambda c: c["pipe"].run(c["dir"] / "missing.mp4"), FileNotFoundError, r"missing.mp4.*does not exist"),
    # ---- planning and sampling --------------------------------------------------------------------------------
    ("plan kind", lambda c: _plan("sv3d_u", 5), ValueError, r"model_kind='sv3d_u' is not supported"),
    ("plan zero frames", lambda c: _plan("sv4d", 0), ValueError, r"n_frames=0 must be an integer >= 1"),
    ("plan float frames", lambda c: _plan("sv4d", 5.0), ValueError, r"n_frames=5.0"),
    ("plan mode", lambda c: _plan("sv4d", 5, mode="fast"), ValueError, r"mode='fast'"),
    ("plan steps", lambda c: _plan("sv4d", 5, num_steps=0), ValueError, r"num_steps=0 must be >= 1"),
    ("plan pad", lambda c: __import__("sv4d_models.sampling.plan", fromlist=["x"]).fit_rows([0, 1], 5, pad="mirror"), ValueError, r"pad='mirror'"),
    ("guider kind", lambda c: __import__("sv4d_models.sampling", fromlist=["x"]).default_guider("sv5d"), ValueError, r"model_kind='sv5d' is not supported"),
    ("pass sigmas mismatch", lambda c: __import__("sv4d_models.pipeline", fromlist=["x"]).sample_pass(c["pipe"].models, _plan("sv4d", 5, num_steps=2).passes[0], torch.zeros(5, 3, SIZE, SIZE), torch.zeros(5, 64), {"forward": torch.zeros(8, 3, SIZE, SIZE)}, seed=0, sigmas=torch.tensor([1.0, 0.5, 0.2, 0.0])), ValueError, r"3 sampler steps but the plan was made for 2"),
    ("pass missing reference", lambda c: __import__("sv4d_models.pipeline", fromlist=["x"]).sample_pass(c["pipe"].models, _plan("sv4d", 5, num_steps=2).passes[0], torch.zeros(5, 3, SIZE, SIZE), torch.zeros(5, 64), None, seed=0), ValueError, r"needs the views of frame 0 as references"),
    ("cond angles count", lambda c: __import__("sv4d_models.sampling", fromlist=["x"]).build_sv4d_cond("sv4d", torch.zeros(5, 8), torch.zeros(5, 4, 2, 2), torch.zeros(5, 4, 2, 2), None, [0.0] * 3, [0.0] * 3), ValueError, r"got 3 angles; expected V=8"),
    # ---- NeRF fit and reconstruction -----------------------------------------------------------------------------
    ("fit NaN images", lambda c: _fit(c, images=c["m"]["images"].clone().index_fill_(0, torch.tensor([0]), float("nan"))), ValueError, r"images contain NaN"),
    ("fit 0..255 images", lambda c: _fit(c, images=c["m"]["images"] * 255), ValueError, r"images must be in \[0, 1\] but range over .*divide 0..255"),
    ("fit 0..255 masks", lambda c: _fit(c, masks=c["m"]["masks"] * 255), ValueError, r"masks must be in \[0, 1\]"),
    ("fit empty masks", lambda c: _fit(c, masks=torch.zeros_like(c["m"]["masks"])), ValueError, r"every mask is empty"),
    ("fit uint8 images", lambda c: _fit(c, images=(c["m"]["images"] * 255).byte()), TypeError, r"float tensor in \[0, 1\].*torch.uint8"),
    ("fit times range", lambda c: _fit(c, times=torch.tensor([0.0, 0.5, 2.0])), ValueError, r"times must hold 3 values in \[0, 1\]"),
    ("fit times count", lambda c: _fit(c, times=torch.tensor([0.0, 1.0])), ValueError, r"times must hold 3 values"),
    ("fit masks shape", lambda c: _fit(c, masks=c["m"]["masks"][:, :, :8]), ValueError, r"masks must be \[F, V, H, W\]"),
    ("fit cameras count", lambda c: _fit(c, cameras=c["m"]["cameras"][torch.arange(4)]), ValueError, r"cameras must hold 9 views"),
    ("fit cameras type", lambda c: _fit(c, cameras="front"), TypeError, r"cameras must be Cameras"),
    ("nerf cfg zero steps", lambda c: _nerf_cfg(static_steps=0, dynamic_steps=0), ValueError, r"at least one step"),
    ("nerf cfg zero samples", lambda c: _nerf_cfg(n_samples=0), ValueError, r"n_samples=0 must be >= 1"),
    ("nerf cfg normals", lambda c: _nerf_cfg(normals="smooth"), ValueError, r"normals='smooth'"),
    ("nerf cfg schedule", lambda c: _nerf_cfg(resolution_schedule=((5, 32),)), ValueError, r"must start with \(0, resolution\)"),
    ("nerf guard factor", lambda c: __import__("sv4d_models.nerf.guard", fromlist=["x"]).GuardConfig(spike_factor=0.5), ValueError, r"spike_factor=0.5 must be > 1"),
    ("export frames", lambda c: _export(turntable_frames=0), ValueError, r"turntable_frames=0 must be >= 1"),
    ("export coverage", lambda c: _export(min_coverage_ratio=2.0), ValueError, r"min_coverage_ratio=2.0"),
    ("reconstruct out is file", lambda c: __import__("sv4d_models.reconstruction", fromlist=["x"]).reconstruct(c["m"]["images"], c["m"]["masks"], c["m"]["cameras"], c["m"]["times"], c["dir"] / "bad.gif"), FileExistsError, r"bad.gif exists and is not a folder"),
    ("fit result not ours", lambda c: __import__("sv4d_models.nerf.fit", fromlist=["x"]).load_fit_result(c["dir"] / "other_fit.pt"), ValueError, r"other_fit.pt is not an sv4d_nerf_fit/2 checkpoint \(format='someone_else/1'\)"),
    # ---- exports --------------------------------------------------------------------------------------------------
    ("mp4 bad fps", lambda c: __import__("sv4d_models.export.video", fromlist=["x"]).write_mp4(torch.zeros(2, 8, 8, 3), c["dir"] / "x.mp4", fps=0), ValueError, r"fps"),
    ("folder is a file", lambda c: __import__("sv4d_models.files", fromlist=["x"]).prepare_folder(c["dir"] / "bad.gif", ["a"], False), FileExistsError, r"bad.gif exists and is not a folder"),
    ("no clobber", lambda c: __import__("sv4d_models.files", fromlist=["x"]).atomic_write_bytes(c["dir"] / "bad.gif", b"x"), FileExistsError, r"bad.gif already exists; pass overwrite=True"),
    # ---- trainer and job settings ---------------------------------------------------------------------------------
    ("train unknown key", lambda c: _train_cfg("max_stepz=2"), ValueError, r"unknown config key 'max_stepz'"),
    ("train bad float", lambda c: _train_cfg("optim.lr=fast"), ValueError, r"optim.lr='fast': takes a float"),
    ("train bad kind", lambda c: _train_cfg("model.kind=sv3d_p"), ValueError, r"model.kind='sv3d_p'"),
    ("train bad precision", lambda c: _train_cfg("run.mixed_precision=fp8"), ValueError, r"mixed_precision='fp8'"),
    ("train missing data", lambda c: __import__("train.data", fromlist=["x"]).ShardedDataset(c["dir"] / "empty_folder"), ValueError, r"empty_folder holds no manifest.json.*prepare_data"),
    ("job resume+overwrite", lambda c: _job(c, resume=True, overwrite=True), ValueError, r"resume and overwrite exclude each other"),
    ("job preset", lambda c: _job(c, preset="huge"), ValueError, r"preset='huge'"),
    ("job fit steps", lambda c: _job(c, fit_steps=1), ValueError, r"fit_steps=1 must be >= 2"),
    # ---- node helpers (no ComfyUI needed) -------------------------------------------------------------------------
    ("node angle text", lambda c: __import__("nodes.values", fromlist=["x"]).parse_angles("10, ten", "elevations_deg"), ValueError, r"'ten' is not a number"),
    ("node sigmas shape", lambda c: __import__("nodes.runs", fromlist=["x"]).check_sigmas(torch.zeros(2, 2)), ValueError, r"1-D schedule"),
    ("node sigmas order", lambda c: __import__("nodes.runs", fromlist=["x"]).check_sigmas(torch.tensor([0.0, 1.0])), ValueError, r"must decrease and end in 0"),
]


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 80 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name,call,exc,pattern", CASES, ids=[c[0] for c in CASES])
def test_wrong_input_is_refused_with_a_named_fix(ctx, name, call, exc, pattern):
    before = _snapshot(ctx["dir"])
    with pytest.raises(exc, match=pattern):
        call(ctx)
    assert _snapshot(ctx["dir"]) == before, "a refused call wrote or changed files"
